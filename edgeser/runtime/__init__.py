"""Backends that run exported models: ONNX Runtime (``.onnx``) and ExecuTorch (``.pte``)."""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelError
from .base import Backend
from .metadata import ModelInfo

BACKENDS = ("auto", "onnx", "executorch")


def open_backend(path, backend: str = "auto", threads: int = 1) -> Backend:
    """Open ``path`` with the backend its suffix implies (auto) or the one named."""
    if backend not in BACKENDS:
        raise ModelError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"model file not found: {p}")
    kind = backend
    if kind == "auto":
        kind = {".onnx": "onnx", ".pte": "executorch"}.get(p.suffix.lower())
        if kind is None:
            raise ModelError(f"{p}: unknown model format (expected .onnx or .pte)")
    if kind == "onnx":
        from .onnx import OnnxBackend

        b = OnnxBackend(str(p), threads=threads)
    else:
        from .executorch import ExecuTorchBackend

        b = ExecuTorchBackend(str(p), threads=threads)
    return b


__all__ = ["Backend", "ModelInfo", "open_backend", "BACKENDS"]
