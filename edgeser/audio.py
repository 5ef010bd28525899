"""Audio in: validation, mixing down, int -> float, resampling to 16 kHz, and file reading.

Every entry point of edgeser goes through :func:`prepare` (arrays) or :func:`load` (files), so every check lives here.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np

from .constants import SAMPLE_RATE
from .errors import AudioError

MAX_CHANNELS = 64
MIN_SAMPLE_RATE = 4_000  # Hz; below this there is no speech band left (and resampling up would explode the size)
MAX_SAMPLE_RATE = 384_000  # Hz; the highest rate audio interfaces record at
MAX_FLOAT_PEAK = 1e6  # float samples are expected in [-1, 1]; far beyond, the features overflow float32
MAX_BLOCK_SAMPLES = 1 << 20  # iter_file reads at most this many samples (frames x channels) at a time
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")  # "https://..." (or what Path makes of it, "https:/...")


def to_float32(samples) -> np.ndarray:
    """Return ``samples`` as float32 in [-1, 1]. Integer PCM is scaled by its full range; floats are kept."""
    try:
        a = np.asarray(samples)
    except Exception as exc:  # ragged lists and the like
        raise AudioError(f"audio could not be read as an array: {exc}") from exc
    if a.dtype == np.bool_ or a.dtype.kind not in "iuf":
        raise AudioError(f"audio must be integer PCM or float samples, got dtype {a.dtype}")
    if a.dtype.kind == "i":
        scale = float(2 ** (8 * a.dtype.itemsize - 1))
        return (a.astype(np.float64) / scale).astype(np.float32)
    if a.dtype.kind == "u":
        if a.dtype.itemsize != 1:
            raise AudioError(f"unsigned audio other than 8-bit PCM is not supported, got {a.dtype}")
        return ((a.astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf, rejected by check_values
        return a.astype(np.float32, copy=False)


def channel_axis(a: np.ndarray) -> int:
    """The channel axis of 2-D audio: the shorter one (axis 1, frames x channels, when square)."""
    return 1 if a.shape[1] <= a.shape[0] else 0


def mix_down(a: np.ndarray, axis: int | None = None) -> np.ndarray:
    """Mix (frames, channels) or (channels, frames) audio to mono. The shorter axis is taken as channels unless
    ``axis`` (the channel axis) is given."""
    if a.ndim == 1:
        return a
    if a.ndim != 2:
        raise AudioError(f"audio must be 1-D (mono) or 2-D (multi-channel), got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        return np.zeros(0, dtype=a.dtype)
    channel_axis_ = channel_axis(a) if axis is None else axis
    if a.shape[channel_axis_] > MAX_CHANNELS:
        raise AudioError(f"audio of shape {a.shape} has more than {MAX_CHANNELS} channels on both axes")
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf -> NaN, rejected by check_values
        return a.mean(axis=channel_axis_, dtype=np.float64).astype(a.dtype)


def check_rate(sample_rate) -> int:
    if sample_rate is None:
        raise AudioError("sample_rate is required for array input")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float, np.integer, np.floating)):
        raise AudioError(f"sample_rate must be a positive number, got {sample_rate!r}")
    if not np.isfinite(sample_rate) or sample_rate <= 0 or int(sample_rate) != sample_rate:
        raise AudioError(f"sample_rate must be a positive whole number of Hz, got {sample_rate!r}")
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise AudioError(f"sample_rate {int(sample_rate)} Hz is outside the supported {MIN_SAMPLE_RATE}-"
                         f"{MAX_SAMPLE_RATE} Hz")
    return int(sample_rate)


def resample(x: np.ndarray, orig_rate: int, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """High-quality resampling of a whole mono signal (soxr, 'HQ')."""
    if orig_rate == target_rate or x.size == 0:
        return x.astype(np.float32, copy=False)
    import soxr

    return soxr.resample(x.astype(np.float32, copy=False), orig_rate, target_rate, quality="HQ").astype(np.float32)


class StreamResampler:
    """Chunk-by-chunk resampler: feeding any split of a signal gives the same output as one call (up to soxr's
    rounding) and the total length tracks ``n * target / orig``."""

    def __init__(self, orig_rate: int, target_rate: int = SAMPLE_RATE):
        self.orig_rate = orig_rate
        self.target_rate = target_rate
        self._rs = None
        if orig_rate != target_rate:
            import soxr

            self._rs = soxr.ResampleStream(orig_rate, target_rate, 1, dtype="float32", quality="HQ")

    def __call__(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        if self._rs is None:
            return x
        return self._rs.resample_chunk(x.astype(np.float32, copy=False), last=last)


def check_values(a: np.ndarray, what: str = "audio") -> None:
    """:class:`AudioError` if float samples are NaN/inf, or so large (> ``MAX_FLOAT_PEAK``) that they cannot be
    audio scaled to [-1, 1] (the features would overflow). Values a little beyond +-1 (clipped, overdriven) pass."""
    if a.size == 0:
        return
    peak = float(np.max(np.abs(a)))
    if not np.isfinite(peak):
        raise AudioError(f"{what} contains NaN or infinite samples")
    if peak > MAX_FLOAT_PEAK:
        raise AudioError(f"{what} has float samples up to {peak:.3g}; float audio must be scaled to [-1, 1] "
                         f"(values beyond +-{MAX_FLOAT_PEAK:g} are rejected; divide integer PCM by its full scale)")


def as_mono(samples, *, allow_empty: bool = False, axis: int | None = None) -> np.ndarray:
    """Validate array-like audio and return it as mono float32 at its own rate (no resampling).
    ``axis``: the channel axis of 2-D input (default: the shorter axis)."""
    a = mix_down(to_float32(samples), axis)
    if a.size == 0:
        if allow_empty:
            return np.zeros(0, dtype=np.float32)
        raise AudioError("audio is empty")
    check_values(a)
    return np.ascontiguousarray(a, dtype=np.float32)


def prepare(samples, sample_rate, *, allow_empty: bool = False) -> np.ndarray:
    """Validate any array-like audio and return mono float32 at 16 kHz.

    Accepts int8/int16/int32/uint8 PCM and float32/float64, 1-D or 2-D (either channel layout). Raises
    :class:`AudioError` for empty input (unless ``allow_empty``), NaN/inf samples, bad shapes and bad rates.
    """
    rate = check_rate(sample_rate)
    return resample(as_mono(samples, allow_empty=allow_empty), rate)


def file_info(path):
    """(Path, soundfile info) of an audio file; :class:`AudioError` if it is missing, a directory or not audio."""
    import soundfile as sf

    try:
        p = Path(os.fspath(path))
    except TypeError as exc:
        raise AudioError(f"not a file path: {path!r}") from exc
    if not p.exists():
        text = path if isinstance(path, str) else str(p)
        if _URL.match(text):
            raise AudioError(f"{text}: URLs are not supported (edgeser opens no network connection); download the "
                             "file first and give its local path")
        raise AudioError(f"no such audio file: {p}")
    if p.is_dir():
        raise AudioError(f"{p} is a directory, not an audio file")
    if not p.is_file():  # a FIFO or a device would block or never end
        raise AudioError(f"{p} is not a regular file")
    if p.stat().st_size == 0:
        raise AudioError(f"{p} is an empty file (0 bytes)")
    try:
        info = sf.info(str(p))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OverflowError) as exc:
        raise AudioError(f"cannot read {p} as audio ({exc})") from exc
    _check_layout(str(p), info.channels, info.samplerate)
    return p, info


def _check_layout(name: str, channels: int, rate) -> None:
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioError(f"{name} has {channels} channels; at most {MAX_CHANNELS} are supported")
    try:
        check_rate(rate)
    except AudioError as exc:
        raise AudioError(f"{name}: {exc}") from None


def is_encoded(source) -> bool:
    """Whether ``source`` is an audio file to decode (a path, the bytes of a file, or a readable file object) rather
    than an array of samples."""
    return isinstance(source, (str, os.PathLike, bytes, bytearray)) or callable(getattr(source, "read", None))


def _open(source):
    """(name for messages, open soundfile.SoundFile) of a path, the bytes of an audio file or a file object."""
    import soundfile as sf

    in_memory = not isinstance(source, (str, os.PathLike))  # bytes or a file object: checked here, not by file_info
    if isinstance(source, (bytes, bytearray)):
        name = f"<{len(source)} bytes>"
        if not source:
            raise AudioError("the audio bytes are empty (0 bytes)")
        fobj = io.BytesIO(bytes(source))
    elif callable(getattr(source, "read", None)):
        name = f"<file object {getattr(source, 'name', type(source).__name__)}>"
        try:
            seekable = bool(source.seekable()) if callable(getattr(source, "seekable", None)) else False
        except (OSError, ValueError):
            seekable = False
        if seekable:  # soundfile seeks in the object itself; whether anything is left to read is checked here
            fobj, pos = source, source.tell()
            empty = source.seek(0, io.SEEK_END) == pos
            source.seek(pos)
        else:  # a pipe or a socket: read it whole (soundfile needs to seek)
            data = source.read()
            fobj, empty = io.BytesIO(data), not data
        if empty:
            raise AudioError(f"{name} is empty (no bytes to read)")
    else:
        p, _ = file_info(source)
        name = fobj = str(p)
    try:
        f = sf.SoundFile(fobj)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OverflowError) as exc:
        hint = "" if not in_memory else ("; bytes and file objects must hold an encoded audio file (WAV, FLAC, ...): "
                                        "give raw PCM samples as an array, e.g. np.frombuffer(data, np.int16), "
                                        "with sample_rate")
        raise AudioError(f"cannot read {name} as audio ({exc}){hint}") from exc
    if in_memory:
        try:
            _check_layout(name, f.channels, f.samplerate)
        except AudioError:
            f.close()
            raise
    return name, f


def _mix(data: np.ndarray) -> np.ndarray:
    """Mix (frames, channels) float32 read from a file to mono exactly as :func:`mix_down` does arrays (float64
    mean), so a file and the same samples given as an array give the same result."""
    if data.shape[1] == 1:
        return data[:, 0]
    with np.errstate(invalid="ignore", over="ignore"):
        return data.mean(axis=1, dtype=np.float64).astype(np.float32)


def load(path, *, start: float | None = None, stop: float | None = None) -> np.ndarray:
    """Read an audio file (WAV, FLAC, OGG/Vorbis/Opus, MP3 where libsndfile has it, ...) as mono float32 at 16 kHz."""
    import soundfile as sf

    p, info = file_info(path)
    try:
        a0 = None if start is None else int(start * info.samplerate)
        a1 = None if stop is None else int(stop * info.samplerate)
        data, rate = sf.read(str(p), start=a0 or 0, stop=a1, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, MemoryError) as exc:
        raise AudioError(f"cannot read {p} as audio ({exc})") from exc
    if data.size == 0:
        raise AudioError(f"{p} holds no audio samples")
    mono = _mix(data)
    check_values(mono, str(p))
    return prepare(mono, rate)


def iter_file(path, block_seconds: float = 10.0):
    """Yield (samples float32 mono, sample_rate) blocks of a file without reading it whole (bounded memory: a block
    holds at most ``MAX_BLOCK_SAMPLES`` samples over all channels). ``path`` may also be the bytes of an audio file
    or a readable file object (a seekable one is read block by block; a pipe is read whole first)."""
    import soundfile as sf

    p, f = _open(path)
    with f:
        rate = f.samplerate
        block = max(1, min(int(block_seconds * rate), MAX_BLOCK_SAMPLES // max(1, f.channels)))
        got = False
        while True:
            try:
                data = f.read(block, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as exc:
                raise AudioError(f"{p} is truncated or corrupt ({exc})") from exc
            if data.shape[0] == 0:
                break
            got = True
            mono = _mix(data)
            check_values(mono, str(p))
            yield mono, rate
        if not got:
            raise AudioError(f"{p} holds no audio samples")
