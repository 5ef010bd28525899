"""Audio sources for the dashboard, following edgeser.listen's source protocol (``sample_rate``, ``start(push)``,
``stop()``; see :mod:`edgeser.listen`)."""

from __future__ import annotations

import threading
import time

from edgeser.audio import file_info, iter_file
from edgeser.errors import AudioError


class PacedFileSource:
    """Replays an audio file ``speed`` times faster than real time (``speed=1``: like a microphone; ``4``: a 60 s
    file in 15 s). The events keep the file's own time axis. A missing or unreadable file raises AudioError here."""

    def __init__(self, path, speed: float = 1.0, block_ms: float = 30):
        if not (speed > 0):
            raise AudioError(f"speed must be positive, got {speed!r}")
        if not (block_ms > 0):
            raise AudioError(f"block_ms must be positive, got {block_ms!r}")
        self.path, info = file_info(path)
        self.sample_rate = int(info.samplerate)
        self.duration = float(info.frames) / info.samplerate if info.samplerate else 0.0
        self.speed = float(speed)
        self.block_ms = float(block_ms)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, push) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(push,), name="dashboard-replay", daemon=True)
        self._thread.start()

    def _run(self, push) -> None:
        try:
            t0 = time.monotonic()
            sent = 0
            for block, _rate in iter_file(self.path, block_seconds=self.block_ms / 1000.0):
                delay = t0 + sent / self.sample_rate / self.speed - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
                if self._stop.is_set() or not push(block, wait=True):
                    return
                sent += len(block)
            delay = t0 + sent / self.sample_rate / self.speed - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            push.close()
        except BaseException as exc:
            push.fail(exc)

    def stop(self) -> None:
        self._stop.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join()
