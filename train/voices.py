"""Pseudo-speakers: the same recordings in another voice, for speaker-diversity augmentation.

RAVDESS has 24 actors (20 here), so a head trained on it sees few voices and may partly learn the voices
themselves. A *voice copy* of the corpus gives every speaker one drawn :class:`Voice` -- formant (vocal-tract length)
ratio, pitch factor, pitch range factor, applied with Praat's "Change gender" (PSOLA pitch manipulation, formants
shifted by resampling) -- for all of their clips, so each speaker becomes a new one while every relation between
their clips (a louder, higher, more varied angry clip) is kept; the adaptive normalisation's per-speaker statistics
stay per (pseudo-)speaker. ``python -m train.student cv --voices K`` trains on K voice copies and validates the
held-out speakers in their voices too (``--validate-voices-only``: validate only, the baseline); the measured effect
is in ``benchmarks/README.md`` ("Recipe ablations", column "in other voices").

Needs ``praat-parselmouth`` (the ``train`` extra), imported inside the functions.
"""

from __future__ import annotations

import warnings
import zlib
from dataclasses import asdict, dataclass

import numpy as np

SAMPLE_RATE = 16000
PITCH_FLOOR, PITCH_CEILING = 75.0, 600.0  # Hz, Praat's pitch analysis range for "Change gender"

#: Ranges the pseudo-speakers are drawn from (log-uniform): formant ratios 0.85-1.18 span adult male to child-like
#: vocal tracts around a given speaker, pitch factors 0.7-1.45 about +-6 semitones, range factors monotone to lively.
FORMANT_RANGE = (0.85, 1.18)
PITCH_RANGE = (0.70, 1.45)
RANGE_RANGE = (0.80, 1.25)


@dataclass(frozen=True)
class Voice:
    """A voice change: formant ratio (> 1 shorter vocal tract), pitch median factor, pitch range factor."""

    formant_ratio: float = 1.0
    pitch_factor: float = 1.0
    range_factor: float = 1.0

    def __post_init__(self):
        for name, v in self.to_dict().items():
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"Voice.{name} must be a positive number, got {v!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def draw_voice(rng: np.random.Generator) -> Voice:
    """One pseudo-speaker from :data:`FORMANT_RANGE`, :data:`PITCH_RANGE` and :data:`RANGE_RANGE`."""
    return Voice(round(_log_uniform(rng, *FORMANT_RANGE), 4), round(_log_uniform(rng, *PITCH_RANGE), 4),
                 round(_log_uniform(rng, *RANGE_RANGE), 4))


def speaker_voice(seed: int, copy: int, speaker: str) -> Voice:
    """The voice speaker ``speaker`` gets in voice copy ``copy``: fixed by (seed, copy, speaker), not by clip order."""
    return draw_voice(np.random.default_rng([seed, 1000 + copy, zlib.crc32(speaker.encode())]))


def median_pitch(x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float | None:
    """Median F0 (Hz) of the voiced frames of ``x`` (Praat's autocorrelation pitch), None if nothing is voiced."""
    import parselmouth
    from parselmouth.praat import call

    pitch = parselmouth.Sound(np.asarray(x, np.float64), float(sample_rate)).to_pitch(
        pitch_floor=PITCH_FLOOR, pitch_ceiling=PITCH_CEILING)
    med = call(pitch, "Get quantile", 0.0, 0.0, 0.5, "Hertz")
    return float(med) if np.isfinite(med) else None


def change_voice(x: np.ndarray, voice: Voice, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``x`` (float32 mono) spoken in ``voice``: same length and sample rate, pitch median scaled by
    ``pitch_factor`` (the clip's own median, so a clip's pitch relative to the speaker's other clips is kept),
    excursions around it by ``range_factor``, formants by ``formant_ratio``; peak limited to 0.99."""
    import parselmouth
    from parselmouth.praat import call

    x = np.asarray(x, np.float32)
    if x.ndim != 1:
        raise ValueError(f"change_voice takes mono audio (1-D), got shape {x.shape}")
    if voice == Voice() or len(x) == 0:
        return x.copy()
    med = median_pitch(x, sample_rate)
    sound = parselmouth.Sound(x.astype(np.float64), float(sample_rate))
    # "Change gender": pitch floor, ceiling, formant shift ratio, new pitch median (0 = unchanged), range factor,
    # duration factor
    new_median = 0.0 if med is None else med * voice.pitch_factor
    with warnings.catch_warnings():  # nothing voiced (silence, noise): Praat warns and still shifts the formants
        warnings.simplefilter("ignore", parselmouth.PraatWarning)
        out = call(sound, "Change gender", PITCH_FLOOR, PITCH_CEILING, voice.formant_ratio, new_median,
                   voice.range_factor, 1.0)
    y = out.values[0].astype(np.float32)  # Praat keeps the sampling frequency and the length (duration factor 1)
    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    return y * (0.99 / peak) if peak > 0.99 else y
