"""The runtime opens no network connection and writes no files while it loads a model and analyses audio."""

import os
import subprocess
import sys
from pathlib import Path

NO_NETWORK = r"""
import socket, sys
def _no_network(*a, **k):
    raise AssertionError("edgeser tried to open a network socket")
socket.socket = _no_network
socket.create_connection = _no_network
"""

CODE = NO_NETWORK + r"""
import numpy as np, edgeser
x = np.load(sys.argv[1])
m = edgeser.load()
r = m.classify(x, 16000)
ev = m.analyze(x, 16000)
s = m.stream()
for i in range(0, x.size, 320):
    s.accept(x[i:i + 320], 16000)
s.flush()
print(r.label, len(ev))
"""


def _tree(root: Path) -> set:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _sandboxed(tmp_path, speech, code: str) -> str:
    """Run ``code`` (sockets blocked inside) on the speech saved as .npy, in a fresh process with a fresh HOME and
    working directory; assert it succeeded and wrote no file (onnxruntime's own telemetry id excepted); its stdout."""
    import numpy as np

    data = tmp_path / "x.npy"
    np.save(data, speech)
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    before = _tree(tmp_path)
    env = {**os.environ, "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"), "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-c", code, str(data)], cwd=work, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    written = _tree(tmp_path) - before
    # onnxruntime >= 1.29 itself creates a telemetry device id + SQLite file under $XDG_CACHE_HOME at import time
    # (no network traffic was seen: strace shows no inet sockets). edgeser writes nothing; it is documented in the
    # README ("Privacy"). Anything else written fails this test.
    ort_own = {p for p in written if p.startswith("home/.cache")
               and (p in ("home/.cache", "home/.cache/Microsoft") or p.startswith("home/.cache/Microsoft/DeveloperTools"))}
    assert written == ort_own, f"files written: {written - ort_own}"
    return out.stdout


def test_no_network_and_no_files_written(tmp_path, espeak_speech):
    out = _sandboxed(tmp_path, espeak_speech[0], CODE)
    assert out.split()[0] in ("neutral", "happy", "angry", "sad")


LISTEN_CODE = NO_NETWORK + r"""
import numpy as np, edgeser
from edgeser.listen import ArraySource
x = np.load(sys.argv[1])
got = []
lst = edgeser.listen(got.append, source=ArraySource(np.concatenate([x, x]), 16000, block_ms=20))
assert lst.wait(60)
lst.stop()
assert lst.error is None and any(e.final for e in got)
print(len(got))
"""


def test_listener_opens_no_socket_and_writes_no_file(tmp_path, espeak_speech):
    """edgeser.listen with a replayed source (the microphone path without a sound card): no socket, no file."""
    out = _sandboxed(tmp_path, espeak_speech[0], LISTEN_CODE)
    assert int(out.split()[0]) > 2


def _held_bytes(obj, skip=("_backend", "_make_segmenter", "_session", "_rs", "backend")) -> int:
    """Bytes of every numpy array a stream holds (its own state: features, VAD, segment), the shared model excluded."""
    import numpy as np

    seen, total, todo = set(), 0, [obj]
    while todo:
        o = todo.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        if isinstance(o, np.ndarray):
            total += o.nbytes
        elif isinstance(o, dict):
            todo += list(o.values())
        elif isinstance(o, (list, tuple, set)):
            todo += list(o)
        elif hasattr(o, "__dict__") and not isinstance(o, type):
            todo += [v for k, v in vars(o).items() if k not in skip]
    return total


def test_no_audio_retained_after_ten_minutes(espeak_speech):
    """10 minutes of speech and silence through one Stream: what it holds (arrays in its state) and the memory
    Python allocated stay as they were after the first minutes -- a window of log-mel frames plus the VAD's history,
    well under 1 MB, against 38 MB of audio fed. Nothing of the audio is kept."""
    import tracemalloc

    import numpy as np

    from edgeser.model import Model
    from tests.conftest import FakeBackend

    x, _ = espeak_speech
    rng = np.random.default_rng(0)
    unit = np.concatenate([x, np.zeros(40000, np.float32)])  # ~7.6 s: one sentence, 2.5 s of silence
    unit = unit + (rng.standard_normal(unit.size) * 1e-4).astype(np.float32)
    m = Model(FakeBackend())
    s = m.stream()
    step = 4000  # 250 ms chunks
    fed, finals = 0, 0

    def feed(seconds):
        nonlocal fed, finals
        while fed < seconds * 16000:
            i = fed % unit.size
            c = unit[i : i + step]
            finals += sum(e.final for e in s.accept(c, 16000))
            fed += c.size

    feed(60)
    held_1min = _held_bytes(s)
    tracemalloc.start()
    try:
        feed(120)  # the stream's buffers are re-allocated under tracing: what is live now is its working set
        before = tracemalloc.get_traced_memory()[0]
        feed(600)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    held_10min = _held_bytes(s)
    assert finals >= 70  # ~79 sentences went through
    assert held_10min < 1 << 20 and held_10min <= held_1min + 64 * 1024, (held_1min, held_10min)
    assert grown < 64 * 1024, f"Python memory grew by {grown} bytes over 8 minutes of audio"
    assert s._frames.shape[1] <= m.info.window_frames + 400
