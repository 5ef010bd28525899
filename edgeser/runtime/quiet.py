"""Scoped silencing of native libraries that print on stderr (fd 2) where Python cannot filter them."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading

_FD2 = threading.Lock()  # one redirect at a time


@contextlib.contextmanager
def captured_stderr():
    """Send the process's C-level stderr (fd 2) to a temporary file while the block runs; yields a function that
    returns what was written so far. Only this block is affected; other threads' stderr output during it lands in
    the file too, so keep the block to one load or import."""
    with _FD2, tempfile.TemporaryFile(mode="w+b") as tmp:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):  # no stderr to redirect
            yield lambda: ""
            return
        try:
            os.dup2(tmp.fileno(), 2)
            yield lambda: (sys.stderr.flush(), tmp.seek(0), tmp.read().decode(errors="replace"))[2]
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


#: Lines known to be harmless noise of torch/torchao imports: torchao's optional CUDA kernels failing to load on a
#: CPU machine, and torch's deprecation of torchao's Enum registrations.
KNOWN_NOISE = (
    re.compile(r"^Failed to load .*torchao/_C.*: Could not load this library"),
    re.compile(r"^W\d{4} [\d:.]+ \d+ torch/utils/_pytree\.py:\d+\] <enum '\w+'> is an Enum subclass"),
)


def without_noise(text: str) -> str:
    """``text`` minus the :data:`KNOWN_NOISE` lines."""
    return "".join(line for line in text.splitlines(keepends=True)
                   if not any(p.match(line) for p in KNOWN_NOISE))
