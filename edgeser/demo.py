"""Live terminal demo: ``python -m edgeser.demo [--file F] [--device D] [--model PATH] [--seconds N]``.

Shows one horizontal bar per emotion class with the latest scores (redrawn in place with ANSI codes when stdout is a
terminal; plain lines otherwise) and a log of the final event of each speech segment. ``--file`` replays a file in
real time instead of listening to the microphone. Ctrl-C stops. Errors (no input device, bad file or model) print one
line on stderr and exit with code 2.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import sys
import threading
import time
from typing import Sequence

from .errors import DeviceError, EdgeserError

EXIT_OK = 0
EXIT_ERROR = 2
BAR_WIDTH = 30
LOG_LINES = 8


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m edgeser.demo", description="Live speech emotion recognition demo.")
    p.add_argument("--file", metavar="F", help="replay this audio file in real time instead of the microphone")
    p.add_argument("--device", metavar="D", help="input device index or name (see `edgeser devices`)")
    p.add_argument("--model", metavar="PATH", help="model file or directory (default: bundled)")
    p.add_argument("--backend", choices=("auto", "onnx", "executorch"), default="auto", help="inference backend")
    p.add_argument("--seconds", metavar="N", type=float, help="stop after N seconds")
    p.add_argument("--fast", action="store_true", help="with --file: replay as fast as possible, not in real time")
    p.add_argument("--block-ms", type=float, default=30.0, help="audio block length in ms (default 30)")
    return p


def _fmt_event(e) -> str:
    return f"{e.start:7.2f} - {e.end:7.2f}  {e.label:<10} {e.confidence:.2f}"


class View:
    """Collects events from the listener thread; draws them from the main thread."""

    def __init__(self, labels, out, tty: bool, title: str = ""):
        self.labels = list(labels or ())
        self.out = out
        self.tty = tty
        self.title = title
        self._lock = threading.Lock()
        self._latest = None
        self._finals: collections.deque = collections.deque(maxlen=LOG_LINES)
        self._pending: list = []  # events not yet printed (plain mode)
        self._dirty = True
        self._drawn = 0  # lines drawn last time (tty mode)
        self.t0 = time.monotonic()
        enc = (getattr(out, "encoding", None) or "").lower()
        self._block = "\u2588" if "utf" in enc else "#"

    def on_event(self, event) -> None:  # listener thread
        with self._lock:
            self._latest = event
            for k in event.scores:
                if k not in self.labels:
                    self.labels.append(k)
            if event.final:
                self._finals.append(event)
            self._pending.append(event)
            self._dirty = True

    def render(self, force: bool = False) -> None:  # main thread
        with self._lock:
            if not (self._dirty or force):
                return
            self._dirty = False
            latest, finals = self._latest, list(self._finals)
            pending, self._pending = self._pending, []
        if self.tty:
            self._render_tty(latest, finals)
        else:
            for e in pending:
                kind = "FINAL  " if e.final else "partial"
                scores = " ".join(f"{k}={e.scores.get(k, 0.0):.2f}" for k in self.labels)
                print(f"{kind} {_fmt_event(e)} | {scores}", file=self.out)
            self.out.flush()

    def _render_tty(self, latest, finals, size: tuple[int, int] | None = None) -> None:
        cols, rows = size or shutil.get_terminal_size((80, 24))
        # bars shrink to the terminal's width (name, bar, value: 22 columns besides the bar) so no line wraps
        width = max(5, min(BAR_WIDTH, cols - 22))
        elapsed = time.monotonic() - self.t0
        lines = [f"\x1b[1medgeser\x1b[0m  {self.title}  {elapsed:6.1f} s   (Ctrl-C to stop)"[: cols + 8], ""]
        scores = latest.scores if latest is not None else {}
        for k in self.labels:
            v = float(scores.get(k, 0.0))
            n = max(0, min(width, int(round(v * width))))
            bar = self._block * n + " " * (width - n)
            on = latest is not None and k == latest.label
            name = f"\x1b[1m{k:<10}\x1b[0m" if on else f"{k:<10}"
            lines.append(f"  {name} |{bar}| {v:5.2f}")
        if latest is not None:
            state = "final" if latest.final else "listening..."
            lines.append(f"  segment {latest.segment}: {latest.start:.2f}-{latest.end:.2f} s  ({state})")
        else:
            lines.append("  waiting for speech...")
        lines += ["", "final events:"]
        # the event log gives way first, so the header and bars stay on screen in a short terminal
        room = max(0, rows - 1 - len(lines))
        log = [f"  {_fmt_event(e)}"[:cols] for e in finals] or ["  (none yet)"]
        lines += log[len(log) - room:] if room else []
        buf = []
        if self._drawn:
            buf.append(f"\x1b[{self._drawn}F")  # back to the first line drawn last time
        for line in lines:
            buf.append("\x1b[2K" + line + "\n")
        if self._drawn > len(lines):
            buf.append("\x1b[J")
        self._drawn = len(lines)
        self.out.write("".join(buf))
        self.out.flush()


def main(argv: Sequence[str] | None = None, *, model=None, out=None) -> int:
    """Run the demo; returns the exit code. ``model``: an already loaded model (tests); ``out``: the output stream."""
    args = _parser().parse_args(argv)
    out = sys.stdout if out is None else out
    try:
        tty = bool(out.isatty())
    except Exception:
        tty = False
    listener = None
    view = None
    try:
        from .listen import FileSource, MicrophoneSource, listen

        if args.file:
            source = FileSource(args.file, realtime=not args.fast, block_ms=args.block_ms)
            title = f"file {args.file}"
        else:
            source = MicrophoneSource(args.device, None, args.block_ms)
            title = f"microphone {source.name!r} @ {source.sample_rate} Hz"
        if model is None:
            from .model import load

            model = load(model=args.model, backend=args.backend)
        view = View(getattr(model, "labels", ()), out, tty, title)
        if tty:
            out.write("\x1b[?25l")  # hide the cursor while redrawing
        listener = listen(view.on_event, model=model, source=source, block_ms=args.block_ms)
        deadline = None if args.seconds is None else time.monotonic() + max(0.0, args.seconds)
        interval = 0.1 if tty else 0.05
        while not listener.wait(interval):
            view.render()
            if deadline is not None and time.monotonic() >= deadline:
                break
        listener.stop()
        view.render(force=tty)
        if listener.dropped_blocks:
            print(f"note: {listener.dropped_blocks} audio blocks were dropped (inference too slow)", file=sys.stderr)
        return EXIT_OK
    except KeyboardInterrupt:
        if listener is not None:
            try:
                listener.stop()
                if view is not None:
                    view.render(force=tty)
            except EdgeserError as exc:
                print(f"edgeser demo: error: {exc}", file=sys.stderr)
                return EXIT_ERROR
            except KeyboardInterrupt:
                pass
        return EXIT_OK
    except EdgeserError as exc:
        if listener is not None:
            try:
                listener.stop()
            except BaseException:
                pass
        msg = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(exc, DeviceError) and not args.file:  # this front end can do without a microphone
            msg += " (or replay an audio file: --file F)"
        print(f"edgeser demo: error: {msg}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        if tty:
            out.write("\x1b[?25h")
            out.flush()


if __name__ == "__main__":
    sys.exit(main())
