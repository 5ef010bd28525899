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
            raise ModelError(f"{path}: not a valid ONNX model: corrupt, truncated or not ONNX ({exc})") from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in meta:
            raise ModelError(f"{path}: ONNX model has no edgeser metadata; export it with `python -m export`")
        self.info = ModelInfo.from_json(meta[METADATA_KEY], source=str(path))
        self.path = str(path)
        inputs = {i.name: i for i in self.session.get_inputs()}
        if self.info.input_name not in inputs:
            raise ModelError(f"{path}: input {self.info.input_name!r} not in the graph (has {sorted(inputs)})")
        outputs = {o.name for o in self.session.get_outputs()}
        if self.info.output_name not in outputs:
            raise ModelError(f"{path}: output {self.info.output_name!r} not in the graph (has {sorted(outputs)})")
        # the graph must take the windows the metadata promises (fixed dims must agree; symbolic ones are free)
        shape = list(inputs[self.info.input_name].shape)
        want = (1, self.info.n_mels, self.info.window_frames)
        if len(shape) != 3 or any(isinstance(d, int) and d != w for d, w in zip(shape, want)):
            raise ModelError(f"{path}: graph input {self.info.input_name!r} has shape {shape}, but its metadata "
                             f"describes windows of shape {list(want)}")

    def run(self, window: np.ndarray) -> np.ndarray:
        try:
            out = self.session.run([self.info.output_name],
                                   {self.info.input_name: window.astype(np.float32, copy=False)})
        except Exception as exc:  # onnxruntime's own error types: a model that does not fit its metadata
            raise ModelError(f"{self.path}: the model failed on a window of shape {window.shape} ({exc})") from exc
        out = np.asarray(out[0], dtype=np.float32).reshape(-1)
        if out.size != len(self.info.labels):
            raise ModelError(f"{self.path}: the model gives {out.size} outputs for {len(self.info.labels)} labels")
        return out
