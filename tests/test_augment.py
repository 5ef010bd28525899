"""Waveform augmentations: determinism, lengths, finiteness, SNR, reverb, codecs, the random chain."""

from __future__ import annotations

import numpy as np
import pytest

from train import augment as A

SR = 16_000


def rng(seed=0):
    return np.random.default_rng(seed)


def tone(seconds=1.0, f=220.0, amp=0.1):
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * f * t)).astype(np.float32)


def speechlike(seconds=1.5, seed=0):
    """Harmonic 'voice' with a syllable envelope and 0.25 s of silence at each edge."""
    r = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    f0 = 140 + 20 * np.sin(2 * np.pi * 1.5 * t)
    ph = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(np.sin(k * ph) / k for k in range(1, 20))
    x *= 0.5 * (1 + np.sin(2 * np.pi * 4 * t)) * 0.1
    x += 0.003 * r.standard_normal(n)
    edge = int(0.25 * SR)
    x[:edge] = 0
    x[-edge:] = 0
    return x.astype(np.float32)


# (name, function, keeps length)
SAME_LENGTH = [
    ("add_noise", A.add_noise),
    ("reverb", A.reverb),
    ("gain", A.gain),
    ("clipping", A.clipping),
    ("dc_offset", A.dc_offset),
    ("pitch_shift", A.pitch_shift),
    ("telephone", A.telephone),
    ("codec", A.codec),
    ("mic_eq", A.mic_eq),
]
ALL_OPS = SAME_LENGTH + [("speed", A.speed), ("pad_edges", A.pad_edges)]


def check(y, dtype=np.float32):
    assert isinstance(y, np.ndarray) and y.dtype == dtype and y.ndim == 1
    assert np.all(np.isfinite(y))
    assert np.max(np.abs(y)) <= 1.0 + 1e-6


@pytest.mark.parametrize("name,fn", ALL_OPS)
def test_deterministic_finite_bounded(name, fn):
    x = speechlike()
    a, b = fn(x, rng(7)), fn(x, rng(7))
    check(a)
    np.testing.assert_array_equal(a, b)
    assert not np.shares_memory(a, x)
    c = fn(x, rng(8))
    if name != "codec" or len(A.available_codecs()) > 0:
        assert not (len(a) == len(c) and np.array_equal(a, c)), f"{name} ignores the rng"


@pytest.mark.parametrize("name,fn", SAME_LENGTH)
def test_length_kept(name, fn):
    for n in (SR, 12_345):
        x = speechlike(n / SR)
        assert len(fn(x, rng(1))) == n


@pytest.mark.parametrize("name,fn", ALL_OPS)
def test_edge_inputs(name, fn):
    check(fn(np.zeros(SR // 2, np.float32), rng()))  # silence
    check(fn(np.ones(SR // 2, np.float32), rng()))  # full-scale DC
    y = fn(np.zeros(0, np.float32), rng())
    assert y.dtype == np.float32 and (len(y) == 0 or name == "pad_edges")


def test_float64_input_gives_float32():
    check(A.add_noise(tone().astype(np.float64), rng()))


@pytest.mark.parametrize("kind", A.NOISE_KINDS)
@pytest.mark.parametrize("snr", [0.0, 10.0, 30.0])
def test_noise_snr_as_requested(kind, snr):
    x = tone(1.0, amp=0.1)
    y = A.add_noise(x, rng(3), snr_db=snr, kind=kind, limit=False)
    noise = y.astype(np.float64) - x
    measured = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean(noise**2))
    assert measured == pytest.approx(snr, abs=0.2)
    assert A.snr_db(x, y) == pytest.approx(snr, abs=0.2)


def test_noise_limit_only_rescales():
    x = tone(1.0, amp=0.5)
    raw = A.add_noise(x, rng(3), snr_db=0.0, kind="clicks", limit=False)
    lim = A.add_noise(x, rng(3), snr_db=0.0, kind="clicks")
    assert np.max(np.abs(raw)) > 1.0 and np.max(np.abs(lim)) <= A.PEAK + 1e-6
    np.testing.assert_allclose(lim, raw * (A.PEAK / np.max(np.abs(raw))), atol=1e-6)


def test_noise_snr_ignores_edge_silence():
    x = np.concatenate([np.zeros(SR, np.float32), tone(1.0), np.zeros(SR, np.float32)])
    y = A.add_noise(x, rng(), snr_db=10.0, kind="white")
    speech = slice(SR, 2 * SR)
    measured = 10 * np.log10(np.mean(x[speech].astype(np.float64) ** 2) / np.mean((y - x)[speech].astype(np.float64) ** 2))
    assert measured == pytest.approx(10.0, abs=0.3)


def test_noise_default_snr_range_and_kinds():
    x = tone()
    r = rng(11)
    for _ in range(20):
        s = A.snr_db(x, A.add_noise(x, r))
        assert -0.3 <= s <= 30.3
    with pytest.raises(ValueError):
        A.add_noise(x, rng(), kind="pinkish")


def test_noise_spectral_slopes():
    n = 1 << 16
    p = {k: np.abs(np.fft.rfft(A.NOISE_GENERATORS[k](n, rng()))) ** 2 for k in ("white", "pink", "brown")}
    f = np.fft.rfftfreq(n, 1 / SR)
    lo, hi = (f > 100) & (f < 200), (f > 3200) & (f < 6400)
    ratio = {k: 10 * np.log10(v[lo].mean() / v[hi].mean()) for k, v in p.items()}
    assert abs(ratio["white"]) < 1.5
    assert 10 < ratio["pink"] < 16  # ~ 10*log10(32) = 15 dB
    assert 25 < ratio["brown"] < 32  # ~ 30 dB


def test_hum_is_at_mains_frequency():
    y = A.hum(SR * 2, rng(5))
    spec = np.abs(np.fft.rfft(y))
    f = np.fft.rfftfreq(len(y), 1 / SR)
    peak = f[np.argmax(spec[f < 1000])]
    assert min(abs(peak % 50), abs(50 - peak % 50)) < 1.5 or min(abs(peak % 60), abs(60 - peak % 60)) < 1.5


def test_rir_shape_and_decay():
    for rt60 in (0.1, 0.5, 0.9):
        h = A.make_rir(rng(), rt60=rt60).astype(np.float64)
        assert np.all(np.isfinite(h)) and np.argmax(np.abs(h)) == 0  # direct path first and strongest
        assert len(h) >= int(rt60 * SR)
        e = h[1:] ** 2
        early = e[: int(0.05 * SR)].sum()
        late = e[int(rt60 * 0.8 * SR) : int(rt60 * SR)].sum() + 1e-30
        assert early / late > 10 ** (3.5)  # > ~35 dB decay by 0.8 * rt60


def test_reverb_changes_signal_keeps_energy():
    x = speechlike()
    y = A.reverb(x, rng(2), rt60=0.6)
    check(y)
    assert len(y) == len(x)
    corr = np.dot(x, y) / np.sqrt(np.dot(x, x) * np.dot(y, y))
    assert corr < 0.99  # really changed
    ratio = np.sum(y.astype(np.float64) ** 2) / np.sum(x.astype(np.float64) ** 2)
    assert 0.3 < ratio < 3.0
    # reverb fills the pauses: more energy in the trailing silence than before
    assert np.sum(y[-SR // 4 :] ** 2) > np.sum(x[-SR // 4 :] ** 2)


def test_gain_range_and_no_clipping():
    x = tone(amp=0.5)
    for s in range(30):
        y = A.gain(x, rng(s))
        db = 20 * np.log10(np.max(np.abs(y)) / 0.5)
        assert -20.01 <= db <= 12.01
        assert np.max(np.abs(y)) <= A.PEAK + 1e-6
    y = A.gain(x, rng(), db=-6.0)
    assert np.max(np.abs(y)) == pytest.approx(0.5 * 10 ** (-6 / 20), rel=1e-4)
    clipped = A.gain(x, rng(), db=12.0, allow_clip=True)
    assert np.max(np.abs(clipped)) == 1.0 and np.mean(np.abs(clipped) == 1.0) > 0.1


def test_clipping_distorts():
    x = tone(amp=0.5)
    y = A.clipping(x, rng(), drive_db=12.0, soft=False)
    assert np.mean(np.abs(y) >= 0.99 * np.max(np.abs(y))) > 0.3  # flat tops


def test_dc_offset():
    x = tone()
    y = A.dc_offset(x, rng(), offset=0.03)
    assert np.mean(y) == pytest.approx(0.03, abs=1e-3)
    m = np.mean(A.dc_offset(x, rng(4)))
    assert 0.004 <= abs(m) <= 0.051


@pytest.mark.parametrize("factor", [0.9, 1.0, 1.1])
def test_speed_length_and_pitch(factor):
    x = tone(1.0, f=200.0)
    y = A.speed(x, rng(), factor=factor)
    assert len(y) == round(len(x) / factor)
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    f = np.argmax(spec) * SR / len(y)
    assert f == pytest.approx(200 * factor, rel=0.01)


def test_speed_default_range():
    x = tone()
    for s in range(10):
        assert round(len(x) / 1.1) - 1 <= len(A.speed(x, rng(s))) <= round(len(x) / 0.9) + 1


@pytest.mark.parametrize("semitones", [-3.0, 2.0, 3.0])
def test_pitch_shift_moves_pitch_keeps_tempo(semitones):
    x = tone(1.0, f=200.0, amp=0.3)
    y = A.pitch_shift(x, rng(), semitones=semitones)
    assert len(y) == len(x)
    seg = y[2000:-2000]
    f = np.argmax(np.abs(np.fft.rfft(seg * np.hanning(len(seg))))) * SR / len(seg)
    assert f == pytest.approx(200 * 2 ** (semitones / 12), rel=0.01)
    # tempo kept: a burst stays where it was
    b = np.zeros(SR, np.float32)
    b[8000:9600] = tone(0.1, f=300.0, amp=0.5)
    env = np.abs(A.pitch_shift(b, rng(), semitones=semitones))
    centre = np.sum(np.arange(SR) * env) / np.sum(env)
    assert abs(centre - 8800) < 300


@pytest.mark.parametrize("rate", [0.8, 1.0, 1.25])
def test_time_stretch(rate):
    x = speechlike(1.0)
    y = A.time_stretch(x, rate)
    assert len(y) == round(len(x) * rate) and np.all(np.isfinite(y))
    if rate == 1.0:
        assert np.max(np.abs(y - x)) < 1e-4


def test_telephone_band():
    x = (A.white_noise(SR, rng()) * 0.1).astype(np.float32)
    y = A.telephone(x, rng(), mu_law=False)
    assert len(y) == len(x)
    spec = np.abs(np.fft.rfft(y)) ** 2
    f = np.fft.rfftfreq(len(y), 1 / SR)
    inband = spec[(f > 500) & (f < 3000)].mean()
    assert spec[f > 4500].mean() < inband * 1e-3
    assert spec[f < 100].mean() < inband * 1e-2
    check(A.telephone(x, rng(), mu_law=True))


def test_codecs_detected_at_run_time():
    import soundfile as sf

    got = A.available_codecs()
    assert set(got) <= {"vorbis", "opus", "mp3"}
    if "OGG" in sf.available_formats() and "VORBIS" in sf.available_subtypes("OGG"):
        assert "vorbis" in got


@pytest.mark.parametrize("name", ["vorbis", "opus", "mp3"])
def test_codec_round_trip(name):
    if name not in A.available_codecs():
        pytest.skip(f"libsndfile here cannot write {name}")
    x = speechlike(1.3)
    for level in (0.0, 0.5):
        y = A.codec(x, rng(), name=name, level=level)
        check(y)
        assert len(y) == len(x)
        # similar (aligned, not destroyed) but not identical
        corr = np.dot(x, y) / np.sqrt(np.dot(x, x) * np.dot(y, y) + 1e-20)
        assert corr > 0.8
        assert not np.array_equal(x, y)


def test_codec_unknown_name():
    with pytest.raises(ValueError):
        A.codec(tone(), rng(), name="aac-he")


def test_pad_edges_changes_length_and_onset():
    x = speechlike(1.5)
    lengths, onsets = set(), set()
    for s in range(20):
        y = A.pad_edges(x, rng(s), max_pad_s=1.0)
        check(y)
        assert len(x) - int(0.5 * SR) <= len(y) <= len(x) + 2 * SR
        lengths.add(len(y))
        onsets.add(int(np.argmax(np.abs(y) > 0.01)))
        # the speech part survives intact, only shifted
        i0, j0 = int(np.argmax(np.abs(y) > 0.05)), int(np.argmax(np.abs(x) > 0.05))
        core = x[j0 : j0 + int(0.8 * SR)]
        np.testing.assert_array_equal(y[i0 : i0 + len(core)], core)
    assert len(lengths) > 10 and len(onsets) > 10


def test_augmenter_deterministic_bounded():
    x = speechlike()
    a1, a2 = A.Augmenter(p=1.0, seed=123), A.Augmenter(p=1.0, seed=123)
    for _ in range(15):
        y1, y2 = a1(x), a2(x)
        np.testing.assert_array_equal(y1, y2)
        assert a1.last_ops == a2.last_ops
        check(y1)
        assert not ("telephone" in a1.last_ops and "codec" in a1.last_ops)
    # an explicit generator overrides the internal one
    np.testing.assert_array_equal(A.Augmenter(seed=0)(x, rng(9)), A.Augmenter(seed=99)(x, rng(9)))


def test_augmenter_p_and_probs():
    x = speechlike()
    off = A.Augmenter(p=0.0, seed=0)
    np.testing.assert_array_equal(off(x), x)
    assert off.last_ops == []
    only_noise = A.Augmenter(p=1.0, seed=0, probs={k: (1.0 if k == "noise" else 0.0) for k in A.DEFAULT_PROBS})
    y = only_noise(x)
    assert only_noise.last_ops == ["noise"] and len(y) == len(x)
    with pytest.raises(ValueError):
        A.Augmenter(probs={"wobble": 0.5})
    with pytest.raises(ValueError):
        A.Augmenter(p=1.5)


def test_augmenter_uses_everything_over_many_calls():
    x = speechlike(0.6)
    aug = A.Augmenter(p=1.0, seed=5, probs={k: 0.5 for k in A.DEFAULT_PROBS})
    seen = set()
    for _ in range(60):
        y = aug(x)
        check(y)
        seen |= set(aug.last_ops)
    assert seen == set(A.DEFAULT_PROBS)


def test_augment_module_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, train.augment; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
