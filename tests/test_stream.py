"""Stream logic with a deterministic fake backend: windows, events, chunk-size invariance, reset, errors."""

import json

import numpy as np
import pytest

from edgeser import NO_SPEECH, AudioError, EmotionEvent
from edgeser.stream import SILENCE_LOGMEL


def same_events(a, b):
    """Identical events: segments, times, labels, finality and scores, bit for bit."""
    assert [e.to_dict() for e in a] == [e.to_dict() for e in b]


def _run(model, audio, chunk_ms, rate=16000):
    s = model.stream()
    step = int(rate * chunk_ms / 1000)
    events = []
    for i in range(0, audio.size, step):
        events += s.accept(audio[i : i + step], rate)
    return events + s.flush()


@pytest.mark.parametrize("chunk_ms", [10, 20, 37])
def test_chunk_size_invariance(fake_model, speech_in_silence, chunk_ms):
    audio, _, _ = speech_in_silence
    whole = _run(fake_model, audio, 100000)
    chunked = _run(fake_model, audio, chunk_ms)
    same_events(chunked, whole)
    assert any(e.final for e in whole)


def test_events_partial_then_one_final_per_segment(fake_model, speech_in_silence):
    audio, t0, t1 = speech_in_silence
    events = _run(fake_model, audio, 20)
    finals = [e for e in events if e.final]
    assert finals, "speech must give a final event"
    for seg in {e.segment for e in events}:
        evs = [e for e in events if e.segment == seg]
        assert sum(e.final for e in evs) == 1 and evs[-1].final
        assert all(a.end <= b.end for a, b in zip(evs, evs[1:]))
    assert finals[0].start == pytest.approx(t0, abs=0.2)
    assert finals[-1].end == pytest.approx(t1, abs=0.35)
    for e in events:
        assert set(e.scores) == set(fake_model.labels)
        assert sum(e.scores.values()) == pytest.approx(1.0, abs=1e-5)
        assert e.label == max(e.scores, key=e.scores.get) and e.confidence == e.scores[e.label]
        json.loads(e.to_json())


def test_windows_follow_declared_positions(speech_in_silence):
    from edgeser.model import Model
    from tests.conftest import FakeBackend

    b = FakeBackend()
    m = Model(b)
    audio, _, _ = speech_in_silence
    events = _run(m, audio, 20)
    finals = [e for e in events if e.final]
    n_partial = sum(not e.final for e in events)
    assert b.calls >= n_partial and b.calls <= n_partial + len(finals)
    # partial events are 0.5 s apart (hop_frames) within a segment, the first 0.5 s after its start
    seg0 = [e for e in events if e.segment == 0 and not e.final]
    if seg0:
        assert seg0[0].end - seg0[0].start == pytest.approx(0.5, abs=0.011)
        assert all(b.end - a.end == pytest.approx(0.5, abs=1e-6) for a, b in zip(seg0, seg0[1:]))


def test_silence_gives_no_events_and_reset_repeats(fake_model, speech_in_silence):
    s = fake_model.stream()
    assert s.accept(np.zeros(32000, np.float32), 16000) == [] and s.flush() == []
    audio, _, _ = speech_in_silence
    s.reset()
    first = s.accept(audio, 16000) + s.flush()
    s.reset()
    again = s.accept(audio, 16000) + s.flush()
    assert [e.to_dict() for e in first] == [e.to_dict() for e in again] and first  # reset is exact


def test_stream_errors(fake_model):
    s = fake_model.stream()
    with pytest.raises(AudioError):
        s.accept(np.array([0.0, np.nan], np.float32), 16000)
    with pytest.raises(AudioError):
        s.accept(np.zeros((2, 2, 2), np.float32), 16000)
    with pytest.raises(AudioError):
        s.accept(np.zeros(10, np.float32), 0)
    s.accept(np.zeros(160, np.float32), 16000)
    with pytest.raises(AudioError, match="sample rate changed"):
        s.accept(np.zeros(160, np.float32), 8000)
    s.flush()
    with pytest.raises(AudioError, match="flushed"):
        s.accept(np.zeros(160, np.float32), 16000)
    assert s.flush() == []  # a second flush is a no-op


def test_other_rates_and_int16_give_same_segments(fake_model, speech_in_silence):
    from edgeser.audio import resample

    audio, _, _ = speech_in_silence
    ref = [e for e in _run(fake_model, audio, 20) if e.final]
    pcm = np.round(audio * 32767).astype(np.int16)
    got16 = [e for e in _run(fake_model, pcm, 20) if e.final]
    assert [(e.start, e.end, e.label) for e in got16] == [(e.start, e.end, e.label) for e in ref]
    for rate in (8000, 44100, 48000):
        y = resample(audio, 16000, rate)
        got = [e for e in _run(fake_model, y, 20, rate) if e.final]
        # same speech found (a band-limited copy may split at the sentence's comma pause: compare the span)
        assert got[0].start == pytest.approx(ref[0].start, abs=0.1)
        assert got[-1].end == pytest.approx(ref[-1].end, abs=0.1)
        covered = sum(e.end - e.start for e in got)
        assert covered >= 0.85 * sum(e.end - e.start for e in ref)


def test_window_before_stream_start_is_digital_silence(fake_model):
    from edgeser.features import log_mel

    assert np.allclose(log_mel(np.zeros(1600, np.float32)), SILENCE_LOGMEL)


def test_event_is_json_serialisable():
    e = EmotionEvent(start=0.0, end=1.0, label="sad", confidence=0.5, scores={"sad": 0.5, "happy": 0.5}, final=True)
    assert json.loads(e.to_json())["label"] == "sad"


# ------------------------------------------------------------------------------------------------ emotion changes
class _SharpBackend:
    """Fake model with confident outputs: the label is the mel quarter (of 4) with the most energy in the window."""

    def __new__(cls):
        from tests.conftest import FakeBackend

        class Sharp(FakeBackend):
            def run(self, window):
                self.calls += 1
                m = np.array([b.mean() for b in np.array_split(window[0], 4, axis=0)])
                return (5.0 * (m - m.mean())).astype(np.float32)

        return Sharp()


def _buzz(seconds, f0, harmonics, seed=0):
    """A steady buzz (f0 and its harmonics) with a 4 Hz amplitude modulation: one 'voice', continuous."""
    t = np.arange(int(seconds * 16000)) / 16000
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, harmonics + 1))
    noise = 0.003 * np.random.default_rng(seed).standard_normal(t.size)
    return (0.3 * x / np.abs(x).max() * 0.5 * (1 + 0.8 * np.sin(2 * np.pi * 4 * t)) + noise).astype(np.float32)


def _two_voices(first_s, second_s):
    """0.5 s silence, a low buzz (the fake's 'neutral'), straight into a high buzz ('happy'), 0.5 s silence."""
    pad = np.zeros(8000, np.float32)
    return np.concatenate([pad, _buzz(first_s, 150, 11), _buzz(second_s, 1500, 3, seed=1), pad])


@pytest.fixture
def sharp_model():
    from edgeser.model import Model

    return Model(_SharpBackend(), vad="energy")


def test_a_long_segment_ends_where_the_emotion_changes(sharp_model):
    """One speech segment (no pause for the VAD) holding two 'emotions' gives two final events, cut within 0.25 s of
    the change, each the mean of its own windows; without split_on_change it stays one blurred event."""
    audio = _two_voices(5.0, 4.0)
    events = _run(sharp_model, audio, 20)
    finals = [e for e in events if e.final]
    assert [e.label for e in finals] == ["neutral", "happy"]
    assert [e.segment for e in finals] == [0, 1]
    assert finals[0].end == finals[1].start == pytest.approx(5.5, abs=0.25)  # contiguous, at the change
    for seg in (0, 1):
        evs = [e for e in events if e.segment == seg]
        assert sum(e.final for e in evs) == 1 and evs[-1].final
    # the first segment ended at a change: its final event is the mean of the windows its partials reported
    partial0 = [e for e in events if e.segment == 0 and not e.final]
    assert finals[0].scores == partial0[-1].scores
    # the window that showed the change is the next segment's first: it ends half a window after the cut
    first1 = next(e for e in events if e.segment == 1)
    assert not first1.final and first1.end - first1.start == pytest.approx(1.0, abs=0.011)
    assert finals[0].confidence > 0.9 and finals[1].confidence > 0.7

    s = sharp_model.stream(split_on_change=False)
    whole = [e for e in s.accept(audio, 16000) + s.flush() if e.final]
    assert len(whole) == 1 and whole[0].start == finals[0].start and whole[0].end == finals[1].end
    assert whole[0].confidence < finals[0].confidence

    # classify() answers for the whole clip as before: the mean of every window of its speech
    r = sharp_model.classify(audio, 16000)
    assert r.scores == pytest.approx(whole[0].scores, abs=1e-6) and r.label == "neutral"
    assert r.duration == pytest.approx(whole[0].end - whole[0].start, abs=1e-3)


@pytest.mark.parametrize("chunk_ms", [10, 20, 37])
def test_emotion_change_splits_do_not_depend_on_chunking(sharp_model, chunk_ms):
    audio = _two_voices(5.0, 4.0)
    whole = _run(sharp_model, audio, 100000)
    assert sum(e.final for e in whole) == 2
    same_events(_run(sharp_model, audio, chunk_ms), whole)


def test_short_segments_are_never_split_on_change(sharp_model):
    """A segment shorter than 4 s is taken for one utterance: a change inside it does not cut it."""
    audio = _two_voices(1.8, 1.8)
    finals = [e for e in _run(sharp_model, audio, 20) if e.final]
    assert len(finals) == 1


def test_split_on_change_only_for_mean_models_without_segment_state():
    from dataclasses import replace

    from edgeser.model import Model

    b = _SharpBackend()
    assert Model(b).stream().split_on_change is True
    assert Model(b).stream(split_on_change=False).split_on_change is False
    b.info = replace(b.info, aggregate="last")  # the model integrates the segment itself: nothing to split
    assert Model(b).stream().split_on_change is False
    with pytest.raises(ValueError, match="split_on_change"):
        Model(_SharpBackend()).stream(split_on_change="yes")


def test_mean_logits_pooling_in_events_and_classify(speech_in_silence):
    """A model whose metadata says ``aggregate="mean_logits"``: every event's scores and classify()'s clip scores are
    softmax(mean of the window logits / T) over exactly the windows the runtime ran, whatever the chunking."""
    from dataclasses import replace

    from benchmarks.calibration import _recording_backend
    from edgeser.model import Model
    from edgeser.stream import softmax
    from tests.conftest import FakeBackend

    audio, _, _ = speech_in_silence
    inner = FakeBackend()
    inner.info = replace(inner.info, aggregate="mean_logits", temperature=0.3)
    rec = _recording_backend(inner)
    m = Model(rec)
    res = m.classify(audio, 16000)
    want = softmax(np.mean(np.stack(rec.logits), 0), 0.3)
    np.testing.assert_allclose([res.scores[k] for k in m.labels], want, atol=1e-5)
    mean_probs = np.mean([softmax(z, 0.3) for z in rec.logits], 0)
    assert np.abs(want - mean_probs).max() > 1e-3  # a different pooling from "mean"
    rec.logits.clear()
    events = _run(m, audio, 20)
    finals = [e for e in events if e.final]
    assert len(finals) == 1 and m.stream().split_on_change is True
    np.testing.assert_allclose([finals[0].scores[k] for k in m.labels],
                               softmax(np.mean(np.stack(rec.logits), 0), 0.3), atol=1e-5)
    same_events(_run(m, audio, 37), events)
    # no speech: classify() runs no window and claims no emotion, whatever the pooling
    rec.logits.clear()
    quiet = np.random.default_rng(3).standard_normal(24000).astype(np.float32) * 1e-4
    res = m.classify(quiet, 16000)
    assert res.label == NO_SPEECH and res.duration == 0.0 and rec.logits == []
    # speech the VAD misses (a VAD that never fires here) is classified over the whole clip, pooled the same way
    from edgeser.vad import Segmenter, SileroVad

    m._segmenter = lambda: Segmenter(SileroVad(), threshold=1.0, neg_threshold=1.0)
    res = m.classify(audio, 16000)
    assert res.label in m.labels and res.duration == pytest.approx(audio.size / 16000, abs=0.01)
    assert len(rec.logits) >= 2
    np.testing.assert_allclose([res.scores[k] for k in m.labels], softmax(np.mean(np.stack(rec.logits), 0), 0.3),
                               atol=1e-5)


def test_accept_needs_a_sample_rate_or_the_stream_s(fake_model, speech_in_silence):
    """Nothing is assumed: accept(chunk) without a rate is an AudioError unless model.stream(sample_rate=...) gave
    one, and then chunks at another rate are refused."""
    audio, _, _ = speech_in_silence
    s = fake_model.stream()
    with pytest.raises(AudioError, match=r"needs the sample rate.*model\.stream\(sample_rate="):
        s.accept(audio[:1600])
    assert s.seconds == 0.0  # refused before anything changed
    fixed = fake_model.stream(sample_rate=16000)
    got = []
    for i in range(0, audio.size, 320):
        got += fixed.accept(audio[i : i + 320])
    same_events(got + fixed.flush(), _run(fake_model, audio, 20))
    fixed.reset()
    assert fixed.sample_rate == 16000 and fixed.accept(audio[:1600], 16000) == []  # kept across reset
    with pytest.raises(AudioError, match="created for 16000 Hz"):
        fixed.accept(audio[:1600], 8000)
    x8 = audio[::2].copy()
    s8 = fake_model.stream(sample_rate=8000)
    s8.accept(x8)
    assert s8.seconds == pytest.approx(x8.size / 8000, abs=0.2)  # read as 8 kHz audio (as 16 kHz: half as long)
    with pytest.raises(AudioError, match="sample_rate"):
        fake_model.stream(sample_rate=0)


def test_calibrate_refuses_too_little_speech(espeak_speech):
    """calibrate() needs MIN_CALIBRATION_SPEECH_S of speech (the README asks for 5-30 s): 1.2 s of speech is refused
    and the stream is left as it was; enough speech is taken."""
    import edgeser
    from edgeser.stream import MIN_CALIBRATION_SPEECH_S

    x, _ = espeak_speech
    m = edgeser.load()
    s = m.stream(adapt="off")
    short = np.concatenate([np.zeros(8000, np.float32), x[: int(1.2 * 16000)], np.zeros(8000, np.float32)])
    with pytest.raises(AudioError, match=rf"at least {MIN_CALIBRATION_SPEECH_S:g} s"):
        s.calibrate(short, 16000)
    assert not s.calibrated
    with pytest.raises(AudioError, match="needs the sample rate"):
        s.calibrate(x)
    long = np.concatenate([x, np.zeros(4000, np.float32), x])
    assert s.calibrate(long, 16000) >= MIN_CALIBRATION_SPEECH_S and s.calibrated
    fixed = m.stream(sample_rate=16000)
    assert fixed.calibrate(long) >= MIN_CALIBRATION_SPEECH_S
