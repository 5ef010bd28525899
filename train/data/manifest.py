"""Any corpus described by a CSV manifest, as a list of :class:`Clip`.

Columns (header row required, any order, extra columns are kept in ``meta``):

============  ========  ================================================================================
``path``      required  audio file, relative to the CSV's folder or absolute
``speaker``   required  speaker id (folds are speaker-independent, so this must identify the voice)
``label``     required  emotion name, case-insensitive (``Angry`` -> ``angry``)
``gender``    optional  ``male``/``female`` (also ``m``/``f``); empty or absent -> ``"unknown"``
``transcript`` optional what is said; ``meta["transcript"]`` (``""`` if absent)
``session``   optional  recording session; ``meta["session"]`` (int when numeric)
============  ========  ================================================================================

Protocol: 5 speaker folds balanced by gender (:func:`train.data.ravdess.speaker_folds`).
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from .ravdess import LABELS4, Clip

REQUIRED_COLUMNS: tuple[str, ...] = ("path", "speaker", "label")
OPTIONAL_COLUMNS: tuple[str, ...] = ("gender", "transcript", "session")
_GENDERS = {"male": "male", "m": "male", "female": "female", "f": "female", "": "unknown", "unknown": "unknown"}


def _gender(value: str, where: str) -> str:
    g = _GENDERS.get(value.strip().lower())
    if g is None:
        raise ValueError(f"{where}: gender must be male/female/m/f or empty, got {value!r}")
    return g


def load_manifest(
    csv_path: str | os.PathLike,
    labels: Sequence[str] = LABELS4,
    check_files: bool = True,
    drop_unknown: bool = False,
) -> list[Clip]:
    """Read ``csv_path`` and return its clips in file order (see the module docstring for the columns).

    A row whose label is not in ``labels`` raises ValueError (listing every such label and its count) unless
    ``drop_unknown=True``, which skips those rows. With ``check_files`` every audio file must exist (ValueError
    listing the missing ones). Raises FileNotFoundError when the CSV itself is missing, ValueError for missing
    columns, empty fields, an empty manifest or a speaker given two genders.
    """
    p = Path(os.fspath(csv_path)).expanduser().resolve()
    if not p.is_file():
        raise FileNotFoundError(f"manifest not found: {p}")
    labels = tuple(lab.strip().lower() for lab in labels)
    if len(set(labels)) != len(labels):
        raise ValueError(f"duplicate labels in {labels}")
    wanted = set(labels)
    base = p.parent
    clips: list[Clip] = []
    unknown: Counter[str] = Counter()
    missing: list[str] = []
    gender_of: dict[str, str] = {}
    with open(p, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        fields = [(c or "").strip() for c in (reader.fieldnames or [])]
        absent = [c for c in REQUIRED_COLUMNS if c not in fields]
        if absent:
            raise ValueError(
                f"{p} lacks required column(s) {absent}; has {fields}. "
                f"Required: {list(REQUIRED_COLUMNS)}, optional: {list(OPTIONAL_COLUMNS)}"
            )
        n_rows = 0
        for lineno, raw in enumerate(reader, start=2):
            n_rows += 1
            row = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
            where = f"{p}:{lineno}"
            for c in REQUIRED_COLUMNS:
                if not row.get(c):
                    raise ValueError(f"{where}: empty {c!r}")
            label = row["label"].lower()
            if label not in wanted:
                unknown[label] += 1
                continue
            audio = Path(row["path"]).expanduser()
            audio = (audio if audio.is_absolute() else base / audio).resolve()
            if check_files and not audio.is_file():
                missing.append(f"{audio} (line {lineno})")
                continue
            speaker = row["speaker"]
            gender = _gender(row.get("gender", ""), where)
            prev = gender_of.setdefault(speaker, gender)
            if prev != gender:
                raise ValueError(f"{where}: speaker {speaker!r} is {gender} here but {prev} on an earlier row")
            meta: dict = {k: v for k, v in row.items() if k not in ("path", "speaker", "label", "gender")}
            meta.setdefault("transcript", "")
            if "session" in meta:
                try:
                    meta["session"] = int(meta["session"])
                except ValueError:
                    pass
            clips.append(Clip(path=str(audio), speaker=speaker, label=label, gender=gender, meta=meta))
    if n_rows == 0:
        raise ValueError(f"{p} has a header but no rows")
    if unknown and not drop_unknown:
        raise ValueError(
            f"{p} has label(s) outside {labels}: {dict(sorted(unknown.items()))}; "
            "pass labels=... to include them or drop_unknown=True to skip those rows"
        )
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise ValueError(
            f"{len(missing)} audio file(s) listed in {p} do not exist: {missing[:5]}{more}. "
            "Paths are relative to the manifest's folder unless absolute; check_files=False skips this check"
        )
    return clips


def write_manifest(csv_path: str | os.PathLike, rows: Sequence[dict], extra_columns: Sequence[str] = ()) -> Path:
    """Write ``rows`` (dicts with at least path, speaker, label) as a manifest :func:`load_manifest` reads.

    Columns: the required ones, then the optional ones present in any row, then ``extra_columns``.
    """
    p = Path(os.fspath(csv_path))
    present = {k for r in rows for k in r}
    absent = [c for c in REQUIRED_COLUMNS if c not in present]
    if rows and absent:
        raise ValueError(f"rows lack required field(s) {absent}")
    columns = list(REQUIRED_COLUMNS) + [c for c in OPTIONAL_COLUMNS if c in present] + [
        c for c in extra_columns if c not in REQUIRED_COLUMNS and c not in OPTIONAL_COLUMNS
    ]
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)
    return p
