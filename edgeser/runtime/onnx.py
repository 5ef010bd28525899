"""ONNX Runtime backend (no torch needed)."""

from __future__ import annotations

import numpy as np

from ..errors import ModelError
from .base import Backend
from .metadata import METADATA_KEY, ModelInfo


class OnnxBackend(Backend):
    name = "onnx"

    def __init__(self, path: str, threads: int = 1):
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - core dependency
            raise ModelError("onnxruntime is not installed: pip install onnxruntime") from exc
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise ModelError(f"{path}: not a valid ONNX model ({exc})") from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in meta:
            raise ModelError(f"{path}: ONNX model has no edgeser metadata; export it with `python -m export`")
        self.info = ModelInfo.from_json(meta[METADATA_KEY], source=str(path))
        self.path = str(path)
        inputs = {i.name for i in self.session.get_inputs()}
        if self.info.input_name not in inputs:
            raise ModelError(f"{path}: input {self.info.input_name!r} not in the graph (has {sorted(inputs)})")

    def run(self, window: np.ndarray) -> np.ndarray:
        out = self.session.run([self.info.output_name], {self.info.input_name: window.astype(np.float32, copy=False)})
        return np.asarray(out[0], dtype=np.float32).reshape(-1)
