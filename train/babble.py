"""Background talk for training: multi-talker babble from espeak-ng voices, and per-speaker "sessions" under one
recording condition.

The robustness benchmark's babble is real recorded speech (other RAVDESS actors); training must not use it, nor the
TTS voices that serve as an out-of-domain test set (:data:`train.data.synth.DEFAULT_ESPEAK_VOICES`). So training
babble comes from other espeak-ng voices (:data:`BABBLE_VOICES`, none of the test voices' variants) reading ordinary,
emotionally flat sentences (:data:`BABBLE_SENTENCES`). Talker streams are generated once and cached
(``~/.cache/edgeser/babble``).

A *session* (:func:`session_condition`, :func:`apply_session`) gives every clip of one speaker the same condition
(babble, cafe-like babble + clicks + rumble, or stationary noise, at one SNR; sometimes reverberation), with fresh
noise per clip: that is what a stream's test-time adaptation sees at run time, and what
:class:`train.student.AdaptSampler` needs to learn to subtract a noisy session's mean.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np

from . import augment as A

SAMPLE_RATE = 16000

#: espeak-ng voices for babble: accents and variants that the TTS test set (DEFAULT_ESPEAK_VOICES) does not use.
BABBLE_VOICES: tuple[str, ...] = (
    "en-gb-scotland", "en-gb-scotland+f1", "en-029", "en-029+f1", "en-us-nyc+m2", "en-us-nyc+f1",
    "en-gb-x-gbclan+m4", "en-gb-x-gbcwmd+m6", "en-gb-x-gbcwmd+f1", "en-gb-x-gbclan+m7",
)
#: what the background talkers say: ordinary, emotionally flat sentences (none of the TTS test sentences).
BABBLE_SENTENCES: tuple[str, ...] = (
    "The train to the city leaves from platform four at ten past nine.",
    "I think we should order more paper for the printer on the second floor.",
    "She said the meeting was moved to Thursday afternoon after lunch.",
    "You can find the spare keys in the drawer next to the sink.",
    "The recipe needs two eggs, a cup of flour and a little milk.",
    "They are painting the fence along the road this week.",
    "My brother works at the library on the other side of town.",
    "Turn left at the bakery and walk on until you see the bank.",
    "We usually buy vegetables at the market on Saturday mornings.",
    "The report has three parts, and the last one is about costs.",
    "He moved to a smaller flat near the river last spring.",
    "Could you send me the numbers for the second quarter by Friday.",
)
CACHE = Path(os.path.expanduser("~/.cache/edgeser/babble"))


def talker_streams(voices=BABBLE_VOICES, sentences=BABBLE_SENTENCES, cache: Path | None = CACHE) -> list[np.ndarray]:
    """One long stream of speech per voice (every sentence, in a voice-specific order, 0.1-0.4 s apart), float32
    16 kHz at unit RMS. Cached by the voices and sentences."""
    key = f"{zlib.crc32(repr((tuple(voices), tuple(sentences))).encode()):08x}"
    path = None if cache is None else Path(cache) / f"talkers-{key}.npz"
    if path is not None and path.is_file():
        z = np.load(path)
        return [z[f"t{i}"] for i in range(len(voices))]
    from .data.synth import tts

    out = []
    for k, v in enumerate(voices):
        rng = np.random.default_rng(k)
        parts = []
        for i in rng.permutation(len(sentences)):
            parts += [tts(sentences[i], v, rate=int(rng.integers(150, 200))),
                      np.zeros(int(rng.uniform(0.1, 0.4) * SAMPLE_RATE), np.float32)]
        x = np.concatenate(parts).astype(np.float64)
        out.append((x / (np.sqrt(np.mean(x**2)) + 1e-12)).astype(np.float32))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **{f"t{i}": x for i, x in enumerate(out)})
    return out


def babble(n: int, rng: np.random.Generator, streams: list[np.ndarray], talkers: int | None = None,
           talker_range: tuple[int, int] = (3, 7), spread_db: float = 3.0) -> np.ndarray:
    """Unit-RMS babble of ``n`` samples: ``talkers`` (drawn from ``talker_range`` if None) different ``streams``, each
    from a random point (wrapping round), summed at levels within +-``spread_db`` of each other (0: equal levels,
    no draw)."""
    k = min(int(rng.integers(*talker_range)) if talkers is None else int(talkers), len(streams))
    y = np.zeros(n)
    for i in rng.choice(len(streams), size=k, replace=False):
        s = streams[i]
        g = 10 ** (rng.uniform(-spread_db, spread_db) / 20) if spread_db else 1.0
        start = int(rng.integers(0, len(s)))
        y += g * np.tile(s, -(-(start + n) // len(s)))[start : start + n]
    return (y / (np.sqrt(np.mean(y**2)) + 1e-12)).astype(np.float32)


def cafe(n: int, rng: np.random.Generator, streams: list[np.ndarray], **babble_args) -> np.ndarray:
    """Unit-RMS cafe-like noise: :func:`babble` (``babble_args``), cutlery/dish clicks 8 dB below it and brown room
    rumble 6 dB below it."""
    y = babble(n, rng, streams, **babble_args).astype(np.float64)
    y = y + 10 ** (-8 / 20) * A.clicks(n, rng) + 10 ** (-6 / 20) * A.brown_noise(n, rng)
    return (y / (np.sqrt(np.mean(y**2)) + 1e-12)).astype(np.float32)


def session_condition(rng: np.random.Generator, snr_range=(0.0, 15.0)) -> dict:
    """One recording condition for a whole session: kind (babble 60 %, cafe 20 %, stationary noise 20 %), SNR (dB,
    uniform in ``snr_range``), and a reverberation time (None 70 % of the time, else 0.3-0.9 s)."""
    u = rng.random()
    kind = "babble" if u < 0.6 else "cafe" if u < 0.8 else str(rng.choice(["white", "pink", "brown"]))
    rt60 = None if rng.random() < 0.7 else float(rng.uniform(0.3, 0.9))
    return {"kind": kind, "snr_db": float(rng.uniform(*snr_range)), "rt60": rt60}


def apply_session(x: np.ndarray, cond: dict, rng: np.random.Generator, streams: list[np.ndarray]) -> np.ndarray:
    """``x`` under the session condition ``cond`` (fresh noise from ``rng``); same length, peak <= 1."""
    y = A.reverb(x, rng, rt60=cond["rt60"]) if cond.get("rt60") else np.asarray(x, np.float32)
    kind = cond["kind"]
    if kind in ("babble", "cafe"):
        noise = (babble if kind == "babble" else cafe)(len(y), rng, streams)
        return np.clip(A.mix_at_snr(y, noise, cond["snr_db"]), -1.0, 1.0)
    return np.clip(A.add_noise(y, rng, snr_db=cond["snr_db"], kind=kind), -1.0, 1.0)
