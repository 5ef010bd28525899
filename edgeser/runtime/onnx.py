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
        outputs = {o.name: o for o in self.session.get_outputs()}
        if self.info.output_name not in outputs:
            raise ModelError(f"{path}: output {self.info.output_name!r} not in the graph (has {sorted(outputs)})")
        for s in self.info.state:  # every state the metadata describes is an input and an output of that shape
            for name, table in ((s["name"], inputs), (s["output"], outputs)):
                if name not in table:
                    raise ModelError(f"{path}: state {name!r} of the metadata is not in the graph")
                got = list(table[name].shape)
                if len(got) != len(s["shape"]) or any(isinstance(d, int) and d != w for d, w in zip(got, s["shape"])):
                    raise ModelError(f"{path}: state {name!r} has shape {got} in the graph, {s['shape']} in the metadata")
        self._in_names = [self.info.input_name] + [s["name"] for s in self.info.state]
        self._out_names = [self.info.output_name] + [s["output"] for s in self.info.state]
        # the graph must take the windows the metadata promises (fixed dims must agree; symbolic ones are free)
        shape = list(inputs[self.info.input_name].shape)
        want = (1, self.info.n_mels, self.info.window_frames)
        if len(shape) != 3 or any(isinstance(d, int) and d != w for d, w in zip(shape, want)):
            raise ModelError(f"{path}: graph input {self.info.input_name!r} has shape {shape}, but its metadata "
                             f"describes windows of shape {list(want)}")

    def run(self, window: np.ndarray) -> np.ndarray:
        return self.step(window, self.info.initial_state())[0]

    def step(self, window: np.ndarray, state: tuple) -> tuple[np.ndarray, tuple]:
        if len(state) != len(self.info.state):
            raise ModelError(f"{self.path}: {len(state)} state arrays given, the model carries {len(self.info.state)}")
        feed = dict(zip(self._in_names, (window.astype(np.float32, copy=False), *state)))
        try:
            out = self.session.run(self._out_names, feed)
        except Exception as exc:  # onnxruntime's own error types: a model that does not fit its metadata
            raise ModelError(f"{self.path}: the model failed on a window of shape {window.shape} ({exc})") from exc
        logits = np.asarray(out[0], dtype=np.float32).reshape(-1)
        if logits.size != len(self.info.labels):
            raise ModelError(f"{self.path}: the model gives {logits.size} outputs for {len(self.info.labels)} labels")
        return logits, tuple(np.asarray(o, dtype=np.float32) for o in out[1:])
