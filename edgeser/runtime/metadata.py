"""The metadata an exported model carries: one schema, written by ``export/``, read by the runtime.

ONNX: stored as the JSON string of the ``edgeser`` key in the model's ``metadata_props``.
ExecuTorch: stored in the ``.pte`` as a constant method ``edgeser_metadata`` returning the UTF-8 JSON bytes as a
uint8 tensor, and in a sidecar ``<file>.json`` (for runtimes that cannot run constant methods).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

from ..errors import ModelError

SCHEMA_VERSION = 1
METADATA_KEY = "edgeser"
METADATA_METHOD = "edgeser_metadata"
AGGREGATES = ("mean", "mean_logits", "last")  # how window outputs pool into a segment's score (ModelInfo.aggregate)


@dataclass(frozen=True)
class ModelInfo:
    labels: tuple[str, ...]
    sample_rate: int
    n_fft: int
    hop_length: int
    n_mels: int
    window_frames: int  # mel frames per model input window
    hop_frames: int  # the stream classifies a new window every hop_frames frames of speech
    first_frames: int  # first (partial) window this many frames after a segment starts
    input_name: str = "logmel"
    input_shape: tuple[int, ...] = ()
    output_name: str = "logits"
    # state carried by the caller between calls, in graph order after the input (outputs: after the logits):
    # [{"name", "output", "shape", "dtype", "init", "scope"}]; scope "segment" = reset when a speech segment starts
    # (a streaming encoder's caches), "stream" = kept for the stream's life (test-time adaptation statistics)
    state: tuple[dict, ...] = ()
    name: str = "edgeser-model"
    version: str = "0"
    schema: int = SCHEMA_VERSION
    temperature: float = 1.0  # softmax temperature (calibration)
    quantization: str = "none"
    backbone: str = ""
    training: dict = field(default_factory=dict)  # data, licence, protocol, command, validation metrics
    # how a segment's (and classify()'s clip) score is formed from its windows: "mean" of the window probabilities
    # softmax(logits / T); "mean_logits": softmax(mean of the window logits / T) (log-linear pooling: the windows'
    # evidence adds up instead of their probabilities averaging; better calibrated, benchmarks/calibration.py); or
    # "last" (a stateful model whose latest output already summarises the segment so far)
    aggregate: str = "mean"
    # test-time adaptation the stream-scoped state implements: {"kind", "default": "running"|"off", ...}
    adaptation: dict = field(default_factory=dict)
    # recommended confidence below which a result is reported as the label "uncertain" (0 = never); used when the
    # caller asks for abstain_below="auto" (abstention is opt-in)
    abstain_below: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "model") -> "ModelInfo":
        try:
            raw = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ModelError(f"{source}: edgeser metadata is not valid JSON ({exc})") from exc
        if not isinstance(raw, dict):
            raise ModelError(f"{source}: edgeser metadata is not a JSON object")
        schema = raw.get("schema")
        if isinstance(schema, int) and not isinstance(schema, bool) and schema > SCHEMA_VERSION:
            raise ModelError(f"{source}: metadata schema {schema} is newer than this edgeser reads ({SCHEMA_VERSION}); "
                             "upgrade edgeser to use this model")
        if schema != SCHEMA_VERSION:
            raise ModelError(f"{source}: metadata schema {schema!r} is not supported (this edgeser reads {SCHEMA_VERSION})")
        known = {f.name for f in fields(cls)}
        missing = [f.name for f in fields(cls) if f.default is f.default_factory is not None and f.name not in raw]
        try:
            kw = {k: v for k, v in raw.items() if k in known}
            for k in ("labels", "input_shape"):
                if k in kw:
                    kw[k] = tuple(kw[k])
            if "state" in kw:
                kw["state"] = tuple(kw["state"])
            info = cls(**kw)
        except TypeError as exc:
            raise ModelError(f"{source}: edgeser metadata incomplete ({exc}; missing {missing})") from exc
        labels = info.labels
        if not labels or not all(isinstance(x, str) for x in labels) or len(set(labels)) != len(labels):
            raise ModelError(f"{source}: labels must be a non-empty list of distinct names")
        for k in ("sample_rate", "n_fft", "hop_length", "n_mels", "window_frames", "hop_frames", "first_frames"):
            v = getattr(info, k)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ModelError(f"{source}: metadata field {k} must be an integer, got {v!r}")
        t = info.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not t > 0:
            raise ModelError(f"{source}: metadata field temperature must be a positive number, got {t!r}")
        if info.window_frames <= 0 or info.hop_frames <= 0 or info.first_frames <= 0:
            raise ModelError(f"{source}: window/hop sizes must be positive")
        if info.aggregate not in AGGREGATES:
            raise ModelError(f"{source}: metadata field aggregate must be one of {', '.join(map(repr, AGGREGATES))}, "
                             f"got {info.aggregate!r}")
        a = info.abstain_below
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not 0.0 <= a < 1.0:
            raise ModelError(f"{source}: metadata field abstain_below must be a number in [0, 1), got {a!r}")
        if not isinstance(info.adaptation, dict):
            raise ModelError(f"{source}: metadata field adaptation must be an object")
        names = set()
        for s in info.state:
            if not isinstance(s, dict) or not isinstance(s.get("name"), str) or not isinstance(s.get("output"), str):
                raise ModelError(f"{source}: each state entry needs a name and an output name, got {s!r}")
            shape = s.get("shape")
            if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0
                                                      for d in shape):
                raise ModelError(f"{source}: state {s['name']!r} needs a shape of positive integers, got {shape!r}")
            if s.get("dtype", "float32") != "float32":
                raise ModelError(f"{source}: state {s['name']!r} has dtype {s.get('dtype')!r}; only float32 is supported")
            init = s.get("init", 0.0)
            if isinstance(init, bool) or not isinstance(init, (int, float)):
                raise ModelError(f"{source}: state {s['name']!r} init must be a number, got {init!r}")
            if s.get("scope", "segment") not in ("segment", "stream"):
                raise ModelError(f"{source}: state {s['name']!r} scope must be 'segment' or 'stream'")
            if s["name"] in names:
                raise ModelError(f"{source}: state name {s['name']!r} repeated")
            names.add(s["name"])
        if info.adaptation and info.adaptation.get("default", "off") not in ("off", "running"):
            raise ModelError(f"{source}: adaptation default must be 'off' or 'running'")
        return info

    def initial_state(self) -> tuple:
        """The state a new stream (scope "stream") or segment (scope "segment") starts from, as numpy arrays."""
        import numpy as np

        return tuple(np.full(s["shape"], float(s.get("init", 0.0)), np.float32) for s in self.state)

    def state_scopes(self) -> tuple[str, ...]:
        return tuple(s.get("scope", "segment") for s in self.state)
