"""Command line of the dashboard (see ``python -m apps.dashboard --help``)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import webbrowser
from collections.abc import Sequence

from ..common import one_line

EXIT_OK = 0
EXIT_ERROR = 2
DEFAULT_PORT = 8765


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m apps.dashboard",
        description="Live speech emotion dashboard in the browser (served on 127.0.0.1 only).")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--file", metavar="F", help="replay this audio file instead of listening to the microphone")
    src.add_argument("--device", metavar="N", help="input device index or name (see `edgeser devices`)")
    p.add_argument("--port", metavar="P", type=int, default=DEFAULT_PORT,
                   help=f"HTTP port on 127.0.0.1 (default {DEFAULT_PORT}; 0 = any free port)")
    p.add_argument("--speed", metavar="S", type=float, default=1.0,
                   help="with --file: replay S times faster than real time (default 1 = real time)")
    p.add_argument("--model", metavar="PATH", help="model file (.onnx / .pte; default: the bundled model)")
    p.add_argument("--backend", choices=("auto", "onnx", "executorch"), default="auto", help="inference backend")
    p.add_argument("--block-ms", type=float, default=30.0, help="audio block length in ms (default 30)")
    p.add_argument("--open", action="store_true", help="open the page in the default web browser")
    p.add_argument("--verbose", action="store_true", help="log every HTTP request")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="apps.dashboard: %(message)s")
    if not (args.speed > 0):
        print("apps.dashboard: error: --speed must be positive", file=sys.stderr)
        return EXIT_ERROR
    if not (0 <= args.port <= 65535):
        print("apps.dashboard: error: --port must be between 0 and 65535", file=sys.stderr)
        return EXIT_ERROR
    if args.speed != 1.0 and not args.file:
        print("apps.dashboard: error: --speed only applies to --file", file=sys.stderr)
        return EXIT_ERROR

    import edgeser
    from edgeser.errors import EdgeserError
    from edgeser.listen import FileSource, MicrophoneSource

    from .server import Dashboard

    dash = None
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)  # also when started in the background (SIGINT inherited as ignored)
    try:
        if args.file:
            source = FileSource(args.file, realtime=True, block_ms=args.block_ms, speed=args.speed)
            title = f"file {args.file} ({'real time' if args.speed == 1.0 else f'{args.speed:g}x'})"
        else:
            source = MicrophoneSource(args.device, None, args.block_ms)
            title = f"microphone {source.name!r} @ {source.sample_rate} Hz"
        model = edgeser.load(args.model, backend=args.backend)
        try:
            dash = Dashboard(model, source, title=title, port=args.port, block_ms=args.block_ms, speed=args.speed,
                             verbose=args.verbose)
        except OSError as exc:
            print(f"apps.dashboard: error: cannot serve on 127.0.0.1:{args.port} ({exc}); try --port 0",
                  file=sys.stderr)
            return EXIT_ERROR
        dash.start()
        print(f"edgeser dashboard: {dash.url}  ({title}; Ctrl-C to stop)", flush=True)
        if args.open:
            webbrowser.open(dash.url)
        ended_reported = False
        while not stop.wait(0.25):
            if not ended_reported and dash.hub.ended:
                ended_reported = True
                st = dash.hub.status()
                what = f"error: {st['error']}" if st["error"] else "source ended"
                print(f"edgeser dashboard: {what}; {st['finals']} segments, {st['events']} events "
                      "(the page stays up; Ctrl-C to stop)", flush=True)
        return EXIT_OK
    except KeyboardInterrupt:
        return EXIT_OK
    except EdgeserError as exc:
        print(f"apps.dashboard: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        if dash is not None:
            dash.close()
