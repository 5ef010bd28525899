"""Pseudo-speaker voice changes (train.voices) and how the student's training uses voice copies."""

import numpy as np
import pytest
from scipy.signal import lfilter

from train.voices import FORMANT_RANGE, PITCH_RANGE, RANGE_RANGE, Voice, change_voice, median_pitch, speaker_voice

SR = 16000


def vowel(f0=120.0, formants=(700.0, 1200.0, 2600.0), seconds=1.2, vibrato=0.03, seed=0):
    """A sung /a/-like vowel: a glottal pulse train at ``f0`` (slow vibrato so that PSOLA has periods to track)
    through second-order resonators at ``formants``."""
    n = int(seconds * SR)
    t = np.arange(n) / SR
    f = f0 * (1 + vibrato * np.sin(2 * np.pi * 4 * t))
    phase = np.cumsum(f) / SR
    src = np.diff(np.floor(phase), prepend=0.0)  # one impulse per period
    y = src
    for fc in formants:
        r = np.exp(-np.pi * 80.0 / SR)
        y = lfilter([1.0], [1.0, -2 * r * np.cos(2 * np.pi * fc / SR), r * r], y)
    y += 1e-4 * np.random.default_rng(seed).standard_normal(n)
    return (0.3 * y / np.max(np.abs(y))).astype(np.float32)


def spectral_peak(x, lo=400.0, hi=1000.0):
    """Frequency of the strongest smoothed-spectrum peak between lo and hi (the first formant's region)."""
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / SR)
    k = 80  # ~70 Hz smoothing: the envelope, not single harmonics
    env = np.convolve(spec, np.ones(k) / k, mode="same")
    band = (freqs >= lo) & (freqs <= hi)
    return float(freqs[band][np.argmax(env[band])])


def test_pitch_factor_moves_the_median_pitch_and_keeps_length():
    x = vowel(f0=120.0)
    assert median_pitch(x) == pytest.approx(120.0, rel=0.04)
    y = change_voice(x, Voice(pitch_factor=1.25))
    assert y.dtype == np.float32 and y.shape == x.shape and np.max(np.abs(y)) <= 0.99 + 1e-6
    assert median_pitch(y) == pytest.approx(150.0, rel=0.05)
    z = change_voice(x, Voice(pitch_factor=0.8))
    assert median_pitch(z) == pytest.approx(96.0, rel=0.05)


def test_formant_ratio_moves_the_spectral_envelope_not_the_pitch():
    x = vowel(f0=110.0, formants=(600.0, 1100.0, 2500.0))
    y = change_voice(x, Voice(formant_ratio=1.2))
    assert median_pitch(y) == pytest.approx(median_pitch(x), rel=0.05)
    assert spectral_peak(y) == pytest.approx(1.2 * spectral_peak(x), rel=0.1)
    assert spectral_peak(y) > spectral_peak(x) * 1.08


def test_identity_voice_and_silence_pass_through():
    x = vowel()
    np.testing.assert_array_equal(change_voice(x, Voice()), x)
    quiet = np.zeros(SR // 2, np.float32)  # nothing voiced: the pitch stays, formants still move, nothing breaks
    out = change_voice(quiet, Voice(1.1, 1.3, 1.0))
    assert out.shape == quiet.shape and np.all(np.isfinite(out)) and np.max(np.abs(out)) < 1e-3
    assert median_pitch(quiet) is None


def test_bad_voices_and_audio_are_refused():
    for bad in ({"formant_ratio": 0.0}, {"pitch_factor": -1.0}, {"range_factor": float("nan")}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            Voice(**bad)
    with pytest.raises(ValueError, match="mono"):
        change_voice(np.zeros((2, SR), np.float32), Voice(pitch_factor=1.2))


def test_speaker_voices_are_fixed_by_seed_copy_and_speaker():
    a = speaker_voice(0, 0, "Actor_01")
    assert a == speaker_voice(0, 0, "Actor_01")  # the same for every clip of the speaker, in any order
    assert a != speaker_voice(0, 1, "Actor_01") and a != speaker_voice(0, 0, "Actor_02") and a != speaker_voice(1, 0, "Actor_01")
    drawn = [speaker_voice(0, k, f"Actor_{i:02d}") for k in range(4) for i in range(1, 21)]
    for name, (lo, hi) in (("formant_ratio", FORMANT_RANGE), ("pitch_factor", PITCH_RANGE), ("range_factor", RANGE_RANGE)):
        v = np.asarray([getattr(d, name) for d in drawn])
        assert np.all((v >= lo - 1e-4) & (v <= hi + 1e-4)), name
        assert v.min() < 1.0 < v.max(), name  # both directions are drawn
    assert a.to_dict() == {"formant_ratio": a.formant_ratio, "pitch_factor": a.pitch_factor, "range_factor": a.range_factor}


def test_trained_copies_index_the_cache_list():
    from train.student import trained_copies

    # load_cache order: 4 copies, 2 session copies, 3 voice copies
    assert trained_copies(4, 2, 3).tolist() == list(range(9))
    assert trained_copies(4, 2, 3, train_sessions=False).tolist() == [0, 1, 2, 3, 6, 7, 8]
    assert trained_copies(4, 2, 3, train_voices=False).tolist() == [0, 1, 2, 3, 4, 5]
    assert trained_copies(4, 2, 3, train_sessions=False, train_voices=False).tolist() == [0, 1, 2, 3]
    assert trained_copies(1).tolist() == [0]


def test_copies_val_mean_averages_every_fold_s_copies():
    from train.student import copies_val_mean

    def val(uar, neutral, ctx=None):
        v = {"uar": uar, "uar_off": uar - 0.1, "recall": {"neutral": neutral}}
        if ctx is not None:
            v.update(uar_neutral_ctx=ctx, recall_neutral_ctx={"neutral": ctx / 2})
        return v

    recs = [{"voices_val": [val(0.8, 0.9), val(0.6, 0.7)]}, {"voices_val": [val(0.7, 0.5), val(0.5, 0.3)]}]
    assert copies_val_mean(recs, "voices_val") == pytest.approx({"uar": 0.65, "uar_off": 0.55, "neutral_recall": 0.6})
    sess = [{"sessions_val": [val(0.8, 0.9, 0.6)]}, {"sessions_val": [val(0.6, 0.5, 0.4)]}]
    assert copies_val_mean(sess, "sessions_val") == pytest.approx(
        {"uar": 0.7, "uar_off": 0.6, "neutral_recall": 0.7, "uar_neutral_ctx": 0.5, "neutral_recall_neutral_ctx": 0.25})
