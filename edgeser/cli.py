"""The ``edgeser`` command line.

    edgeser classify FILE... [--json] [--model PATH] [--backend auto|onnx|executorch]
    edgeser analyze FILE...  [--json] [--partial] [--model PATH] [--backend ...]
    edgeser devices [--json]
    edgeser --version

Errors edgeser raises on purpose (bad file, bad model, no device) print one line on stderr and exit with code 2;
with several files, every file is tried and the exit code is 2 if any failed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from typing import Sequence

from .errors import EdgeserError, ModelError
from .types import NO_SPEECH

EXIT_OK = 0
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
BACKENDS = ("auto", "onnx", "executorch")


def _threshold(text: str):
    if text == "auto":
        return text
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1) or 'auto', got {text!r}") from None
    if not 0.0 <= v < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1) or 'auto', got {text!r}")
    return v


def _stream_options(args) -> dict:
    """--adapt / --abstain-below, only those given (a model's defaults otherwise)."""
    return {k: v for k, v in (("adapt", args.adapt), ("abstain_below", args.abstain_below)) if v is not None}


def version() -> str:
    """The installed package's version (its metadata), or the source tree's ``edgeser.__version__`` when edgeser runs
    from a folder that was not installed."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("edgeser")
    except PackageNotFoundError:
        from . import __version__

        return __version__


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgeser", description="On-device speech emotion recognition.")
    p.add_argument("--version", action="version", version=f"edgeser {version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def model_args(sp):
        sp.add_argument("files", nargs="+", metavar="FILE", help="audio files (wav, flac, ogg, mp3, ...)")
        sp.add_argument("--json", action="store_true", help="print JSON instead of text")
        sp.add_argument("--model", metavar="PATH", default=None, help="model file or directory (default: bundled)")
        sp.add_argument("--backend", choices=BACKENDS, default="auto", help="inference backend (default: auto)")
        sp.add_argument("--adapt", choices=("running", "off"), default=None,
                        help="test-time adaptation of models that have it (default: the model's)")
        sp.add_argument("--abstain-below", type=_threshold, default=None, metavar="P",
                        help='label results under confidence P "uncertain" ("auto": the model\'s recommended '
                             'threshold; default: never)')

    c = sub.add_parser("classify", help="one emotion per file", description="Classify the emotion of whole files.")
    model_args(c)
    a = sub.add_parser("analyze", help="emotion timeline per file",
                       description="Emotion of each speech segment of the files (final events).")
    model_args(a)
    a.add_argument("--partial", action="store_true", help="also print partial events")
    d = sub.add_parser("devices", help="list audio input devices", description="List audio input devices.")
    d.add_argument("--json", action="store_true", help="print JSON instead of text")
    return p


def _err(msg: str) -> None:
    print(f"edgeser: error: {msg}", file=sys.stderr)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _file_error(path: str, exc: BaseException) -> str:
    msg = _one_line(exc)
    return msg if str(path) in msg else f"{path}: {msg}"


class _LazyModel:
    """Loads the model on first use, so that a bad file is reported before (and without) loading a model."""

    def __init__(self, args, model):
        self._args, self._model = args, model

    def __call__(self):
        if self._model is None:
            from .model import load

            self._model = load(model=self._args.model, backend=self._args.backend)
        return self._model


def _fmt_scores(scores: dict) -> str:
    top = sorted(scores.items(), key=lambda kv: -kv[1])[:3]
    return " ".join(f"{k}={v:.2f}" for k, v in top)


def _per_file(args, model, out, run, show) -> int:
    """Run ``run(get_model, path)`` for every file: a bad file is reported (one line) and the others go on; a bad
    model stops everything. ``show(path, result)`` prints a result, or returns a JSON record with --json."""
    get_model = _LazyModel(args, model)
    failed = False
    records = []
    for path in args.files:
        try:
            result = run(get_model, path)
        except ModelError:
            raise  # the model is unusable: no point trying the other files
        except EdgeserError as exc:
            failed = True
            _err(_file_error(path, exc))
            if args.json:
                records.append({"file": path, "error": _file_error(path, exc)})
            continue
        if args.json:
            records.append({"file": path, **show(path, result)})
        else:
            show(path, result)
    if args.json:
        print(json.dumps(records, indent=2), file=out)
    return EXIT_ERROR if failed else EXIT_OK


def _classify(args, model, out) -> int:
    from .audio import file_info

    def run(get_model, path):
        file_info(path)  # a missing or unreadable file fails here, before the model is loaded
        return get_model().classify(path, **_stream_options(args))  # streamed from disk: bounded memory however long the file

    def show(path, r):
        if args.json:
            return r.to_dict()
        if r.label == NO_SPEECH:
            print(f"{path}: no speech", file=out)
            return
        extra = f"  ({_fmt_scores(r.scores)})" if r.scores else ""
        print(f"{path}: {r.label} {r.confidence:.2f}{extra}", file=out)

    return _per_file(args, model, out, run, show)


def _analyze_file(get_model, path, partial: bool, adapt=None, abstain_below=None) -> list:
    """Stream the file through the model block by block (bounded memory), keeping final events (and partial ones)."""
    from .audio import iter_file

    blocks = iter_file(path)
    first = next(blocks)  # a missing or unreadable file fails here, before the model is loaded
    s = get_model().stream(**{k: v for k, v in (("adapt", adapt), ("abstain_below", abstain_below)) if v is not None})
    events = []
    for block, rate in itertools.chain([first], blocks):
        events.extend(s.accept(block, rate))
    events.extend(s.flush())
    return [e for e in events if partial or e.final]


def _analyze(args, model, out) -> int:
    def show(path, events):
        if args.json:
            return {"events": [e.to_dict() for e in events]}
        print(f"{path}:", file=out)
        if not events:
            print("  (no speech found)", file=out)
        for e in events:
            tag = "" if e.final else "  (partial)"
            print(f"  {e.start:7.2f} - {e.end:7.2f}  {e.label:<10} {e.confidence:.2f}{tag}", file=out)

    return _per_file(args, model, out, lambda get_model, path: _analyze_file(get_model, path, args.partial, args.adapt,
                                                                            args.abstain_below), show)


def _devices(args, out) -> int:
    from .listen import list_devices

    devices = list_devices()
    if args.json:
        print(json.dumps(devices, indent=2), file=out)
        return EXIT_OK
    if not devices:
        print("no audio input devices found", file=sys.stderr)
        return EXIT_OK
    for d in devices:
        mark = "*" if d.get("default") else " "
        host = f", {d['hostapi']}" if d.get("hostapi") else ""
        print(f"{mark} {d['index']:3d}  {d['name']}  ({d['channels']} ch, {d['default_samplerate']:g} Hz{host})",
              file=out)
    return EXIT_OK


def main(argv: Sequence[str] | None = None, *, model=None, out=None) -> int:
    """Run the command line; returns the exit code. ``model``: an already loaded model to use (tests, embedding);
    ``out``: where results go (default stdout)."""
    args = _parser().parse_args(argv)  # usage errors: argparse prints usage and exits with 2
    out = sys.stdout if out is None else out
    try:
        if args.command == "classify":
            return _classify(args, model, out)
        if args.command == "analyze":
            return _analyze(args, model, out)
        if args.command == "devices":
            return _devices(args, out)
        raise AssertionError(args.command)
    except EdgeserError as exc:
        _err(_one_line(exc))
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `edgeser analyze ... | head`
        try:
            import os

            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # silence the flush at exit
        except Exception:
            pass
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
