"""Command line of the batch annotator (see ``python -m apps.annotate --help``)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ..common import one_line

EXIT_OK = 0
EXIT_FAILED_FILES = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m apps.annotate",
        description="Annotate a folder of recordings with speech emotion timelines.",
        epilog="Exit code: 0 all files annotated (or already up to date), 1 some files failed (see summary.csv), "
               "2 usage or model error, 130 interrupted (run again to resume).")
    p.add_argument("in_dir", metavar="IN_DIR", type=Path, help="folder of recordings (searched recursively)")
    p.add_argument("--out", metavar="OUT_DIR", type=Path, required=True, help="folder for the results")
    p.add_argument("--jobs", "-j", metavar="N", type=int, default=min(4, os.cpu_count() or 1),
                   help="worker processes (default: min(4, CPUs); each loads the model once)")
    p.add_argument("--format", metavar="FMT", nargs="+", choices=("csv", "json"), default=["csv", "json"],
                   help="per-file timeline formats: csv and/or json (default: both)")
    p.add_argument("--plot", action="store_true", help="also draw a PNG timeline per file (needs matplotlib)")
    p.add_argument("--force", action="store_true", help="annotate every file again, even if up to date")
    p.add_argument("--model", metavar="PATH", help="model file (.onnx / .pte; default: the bundled model)")
    p.add_argument("--backend", choices=("auto", "onnx", "executorch"), default="auto", help="inference backend")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar, only errors")
    return p


def _progress(quiet: bool):
    if quiet:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is optional: a plain counter instead
        return _PlainProgress

    return lambda total: tqdm(total=total, unit="file", desc="annotating", file=sys.stderr, dynamic_ncols=True)


class _PlainProgress:
    def __init__(self, total):
        self.total, self.n = total, 0

    def update(self, k=1):
        self.n += k
        print(f"annotating: {self.n}/{self.total}", file=sys.stderr, flush=True)

    def close(self):
        pass


def _write(msg: str) -> None:
    try:
        from tqdm import tqdm

        tqdm.write(msg, file=sys.stderr)
    except ImportError:
        print(msg, file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    prog = "apps.annotate"
    if not args.in_dir.is_dir():
        print(f"{prog}: error: {args.in_dir} is not a folder", file=sys.stderr)
        return EXIT_ERROR
    if args.jobs < 1:
        print(f"{prog}: error: --jobs must be at least 1", file=sys.stderr)
        return EXIT_ERROR
    if args.plot:
        from .plot import MATPLOTLIB_MISSING, have_matplotlib

        if not have_matplotlib():
            print(f"{prog}: error: {MATPLOTLIB_MISSING}", file=sys.stderr)
            return EXIT_ERROR
    from edgeser.errors import EdgeserError

    from .core import run

    def on_result(res):
        if res["status"] == "error":
            _write(f"{prog}: failed: {res['error']}")

    t0 = time.monotonic()
    try:
        report = run(args.in_dir, args.out, formats=args.format, plot=args.plot, jobs=args.jobs, force=args.force,
                     model_path=args.model, backend=args.backend, progress=_progress(args.quiet),
                     on_result=on_result)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except EdgeserError as exc:
        print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    if report.aborted:
        print(f"{prog}: error: {report.aborted}", file=sys.stderr)
        return EXIT_ERROR
    n_ok, n_skip, n_bad = report.count("ok"), report.count("skipped"), report.count("error")
    others = report.non_audio
    skipped = ""
    if others:  # named, so that unsupported recordings are not ignored silently
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        skipped = f", {len(others)} non-audio file{'s' if len(others) != 1 else ''} skipped ({shown})"
    if not report.results:
        print(f"{prog}: no audio files found below {args.in_dir}{skipped}", file=sys.stderr)
    elif not args.quiet or n_bad or others:
        print(f"{prog}: {n_ok} annotated, {n_skip} up to date, {n_bad} failed{skipped} in "
              f"{time.monotonic() - t0:.1f} s -> {args.out / 'summary.csv'}", file=sys.stderr)
    return EXIT_FAILED_FILES if n_bad else EXIT_OK
