"""Tests of edgeser.features: Whisper compatibility (vs transformers), training-equality of the normalisation,
and chunk-size invariance of the streaming log-mel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeser.errors import AudioError
from edgeser.features import LogMelStream, log_mel, mel_filters, whisper_normalize
from train.models.cta_rnn import whisper_normalize as torch_whisper_normalize


@pytest.fixture(scope="module")
def whisper_fe():
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(feature_size=80)


def signal(n: int, seed: int = 0) -> np.ndarray:
    """Speech-like test audio: a few harmonics, noise and an amplitude envelope (wide dynamic range)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    x = sum(0.2 / k * np.sin(2 * np.pi * 180 * k * t + k) for k in range(1, 6))
    x = x * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(n)
    return x.astype(np.float32)


# --------------------------------------------------------------------------------------------- Whisper compatibility


def test_mel_filters_equal_whisper(whisper_fe):
    ours = mel_filters()
    assert ours.shape == (80, 201) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, whisper_fe.mel_filters.T, rtol=0, atol=1e-6)


@pytest.mark.parametrize("n", [201, 400, 1599, 16000, 24037])
def test_features_equal_whisper_feature_extractor(whisper_fe, n):
    x = signal(n, seed=n)
    ours = whisper_normalize(log_mel(x))
    ref = whisper_fe(x, sampling_rate=16000, padding=False, return_tensors="np").input_features[0]
    assert ours.shape == ref.shape == (80, n // 160)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5)


def test_features_equal_whisper_on_noise_and_silence_mix(whisper_fe):
    x = np.concatenate([np.zeros(3000, np.float32), signal(5000, 3), np.zeros(2000, np.float32)])
    ref = whisper_fe(x, sampling_rate=16000, padding=False, return_tensors="np").input_features[0]
    np.testing.assert_allclose(whisper_normalize(log_mel(x)), ref, rtol=0, atol=1e-5)


def test_log_mel_shape_dtype_and_sine_band():
    t = np.arange(16000) / 16000
    x = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    m = log_mel(x)
    assert m.shape == (80, 100) and m.dtype == np.float32
    # the loudest mel band has its filter peak near 1 kHz
    band = int(np.argmax(m[:, 50]))
    centre = np.fft.rfftfreq(400, 1 / 16000)[np.argmax(mel_filters()[band])]
    assert abs(centre - 1000) < 120


@pytest.mark.parametrize("n", [0, 1, 100, 200])
def test_log_mel_rejects_short_audio(n):
    with pytest.raises(AudioError):
        log_mel(np.zeros(n, dtype=np.float32))


def test_log_mel_rejects_2d():
    with pytest.raises(AudioError):
        log_mel(np.zeros((2, 1000), dtype=np.float32))


def test_log_mel_201_samples_is_enough():
    assert log_mel(signal(201)).shape == (80, 1)


# --------------------------------------------------------------------------------------------- normalisation


def test_whisper_normalize_formula():
    m = np.array([[0.0, -10.0], [1.0, -3.0]], dtype=np.float32)
    out = whisper_normalize(m)  # max 1 -> floor -7
    np.testing.assert_allclose(out, (np.array([[0.0, -7.0], [1.0, -3.0]]) + 4) / 4)
    assert out.dtype == np.float32


def test_torch_normalize_equals_numpy_per_item():
    """The normalisation used in training (torch, per batch item) equals the runtime's numpy reference."""
    feats = [log_mel(signal(8000, seed=s) * scale) for s, scale in enumerate([1.0, 1e-3, 30.0])]
    feats[1][:, :5] = -10.0  # below the floor of its own window
    batch = torch.from_numpy(np.stack(feats))  # [3, 80, T]
    got = torch_whisper_normalize(batch).numpy()
    assert got.shape == batch.shape
    for i, f in enumerate(feats):
        np.testing.assert_allclose(got[i], whisper_normalize(f), rtol=0, atol=1e-6)
    # items are normalised independently: a batch of one gives the same
    np.testing.assert_allclose(torch_whisper_normalize(batch[1:2]).numpy()[0], got[1], atol=0)


# --------------------------------------------------------------------------------------------- streaming


def run_stream(stream: LogMelStream, x: np.ndarray, chunk_sizes) -> np.ndarray:
    outs, pos, i = [], 0, 0
    while pos < len(x):
        c = chunk_sizes[i % len(chunk_sizes)]
        out = stream.accept(x[pos : pos + c])
        assert out.shape[0] == 80 and out.dtype == np.float32
        outs.append(out)
        pos += c
        i += 1
    outs.append(stream.flush())
    return np.concatenate(outs, axis=1)


@pytest.fixture(scope="module")
def clip():
    x = signal(9123, seed=7)
    return x, log_mel(x)


@pytest.mark.parametrize("chunk", [1, 160, 161, 320, 592, 7777])
def test_stream_equals_whole(clip, chunk):
    x, whole = clip
    s = LogMelStream()
    got = run_stream(s, x, [chunk])
    assert got.shape == (80, len(x) // 160) == whole.shape
    assert s.frames_emitted == len(x) // 160
    np.testing.assert_array_equal(got, whole)  # bit-identical for any chunking


def test_stream_reset_gives_the_same_again(clip):
    x, whole = clip
    s = LogMelStream()
    first = run_stream(s, x, [333])
    s.reset()
    assert s.frames_emitted == 0
    second = run_stream(s, x, [333])
    np.testing.assert_array_equal(first, second)  # same chunking after reset: bit-identical
    s.reset()
    third = run_stream(s, x, [1000, 7])
    assert s.frames_emitted == whole.shape[1]
    np.testing.assert_allclose(third, whole, rtol=0, atol=1e-5)


def test_stream_accept_after_flush_raises(clip):
    x, _ = clip
    s = LogMelStream()
    s.accept(x[:1000])
    s.flush()
    with pytest.raises(RuntimeError):
        s.accept(x[1000:2000])
    assert s.flush().shape == (80, 0)  # a second flush adds nothing


def test_stream_emits_frames_as_soon_as_complete():
    """Frame t needs samples up to t * 160 + 200 (centred window): no frame is held back longer than that."""
    x = signal(4000, seed=11)
    s = LogMelStream()
    emitted = 0
    for end in range(1, len(x) + 1):
        emitted += s.accept(x[end - 1 : end]).shape[1]
        assert emitted == ((end - 200) // 160 + 1 if end > 200 else 0), end


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(min_value=201, max_value=5000),
    chunks=st.lists(st.integers(min_value=1, max_value=1200), min_size=1, max_size=8),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_stream_equals_whole_property(n, chunks, seed):
    x = signal(n, seed=seed)
    got = run_stream(LogMelStream(), x, chunks)
    whole = log_mel(x)
    assert got.shape == whole.shape == (80, n // 160)
    np.testing.assert_array_equal(got, whole)
