"""Plain export functions. Each one writes the file, embeds the model's metadata, re-loads the file through the same
runtime backend the SDK uses, and compares it with eager PyTorch; it raises :class:`ExportMismatch` if they differ.

- ``export_onnx(model, example_inputs, path, info, quantize=None|"int8")``: ``torch.onnx.export(dynamo=True)``; int8
  = ONNX Runtime dynamic quantization of MatMul/Gemm (Conv int8 was slower than fp32, and GRU stays fp32 anyway).
- ``export_pte(model, example_inputs, path, info, quantize=None|"int8")``: ``torch.export`` -> (XNNPACK dynamic int8
  per-channel quantizer via PT2E) -> ``to_edge_transform_and_lower`` with the XNNPACK partitioner only; metadata as
  the constant method ``edgeser_metadata`` and a sidecar JSON.
Dynamic int8 (activations quantized per call) was chosen over static: it did not drift over long streams.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from edgeser.runtime import open_backend
from edgeser.runtime.metadata import METADATA_KEY, METADATA_METHOD, ModelInfo


class ExportMismatch(RuntimeError):
    """The exported file does not reproduce the eager model within tolerance."""


def _eager(model, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy().reshape(-1)


def _eager_step(model, x: np.ndarray, state: tuple):
    import torch

    with torch.no_grad():
        out = model(torch.from_numpy(x), *(torch.from_numpy(np.asarray(a, np.float32)) for a in state))
    return out[0].numpy().reshape(-1), tuple(o.numpy() for o in out[1:])


def verify(model, path, windows: np.ndarray, *, atol: float, min_label_agreement: float = 1.0,
           backend: str = "auto") -> dict:
    """Run ``windows`` [n, 80, W] through the exported file and through eager ``model``; raise on mismatch.

    Checks the largest logit difference against ``atol`` and the fraction of windows with the same arg-max
    label against ``min_label_agreement``. Returns the measured figures.
    """
    b = open_backend(path, backend)
    diffs, same = [], 0
    state_ref = state_got = b.info.initial_state()  # stateful graphs: the state is carried through the windows
    state_diff = 0.0
    for w in windows:
        if b.info.state:
            ref, state_ref = _eager_step(model, w[None], state_ref)
            got, state_got = b.step(w[None], state_got)
            state_diff = max(state_diff, max(float(np.abs(a - r).max() / (1.0 + np.abs(r).max()))
                                             for a, r in zip(state_got, state_ref)))
        else:
            ref = _eager(model, w[None])
            got = b.run(w[None])
        if got.shape != ref.shape or not np.all(np.isfinite(got)):
            raise ExportMismatch(f"{path}: output shape {got.shape} / finite={np.isfinite(got).all()}, eager {ref.shape}")
        diffs.append(float(np.abs(got - ref).max()))
        same += int(np.argmax(got) == np.argmax(ref))
    report = {"windows": len(windows), "max_abs_diff": max(diffs), "mean_abs_diff": float(np.mean(diffs)),
              "label_agreement": same / len(windows)}
    if b.info.state:
        report["max_rel_state_diff"] = state_diff
        if state_diff > max(atol, 1e-3):
            raise ExportMismatch(f"{path}: carried state drifts from eager PyTorch: {report}")
    if report["max_abs_diff"] > atol or report["label_agreement"] < min_label_agreement:
        raise ExportMismatch(f"{path} differs from eager PyTorch: {report} (atol {atol}, "
                             f"label agreement needed {min_label_agreement})")
    return report


def _strip_initializer_value_info(model_proto) -> None:
    # onnxruntime's quantizer fails shape inference on dynamo graphs whose value_info shadows initializers
    inits = {i.name for i in model_proto.graph.initializer}
    keep = [v for v in model_proto.graph.value_info if v.name not in inits]
    del model_proto.graph.value_info[:]
    model_proto.graph.value_info.extend(keep)


def _linear_nodes(model_proto) -> list[str]:
    """MatMul/Gemm nodes whose weight is a 2-D initializer, i.e. the nn.Linear layers: the same set the XNNPACK
    dynamic quantizer takes for the .pte, so both int8 files quantize the same weights (the recurrent matmuls of
    the GRUs, over 3-D grouped weights, stay fp32 in both)."""
    inits = {i.name: len(i.dims) for i in model_proto.graph.initializer}
    return [n.name for n in model_proto.graph.node
            if n.op_type in ("MatMul", "Gemm") and len(n.input) > 1 and inits.get(n.input[1]) == 2]


def export_onnx(model, example_inputs: tuple, path, info: ModelInfo, quantize: str | None = None, *,
                input_names: list[str] | None = None, output_names: list[str] | None = None) -> Path:
    """Export ``model`` to ONNX with ``info`` as metadata; ``quantize="int8"`` = ONNX Runtime dynamic int8 of the
    Linear layers. Names default to the metadata's single input/output (stateful graphs pass all of theirs)."""
    import onnx
    import torch

    names_in = input_names or [info.input_name]
    names_out = output_names or [info.output_name]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        fp32 = Path(tmp) / "fp32.onnx"
        prog = torch.onnx.export(model, example_inputs, input_names=names_in, output_names=names_out,
                                 dynamo=True, external_data=False, optimize=True, verbose=False)
        prog.save(str(fp32))
        proto = onnx.load(str(fp32))
        if quantize == "int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            _strip_initializer_value_info(proto)
            pre = Path(tmp) / "pre.onnx"
            onnx.save(proto, str(pre))
            q = Path(tmp) / "int8.onnx"
            quantize_dynamic(str(pre), str(q), weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=["MatMul", "Gemm"], nodes_to_quantize=_linear_nodes(proto))
            proto = onnx.load(str(q))
        elif quantize not in (None, "none"):
            raise ValueError(f"unknown quantization {quantize!r}")
        got_in = [i.name for i in proto.graph.input]
        got_out = [o.name for o in proto.graph.output]
        if got_in != names_in or got_out != names_out:
            raise ExportMismatch(f"graph signature {got_in} -> {got_out}, expected {names_in} -> {names_out}")
        del proto.metadata_props[:]
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, info.to_json()
        onnx.save(proto, str(path))
    return path


def _quantize_pt2e(exported, example_inputs):
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer()
    quantizer.set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=True))
    m = prepare_pt2e(exported.module(), quantizer)
    m(*example_inputs)  # dynamic quantization: one pass to trace observers, no calibration statistics kept
    return convert_pt2e(m)


def export_pte(model, example_inputs: tuple, path, info: ModelInfo, quantize: str | None = None) -> Path:
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import (
        XnnpackPartitioner,
    )
    from executorch.exir import to_edge_transform_and_lower

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    with torch.no_grad():
        ep = torch.export.export(model, example_inputs, strict=False)
        if quantize == "int8":
            qm = _quantize_pt2e(ep, example_inputs)
            ep = torch.export.export(qm, example_inputs, strict=False)
        elif quantize not in (None, "none"):
            raise ValueError(f"unknown quantization {quantize!r}")
        meta = torch.tensor(list(info.to_json().encode("utf-8")), dtype=torch.uint8)
        edge = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()],
                                           constant_methods={METADATA_METHOD: meta})
        prog = edge.to_executorch()
    path.write_bytes(prog.buffer)
    path.with_name(path.name + ".json").write_text(json.dumps(json.loads(info.to_json()), indent=1, sort_keys=True))
    return path
