"""Whisper-compatible log-mel features, whole-clip and incremental (streaming).

``log_mel(x)`` equals Whisper's ``log_mel_spectrogram`` *before* its per-input normalisation (log10 of the mel
power, frames every 10 ms, centred STFT with reflect padding, last frame dropped). The normalisation (clamp to
max - 8, then (x + 4) / 4) depends on the maximum over the model's input window, so it is done per window, inside
the exported model graph (see :func:`whisper_normalize` for the numpy reference).

:class:`LogMelStream` produces exactly the frames of ``log_mel`` from audio fed in chunks of any size.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .constants import DYNAMIC_RANGE, HOP_LENGTH, LEVEL_PEAK, LOG_FLOOR, N_FFT, N_MELS, SAMPLE_RATE
from .errors import AudioError

PAD = N_FFT // 2  # centre padding of the STFT


def _hz_to_mel(f):
    """Slaney mel scale (as librosa's default, which Whisper uses)."""
    f = np.asarray(f, dtype=np.float64)
    f_sp = 200.0 / 3
    mels = f / f_sp
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, mels)


def _mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    f_sp = 200.0 / 3
    freqs = f_sp * m
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), freqs)


@lru_cache(maxsize=4)
def mel_filters(sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    """Slaney-normalised triangular mel filterbank, shape (n_mels, n_fft // 2 + 1), float32 (librosa's default)."""
    fftfreqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2.0), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fftfreqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    enorm = 2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels])
    weights *= enorm[:, None]
    out = weights.astype(np.float32)
    out.setflags(write=False)
    return out


@lru_cache(maxsize=1)
def _hann() -> np.ndarray:
    n = np.arange(N_FFT)
    w = (0.5 - 0.5 * np.cos(2.0 * np.pi * n / N_FFT)).astype(np.float32)  # periodic, as torch.hann_window
    w.setflags(write=False)
    return w


def _frames_to_logmel(padded: np.ndarray, n_frames: int) -> np.ndarray:
    """log10 mel power of ``n_frames`` frames of an already padded signal, shape (N_MELS, n_frames), float32."""
    if n_frames <= 0:
        return np.zeros((N_MELS, 0), dtype=np.float32)
    idx = np.arange(N_FFT)[None, :] + HOP_LENGTH * np.arange(n_frames)[:, None]
    frames = padded[idx].astype(np.float32) * _hann()
    spec = np.fft.rfft(frames, axis=1)
    power = (spec.real.astype(np.float32) ** 2 + spec.imag.astype(np.float32) ** 2)
    # einsum (not BLAS matmul): each frame's sum runs in the same order whatever the number of frames, so the
    # streaming and whole-clip features are bit-identical for any chunking
    mel = np.einsum("fk,mk->fm", power, mel_filters(), optimize=False)  # (n_frames, N_MELS)
    return np.log10(np.maximum(mel, LOG_FLOOR)).T.astype(np.float32)


def log_mel(x: np.ndarray) -> np.ndarray:
    """Whole-clip log10 mel power of mono float32 16 kHz audio: shape (80, len(x) // 160).

    Needs at least ``N_FFT // 2 + 1`` (201) samples for the reflect padding, as Whisper does.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 1:
        raise AudioError(f"log_mel expects 1-D mono audio, got shape {x.shape}")
    if x.size <= PAD:
        raise AudioError(f"audio too short for features: {x.size} samples, need more than {PAD}")
    padded = np.pad(x, PAD, mode="reflect")
    return _frames_to_logmel(padded, x.size // HOP_LENGTH)


def whisper_normalize(logmel: np.ndarray, level_norm: bool = False) -> np.ndarray:
    """Whisper's normalisation of a log-mel window (numpy reference of what the model graph does); ``level_norm``
    first moves the window's peak to ``LEVEL_PEAK``, so that a recording's gain does not change the result."""
    peak = logmel.max()
    m = np.maximum(logmel, peak - DYNAMIC_RANGE)
    if level_norm:
        m = m - peak + LEVEL_PEAK
    return ((m + 4.0) / 4.0).astype(np.float32)


class LogMelStream:
    """Incremental :func:`log_mel`: ``accept`` any chunks, then ``flush``; the concatenated frames equal
    ``log_mel`` of the concatenated audio bit for bit (same arithmetic on the same samples, per frame)."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self._buf = np.zeros(0, dtype=np.float32)  # padded signal not yet fully consumed
        self._started = False
        self._n_in = 0  # raw samples received
        self._n_out = 0  # frames emitted
        self._offset = 0  # index in the padded signal of self._buf[0]
        self._flushed = False

    @property
    def frames_emitted(self) -> int:
        return self._n_out

    def accept(self, x: np.ndarray) -> np.ndarray:
        """Feed mono float32 16 kHz samples; return the newly complete frames, shape (80, k)."""
        if self._flushed:
            raise RuntimeError("LogMelStream was flushed; call reset() before feeding more audio")
        x = np.asarray(x, dtype=np.float32).reshape(-1)
        self._n_in += x.size
        if not self._started:
            self._buf = np.concatenate([self._buf, x])
            if self._buf.size <= PAD:
                return np.zeros((N_MELS, 0), dtype=np.float32)
            self._buf = np.concatenate([self._buf[1 : PAD + 1][::-1], self._buf])
            self._started = True
        else:
            self._buf = np.concatenate([self._buf, x])
        return self._emit(self._buf.size)

    def _emit(self, available: int, limit: int | None = None) -> np.ndarray:
        # frame t (absolute) starts at padded index t * HOP and needs N_FFT samples
        start = self._n_out * HOP_LENGTH - self._offset
        n = 0 if available - start < N_FFT else (available - start - N_FFT) // HOP_LENGTH + 1
        if limit is not None:
            n = min(n, limit - self._n_out)
        out = _frames_to_logmel(self._buf[start:], max(n, 0))
        self._n_out += max(n, 0)
        drop = self._n_out * HOP_LENGTH - self._offset
        if drop > 0:
            self._buf = self._buf[drop:]
            self._offset += drop
        return out

    def flush(self) -> np.ndarray:
        """End of audio: reflect-pad the end and return the remaining frames (total = samples // 160)."""
        if self._flushed:
            return np.zeros((N_MELS, 0), dtype=np.float32)
        self._flushed = True
        total = self._n_in // HOP_LENGTH
        if not self._started:
            return np.zeros((N_MELS, 0), dtype=np.float32)
        tail_src = self._buf[-(PAD + 1) : -1][::-1]
        if tail_src.size < PAD:  # the whole signal is shorter than the buffer kept: cannot happen past start
            tail_src = np.pad(tail_src, (0, PAD - tail_src.size))
        self._buf = np.concatenate([self._buf, tail_src])
        return self._emit(self._buf.size, limit=total)
