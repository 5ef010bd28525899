"""IEMOCAP (USC SAIL, licence-gated) as a list of :class:`Clip`, and its evaluation protocols.

Expected layout -- the official ``IEMOCAP_full_release`` folder (``root`` may also be its parent)::

    Session1/dialog/EmoEvaluation/Ses01F_impro01.txt      one file per dialog (sub-folders ignored)
    Session1/dialog/transcriptions/Ses01F_impro01.txt
    Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav
    ...
    Session5/...

An ``EmoEvaluation`` utterance line reads ``[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000,
2.5000]`` (start, end, utterance id, consensus category, valence/activation/dominance). The 4-class task uses the
common mapping neu -> neutral, hap + exc -> happy (excited merged into happy), ang -> angry, sad -> sad; the other
categories can be requested by name (``frustrated``, ``surprised``, ``fearful``, ``disgust``, ``other``) and
``xxx`` (no majority) is always dropped.

Speakers: the dialog prefix names the session and who wore the markers (``Ses01F``), but the *utterance's* speaker
is the letter of its last field: ``Ses01F_impro01_M012`` is spoken by the male actor of session 1, speaker id
``Ses01M``. So there are 10 speakers, one male and one female per session.

The corpus is read from ``root``, else ``$EDGESER_IEMOCAP``, else ``../shared/data/iemocap`` relative to the
repository root. Licence: IEMOCAP is released by USC SAIL under a licence agreement for research use
(https://sail.usc.edu/iemocap/); a model trained on it inherits those terms.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from .protocols import leave_one_speaker_out
from .protocols import session_folds as _session_folds
from .ravdess import LABELS4, REPO_ROOT, Clip

ENV_VAR = "EDGESER_IEMOCAP"
DEFAULT_ROOT = REPO_ROOT / ".." / "shared" / "data" / "iemocap"
RELEASE_DIR = "IEMOCAP_full_release"
N_SESSIONS = 5

#: IEMOCAP category code -> label name; ``None`` = always dropped.
CODE_TO_LABEL: dict[str, str | None] = {
    "neu": "neutral",
    "hap": "happy",
    "exc": "happy",
    "ang": "angry",
    "sad": "sad",
    "fru": "frustrated",
    "sur": "surprised",
    "fea": "fearful",
    "dis": "disgust",
    "oth": "other",
    "xxx": None,
}
KNOWN_LABELS: tuple[str, ...] = tuple(dict.fromkeys(v for v in CODE_TO_LABEL.values() if v is not None))

_EVAL_LINE = re.compile(
    r"^\[\s*(?P<start>[\d.]+)\s*-\s*(?P<end>[\d.]+)\s*\]\s+(?P<utt>\S+)\s+(?P<code>\S+)\s+\[(?P<vad>[^\]]*)\]"
)
_UTT_ID = re.compile(r"^Ses(?P<session>\d{2})[FM]_(?P<rest>.+)_(?P<gender>[FM])(?P<num>[0-9A-Za-z]+)$")
_TRANSCRIPT_LINE = re.compile(r"^(?P<utt>\S+)\s+\[[^\]]*\]:\s?(?P<text>.*)$")


def iemocap_root(root: str | os.PathLike | None = None) -> Path:
    """Resolve the corpus folder: ``root``, else ``$EDGESER_IEMOCAP``, else ``../shared/data/iemocap``.

    If the folder holds ``IEMOCAP_full_release/`` rather than ``Session1..5/``, that sub-folder is used.
    """
    if root is None:
        root = os.environ.get(ENV_VAR) or DEFAULT_ROOT
    base = Path(os.fspath(root)).expanduser().resolve()
    if not (base / "Session1").is_dir() and (base / RELEASE_DIR).is_dir():
        base = base / RELEASE_DIR
    return base


def _sessions(base: Path) -> list[tuple[int, Path]]:
    if not base.is_dir():
        raise FileNotFoundError(
            f"IEMOCAP not found at {base}. IEMOCAP is licence-gated: request it from USC SAIL "
            f"(https://sail.usc.edu/iemocap/), then pass root=/path/to/{RELEASE_DIR} or set {ENV_VAR}."
        )
    found = []
    for p in base.iterdir():
        m = re.fullmatch(r"Session(\d+)", p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), p))
    if not found:
        raise FileNotFoundError(
            f"no Session1..Session{N_SESSIONS} folders in {base}; expected the {RELEASE_DIR} layout "
            "(SessionN/dialog/EmoEvaluation, SessionN/sentences/wav)"
        )
    return sorted(found)


def _check_labels(labels: Sequence[str]) -> tuple[str, ...]:
    labels = tuple(labels)
    unknown = [lab for lab in labels if lab not in KNOWN_LABELS]
    if unknown:
        raise ValueError(f"unknown IEMOCAP label(s) {unknown}; known: {KNOWN_LABELS}")
    if len(set(labels)) != len(labels):
        raise ValueError(f"duplicate labels in {labels}")
    return labels


def read_transcripts(path: str | os.PathLike) -> dict[str, str]:
    """``{utterance id: text}`` from one ``dialog/transcriptions/<dialog>.txt`` file (missing file -> ``{}``)."""
    out: dict[str, str] = {}
    p = Path(path)
    if not p.is_file():
        return out
    for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
        m = _TRANSCRIPT_LINE.match(line.strip())
        if m:
            out[m.group("utt")] = m.group("text").strip()
    return out


def parse_utterance_id(utt: str) -> tuple[int, str, str, str]:
    """``"Ses01F_impro01_M012"`` -> ``(1, "Ses01M", "male", "Ses01F_impro01")``: session, speaker, gender, dialog."""
    m = _UTT_ID.match(utt)
    if m is None:
        raise ValueError(f"not an IEMOCAP utterance id: {utt!r} (expected e.g. Ses01F_impro01_F000)")
    session = int(m.group("session"))
    letter = m.group("gender")
    dialog = utt.rsplit("_", 1)[0]
    return session, f"Ses{session:02d}{letter}", "male" if letter == "M" else "female", dialog


def load_iemocap(
    root: str | os.PathLike | None = None,
    labels: Sequence[str] = LABELS4,
    allow_missing: bool = False,
) -> list[Clip]:
    """Read every session's ``EmoEvaluation`` files and return the clips whose mapped label is in ``labels``.

    Clips come sorted by (session, dialog file, line order). ``meta`` holds ``session`` (int), ``dialog``,
    ``utterance``, ``transcript`` (``""`` if absent), ``emotion`` (the raw code, e.g. ``"exc"``), ``start_s``,
    ``end_s`` and ``vad`` (valence, activation, dominance floats).

    Raises FileNotFoundError when the corpus or a labelled utterance's wav is missing (``allow_missing=True``
    skips such utterances instead), ValueError for unknown labels or a malformed utterance id.
    """
    wanted = set(_check_labels(labels))
    base = iemocap_root(root)
    clips: list[Clip] = []
    missing: list[str] = []
    for session_no, session_dir in _sessions(base):
        eval_dir = session_dir / "dialog" / "EmoEvaluation"
        if not eval_dir.is_dir():
            raise FileNotFoundError(f"{eval_dir} is missing; is {base} an unpacked {RELEASE_DIR}?")
        for eval_file in sorted(eval_dir.glob("*.txt")):
            if eval_file.name.startswith("."):  # macOS resource forks (._Ses01F_impro01.txt) ship in some copies
                continue
            transcripts = read_transcripts(session_dir / "dialog" / "transcriptions" / eval_file.name)
            for line in eval_file.read_text(encoding="utf-8", errors="replace").splitlines():
                m = _EVAL_LINE.match(line.strip())
                if m is None:
                    continue
                code = m.group("code").lower()
                if code not in CODE_TO_LABEL:
                    raise ValueError(f"{eval_file}: unknown emotion code {code!r} in line {line.strip()!r}")
                label = CODE_TO_LABEL[code]
                if label is None or label not in wanted:
                    continue
                utt = m.group("utt")
                session, speaker, gender, dialog = parse_utterance_id(utt)
                if session != session_no:
                    raise ValueError(f"{eval_file}: utterance {utt} does not belong to Session{session_no}")
                wav = session_dir / "sentences" / "wav" / dialog / f"{utt}.wav"
                if not wav.is_file():
                    missing.append(str(wav))
                    continue
                try:
                    vad = tuple(float(v) for v in m.group("vad").split(","))
                except ValueError:
                    vad = ()
                meta = {
                    "session": session,
                    "dialog": dialog,
                    "utterance": utt,
                    "transcript": transcripts.get(utt, ""),
                    "emotion": code,
                    "start_s": float(m.group("start")),
                    "end_s": float(m.group("end")),
                    "vad": vad,
                }
                clips.append(Clip(path=str(wav), speaker=speaker, label=label, gender=gender, meta=meta))
    if missing and not allow_missing:
        raise FileNotFoundError(
            f"{len(missing)} labelled IEMOCAP utterance(s) have no wav, e.g. {missing[:3]}; "
            "check the unpacked corpus or pass allow_missing=True to skip them"
        )
    return clips


def session_folds(clips: Iterable[Clip]) -> list[list[str]]:
    """Leave-one-session-out: on the full corpus 5 folds, fold k = ``["Ses0{k+1}F", "Ses0{k+1}M"]``.

    With clips from fewer sessions there is one fold per session present, in session order.
    """
    return _session_folds(clips)


def speaker_folds_10(clips: Iterable[Clip]) -> list[list[str]]:
    """Leave-one-speaker-out: one fold per speaker (10 on the full corpus), sorted ``Ses01F, Ses01M, ...``."""
    return leave_one_speaker_out(clips)
