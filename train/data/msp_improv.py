"""MSP-IMPROV (UT Dallas MSP lab, licence-gated) as a list of :class:`Clip`, and its evaluation protocols.

Expected layout (as published)::

    Evalution.txt                                    sic: the official spelling; "Evaluation.txt" is accepted too
    Audio/session1/S01A/P/MSP-IMPROV-S01A-F01-P-FM01.wav
    Audio/session<N>/<scenario>/<type>/MSP-IMPROV-<sentence>-<speaker>-<type>-<dyad><index>.wav

File names: ``<sentence>`` is the target sentence and its scenario's intended emotion (``S01A``), ``<speaker>`` the
actor (``F01`` .. ``F06``, ``M01`` .. ``M06``: gender letter + number), ``<type>`` the recording condition
(R, S, P or T), the last field the dyad (``FM``/``MF``: who leads) and a running index.

Labels: ``Evalution.txt`` holds one header line per rated utterance,
``UTD-IMPROV-S01A-F01-S-FM01.avi; N; A:2.6; V:3.0; D:3.0; N:0.0``, followed by per-rater lines (ignored). The
second field is the consensus category: A angry, H happy, S sad, N neutral; O (other) and X (no agreement) are
dropped. The label file names the *video* (``UTD-IMPROV-...avi``); the matching audio is
``MSP-IMPROV-...wav`` with the same middle part. The numeric fields are kept in ``meta`` (``arousal``,
``valence``, ``dominance``, ``naturalness``).

Sessions: 6 sessions of one male + one female actor (12 speakers); leave-one-session-out is the usual protocol.

Uncertainties (no copy of the corpus was at hand when writing this reader; layouts differ between releases):

* ``Evalution.txt`` is looked for at the root, then in ``Labels/``, then anywhere below the root.
* Audio is indexed by file name from every ``*.wav`` below ``Audio/`` (or the root), so the exact depth of the
  scenario/type folders does not matter.
* The session is read from a ``session<N>`` folder in the audio path; if there is none it is taken from the
  speaker number (``F03`` -> session 3), which assumes actors are numbered by session.
* The corpus has four recording conditions (target sentence read, target sentence inside an improvisation,
  other improvised turns, natural interaction between scenes); which letter is which is not asserted here, so
  ``meta["type"]`` keeps the raw letter (R, S, P or T).
* Rated utterances without audio raise (``allow_missing=True`` skips them), since it is unknown whether every
  release ships audio for every rated video.

The corpus is read from ``root``, else ``$EDGESER_MSP_IMPROV``, else ``../shared/data/msp_improv``. Licence: academic
licence agreement with the MSP lab of UT Dallas; a model trained on it inherits those terms.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from .protocols import leave_one_speaker_out
from .protocols import session_folds as _session_folds
from .ravdess import LABELS4, REPO_ROOT, Clip

ENV_VAR = "EDGESER_MSP_IMPROV"
DEFAULT_ROOT = REPO_ROOT / ".." / "shared" / "data" / "msp_improv"
LABEL_FILES: tuple[str, ...] = ("Evalution.txt", "Evaluation.txt")
N_SESSIONS = 6

#: Consensus category letter -> label name; ``None`` = always dropped.
CODE_TO_LABEL: dict[str, str | None] = {"A": "angry", "H": "happy", "S": "sad", "N": "neutral", "O": None, "X": None}
KNOWN_LABELS: tuple[str, ...] = ("neutral", "happy", "angry", "sad")

_NAME = re.compile(
    r"^(?:MSP|UTD)-IMPROV-(?P<sentence>[^-]+)-(?P<speaker>(?P<gender>[FM])(?P<num>\d+))-(?P<type>[A-Z])-(?P<rest>.+)$"
)
_SESSION_DIR = re.compile(r"session\s*0*(\d+)", re.IGNORECASE)


def msp_improv_root(root: str | os.PathLike | None = None) -> Path:
    """Resolve the corpus folder: ``root``, else ``$EDGESER_MSP_IMPROV``, else ``../shared/data/msp_improv``."""
    if root is None:
        root = os.environ.get(ENV_VAR) or DEFAULT_ROOT
    return Path(os.fspath(root)).expanduser().resolve()


def parse_name(name: str) -> dict[str, str]:
    """Fields of an MSP-IMPROV audio or video name (``MSP-IMPROV-S01A-F01-P-FM01.wav`` or ``UTD-IMPROV-...avi``).

    Returns ``stem`` (the ``MSP-IMPROV-...`` audio stem), ``sentence``, ``speaker``, ``gender``, ``type``, ``dyad``.
    """
    stem = Path(name.strip()).stem
    m = _NAME.match(stem)
    if m is None:
        raise ValueError(f"not an MSP-IMPROV utterance name: {name!r} (expected e.g. MSP-IMPROV-S01A-F01-P-FM01.wav)")
    return {
        "stem": "MSP-IMPROV-" + stem.split("-", 2)[2],
        "sentence": m.group("sentence"),
        "speaker": m.group("speaker"),
        "gender": "male" if m.group("gender") == "M" else "female",
        "type": m.group("type"),
        "dyad": m.group("rest"),
    }


def _label_file(base: Path) -> Path:
    for sub in ("", "Labels"):
        for name in LABEL_FILES:
            p = base / sub / name
            if p.is_file():
                return p
    for name in LABEL_FILES:
        hits = sorted(base.rglob(name))
        if hits:
            return hits[0]
    raise FileNotFoundError(f"no {' or '.join(LABEL_FILES)} under {base}; it holds the consensus labels of MSP-IMPROV")


def read_evaluation(path: str | os.PathLike) -> list[dict]:
    """Parse the header lines of ``Evalution.txt``: a list of ``{"name", "code", "A", "V", "D", "N"}`` dicts.

    Per-rater lines and blank lines are skipped. The numeric fields become floats (missing ones are absent).
    """
    out: list[dict] = []
    p = Path(path)
    for lineno, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        line = line.strip()
        if not line.startswith(("UTD-IMPROV", "MSP-IMPROV")):
            continue
        parts = [x.strip() for x in line.split(";")]
        if len(parts) < 2 or not parts[1]:
            raise ValueError(f"{p}:{lineno}: expected 'NAME; CATEGORY; A:..; V:..; D:..; N:..', got {line!r}")
        row: dict = {"name": parts[0], "code": parts[1].upper()}
        for field in parts[2:]:
            key, sep, value = field.partition(":")
            if sep and key.strip() in ("A", "V", "D", "N"):
                try:
                    row[key.strip()] = float(value)
                except ValueError:
                    pass
        out.append(row)
    return out


def _check_labels(labels: Sequence[str]) -> tuple[str, ...]:
    labels = tuple(labels)
    unknown = [lab for lab in labels if lab not in KNOWN_LABELS]
    if unknown:
        raise ValueError(f"unknown MSP-IMPROV label(s) {unknown}; known: {KNOWN_LABELS}")
    if len(set(labels)) != len(labels):
        raise ValueError(f"duplicate labels in {labels}")
    return labels


def _session_of(path: Path, base: Path, speaker_num: str) -> int:
    for part in path.relative_to(base).parts[:-1]:
        m = _SESSION_DIR.fullmatch(part)
        if m:
            return int(m.group(1))
    return int(speaker_num)


def load_msp_improv(
    root: str | os.PathLike | None = None,
    labels: Sequence[str] = LABELS4,
    allow_missing: bool = False,
) -> list[Clip]:
    """Return the clips of ``Evalution.txt`` whose consensus label is in ``labels``, in label-file order.

    ``meta`` holds ``session`` (int), ``utterance`` (the audio stem), ``sentence``, ``type``, ``dyad``,
    ``emotion`` (the raw letter) and ``arousal``/``valence``/``dominance``/``naturalness`` when present.
    Raises FileNotFoundError for a missing corpus, label file or audio (see ``allow_missing``), ValueError for
    unknown labels or malformed names.
    """
    wanted = set(_check_labels(labels))
    base = msp_improv_root(root)
    if not base.is_dir():
        raise FileNotFoundError(
            f"MSP-IMPROV not found at {base}. MSP-IMPROV is licence-gated: request it from the UT Dallas MSP lab, "
            f"then pass root=/path/to/MSP-IMPROV (the folder holding Evalution.txt and Audio/) or set {ENV_VAR}."
        )
    rows = read_evaluation(_label_file(base))
    audio_dir = base / "Audio" if (base / "Audio").is_dir() else base
    audio: dict[str, Path] = {}
    for wav in audio_dir.rglob("*.wav"):
        if not wav.name.startswith("."):
            audio.setdefault(wav.stem, wav)
    clips: list[Clip] = []
    missing: list[str] = []
    for row in rows:
        code = row["code"]
        if code not in CODE_TO_LABEL:
            raise ValueError(f"unknown MSP-IMPROV category {code!r} for {row['name']}; known: {sorted(CODE_TO_LABEL)}")
        label = CODE_TO_LABEL[code]
        if label is None or label not in wanted:
            continue
        f = parse_name(row["name"])
        wav = audio.get(f["stem"])
        if wav is None:
            missing.append(f["stem"] + ".wav")
            continue
        meta: dict = {
            "session": _session_of(wav, base, f["speaker"][1:]),
            "utterance": f["stem"],
            "sentence": f["sentence"],
            "type": f["type"],
            "dyad": f["dyad"],
            "emotion": code,
        }
        for key, name in (("A", "arousal"), ("V", "valence"), ("D", "dominance"), ("N", "naturalness")):
            if key in row:
                meta[name] = row[key]
        clips.append(Clip(path=str(wav), speaker=f["speaker"], label=label, gender=f["gender"], meta=meta))
    if missing and not allow_missing:
        raise FileNotFoundError(
            f"{len(missing)} rated MSP-IMPROV utterance(s) have no audio under {audio_dir}, e.g. {missing[:3]}; "
            "check the unpacked corpus or pass allow_missing=True to skip them"
        )
    return clips


def session_folds(clips: Iterable[Clip]) -> list[list[str]]:
    """Leave-one-session-out: on the full corpus 6 folds, fold k = the two actors of session k+1."""
    return _session_folds(clips)


def speaker_folds_12(clips: Iterable[Clip]) -> list[list[str]]:
    """Leave-one-speaker-out: one fold per actor (12 on the full corpus), sorted ``F01, F02, ..., M06``."""
    return leave_one_speaker_out(clips)
