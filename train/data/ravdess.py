"""RAVDESS speech (actors 01-20, 16 kHz FLAC) as a list of :class:`Clip`, and speaker-independent folds.

The corpus is read from ``../shared/data/ravdess`` relative to the repository root (override with the
``EDGESER_RAVDESS`` environment variable). Audio is never copied into the repository.
Licence of the corpus: CC BY-NC-SA 4.0 -- a model trained on it inherits these terms.
"""

from __future__ import annotations

import csv
import os
import random
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

#: Label order of the 4-class task. Declared here, never derived from the data: index i <-> LABELS4[i].
LABELS4: tuple[str, ...] = ("neutral", "happy", "angry", "sad")
#: The eight RAVDESS emotions in the corpus' own code order (01..08).
EMOTIONS8: tuple[str, ...] = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")

ENV_VAR = "EDGESER_RAVDESS"
REPO_ROOT = Path(__file__).resolve().parents[2]  # train/data/ravdess.py -> repo root
DEFAULT_ROOT = REPO_ROOT / ".." / "shared" / "data" / "ravdess"
MANIFEST = "manifest.csv"
_REQUIRED_COLUMNS = ("path", "speaker", "emotion")


@dataclass(frozen=True)
class Clip:
    """One utterance: absolute audio path, speaker id, label, speaker gender and free-form metadata."""

    path: str
    speaker: str
    label: str
    gender: str  # "male" | "female"
    meta: dict = field(default_factory=dict, compare=False, hash=False)


def ravdess_root(root: str | os.PathLike | None = None) -> Path:
    """Resolve the corpus folder: ``root`` if given, else ``$EDGESER_RAVDESS``, else ``../shared/data/ravdess``."""
    if root is None:
        env = os.environ.get(ENV_VAR)
        root = env if env else DEFAULT_ROOT
    return Path(os.fspath(root)).expanduser().resolve()


def gender_of(speaker: str) -> str:
    """RAVDESS convention: odd actor number = male, even = female (``"Actor_07"`` -> ``"male"``)."""
    m = re.search(r"(\d+)\s*$", speaker)
    if m is None:
        raise ValueError(f"cannot read an actor number from speaker id {speaker!r}")
    return "male" if int(m.group(1)) % 2 == 1 else "female"


def load_ravdess(root: str | os.PathLike | None = None, labels: Sequence[str] = LABELS4) -> list[Clip]:
    """Read ``manifest.csv`` and return the clips whose emotion is in ``labels``, in manifest order.

    Raises FileNotFoundError (with the place looked at and how to override it) when the corpus is missing,
    ValueError for an unknown label or a malformed manifest.
    """
    base = ravdess_root(root)
    manifest = base / MANIFEST
    if not manifest.is_file():
        raise FileNotFoundError(
            f"RAVDESS manifest not found at {manifest}. Put the corpus at {DEFAULT_ROOT.resolve()} "
            f"or set {ENV_VAR}=/path/to/ravdess (the folder holding {MANIFEST} and Actor_XX/)."
        )
    labels = tuple(labels)
    unknown = [lab for lab in labels if lab not in EMOTIONS8]
    if unknown:
        raise ValueError(f"unknown RAVDESS label(s) {unknown}; known: {EMOTIONS8}")
    if len(set(labels)) != len(labels):
        raise ValueError(f"duplicate labels in {labels}")
    wanted = set(labels)
    clips: list[Clip] = []
    with open(manifest, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in _REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{manifest} lacks column(s) {missing}; has {reader.fieldnames}")
        for row in reader:
            emotion = row["emotion"].strip()
            if emotion not in wanted:
                continue
            speaker = row["speaker"].strip()
            meta = {k: v for k, v in row.items() if k not in ("path", "speaker", "emotion") and k is not None}
            if "duration_s" in meta:
                try:
                    meta["duration_s"] = float(meta["duration_s"])
                except (TypeError, ValueError):
                    pass
            clips.append(
                Clip(
                    path=str((base / row["path"].strip()).resolve()),
                    speaker=speaker,
                    label=emotion,
                    gender=gender_of(speaker),
                    meta=meta,
                )
            )
    return clips


def speaker_folds(clips: Iterable[Clip], n_folds: int = 5, seed: int = 0) -> list[list[str]]:
    """Split the speakers of ``clips`` into ``n_folds`` disjoint folds, balanced by gender, deterministically.

    Speakers of each gender are shuffled with ``seed`` and dealt round-robin (females continue where males
    stopped so fold sizes differ by at most one). RAVDESS actors 01-20 with 5 folds give 2 male + 2 female
    actors per fold. Each fold is a sorted list of speaker ids; folds come in deal order.
    """
    if isinstance(n_folds, bool) or not isinstance(n_folds, int) or n_folds < 2:
        raise ValueError(f"n_folds must be an integer >= 2, got {n_folds!r}")
    by_gender: dict[str, set[str]] = defaultdict(set)
    gender_of_speaker: dict[str, str] = {}
    for c in clips:
        g = gender_of_speaker.setdefault(c.speaker, c.gender)
        if g != c.gender:
            raise ValueError(f"speaker {c.speaker} has clips with two genders ({g}, {c.gender})")
        by_gender[c.gender].add(c.speaker)
    n_speakers = len(gender_of_speaker)
    if n_speakers < n_folds:
        raise ValueError(f"{n_speakers} speakers cannot fill {n_folds} folds")
    rnd = random.Random(seed)
    folds: list[list[str]] = [[] for _ in range(n_folds)]
    k = 0
    for g in sorted(by_gender):
        spk = sorted(by_gender[g])
        rnd.shuffle(spk)
        for s in spk:
            folds[k % n_folds].append(s)
            k += 1
    return [sorted(f) for f in folds]


def split(clips: Sequence[Clip], folds: Sequence[Sequence[str]], test_fold: int) -> tuple[list[Clip], list[Clip]]:
    """``(train, test)``: test = clips of the speakers in ``folds[test_fold]``, train = all other clips."""
    if isinstance(test_fold, bool) or not isinstance(test_fold, int) or not 0 <= test_fold < len(folds):
        raise ValueError(f"test_fold must be in [0, {len(folds)}), got {test_fold!r}")
    test_speakers = set(folds[test_fold])
    train = [c for c in clips if c.speaker not in test_speakers]
    test = [c for c in clips if c.speaker in test_speakers]
    return train, test
