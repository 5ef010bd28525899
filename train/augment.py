"""Waveform augmentation for training robustness to other rooms, microphones, channels and codecs.

numpy/scipy (and soundfile for the codec round trip) only -- no torch -- so it runs in data-loader workers.
Every augmentation has the form ``f(x, rng, **overrides) -> np.ndarray``: ``x`` is mono float32 at 16 kHz,
``rng`` a :class:`numpy.random.Generator`; parameters left as None are drawn from ``rng``. Same input and same
generator state give the same output. Outputs are finite float32; length is kept except where stated
(:func:`speed` changes it by ``1/factor``, :func:`pad_edges` adds/removes edge silence).

:class:`Augmenter` chains them at random in a physically sensible order (source -> room -> noise -> channel ->
level), then guarantees a finite output with peak <= 1.
"""

from __future__ import annotations

import io
from fractions import Fraction
from typing import Callable, Mapping

import numpy as np
from scipy import signal

SR = 16_000
_EPS = 1e-12
PEAK = 0.99  # peak that "clipping avoided" rescales to

NOISE_KINDS: tuple[str, ...] = ("white", "pink", "brown", "modulated", "hum", "clicks")


# ----------------------------------------------------------------------------------------------- helpers
def _f32(x) -> np.ndarray:
    y = np.asarray(x, dtype=np.float32)
    if not np.all(np.isfinite(y)):
        y = np.nan_to_num(y, nan=0.0, posinf=1.0, neginf=-1.0)
    return y


def _fit_length(y: np.ndarray, n: int) -> np.ndarray:
    """Trim or zero-pad ``y`` at the end to exactly ``n`` samples."""
    if len(y) >= n:
        return y[:n]
    return np.pad(y, (0, n - len(y)))


def _limit_peak(y: np.ndarray, peak: float = PEAK) -> np.ndarray:
    """Scale down (never up) so that ``max|y| <= peak``: avoids clipping without distorting."""
    m = float(np.max(np.abs(y))) if y.size else 0.0
    if m > peak:
        y = y * (peak / m)
    return y


def _rational(ratio: float, max_den: int = 200) -> tuple[int, int]:
    fr = Fraction(ratio).limit_denominator(max_den)
    return fr.numerator, fr.denominator


def _resample_ratio(x: np.ndarray, ratio: float) -> np.ndarray:
    """Resample by ``ratio`` (output length ~ len(x) * ratio) with a polyphase filter."""
    up, down = _rational(ratio)
    if up == down:
        return x.astype(np.float32, copy=True)
    return signal.resample_poly(x.astype(np.float64), up, down).astype(np.float32)


def active_power(x: np.ndarray, frame: int = 400, floor_db: float = 40.0) -> float:
    """Mean power over the active part of ``x``: 25 ms frames within ``floor_db`` dB of the loud (99th
    percentile) frames. Used as the signal power for SNR, so edge silence does not change the SNR of speech."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return 0.0
    nf = max(1, len(x) // frame)
    fr = x[: nf * frame].reshape(nf, -1) if len(x) >= frame else x.reshape(1, -1)
    e = np.mean(fr**2, axis=1)
    ref = float(np.percentile(e, 99))
    if ref <= _EPS:
        return float(np.mean(x**2))
    act = e[e >= ref * 10 ** (-floor_db / 10)]
    return float(np.mean(act))


def snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    """SNR of ``noisy`` against ``clean`` (same length), with :func:`active_power` as signal power."""
    noise = np.asarray(noisy, np.float64) - np.asarray(clean, np.float64)
    return 10 * np.log10(active_power(clean) / max(float(np.mean(noise**2)), _EPS))


# ----------------------------------------------------------------------------------------------- noises
def _colored(n: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """Noise with power spectrum ~ 1/f**exponent (0 white, 1 pink, 2 brown), unit RMS."""
    if n <= 0:
        return np.zeros(0, np.float32)
    spec = rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1)
    f = np.fft.rfftfreq(n, 1.0 / SR)
    f[0] = f[1] if n > 1 else 1.0
    f = np.maximum(f, 20.0)  # no sub-20 Hz runaway for brown noise
    spec *= f ** (-exponent / 2.0)
    y = np.fft.irfft(spec, n)
    return (y / (np.sqrt(np.mean(y**2)) + _EPS)).astype(np.float32)


def white_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    return _colored(n, rng, 0.0)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    return _colored(n, rng, 1.0)


def brown_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    return _colored(n, rng, 2.0)


def modulated_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Non-stationary noise: white/pink/brown noise under a random slow envelope (sinusoidal 0.3-8 Hz or a
    smoothed random walk, e.g. passing traffic, fans, crowd swell)."""
    base = _colored(n, rng, float(rng.choice([0.0, 1.0, 2.0])))
    t = np.arange(n) / SR
    if rng.random() < 0.5:
        depth = rng.uniform(0.5, 1.0)
        env = 1.0 + depth * np.sin(2 * np.pi * rng.uniform(0.3, 8.0) * t + rng.uniform(0, 2 * np.pi))
    else:
        k = max(2, int(n / SR * rng.uniform(2, 10)) + 2)  # control points
        pts = np.exp(rng.normal(0, 1.0, k))
        env = np.interp(np.linspace(0, k - 1, n), np.arange(k), pts)
    y = base * env
    return (y / (np.sqrt(np.mean(y**2)) + _EPS)).astype(np.float32)


def hum(n: int, rng: np.random.Generator) -> np.ndarray:
    """Mains hum: 50 or 60 Hz with decaying, randomly weighted harmonics (up to ~1 kHz) and slight drift,
    over a faint noise floor."""
    f0 = float(rng.choice([50.0, 60.0])) * rng.uniform(0.995, 1.005)
    t = np.arange(n) / SR
    y = np.zeros(n)
    n_harm = int(rng.integers(3, 16))
    slope = rng.uniform(0.3, 1.5)
    for h in range(1, n_harm + 1):
        if h * f0 >= SR / 2:
            break
        amp = h ** (-slope) * rng.uniform(0.3, 1.0)
        y += amp * np.sin(2 * np.pi * h * f0 * t + rng.uniform(0, 2 * np.pi))
    y = y / (np.sqrt(np.mean(y**2)) + _EPS)
    y = y + 0.05 * white_noise(n, rng)
    return (y / (np.sqrt(np.mean(y**2)) + _EPS)).astype(np.float32)


def clicks(n: int, rng: np.random.Generator) -> np.ndarray:
    """Keyboard-like clicks: Poisson-timed (2-12 per s) short band-passed decaying bursts of 2-15 ms."""
    y = np.zeros(n)
    if n == 0:
        return y.astype(np.float32)
    rate = rng.uniform(2.0, 12.0)
    n_clicks = max(1, int(rng.poisson(rate * n / SR)))
    starts = rng.integers(0, n, n_clicks)
    for s in starts:
        length = int(rng.uniform(0.002, 0.015) * SR)
        burst = rng.standard_normal(length) * np.exp(-np.arange(length) / (length / rng.uniform(3, 8)))
        e = min(n, s + length)
        y[s:e] += rng.uniform(0.2, 1.0) * burst[: e - s]
    lo, hi = rng.uniform(500, 2000), rng.uniform(3000, 7500)
    sos = signal.butter(2, [lo, hi], btype="bandpass", fs=SR, output="sos")
    y = signal.sosfilt(sos, y)
    y = y + 0.01 * np.sqrt(np.mean(y**2) + _EPS) * rng.standard_normal(n)  # never exactly silent
    return (y / (np.sqrt(np.mean(y**2)) + _EPS)).astype(np.float32)


NOISE_GENERATORS: Mapping[str, Callable[[int, np.random.Generator], np.ndarray]] = {
    "white": white_noise,
    "pink": pink_noise,
    "brown": brown_noise,
    "modulated": modulated_noise,
    "hum": hum,
    "clicks": clicks,
}


def add_noise(
    x: np.ndarray,
    rng: np.random.Generator,
    snr_db: float | None = None,
    kind: str | None = None,
    limit: bool = True,
) -> np.ndarray:
    """Add noise of ``kind`` (one of :data:`NOISE_KINDS`, random if None) at ``snr_db`` (uniform 0-30 dB if None).

    Signal power is :func:`active_power`; for a silent ``x`` the noise is put at -50..-30 dBFS. With ``limit``
    the sum is scaled down if it would clip (the SNR is unchanged by that). Length kept.
    """
    x = _f32(x)
    if x.size == 0:
        return x.copy()
    kind = str(rng.choice(NOISE_KINDS)) if kind is None else kind
    if kind not in NOISE_GENERATORS:
        raise ValueError(f"unknown noise kind {kind!r}; known: {NOISE_KINDS}")
    snr = rng.uniform(0.0, 30.0) if snr_db is None else float(snr_db)
    noise = NOISE_GENERATORS[kind](len(x), rng).astype(np.float64)
    ps = active_power(x)
    if ps <= _EPS:
        target = 10 ** (rng.uniform(-50, -30) / 10)
    else:
        target = ps / 10 ** (snr / 10)
    noise *= np.sqrt(target / (np.mean(noise**2) + _EPS))
    y = x.astype(np.float64) + noise
    if limit:
        y = _limit_peak(y)
    return _f32(y)


def mix_at_snr(x: np.ndarray, noise: np.ndarray, snr_db: float, limit: bool = True) -> np.ndarray:
    """``x`` plus a given ``noise`` (at least as long) scaled to ``snr_db`` below the active power of ``x`` (as
    :func:`add_noise`); with ``limit`` the sum is scaled down if it would clip (which keeps the SNR)."""
    x64, nz = np.asarray(x, np.float64), np.asarray(noise, np.float64)[: len(x)]
    target = active_power(x64) / 10 ** (snr_db / 10)
    y = x64 + nz * np.sqrt(target / (np.mean(nz**2) + _EPS))
    return _f32(_limit_peak(y) if limit else y)


# ----------------------------------------------------------------------------------------------- room
def make_rir(
    rng: np.random.Generator, rt60: float | None = None, drr_db: float | None = None, sr: int = SR
) -> np.ndarray:
    """A synthetic room impulse response: direct path at t=0, 3-12 early reflections (2-50 ms), and a diffuse
    tail of exponentially decaying noise reaching -60 dB at ``rt60`` (uniform 0.1-0.9 s if None), low-passed
    more as it decays (air/wall absorption). ``drr_db`` is the direct-to-reverberant energy ratio (-5..+15 dB)."""
    rt60 = rng.uniform(0.1, 0.9) if rt60 is None else float(rt60)
    drr_db = rng.uniform(-5.0, 15.0) if drr_db is None else float(drr_db)
    n = max(int(sr * 0.02), int(sr * min(rt60 * 1.2, 1.5)))
    t = np.arange(n) / sr
    # diffuse tail, onset after a 2-20 ms pre-delay
    pre = int(rng.uniform(0.002, 0.02) * sr)
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)  # ln(1000): -60 dB amplitude at rt60
    tail[:pre] = 0.0
    # brighter early, darker late: crossfade between the raw tail and a low-passed one
    sos = signal.butter(2, rng.uniform(2000, 6000), btype="low", fs=sr, output="sos")
    dark = signal.sosfilt(sos, tail)
    w = np.clip(t / max(rt60, 1e-3), 0.0, 1.0)
    tail = (1 - w) * tail + w * dark
    early = np.zeros(n)
    for _ in range(int(rng.integers(3, 13))):
        d = int(rng.uniform(0.002, 0.05) * sr)
        if d < n:
            early[d] += rng.choice([-1.0, 1.0]) * rng.uniform(0.1, 0.7) * np.exp(-6.9078 * d / sr / rt60)
    rev = tail + early
    rev *= np.sqrt(10 ** (-drr_db / 10) / (np.sum(rev**2) + _EPS))  # direct energy is 1
    h = rev
    h[0] += 1.0
    return (h / np.max(np.abs(h))).astype(np.float32)


def reverb(x: np.ndarray, rng: np.random.Generator, rt60: float | None = None, rir: np.ndarray | None = None) -> np.ndarray:
    """Convolve with a generated (or given) room impulse response. Length kept (the tail past the end is cut,
    aligned on the direct path); the active power is restored to that of ``x`` and the peak limited."""
    x = _f32(x)
    if x.size == 0:
        return x.copy()
    h = make_rir(rng, rt60=rt60) if rir is None else _f32(rir)
    y = signal.fftconvolve(x.astype(np.float64), h.astype(np.float64))[: len(x)]
    p_in, p_out = active_power(x), active_power(y)
    if p_out > _EPS and p_in > _EPS:
        y *= np.sqrt(p_in / p_out)
    return _f32(_limit_peak(y))


# ----------------------------------------------------------------------------------------------- level
def gain(x: np.ndarray, rng: np.random.Generator, db: float | None = None, allow_clip: bool = False) -> np.ndarray:
    """Scale by ``db`` (uniform -20..+12 dB if None). Unless ``allow_clip``, the gain is lowered as needed to
    keep the peak <= 0.99 (no clipping); with ``allow_clip`` samples are hard-clipped to [-1, 1]."""
    x = _f32(x)
    db = rng.uniform(-20.0, 12.0) if db is None else float(db)
    y = x.astype(np.float64) * 10 ** (db / 20)
    y = np.clip(y, -1.0, 1.0) if allow_clip else _limit_peak(y)
    return _f32(y)


def clipping(x: np.ndarray, rng: np.random.Generator, drive_db: float | None = None, soft: bool | None = None) -> np.ndarray:
    """Overdriven input: normalise to peak 1, boost by ``drive_db`` (3-20 dB) and clip, hard or soft (tanh),
    then bring the level back to that of the input. Length kept, output in [-1, 1]."""
    x = _f32(x)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak <= _EPS:
        return x.copy()
    drive_db = rng.uniform(3.0, 20.0) if drive_db is None else float(drive_db)
    soft = bool(rng.random() < 0.5) if soft is None else soft
    y = x.astype(np.float64) / peak * 10 ** (drive_db / 20)
    y = np.tanh(y) if soft else np.clip(y, -1.0, 1.0)
    y *= min(peak, PEAK)
    return _f32(np.clip(y, -1.0, 1.0))


def dc_offset(x: np.ndarray, rng: np.random.Generator, offset: float | None = None) -> np.ndarray:
    """Add a constant offset (|offset| uniform 0.005-0.05, random sign); the peak is then limited. Length kept."""
    x = _f32(x)
    if offset is None:
        offset = rng.choice([-1.0, 1.0]) * rng.uniform(0.005, 0.05)
    return _f32(_limit_peak(x.astype(np.float64) + float(offset)))


# ----------------------------------------------------------------------------------------------- time / pitch
def speed(x: np.ndarray, rng: np.random.Generator, factor: float | None = None) -> np.ndarray:
    """Speed perturbation (tempo and pitch together) by resampling; ``factor`` uniform 0.9-1.1 if None.
    Length CHANGES to ``round(len(x) / factor)`` (factor > 1 is faster/shorter)."""
    x = _f32(x)
    factor = rng.uniform(0.9, 1.1) if factor is None else float(factor)
    if factor <= 0:
        raise ValueError(f"speed factor must be > 0, got {factor}")
    if x.size == 0:
        return x.copy()
    y = _resample_ratio(x, 1.0 / factor)
    return _f32(_limit_peak(_fit_length(y, int(round(len(x) / factor)))))


def time_stretch(x: np.ndarray, rate: float, frame: int = 512, tol: int = 128) -> np.ndarray:
    """WSOLA time stretch: output length ``round(len(x) * rate)`` (rate > 1 longer/slower), pitch unchanged.

    Hann frames of ``frame`` samples at half-frame synthesis hop; each analysis frame is shifted by up to
    ``tol`` samples to best continue the previous one (cross-correlation), which avoids phasiness on speech.
    """
    x = np.asarray(x, dtype=np.float64)
    n_out = int(round(len(x) * rate))
    if x.size == 0 or n_out == 0:
        return np.zeros(n_out, np.float32)
    hs = frame // 2
    win = signal.windows.hann(frame, sym=False)
    xp = np.concatenate([np.zeros(frame), x, np.zeros(frame + 2 * tol + int(frame / rate) + 1)])
    lead = int(round(frame * rate))  # output position of x[0]
    total = lead + n_out + frame
    n_frames = total // hs + 1
    y = np.zeros(n_frames * hs + frame)
    wsum = np.zeros_like(y)
    prev = None
    max_pos = len(xp) - frame
    for k in range(n_frames):
        a = min(int(round(k * hs / rate)), max_pos)
        if prev is None:
            pos = a
        else:
            natural = xp[prev + hs : prev + hs + frame]
            lo, hi = max(0, a - tol), min(max_pos, a + tol)
            seg = xp[lo : hi + frame]
            if len(natural) == frame and np.any(natural) and hi > lo:
                # window-weighted normalised cross-correlation: exactly 1 where the candidate equals the
                # natural continuation (so rate 1 is the identity), louder segments get no advantage
                c = signal.correlate(seg, natural * win, mode="valid", method="auto")
                e = signal.correlate(seg * seg, win, mode="valid", method="auto")
                pos = lo + int(np.argmax(c / np.sqrt(np.maximum(e, 1e-20))))
            else:
                pos = a
        y[k * hs : k * hs + frame] += xp[pos : pos + frame] * win
        wsum[k * hs : k * hs + frame] += win
        prev = pos
    y = y / np.maximum(wsum, 1e-3)
    return _fit_length(y[lead:], n_out).astype(np.float32)


def pitch_shift(x: np.ndarray, rng: np.random.Generator, semitones: float | None = None) -> np.ndarray:
    """Shift pitch by ``semitones`` (uniform -3..+3 if None) keeping the tempo: WSOLA stretch by
    ``2**(semitones/12)`` then resample back to the original length. Length kept. Formants move with the pitch
    (as in a simple vocal-tract-length change), which is fine for augmentation."""
    x = _f32(x)
    semitones = rng.uniform(-3.0, 3.0) if semitones is None else float(semitones)
    if x.size == 0 or abs(semitones) < 1e-6:
        return x.copy()
    r = 2.0 ** (semitones / 12.0)
    stretched = time_stretch(x, r)
    y = _resample_ratio(stretched, len(x) / max(len(stretched), 1))
    return _f32(_limit_peak(_fit_length(y, len(x))))


# ----------------------------------------------------------------------------------------------- channel
def telephone(x: np.ndarray, rng: np.random.Generator, mu_law: bool | None = None) -> np.ndarray:
    """Narrow-band telephone channel: 300-3400 Hz band-pass, down to 8 kHz, optional 8-bit mu-law (G.711)
    companding (50 %), back up to 16 kHz. Length kept."""
    x = _f32(x)
    if x.size == 0:
        return x.copy()
    mu_law = bool(rng.random() < 0.5) if mu_law is None else mu_law
    lo, hi = rng.uniform(250, 350), rng.uniform(3200, 3500)
    sos = signal.butter(4, [lo, hi], btype="bandpass", fs=SR, output="sos")
    y = signal.sosfilt(sos, x.astype(np.float64))
    y = signal.resample_poly(y, 1, 2)
    if mu_law:
        mu = 255.0
        peak = max(float(np.max(np.abs(y))), _EPS)
        scale = max(peak, 1.0)
        c = np.sign(y / scale) * np.log1p(mu * np.abs(y / scale)) / np.log1p(mu)
        c = np.round(c * 127.0) / 127.0
        y = np.sign(c) * np.expm1(np.abs(c) * np.log1p(mu)) / mu * scale
    y = signal.resample_poly(y, 2, 1)
    return _f32(_limit_peak(_fit_length(y, len(x))))


# (format, subtype, compression-level range) -- lower level = higher quality
_CODECS: dict[str, tuple[str, str, tuple[float, float]]] = {
    "vorbis": ("OGG", "VORBIS", (0.0, 1.0)),
    "opus": ("OGG", "OPUS", (0.2, 0.95)),
    "mp3": ("MP3", "MPEG_LAYER_III", (0.0, 0.9)),
}
_available_codecs: tuple[str, ...] | None = None


def available_codecs() -> tuple[str, ...]:
    """Lossy codecs this libsndfile can write and read back in memory (checked once at run time)."""
    global _available_codecs
    if _available_codecs is None:
        found = []
        try:
            import soundfile as sf

            formats = sf.available_formats()
            for name, (fmt, sub, _) in _CODECS.items():
                if fmt in formats and sub in sf.available_subtypes(fmt):
                    try:  # a tiny probe: listed is not always writable
                        b = io.BytesIO()
                        sf.write(b, np.zeros(1600, np.float32), SR, format=fmt, subtype=sub)
                        b.seek(0)
                        sf.read(b, dtype="float32")
                        found.append(name)
                    except Exception:
                        pass
        except Exception:
            pass
        _available_codecs = tuple(found)
    return _available_codecs


def codec(x: np.ndarray, rng: np.random.Generator, name: str | None = None, level: float | None = None) -> np.ndarray:
    """Lossy codec round trip in memory through soundfile (``name`` in :func:`available_codecs`, random if
    None; ``level`` = libsndfile compression level 0 best .. 1 smallest, drawn per codec if None).
    Length kept (trimmed/padded; libsndfile compensates encoder delay). Returns ``x`` unchanged if no codec
    is available or encoding fails."""
    x = _f32(x)
    codecs = available_codecs()
    if x.size == 0 or not codecs:
        return x.copy()
    name = str(rng.choice(codecs)) if name is None else name
    if name not in _CODECS:
        raise ValueError(f"unknown codec {name!r}; known: {tuple(_CODECS)}")
    if name not in codecs:
        return x.copy()
    fmt, sub, (lo, hi) = _CODECS[name]
    level = rng.uniform(lo, hi) if level is None else float(level)
    import soundfile as sf

    try:
        b = io.BytesIO()
        sf.write(b, np.clip(x, -1.0, 1.0), SR, format=fmt, subtype=sub, compression_level=level)
        b.seek(0)
        y, rate = sf.read(b, dtype="float32")
    except Exception:
        return x.copy()
    if y.ndim > 1:
        y = y.mean(axis=1)
    if rate != SR:
        y = _resample_ratio(y, SR / rate)
    return _f32(_limit_peak(_fit_length(y, len(x))))


_gsm_real: bool | None = None


def gsm_available() -> bool:
    """Whether this libsndfile has the real GSM 06.10 full-rate codec (WAV subtype ``GSM610``), checked once."""
    global _gsm_real
    if _gsm_real is None:
        try:
            import soundfile as sf

            b = io.BytesIO()
            sf.write(b, np.zeros(1600, np.float32), 8000, format="WAV", subtype="GSM610")
            b.seek(0)
            sf.read(b, dtype="float32")
            _gsm_real = True
        except Exception:
            _gsm_real = False
    return _gsm_real


def _levinson(r: np.ndarray, order: int) -> np.ndarray:
    """LPC polynomial ``[1, a1 .. a_order]`` from autocorrelation ``r`` (Levinson-Durbin, reflection
    coefficients clipped to |k| < 0.99 so the synthesis filter stays stable)."""
    a = np.zeros(order + 1)
    a[0] = 1.0
    err = r[0] * (1 + 1e-9) + _EPS
    for i in range(1, order + 1):
        k = -float(np.dot(a[:i], r[i:0:-1])) / err
        k = float(np.clip(k, -0.99, 0.99))
        a[1 : i + 1] = a[1 : i + 1] + k * a[i - 1 :: -1][:i]
        err *= 1.0 - k * k
    return a


def gsm_like(x8: np.ndarray) -> np.ndarray:
    """A numpy stand-in for GSM 06.10 at 8 kHz (not bit-exact; used when libsndfile has no GSM610):
    pre-emphasis 0.86, order-8 LPC per 20 ms frame with reflection coefficients quantised to 5 bits (as
    log-area ratios), residual kept on the best of 3 regular-pulse grids per 5 ms sub-frame (RPE: 13 of 40
    samples) with 3-bit block-scaled (APCM) amplitudes, LPC synthesis and de-emphasis. No long-term
    predictor, so it is somewhat harsher than the real codec."""
    x = np.asarray(x8, np.float64)
    n = len(x)
    if n == 0:
        return np.zeros(0, np.float32)
    frame, sub, order = 160, 40, 8
    pre = signal.lfilter([1.0, -0.86], [1.0], x)
    nf = -(-n // frame)
    pre = np.pad(pre, (0, nf * frame - n))
    out = np.zeros_like(pre)
    zi_a = np.zeros(order)  # analysis (inverse) filter state
    zi_s = np.zeros(order)  # synthesis filter state
    win = np.hamming(frame)
    for f in range(nf):
        seg = pre[f * frame : (f + 1) * frame]
        w = seg * win
        r = np.array([np.dot(w[: frame - k], w[k:]) for k in range(order + 1)])
        a = _levinson(r, order) if r[0] > _EPS else np.r_[1.0, np.zeros(order)]
        # quantise through reflection coefficients -> log-area ratios (5 bits over +-4), back to a polynomial
        refl = _poly_to_refl(a)
        lar = np.log((1 + refl) / (1 - refl))
        lar = np.clip(np.round(lar / 0.25) * 0.25, -4.0, 4.0)
        refl_q = np.tanh(lar / 2.0)
        aq = _refl_to_poly(refl_q)
        res, zi_a = signal.lfilter(aq, [1.0], seg, zi=zi_a)
        exc = np.zeros(frame)
        for s in range(0, frame, sub):
            blk = res[s : s + sub]
            grids = [blk[g::3][:13] for g in range(3)]
            g = int(np.argmax([np.sum(v**2) for v in grids]))
            pulses = grids[g]
            scale = float(np.max(np.abs(pulses)))
            if scale > _EPS:
                scale = 2.0 ** (np.ceil(np.log2(scale) * 4) / 4)  # block maximum, rounded up on a 1.5 dB grid
                q = np.clip(np.round(pulses / scale * 3.5 + 3.5), 0, 7)  # 3 bits
                pulses = (q - 3.5) / 3.5 * scale
            e = np.zeros(sub)
            e[g::3][: len(pulses)] = pulses * np.sqrt(3.0)  # energy lost to the decimation restored
            exc[s : s + sub] = e
        y, zi_s = signal.lfilter([1.0], aq, exc, zi=zi_s)
        out[f * frame : (f + 1) * frame] = y
    y = signal.lfilter([1.0], [1.0, -0.86], out[:n])
    return y.astype(np.float32)


def _poly_to_refl(a: np.ndarray) -> np.ndarray:
    """Reflection coefficients of a (stable) LPC polynomial (step-down recursion), clipped to |k| <= 0.99."""
    a = np.asarray(a, np.float64).copy()
    p = len(a) - 1
    k = np.zeros(p)
    for i in range(p, 0, -1):
        ki = float(np.clip(a[i], -0.99, 0.99))
        k[i - 1] = ki
        if i > 1:
            a = (a[: i + 1] - ki * a[: i + 1][::-1]) / (1 - ki * ki)
            a = a[:i]
    return k


def _refl_to_poly(k: np.ndarray) -> np.ndarray:
    a = np.array([1.0])
    for ki in k:
        a = np.r_[a, 0.0]
        a = a + ki * a[::-1]
    return a


def gsm(x: np.ndarray, rng: np.random.Generator, simulate: bool | None = None) -> np.ndarray:
    """GSM full-rate (06.10, 13 kbit/s) round trip: down to 8 kHz, encode/decode, back to 16 kHz. The real codec
    (libsndfile ``GSM610``) when :func:`gsm_available` and not ``simulate``; else :func:`gsm_like`. ``rng`` is
    not drawn from (the codec is deterministic); it keeps the common signature. Length kept, peak limited."""
    x = _f32(x)
    if x.size == 0:
        return x.copy()
    y8 = signal.resample_poly(x.astype(np.float64), 1, 2)
    real = gsm_available() if simulate is None else (not simulate)
    if real and not gsm_available():
        raise RuntimeError("the real GSM 06.10 codec is not available in this libsndfile")
    if real:
        import soundfile as sf

        b = io.BytesIO()
        sf.write(b, np.clip(y8, -1.0, 1.0), 8000, format="WAV", subtype="GSM610")
        b.seek(0)
        z, _ = sf.read(b, dtype="float64")
        z = _fit_length(z, len(y8))
    else:
        z = gsm_like(y8).astype(np.float64)
    y = signal.resample_poly(z, 2, 1)
    return _f32(_limit_peak(_fit_length(y, len(x))))


def mic_eq(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Another microphone / preamp: random high-pass (30-300 Hz), low-pass (3.5-7.9 kHz) and 1-3 peaking
    EQ bands of +-9 dB. Active power restored, peak limited, length kept."""
    x = _f32(x)
    if x.size == 0:
        return x.copy()
    y = x.astype(np.float64)
    y = signal.sosfilt(signal.butter(2, rng.uniform(30, 300), btype="high", fs=SR, output="sos"), y)
    y = signal.sosfilt(signal.butter(int(rng.integers(2, 7)), rng.uniform(3500, 7900), btype="low", fs=SR, output="sos"), y)
    for _ in range(int(rng.integers(1, 4))):
        f0 = np.exp(rng.uniform(np.log(150), np.log(6000)))
        q = rng.uniform(0.5, 4.0)
        g = 10 ** (rng.uniform(-9, 9) / 40)  # RBJ peaking EQ, A = 10**(dB/40)
        w0 = 2 * np.pi * f0 / SR
        alpha = np.sin(w0) / (2 * q)
        b = [1 + alpha * g, -2 * np.cos(w0), 1 - alpha * g]
        a = [1 + alpha / g, -2 * np.cos(w0), 1 - alpha / g]
        y = signal.lfilter(b, a, y)
    p_in, p_out = active_power(x), active_power(y)
    if p_out > _EPS and p_in > _EPS:
        y *= np.sqrt(p_in / p_out)
    return _f32(_limit_peak(y))


def pad_edges(
    x: np.ndarray,
    rng: np.random.Generator,
    max_pad_s: float = 1.0,
    threshold_db: float = -40.0,
) -> np.ndarray:
    """Randomise leading and trailing silence so that clip length and onset time are no shortcut.

    Each edge independently either gets 0-``max_pad_s`` s of padding (digital silence or faint white/pink
    noise at -80..-45 dBFS) or has part of its existing silence (frames ``threshold_db`` below the loud ones)
    trimmed, never cutting into speech. Length CHANGES (by at most ``max_pad_s`` s per edge)."""
    x = _f32(x)
    if x.size == 0:
        return x.copy()
    frame = 160
    nf = len(x) // frame
    lead_sil = trail_sil = 0
    if nf > 0:
        e = np.mean(x[: nf * frame].astype(np.float64).reshape(nf, frame) ** 2, axis=1)
        ref = float(np.percentile(e, 99))
        if ref > _EPS:
            loud = np.nonzero(e >= ref * 10 ** (threshold_db / 10))[0]
            lead_sil = int(loud[0]) * frame
            trail_sil = (nf - 1 - int(loud[-1])) * frame + (len(x) - nf * frame)
    pads, cuts = [0, 0], [0, 0]
    for i, sil in enumerate((lead_sil, trail_sil)):
        if rng.random() < 0.5 or sil <= frame:
            pads[i] = int(rng.uniform(0.0, max_pad_s) * SR)
        else:
            cuts[i] = int(rng.uniform(0.0, 1.0) * (sil - frame))  # keep at least 10 ms of the silence
    cut0, cut1 = cuts
    y = x[cut0 : len(x) - cut1]

    def filler(n: int) -> np.ndarray:
        u = rng.random()
        if n == 0 or u < 0.4:
            return np.zeros(n, np.float32)
        level = 10 ** (rng.uniform(-80.0, -45.0) / 20)
        base = white_noise(n, rng) if u < 0.7 else pink_noise(n, rng)
        return (base * level).astype(np.float32)

    return _f32(np.concatenate([filler(pads[0]), y, filler(pads[1])]))


# ----------------------------------------------------------------------------------------------- chain
#: Default per-augmentation probabilities of :class:`Augmenter` (each tried independently, in this order).
DEFAULT_PROBS: dict[str, float] = {
    "pad_edges": 0.5,
    "speed": 0.3,
    "pitch_shift": 0.25,
    "reverb": 0.35,
    "noise": 0.5,
    "mic_eq": 0.3,
    "telephone": 0.1,
    "codec": 0.2,
    "gain": 0.5,
    "clipping": 0.05,
    "dc_offset": 0.1,
}

_OPS: dict[str, Callable[..., np.ndarray]] = {
    "pad_edges": pad_edges,
    "speed": speed,
    "pitch_shift": pitch_shift,
    "reverb": reverb,
    "noise": add_noise,
    "mic_eq": mic_eq,
    "telephone": telephone,
    "codec": codec,
    "gain": gain,
    "clipping": clipping,
    "dc_offset": dc_offset,
}


class Augmenter:
    """Random chain of the augmentations above, for training.

    With probability ``p`` a clip is augmented at all; then each augmentation ``name`` is applied with
    probability ``probs[name]`` (defaults :data:`DEFAULT_PROBS`; give 0 to disable one), in the fixed order
    of :data:`DEFAULT_PROBS` (source -> room -> noise -> channel -> level). ``telephone`` and ``codec`` are not
    stacked (one channel per clip). The output is finite float32 with peak <= 1 (hard clipping only happens
    when ``clipping`` is chosen). Its length differs from the input only through ``pad_edges`` and ``speed``.

    ``aug(x)`` draws from the augmenter's own generator (seeded by ``seed``: same seed, same call sequence ->
    same outputs); ``aug(x, rng)`` uses the given generator instead, e.g. one seeded per (epoch, clip) for
    data-loader workers. ``last_ops`` lists the augmentations applied by the latest call.
    """

    def __init__(self, p: float = 0.8, seed: int | None = 0, probs: Mapping[str, float] | None = None):
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        self.p = float(p)
        self.probs = dict(DEFAULT_PROBS)
        if probs:
            unknown = set(probs) - set(_OPS)
            if unknown:
                raise ValueError(f"unknown augmentation(s) {sorted(unknown)}; known: {list(_OPS)}")
            for k, v in probs.items():
                if not 0.0 <= float(v) <= 1.0:
                    raise ValueError(f"probability of {k} must be in [0, 1], got {v}")
                self.probs[k] = float(v)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.last_ops: list[str] = []

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        rng = self.rng if rng is None else rng
        y = _f32(x).copy()
        self.last_ops = []
        if y.size == 0 or rng.random() >= self.p:
            return _f32(_limit_peak(y, 1.0))
        # draw all decisions first so the sequence of choices does not depend on the signal
        chosen = [name for name in DEFAULT_PROBS if rng.random() < self.probs[name]]
        if "telephone" in chosen and "codec" in chosen:
            chosen.remove("codec" if rng.random() < 0.5 else "telephone")
        for name in chosen:
            y = _OPS[name](y, rng)
            self.last_ops.append(name)
        if not np.all(np.isfinite(y)):  # cannot happen with the ops above; belt and braces
            y = np.nan_to_num(y, nan=0.0, posinf=1.0, neginf=-1.0)
        return _f32(np.clip(_limit_peak(y, 1.0), -1.0, 1.0))

    def __repr__(self) -> str:
        return f"Augmenter(p={self.p}, seed={self.seed}, probs={self.probs})"
