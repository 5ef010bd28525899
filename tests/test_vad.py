"""Tests of edgeser.vad: chunk-size invariance, segment placement, latency, reset, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from edgeser.errors import AudioError
from edgeser.vad import EnergyVad, SegmentEvent, Segmenter, SileroVad, speech_segments

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
