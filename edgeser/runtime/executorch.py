"""ExecuTorch (.pte) backend, through ExecuTorch's Python runtime (the ``executorch`` extra; it needs torch).

Loading goes straight to ExecuTorch's compiled runtime module (``executorch.extension.pybindings._C``): its public
wrapper ``executorch.runtime`` first imports the whole ExecuTorch compiler (``executorch.exir``, torchao), which costs
about 3 s per process and prints torchao's library-load failures and a torch ``_pytree`` warning. The wrapper is
still used when the compiled module lacks the calls relied on (another ExecuTorch version).
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path

import numpy as np

from ..errors import ModelError, install_hint
from .base import Backend
from .metadata import METADATA_METHOD, ModelInfo
from .quiet import captured_stderr

INSTALL = "pip install 'edgeser[executorch]' && pip install --no-deps executorch==1.5.1"
_THREADS_SET = threading.Lock()
_threads_done = False


def _set_threads_once(n: int, runtime=None) -> None:
    # ExecuTorch's thread pool must be sized before the first program is loaded (resizing later crashed).
    global _threads_done
    with _THREADS_SET:
        if _threads_done:
            return
        _threads_done = True
        try:
            if runtime is None:  # callers outside this backend (export.causal): the compiled runtime module
                from executorch.extension.pybindings import _C as runtime
            runtime._unsafe_reset_threadpool(n)
        except Exception:  # pragma: no cover - older/newer runtimes without the hook
            pass


class _Method:
    def __init__(self, method):
        self._method = method

    def execute(self, inputs):
        return self._method(inputs)


class _Program:
    """The two calls the backend needs from a loaded program, over the compiled runtime's program object."""

    def __init__(self, program):
        self._program = program
        self.method_names = {program.get_method_name(i) for i in range(program.num_methods())}

    def load_method(self, name: str) -> _Method:
        return _Method(self._program.load_method(name))


def _runtime():
    """(load_program(path) -> program, the module holding ``_unsafe_reset_threadpool``); ImportError if missing."""
    import torch  # noqa: F401  (the runtime's inputs and outputs are torch tensors; load libtorch first, as ET does)

    try:
        from executorch.extension.pybindings import _C as rt

        verification = rt.Verification.InternalConsistency
        rt._load_program, rt._unsafe_reset_threadpool  # noqa: B018  (the calls relied on exist)
    except (ImportError, AttributeError):  # another ExecuTorch layout: its public (slow, noisy) wrapper
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its "experimental API" warning and torchao's registration warnings
            from executorch.extension.pybindings import portable_lib as rt
            from executorch.runtime import Runtime
        return (lambda path: Runtime.get().load_program(path)), rt

    def load(path: str):
        return _Program(rt._load_program(path, enable_etdump=False, debug_buffer_size=0,
                                         program_verification=verification, data_path=None))

    return load, rt


def _tail(text: str, n: int = 3) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(lines[-n:])


class ExecuTorchBackend(Backend):
    name = "executorch"

    def __init__(self, path: str, threads: int = 1):
        p = Path(path)
        head = p.read_bytes()[:8] if p.is_file() else b""
        if len(head) < 8 or head[4:8] != b"ET12":
            raise ModelError(f"{path}: not an ExecuTorch program (.pte)")
        with captured_stderr() as printed:  # its cpuinfo probing and thread-pool lines
            try:
                import torch

                load_program, rt = _runtime()
            except ImportError as exc:
                raise ModelError(f"the ExecuTorch backend needs torch and executorch ({exc}): {INSTALL}") from exc
            _set_threads_once(threads, rt)
            try:
                program = load_program(str(p))
                self.method = program.load_method("forward")
            except Exception as exc:
                said = _tail(printed())
                raise ModelError(f"{path}: ExecuTorch could not load the program: corrupt, truncated or written by an "
                                 f"incompatible ExecuTorch version ({exc}{'; runtime said: ' + said if said else ''})"
                                 ) from exc
        self._torch = torch
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

