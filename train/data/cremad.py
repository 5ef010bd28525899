"""CREMA-D (91 actors, 12 sentences, 6 emotions) as a list of :class:`Clip`.

Expected layout (as published in the CheyneyComputerScience/CREMA-D repository)::

    AudioWAV/1001_DFA_ANG_XX.wav      <actor 1001-1091>_<sentence code>_<emotion>_<level>.wav
    VideoDemographics.csv             ActorID,Age,Sex,Race,Ethnicity

Emotions: ANG angry, DIS disgust, FEA fearful, HAP happy, NEU neutral, SAD sad (the 4-class task keeps NEU, HAP,
ANG, SAD). Levels: LO, MD, HI, XX (unspecified). The transcript comes from the sentence code
(:data:`SENTENCES`); gender from ``Sex`` in ``VideoDemographics.csv``.

Protocol: speaker-independent folds balanced by gender (:func:`train.data.ravdess.speaker_folds`, 5 by default).

The corpus is read from ``root``, else ``$EDGESER_CREMAD``, else ``../shared/data/cremad``. Licence: Open Database
License (ODbL) for the database, Database Contents License for its contents; a model trained on it inherits those
terms.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Sequence
from pathlib import Path

from .ravdess import LABELS4, REPO_ROOT, Clip

ENV_VAR = "EDGESER_CREMAD"
DEFAULT_ROOT = REPO_ROOT / ".." / "shared" / "data" / "cremad"
AUDIO_DIR = "AudioWAV"
DEMOGRAPHICS = "VideoDemographics.csv"

#: Sentence code -> what is said.
SENTENCES: dict[str, str] = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}
#: Emotion code -> label name.
CODE_TO_LABEL: dict[str, str] = {
    "ANG": "angry",
    "DIS": "disgust",
    "FEA": "fearful",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
KNOWN_LABELS: tuple[str, ...] = tuple(CODE_TO_LABEL.values())
LEVELS: tuple[str, ...] = ("LO", "MD", "HI", "XX")

_NAME = re.compile(r"^(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_(?P<emotion>[A-Z]{3})_(?P<level>[A-Z]{2})$")


def cremad_root(root: str | os.PathLike | None = None) -> Path:
    """Resolve the corpus folder: ``root``, else ``$EDGESER_CREMAD``, else ``../shared/data/cremad``."""
    if root is None:
        root = os.environ.get(ENV_VAR) or DEFAULT_ROOT
    return Path(os.fspath(root)).expanduser().resolve()


def read_demographics(path: str | os.PathLike) -> dict[str, dict[str, str]]:
    """``{actor id: {"age", "sex", "race", "ethnicity"}}`` from ``VideoDemographics.csv``."""
    p = Path(path)
    with open(p, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        fields = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in ("ActorID", "Sex") if c not in fields]
        if missing:
            raise ValueError(f"{p} lacks column(s) {missing}; has {fields}")
        out: dict[str, dict[str, str]] = {}
        for row in reader:
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            out[row["ActorID"]] = {
                "age": row.get("Age", ""),
                "sex": row["Sex"],
                "race": row.get("Race", ""),
                "ethnicity": row.get("Ethnicity", ""),
            }
    return out


def _gender(sex: str, actor: str) -> str:
    s = sex.strip().lower()
    if s in ("male", "m"):
        return "male"
    if s in ("female", "f"):
        return "female"
    raise ValueError(f"actor {actor}: cannot read a gender from Sex={sex!r} in {DEMOGRAPHICS}")


def load_cremad(root: str | os.PathLike | None = None, labels: Sequence[str] = LABELS4) -> list[Clip]:
    """Return the clips of ``AudioWAV/`` whose emotion is in ``labels``, sorted by file name.

    ``meta`` holds ``sentence`` (code), ``transcript``, ``emotion`` (raw code), ``level``, ``age`` (int when
    numeric), ``race``, ``ethnicity``. Raises FileNotFoundError for a missing corpus folder, ``AudioWAV/`` or
    demographics file, ValueError for unknown labels, malformed file names or actors without demographics.
    """
    labels = tuple(labels)
    unknown = [lab for lab in labels if lab not in KNOWN_LABELS]
    if unknown:
        raise ValueError(f"unknown CREMA-D label(s) {unknown}; known: {KNOWN_LABELS}")
    wanted = set(labels)
    base = cremad_root(root)
    if not base.is_dir():
        raise FileNotFoundError(
            f"CREMA-D not found at {base}. Get it from https://github.com/CheyneyComputerScience/CREMA-D "
            f"(git-lfs), then pass root=/path/to/CREMA-D (the folder holding {AUDIO_DIR}/ and {DEMOGRAPHICS}) "
            f"or set {ENV_VAR}."
        )
    audio_dir = base / AUDIO_DIR
    if not audio_dir.is_dir():
        raise FileNotFoundError(f"{audio_dir} is missing; expected the CREMA-D layout {AUDIO_DIR}/1001_DFA_ANG_XX.wav")
    demo_path = base / DEMOGRAPHICS
    if not demo_path.is_file():
        raise FileNotFoundError(f"{demo_path} is missing; it gives each actor's sex (needed for gender)")
    demo = read_demographics(demo_path)
    clips: list[Clip] = []
    for wav in sorted(audio_dir.glob("*.wav")):
        if wav.name.startswith("."):
            continue
        m = _NAME.match(wav.stem)
        if m is None:
            raise ValueError(f"unexpected CREMA-D file name {wav.name}; expected e.g. 1001_DFA_ANG_XX.wav")
        code = m.group("emotion")
        if code not in CODE_TO_LABEL:
            raise ValueError(f"{wav.name}: unknown emotion code {code!r}; known: {sorted(CODE_TO_LABEL)}")
        label = CODE_TO_LABEL[code]
        if label not in wanted:
            continue
        actor, sentence = m.group("actor"), m.group("sentence")
        if sentence not in SENTENCES:
            raise ValueError(f"{wav.name}: unknown sentence code {sentence!r}; known: {sorted(SENTENCES)}")
        if actor not in demo:
            raise ValueError(f"actor {actor} ({wav.name}) has no row in {demo_path}")
        info = demo[actor]
        age: int | str = int(info["age"]) if info["age"].isdigit() else info["age"]
        meta = {
            "sentence": sentence,
            "transcript": SENTENCES[sentence],
            "emotion": code,
            "level": m.group("level"),
            "age": age,
            "race": info["race"],
            "ethnicity": info["ethnicity"],
        }
        clips.append(Clip(path=str(wav), speaker=actor, label=label, gender=_gender(info["sex"], actor), meta=meta))
    return clips
