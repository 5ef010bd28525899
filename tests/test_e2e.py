"""End to end on generated speech (espeak-ng) with the bundled model: events, latency, chunk-size invariance."""

import numpy as np
import pytest

import edgeser


@pytest.fixture(scope="module")
def model():
    return edgeser.load()


def _timed_events(model, audio, chunk_ms=20):
    """(stream time in s when the event came out, event) for 20 ms chunks, as from a microphone."""
    s = model.stream()
    step = 16 * chunk_ms
    out = []
    for i in range(0, audio.size, step):
        for e in s.accept(audio[i : i + step], 16000):
            out.append((min(i + step, audio.size) / 16000, e))
    return out + [(audio.size / 16000, e) for e in s.flush()]


def test_live_latency(model, speech_in_silence):
    audio, t0, t1 = speech_in_silence
    timed = _timed_events(model, audio)
    partial = [t for t, e in timed if not e.final]
    finals = [(t, e) for t, e in timed if e.final]
    assert partial and finals
    assert partial[0] - t0 <= 1.0, f"first partial {partial[0] - t0:.2f} s after speech onset"
    t_final, last = finals[-1]
    assert t_final - t1 <= 0.5, f"final event {t_final - t1:.2f} s after speech ended"
    assert t_final < audio.size / 16000, "the final event must come from the VAD, not from flush()"
    assert last.label in model.labels


@pytest.mark.parametrize("chunk_ms", [10, 20, 37])
def test_chunk_size_invariance_real_model(model, speech_in_silence, chunk_ms):
    from tests.test_stream import same_events

    audio = speech_in_silence[0]
    ref = [e for _, e in _timed_events(model, audio, 1000)]
    got = [e for _, e in _timed_events(model, audio, chunk_ms)]
    same_events(got, ref)


def test_listen_replays_a_file(model, speech_in_silence, tmp_path):
    import soundfile as sf

    from edgeser.listen import FileSource

    path = tmp_path / "speech.wav"
    sf.write(path, speech_in_silence[0], 16000)
    got = []
    with edgeser.listen(got.append, model=model, source=FileSource(path, realtime=False)) as lis:
        assert lis.wait(timeout=60)
    assert [e for e in got if e.final] and all(e.label in model.labels for e in got)
    assert [(e.start, e.end, e.label) for e in got if e.final] == [
        (e.start, e.end, e.label) for e in model.analyze(str(path))
    ]


def test_held_out_ravdess_accuracy_above_chance(ravdess_corpus, model):
    """Real emotional speech from actors the model never trained on: clearly better than chance (0.25)."""
    import csv

    from edgeser.audio import load as load_audio

    root = ravdess_corpus
    held = set(model.info.training["validation"]["test_speakers"])
    rows = [r for r in csv.DictReader(open(root / "manifest.csv"))
            if r["speaker"] in held and r["emotion"] in model.labels and r["intensity"] == "02"]
    rows = rows[::3]
    hits = [model.classify(load_audio(root / r["path"]), 16000).label == r["emotion"] for r in rows]
    assert len(hits) >= 10 and np.mean(hits) >= 0.5
