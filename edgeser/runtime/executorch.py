"""ExecuTorch (.pte) backend, through ExecuTorch's Python runtime (the ``executorch`` extra; it needs torch)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from ..errors import ModelError, install_hint
from .base import Backend
from .metadata import METADATA_METHOD, ModelInfo

_THREADS_SET = threading.Lock()
_threads_done = False


def _set_threads_once(n: int) -> None:
    # ExecuTorch's thread pool must be sized before the first program is loaded (resizing later crashed).
    global _threads_done
    with _THREADS_SET:
        if _threads_done:
            return
        _threads_done = True
        try:
            from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

            _unsafe_reset_threadpool(n)
        except Exception:  # pragma: no cover - older/newer runtimes without the hook
            pass


class ExecuTorchBackend(Backend):
    name = "executorch"

    def __init__(self, path: str, threads: int = 1):
        try:
            import torch
            from executorch.runtime import Runtime
        except ImportError as exc:
            raise ModelError(f"the ExecuTorch backend needs the executorch extra: {install_hint('executorch')}") from exc
        self._torch = torch
        p = Path(path)
        head = p.read_bytes()[:8] if p.is_file() else b""
        if len(head) < 8 or head[4:8] != b"ET12":
            raise ModelError(f"{path}: not an ExecuTorch program (.pte)")
        _set_threads_once(threads)
        try:
            program = Runtime.get().load_program(str(p))
            self.method = program.load_method("forward")
        except Exception as exc:
            raise ModelError(f"{path}: ExecuTorch could not load the program: corrupt, truncated or written by an "
                             f"incompatible ExecuTorch version ({exc})") from exc
        self.info = self._read_info(program, p)
        self.path = str(p)
        self._lock = threading.Lock()  # an ExecuTorch Method is not re-entrant

    @staticmethod
    def _read_info(program, p: Path) -> ModelInfo:
        if METADATA_METHOD in set(program.method_names):
            try:
                raw = program.load_method(METADATA_METHOD).execute([])[0]
                return ModelInfo.from_json(bytes(raw.numpy().astype(np.uint8).tobytes()), source=str(p))
            except ModelError:
                raise
            except Exception as exc:
                raise ModelError(f"{p}: cannot read the {METADATA_METHOD} method ({exc})") from exc
        side = p.with_name(p.name + ".json")
        if side.is_file():
            return ModelInfo.from_json(side.read_text(), source=str(side))
        raise ModelError(f"{p}: no edgeser metadata (no {METADATA_METHOD} method and no {side.name})")

    def run(self, window: np.ndarray) -> np.ndarray:
        return self.step(window, self.info.initial_state())[0]

    def step(self, window: np.ndarray, state: tuple) -> tuple[np.ndarray, tuple]:
        if len(state) != len(self.info.state):
            raise ModelError(f"{self.path}: {len(state)} state arrays given, the model carries {len(self.info.state)}")
        t = self._torch
        inputs = [t.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in (window, *state)]
        try:
            with self._lock:
                out = self.method.execute(inputs)
        except Exception as exc:  # a program that does not fit its metadata
            raise ModelError(f"{self.path}: the program failed on a window of shape {window.shape} ({exc})") from exc
        if len(out) != 1 + len(state):
            raise ModelError(f"{self.path}: the program gives {len(out)} outputs; its metadata describes "
                             f"{1 + len(state)} (logits + state)")
        logits = out[0].numpy().astype(np.float32).reshape(-1)
        if logits.size != len(self.info.labels):
            raise ModelError(f"{self.path}: the program gives {logits.size} outputs for {len(self.info.labels)} labels")
        return logits, tuple(o.numpy().astype(np.float32).reshape(s["shape"]) for o, s in zip(out[1:], self.info.state))

