"""Classify the real emotional speech shipped in ``samples/`` and print what the model says, as a table.

    python -m apps.samples [--model PATH] [--backend auto|onnx|executorch] [--dir FOLDER]

The folder's ``manifest.csv`` names each clip and the emotion its speaker acted; every clip goes through
``Model.classify`` on its own (a fresh stream: no adaptation carried over from the other clips), exactly what
``edgeser classify FILE`` gives. Predictions and confidences come from the model at run time. Errors (missing
folder, unreadable clip, bad model) print one line on stderr and exit with code 2.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from pathlib import Path

EXIT_OK = 0
EXIT_ERROR = 2
SAMPLES = Path(__file__).resolve().parents[1] / "samples"
COLUMNS = ("file", "speaker", "acted emotion", "predicted label", "confidence")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m apps.samples",
                                description="Classify the shipped sample clips and print a table.")
    p.add_argument("--model", metavar="PATH", help="model file (.onnx / .pte; default: the bundled model)")
    p.add_argument("--backend", choices=("auto", "onnx", "executorch"), default="auto", help="inference backend")
    p.add_argument("--dir", metavar="FOLDER", type=Path, default=SAMPLES,
                   help="folder with the clips and their manifest.csv (default: the repository's samples/)")
    return p


def read_manifest(folder: Path) -> list[dict]:
    """Rows of ``folder/manifest.csv`` (path, speaker, emotion, ...), paths made absolute. Raises AudioError if the
    manifest is missing, empty or lacks the columns."""
    from edgeser.errors import AudioError

    path = folder / "manifest.csv"
    if not path.is_file():
        raise AudioError(f"{path}: no sample manifest (expected manifest.csv with path, speaker, emotion columns)")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"path", "speaker", "emotion"} <= set(rows[0]):
        raise AudioError(f"{path}: needs rows with path, speaker and emotion columns")
    return [{**r, "path": folder / r["path"]} for r in rows]


def classify_samples(model, rows: list[dict]) -> list[tuple[str, str, str, str, str]]:
    """One table row per clip: (file, speaker, acted emotion, predicted label, confidence)."""
    out = []
    for r in rows:
        res = model.classify(r["path"])  # a fresh stream per clip: each one is judged on its own
        label = res.label if res.duration else f"{res.label} (no speech)"
        out.append((r["path"].name, r["speaker"], r["emotion"], label, f"{res.confidence:.2f}"))
    return out


def format_table(rows: Sequence[Sequence[str]], columns: Sequence[str] = COLUMNS) -> str:
    """Left-aligned plain-text table with a header line and a rule under it."""
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(columns), line("-" * w for w in widths), *(line(r) for r in rows)])


def held_out_speakers(model) -> set[str] | None:
    """Speakers the model's metadata declares held out from its training (None when it does not say)."""
    held = (model.info.training or {}).get("validation", {}).get("test_speakers")
    return None if held is None else set(held)


def what_it_shows(speakers: Sequence[str], held_out: set[str] | None, hits: int, n: int) -> str:
    """The one sentence under the table: whose speech it is, judged against the model's own declared held-out set."""
    who = ", ".join(speakers)
    if held_out is None:
        whose = f"speakers {who} (this model's metadata does not say whether it heard them in training)"
    elif set(speakers) <= held_out:
        whose = f"speakers it never heard in training ({who}, held out per its metadata)"
    else:
        seen = ", ".join(sorted(set(speakers) - held_out))
        whose = f"speakers {who}, of whom {seen} may be in its training data (so this is no fair test)"
    return (f"What it shows: the model on {whose}, one clip at a time as `edgeser classify` does; {hits} of {n} "
            f"as acted. {n} clips are a glimpse, not a benchmark (held-out figures: README, \"The bundled model\").")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from edgeser import load
    from edgeser.errors import EdgeserError

    try:
        rows = read_manifest(args.dir)
        model = load(args.model, backend=args.backend)
        table = classify_samples(model, rows)
    except EdgeserError as exc:
        print(f"apps.samples: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_ERROR
    speakers = sorted({r["speaker"] for r in rows})
    hits = sum(t[2] == t[3] for t in table)
    print(f"{len(rows)} clips of acted emotional speech (samples/README.md), classified by {Path(model.path).name} "
          f"({model.backend.name}):")
    print(format_table(table))
    print(what_it_shows(speakers, held_out_speakers(model), hits, len(rows)))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
