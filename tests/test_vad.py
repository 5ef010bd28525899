"""Tests of edgeser.vad: chunk-size invariance, segment placement, latency, reset, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from edgeser.errors import AudioError
from edgeser.vad import BandEnergy, EnergyVad, SegmentEvent, Segmenter, SileroVad, speech_segments

SR = 16000
LEAD = 1.0  # seconds of background before the speech
TAIL = 1.5  # and after it


def speech_span(x: np.ndarray, floor_db: float = -40.0) -> tuple[int, int]:
    """(first, last + 1) sample of the 10 ms frames whose energy is within ``floor_db`` of the loudest one."""
    n = len(x) // 160
    e = 10 * np.log10((x[: n * 160].astype(np.float64).reshape(n, 160) ** 2).mean(axis=1) + 1e-20)
    idx = np.nonzero(e > e.max() + floor_db)[0]
    return int(idx[0] * 160), int((idx[-1] + 1) * 160)


@pytest.fixture(scope="module")
def scene(espeak_speech):
    """Speech at a known place in faint white noise: (signal, true start sample, true end sample)."""
    speech, _ = espeak_speech
    s0, s1 = speech_span(speech)
    speech = speech[s0:s1]
    rng = np.random.default_rng(1234)
    x = np.concatenate([np.zeros(int(LEAD * SR)), speech, np.zeros(int(TAIL * SR))]).astype(np.float32)
    x += (1e-3 * rng.standard_normal(len(x))).astype(np.float32)  # -60 dBFS background
    return x, int(LEAD * SR), int(LEAD * SR) + len(speech)


@pytest.fixture(scope="module")
def silero():
    return SileroVad()


def feed(obj, x, chunk):
    """Feed ``x`` in chunks; return concatenated outputs (arrays or event lists)."""
    outs = [obj.accept(x[i : i + chunk]) for i in range(0, len(x), chunk)]
    if isinstance(outs[0], np.ndarray):
        return np.concatenate(outs)
    return [ev for o in outs for ev in o]


@pytest.mark.parametrize("make_vad", [SileroVad, EnergyVad], ids=["silero", "energy"])
def test_probabilities_are_chunk_size_invariant(scene, make_vad):
    x, _, _ = scene
    vad = make_vad()
    assert vad.frame_samples == 512
    whole = vad.accept(x)
    assert whole.dtype == np.float32 and whole.shape == (len(x) // 512,)
    assert np.all((whole >= 0) & (whole <= 1))
    for chunk in (160, 320, 592, 1, 511, 513):
        if chunk == 1 and make_vad is SileroVad:
            continue  # too slow in Python for every sample; 160 etc. cover the buffering
        vad.reset()
        np.testing.assert_array_equal(feed(vad, x, chunk), whole, err_msg=f"chunk {chunk}")


@pytest.mark.parametrize("make_vad", [SileroVad, EnergyVad], ids=["silero", "energy"])
def test_events_are_chunk_size_invariant(scene, make_vad):
    x, _, _ = scene
    seg = Segmenter(make_vad())
    whole = seg.accept(x) + seg.flush()
    assert whole, "no segment found"
    for chunk in (160, 320, 592):
        got = feed(seg, x, chunk) + seg.flush()
        assert got == whole, f"chunk {chunk}"
    starts = [(a, b) for a, b in zip(whole[::2], whole[1::2])]
    assert all(a.kind == "start" and b.kind == "end" and a.sample < b.sample for a, b in starts)
    assert speech_segments(x, Segmenter(make_vad())) == [(a.sample, b.sample) for a, b in starts]


def test_silero_matches_reference_framing(scene, silero):
    """Frame i covers samples [512 i, 512 (i + 1)); a trailing partial frame is buffered, not scored."""
    x, _, _ = scene
    silero.reset()
    assert len(silero.accept(x[:1000])) == 1
    assert len(silero.accept(x[1000:1024])) == 1
    assert len(silero.accept(x[1024:1030])) == 0
    assert silero.frames_done == 2


@pytest.mark.parametrize("make_vad", [SileroVad, EnergyVad], ids=["silero", "energy"])
@pytest.mark.parametrize("noise", ["zeros", "white", "pink"])
def test_silence_and_noise_give_no_segment(make_vad, noise):
    rng = np.random.default_rng(7)
    n = 4 * SR
    if noise == "zeros":
        x = np.zeros(n, dtype=np.float32)
    elif noise == "white":
        x = 0.03 * rng.standard_normal(n)
    else:  # pink: 1/f power spectrum
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.fft.rfftfreq(n, 1 / SR)
        spec[1:] /= np.sqrt(f[1:])
        spec[0] = 0
        x = np.fft.irfft(spec, n)
        x = 0.03 * x / x.std()
    x = np.asarray(x, dtype=np.float32)
    seg = Segmenter(make_vad())
    assert seg.accept(x) == []
    assert not seg.in_speech
    assert seg.flush() == []
    assert speech_segments(x, seg) == []


@pytest.mark.parametrize("make_vad", [SileroVad, EnergyVad], ids=["silero", "energy"])
def test_speech_segment_at_the_right_place(scene, make_vad):
    x, t0, t1 = scene
    segs = speech_segments(x, Segmenter(make_vad()))
    assert len(segs) == 1, segs
    start, end = segs[0]
    assert t0 - 0.15 * SR <= start <= t0 + 0.05 * SR, (start / SR, t0 / SR)
    assert t1 - 0.1 * SR <= end <= t1 + 0.15 * SR, (end / SR, t1 / SR)


def test_end_latency_at_most_300ms(scene, silero):
    """Streamed in 10 ms chunks, the end event comes out <= 0.3 s after the generated speech stops."""
    x, t0, t1 = scene
    seg = Segmenter(silero)
    seg.reset()
    chunk = 160
    got = {}
    in_speech_at = []
    for i in range(0, len(x), chunk):
        for ev in seg.accept(x[i : i + chunk]):
            got.setdefault(ev.kind, (ev, i + chunk))
        in_speech_at.append(seg.in_speech)
    assert "start" in got and "end" in got, got
    end_event, reported_at = got["end"]
    latency = (reported_at - t1) / SR
    assert latency <= 0.3, f"end reported {latency:.3f} s after speech stopped"
    assert end_event.sample <= reported_at
    start_event, started_at = got["start"]
    assert (started_at - t0) / SR <= 0.4  # min_speech_ms (0.25 s) + a frame or two
    assert any(in_speech_at) and not in_speech_at[-1]


def test_flush_closes_an_open_segment(scene, silero):
    x, t0, t1 = scene
    seg = Segmenter(silero)
    seg.reset()
    cut = (t0 + t1) // 2
    events = seg.accept(x[:cut])
    assert [e.kind for e in events] == ["start"] and seg.in_speech
    tail = seg.flush()
    assert tail == [SegmentEvent("end", cut)]
    assert not seg.in_speech and seg.position == 0  # flush resets: a new stream starts at sample 0


def test_reset_gives_the_same_results(scene, silero):
    x, _, _ = scene
    silero.reset()
    p1 = silero.accept(x)
    silero.accept(np.ones(3000, dtype=np.float32) * 0.5)  # disturb state and buffer
    silero.reset()
    np.testing.assert_array_equal(silero.accept(x), p1)

    seg = Segmenter(silero)
    seg.reset()
    e1 = seg.accept(x)
    seg.accept(x[: 3 * SR])
    seg.reset()
    assert seg.position == 0 and not seg.in_speech
    assert seg.accept(x) == e1


BAD = {
    "2-D": np.zeros((2, 1024), dtype=np.float32),
    "nan": np.array([0.0] * 100 + [np.nan] + [0.0] * 900, dtype=np.float32),
    "inf": np.array([0.0] * 1000 + [np.inf], dtype=np.float32),
    "-inf": np.full(600, -np.inf, dtype=np.float64),
    "strings": np.array(["a", "b"]),
    "scalar": np.float32(0.5),
}


@pytest.mark.parametrize("name", sorted(BAD))
@pytest.mark.parametrize("make", ["silero", "energy", "segmenter", "speech_segments"])
def test_bad_input_raises_audio_error(name, make, silero):
    bad = BAD[name]
    if make == "silero":
        call = silero.accept
    elif make == "energy":
        call = EnergyVad().accept
    elif make == "segmenter":
        call = Segmenter(EnergyVad()).accept
    else:
        call = lambda a: speech_segments(a, Segmenter(EnergyVad()))  # noqa: E731
    with pytest.raises(AudioError):
        call(bad)


def test_bad_input_leaves_the_stream_untouched(scene, silero):
    x, _, _ = scene
    silero.reset()
    whole = silero.accept(x)
    silero.reset()
    a = silero.accept(x[:5000])
    with pytest.raises(AudioError):
        silero.accept(np.full(700, np.nan, dtype=np.float32))
    b = silero.accept(x[5000:])
    np.testing.assert_array_equal(np.concatenate([a, b]), whole)


def test_empty_chunk_and_int16(scene, silero):
    x, _, _ = scene
    silero.reset()
    assert silero.accept(np.zeros(0, dtype=np.float32)).shape == (0,)
    pcm = np.round(np.clip(x, -1, 1) * 32767).astype(np.int16)
    p_int = silero.accept(pcm)
    silero.reset()
    p_float = silero.accept(pcm.astype(np.float32) / 32768)
    np.testing.assert_array_equal(p_int, p_float)


def test_segmenter_parameters_are_checked():
    with pytest.raises(ValueError):
        Segmenter(EnergyVad(), threshold=0.3, neg_threshold=0.4)
    with pytest.raises(ValueError):
        Segmenter(EnergyVad(), min_silence_ms=-1)
    with pytest.raises(ValueError):
        Segmenter(EnergyVad(), speech_pad_ms=300, min_silence_ms=200)
    for bad in ({"dip_db": -1}, {"split_after_ms": float("nan")}, {"max_speech_ms": 100}, {"dip_ms": 20},
                {"rise_db": float("inf")}):
        with pytest.raises(ValueError):
            Segmenter(EnergyVad(), **bad)


# ---------------------------------------------------------------------------------------------------- background talk
class AlwaysSpeech:
    """A VAD that hears speech in every frame (as Silero does over babble)."""

    frame_samples = 512

    def reset(self):
        self._n = 0

    def __init__(self):
        self.reset()

    def accept(self, x):
        n0, self._n = self._n, self._n + len(x)
        return np.ones(self._n // 512 - n0 // 512, dtype=np.float32)


def _bursts(levels_db, gap_s=1.0, burst_s=4.5, background_db=-30.0, seed=0):
    """Noise bursts (the foreground talker) at ``levels_db`` dBFS with ``gap_s`` between them, over a continuous
    background at ``background_db``: (signal, [(start, end)] of the bursts in samples)."""
    rng = np.random.default_rng(seed)
    parts, spans, pos = [], [], int(gap_s * SR)
    parts.append(np.zeros(pos))
    for db in levels_db:
        n = int(burst_s * SR)
        parts += [10 ** (db / 20) * rng.standard_normal(n), np.zeros(int(gap_s * SR))]
        spans.append((pos, pos + n))
        pos += n + int(gap_s * SR)
    x = np.concatenate(parts)
    x += 10 ** (background_db / 20) * rng.standard_normal(x.size)
    return x.astype(np.float32), spans


def test_segments_end_at_the_foreground_pauses_when_the_vad_hears_speech_throughout():
    x, spans = _bursts([-12.0, -18.0, -10.0])  # a softer one after a loud one: the next start must not wait for it
    segs = speech_segments(x, Segmenter(AlwaysSpeech()))
    # the first segment opens on the background at 0; every burst ends a segment within 0.45 s (dip_ms + smoothing)
    ends = [e for _, e in segs]
    for _, b_end in spans:
        assert any(b_end <= e <= b_end + 0.45 * SR for e in ends), (b_end / SR, [e / SR for e in ends])
    # and the next segment covers the next burst from its onset (it starts when the energy rises, not before the
    # background has been heard for a while)
    for b_start, b_end in spans[1:]:
        assert any(s <= b_start + 0.1 * SR and e >= b_end - 0.1 * SR for s, e in segs), (b_start / SR, segs)
    assert len(segs) <= len(spans) + 1
    # without the dips: one segment over everything (as before), cut only by the 10 s limit
    merged = speech_segments(x, Segmenter(AlwaysSpeech(), split_after_ms=1e9))
    cut = -(-10 * SR // 512) * 512  # at the end of the frame that reaches 10 s
    assert merged == [(0, cut), (cut, x.size)]


def test_a_soft_stretch_in_quiet_speech_is_not_a_dip():
    # 5 s of "speech" with a 1 s stretch 20 dB softer in the middle, in a quiet room: one segment
    rng = np.random.default_rng(1)
    x = 0.1 * rng.standard_normal(5 * SR)
    x[2 * SR : 3 * SR] *= 0.1
    x = np.concatenate([np.zeros(SR), x, np.zeros(SR)]) + 1e-4 * rng.standard_normal(7 * SR)
    segs = speech_segments(x.astype(np.float32), Segmenter(AlwaysSpeech()))
    assert len(segs) == 1 and segs[0][0] <= SR and segs[0][1] >= 6 * SR, segs


def test_max_speech_ms_cuts_endless_speech_into_back_to_back_segments():
    x = (0.1 * np.random.default_rng(2).standard_normal(int(7.3 * SR))).astype(np.float32)
    segs = speech_segments(x, Segmenter(AlwaysSpeech(), max_speech_ms=2000))
    cut = -(-2 * SR // 512) * 512
    assert segs == [(0, cut), (cut, 2 * cut), (2 * cut, 3 * cut), (3 * cut, x.size)]
    assert speech_segments(x, Segmenter(AlwaysSpeech(), max_speech_ms=0)) == [(0, x.size)]


@pytest.mark.parametrize("chunk", [160, 320, 592, 7919])
def test_dip_splits_are_chunk_size_invariant(chunk):
    x, _ = _bursts([-12.0, -18.0, -10.0])
    whole = Segmenter(AlwaysSpeech())
    ref = whole.accept(x) + whole.flush()
    seg = Segmenter(AlwaysSpeech())
    assert feed(seg, x, chunk) + seg.flush() == ref
    assert len(ref) >= 6


def test_a_vad_with_other_frames_is_refused():
    from edgeser.errors import ModelError

    class Odd(AlwaysSpeech):
        def accept(self, x):
            return np.ones(len(x) // 256, dtype=np.float32)

    with pytest.raises(ModelError, match="consecutive frames"):
        Segmenter(Odd()).accept(np.zeros(2048, np.float32))


@pytest.fixture(scope="module")
def talk_over_babble(tmp_path_factory):
    """Three espeak-ng sentences 1.5 s apart over continuous three-voice espeak-ng babble 10 dB below them:
    (signal, [(start, end)] of the sentences)."""
    from conftest import espeak_wav

    from edgeser.audio import load

    d = tmp_path_factory.mktemp("babble")

    def say(text, voice="en-us", rate=160):
        p = d / f"{abs(hash((text, voice)))}.wav"
        espeak_wav(p, text, voice=voice, rate=rate)
        return load(p)

    fg = [say(t)[slice(*speech_span(say(t)))] for t in (
        "I told you to close the door before you left the house.",
        "Nobody listens to a single word I say in this place.",
        "We will talk about it again tomorrow morning, I promise.")]
    gap = np.zeros(int(1.5 * SR), np.float32)
    parts, spans, pos = [gap], [], gap.size
    for f in fg:
        parts += [f, gap]
        spans.append((pos, pos + f.size))
        pos += f.size + gap.size
    x = np.concatenate(parts).astype(np.float64)
    bg = np.zeros(x.size)
    for t, v in (("The committee will meet on Monday to discuss the budget for next year and the new building.",
                  "en-gb+f3"),
                 ("My sister bought a red bicycle last summer and rides it to the market every weekend.", "en-us+m3"),
                 ("Please remember to water the plants on the balcony while we are away on holiday.",
                  "en-gb-scotland")):
        b = say(t, v, 170).astype(np.float64)
        bg += np.tile(b, -(-x.size // b.size))[: x.size] / b.std()
    active = np.mean(np.concatenate(fg).astype(np.float64) ** 2)
    x += bg / bg.std() * np.sqrt(active / 10)
    return x.astype(np.float32), spans


def test_sentences_over_babble_get_a_segment_each(talk_over_babble, silero):
    x, spans = talk_over_babble
    merged = speech_segments(x, Segmenter(silero, split_after_ms=1e9, max_speech_ms=0))
    assert len(merged) == 1  # Silero hears the babble as speech: without dips, one segment over all three
    segs = speech_segments(x, Segmenter(silero))
    for a, b in spans:  # each sentence: one segment that holds (nearly) all of it and ends within 0.15 s of it
        own = [(s, e) for s, e in segs if min(e, b) - max(s, a) > 0.5 * (b - a)]
        assert len(own) == 1, ((a / SR, b / SR), [(s / SR, e / SR) for s, e in segs])
        s, e = own[0]
        assert s <= a + 0.1 * SR and b - 0.15 * SR <= e <= b + 0.15 * SR, ((a / SR, b / SR), (s / SR, e / SR))


def test_vad_module_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, edgeser.vad; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_model_streams_share_one_silero_session_with_their_own_state(scene):
    """Model loads Silero once and its streams share the session (cheap streams and classify calls); each stream's
    VAD state is its own, so interleaved streams give what each gives alone."""
    from edgeser.model import Model
    from tests.conftest import FakeBackend

    x, _, _ = scene
    m = Model(FakeBackend())
    a, b = m._segmenter(), m._segmenter()
    assert a.vad._session is b.vad._session is m._vad_session
    alone = feed(Model(FakeBackend())._segmenter(), x, 512)
    got_a, got_b = [], []
    for i in range(0, len(x), 512):  # interleaved: a gets the audio, b silence
        got_a += a.accept(x[i : i + 512])
        got_b += b.accept(np.zeros(min(512, len(x) - i), np.float32))
    assert [(e.kind, e.sample) for e in got_a] == [(e.kind, e.sample) for e in alone] and not got_b


def test_stream_events_over_babble_are_chunk_size_invariant(talk_over_babble, fake_model):
    x, spans = talk_over_babble
    runs = []
    for chunk_ms in (10, 20, 37):
        s = fake_model.stream(sample_rate=16000)
        step = SR * chunk_ms // 1000
        events = [e for i in range(0, x.size, step) for e in s.accept(x[i : i + step])] + s.flush()
        runs.append([e.to_dict() for e in events])
    assert runs[0] == runs[1] == runs[2]
    assert len([e for e in runs[0] if e["final"]]) >= len(spans)


def test_band_energy_reads_a_sines_power_and_ignores_out_of_band():
    t = np.arange(512 * 4) / SR
    e = BandEnergy()
    frames = lambda x: x.reshape(-1, 512)  # noqa: E731
    in_band = e(frames(np.sin(2 * np.pi * 1000 * t)))
    np.testing.assert_allclose(in_band, -3.0 + 10 * np.log10(1.5), atol=0.1)  # mean power + Hann bandwidth
    assert np.all(e(frames(0.01 * np.sin(2 * np.pi * 1000 * t))) < in_band - 39)
    assert np.all(e(frames(np.sin(2 * np.pi * 60 * t))) < -20)  # mains hum is below the band
    assert np.all(e(np.zeros((2, 512))) <= -119)
