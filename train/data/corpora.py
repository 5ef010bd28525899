"""The emotional-speech corpora in ``../shared/data`` (RAVDESS, nEMO, ASED) under one set of labels, pooled.

Every corpus maps its own emotion names onto canonical ones (:data:`EMOTIONS`); the 4-class task keeps
:data:`~train.data.ravdess.LABELS4` and :func:`load_corpora` with ``labels=EMOTIONS`` keeps the other emotions too
(calm, fearful, surprised, disgust) for auxiliary targets. Pooled speaker ids are prefixed with the corpus
(``"nemo:WR0"``), because ids are unique within a corpus only.

Folders: ``$EDGESER_<CORPUS>`` if set, else ``../shared/data/<corpus>`` from the repository root.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .ravdess import LABELS4, Clip, gender_of, speaker_folds

#: Canonical emotion names over all corpora; the 4-class task is LABELS4 (its first four).
EMOTIONS: tuple[str, ...] = ("neutral", "happy", "angry", "sad", "calm", "fearful", "surprised", "disgust")

#: Arousal (-1 low .. 1 high) and valence (-1 negative .. 1 positive) of each canonical emotion, from the circumplex
#: model's usual placement; used as auxiliary regression targets so that every clip teaches something.
AROUSAL_VALENCE: dict[str, tuple[float, float]] = {
    "neutral": (0.0, 0.0), "calm": (-0.5, 0.3), "happy": (0.6, 0.8), "surprised": (0.8, 0.3),
    "angry": (0.8, -0.7), "fearful": (0.7, -0.7), "disgust": (0.3, -0.7), "sad": (-0.6, -0.7),
}

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class CorpusSpec:
    """Where a corpus lives and how its labels map onto :data:`EMOTIONS`."""

    name: str
    language: str
    licence: str
    citation: str
    label_map: dict

    def root(self) -> Path:
        env = os.environ.get(f"EDGESER_{self.name.upper()}")
        return Path(env).expanduser().resolve() if env else (REPO_ROOT / ".." / "shared" / "data" / self.name).resolve()


SPECS: dict[str, CorpusSpec] = {
    "ravdess": CorpusSpec(
        "ravdess", "en", "CC BY-NC-SA 4.0",
        "Livingstone & Russo (2018), The Ryerson Audio-Visual Database of Emotional Speech and Song, PLoS ONE",
        {e: e for e in EMOTIONS}),
    "nemo": CorpusSpec(
        "nemo", "pl", "CC BY-NC-SA 4.0",
        "Christop (2024), nEMO: Dataset of Emotional Speech in Polish, LREC-COLING",
        {"neutral": "neutral", "happiness": "happy", "anger": "angry", "sadness": "sad", "fear": "fearful",
         "surprised": "surprised"}),
    "ased": CorpusSpec(
        "ased", "am", "no licence stated (research use; not for commercial use without the authors' consent)",
        "Retta et al. (2022), A New Amharic Speech Emotion Dataset and Classification Benchmark, ACM TALLIP",
        {"neutral": "neutral", "happy": "happy", "sad": "sad", "angry": "angry", "fearful": "fearful"}),
}
CORPUS_NAMES: tuple[str, ...] = tuple(SPECS)


def corpus_available(name: str) -> bool:
    return (SPECS[name].root() / "manifest.csv").is_file()


def load_corpus(name: str, labels: Sequence[str] = LABELS4, prefix: bool = True) -> list[Clip]:
    """Clips of corpus ``name`` whose canonical emotion is in ``labels``, in manifest order.

    ``Clip.label`` is the canonical emotion, ``meta["corpus"]`` the corpus, ``meta["emotion"]`` the corpus's own
    name; with ``prefix`` the speaker id is ``"<corpus>:<speaker>"``. FileNotFoundError names the folder looked at.
    """
    if name not in SPECS:
        raise ValueError(f"unknown corpus {name!r}; known: {CORPUS_NAMES}")
    spec = SPECS[name]
    unknown = [lab for lab in labels if lab not in EMOTIONS]
    if unknown:
        raise ValueError(f"unknown label(s) {unknown}; known: {EMOTIONS}")
    base = spec.root()
    manifest = base / "manifest.csv"
    if not manifest.is_file():
        raise FileNotFoundError(f"{name} manifest not found at {manifest}; put the corpus there or set "
                                f"EDGESER_{name.upper()}=/path/to/{name}")
    wanted = set(labels)
    clips = []
    with open(manifest, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            own = row["emotion"].strip()
            if own not in spec.label_map:
                raise ValueError(f"{manifest}: emotion {own!r} has no mapping; known: {sorted(spec.label_map)}")
            label = spec.label_map[own]
            if label not in wanted:
                continue
            spk = row["speaker"].strip()
            g = (row.get("gender") or "").strip().lower()
            gender = {"m": "male", "f": "female"}.get(g) or (gender_of(spk) if name == "ravdess" else "unknown")
            meta = {k: v for k, v in row.items() if k not in ("path", "speaker") and k is not None}
            meta.update(corpus=name, emotion=own)
            clips.append(Clip(path=str((base / row["path"].strip()).resolve()),
                              speaker=f"{name}:{spk}" if prefix else spk, label=label, gender=gender, meta=meta))
    return clips


def load_corpora(names: Iterable[str], labels: Sequence[str] = LABELS4) -> list[Clip]:
    """The clips of every corpus in ``names``, concatenated in that order, speakers prefixed by corpus."""
    out: list[Clip] = []
    for n in names:
        out += load_corpus(n, labels)
    return out


def corpus_of(clip: Clip) -> str:
    return clip.meta.get("corpus") or clip.speaker.split(":", 1)[0]


def pooled_speaker_folds(clips: Sequence[Clip], n_folds: int = 5, seed: int = 0) -> list[list[str]]:
    """Speaker-independent folds over pooled corpora: each corpus's speakers are dealt into ``n_folds`` folds on
    their own (gender-balanced, :func:`~train.data.ravdess.speaker_folds`), and fold k is the union of every
    corpus's fold k, so each fold holds out speakers of every corpus. RAVDESS keeps its single-corpus folds."""
    folds: list[list[str]] = [[] for _ in range(n_folds)]
    by_corpus: dict[str, list[Clip]] = {}
    for c in clips:
        by_corpus.setdefault(corpus_of(c), []).append(c)
    for name in sorted(by_corpus):
        cs = by_corpus[name]
        # the corpus's own ids, so RAVDESS folds equal its single-corpus folds (which are dealt on "Actor_XX")
        own = [Clip(c.path, c.speaker.split(":", 1)[-1], c.label, c.gender) for c in cs]
        for k, f in enumerate(speaker_folds(own, n_folds=n_folds, seed=seed)):
            folds[k] += [f"{name}:{s}" for s in f]
    return [sorted(f) for f in folds]
