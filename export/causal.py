"""Export the streaming causal encoder (train/models/causal.py) as a stateful step function (ONNX and/or ExecuTorch
.pte, fp32 and/or dynamic int8), and check every file.

    python -m export.causal --checkpoint runs/causal/causal.pt --out runs/causal/export [--format onnx pte]
                            [--quantize none int8]

The graph is ``(logmel [1, 80, chunk_frames], *state) -> (logits [1, n_classes], *new_state)``: the caller holds
the state, as for silero-vad or icefall's streaming exports. Input ``i`` of the state is named ``<name>`` and the
matching output ``<name>_out``; the metadata (``edgeser`` key, ``ModelInfo``) lists them in ``state`` as
``{"name", "output", "shape", "dtype", "init"}`` (``init``: the fill value of the initial state), in graph order,
and sets ``window_frames = hop_frames = first_frames = chunk_frames`` and ``input_shape = (1, 80, chunk_frames)``.
What a stateful model needs beyond that (chunk semantics, the streaming normalisation) is described under
``training["streaming"]`` -- ``ModelInfo`` has no free-form field for it (yet).

The ``.pte`` (``export.core.export_pte``: ``torch.export`` -> optional XNNPACK dynamic int8 (PT2E) -> XNNPACK
partitioner, everything else ExecuTorch portable ops; traced from :func:`pte_ready`, the same function with
LayerNorm written in ops XNNPACK takes and the position bias precomputed) has the same signature with a fixed
chunk length (static shapes), carries the same ``ModelInfo`` as the constant method ``edgeser_metadata`` plus the
sidecar ``<file>.pte.json``, and is run here by :class:`PteStep` (``executorch.runtime``). Int8 is dynamic
(activations quantized per call): static int8 drifts when the state is carried (../shared/notes/toolchain.md).

Checks (each raises ``ExportMismatch``):
- :func:`verify_causal`: a long log-mel stream (RAVDESS clips back to back) run chunk by chunk through the file and
  through eager ``CausalEncoder.step``: logits after every chunk, and the final state, within ``atol``; and the
  eager whole-utterance pass (``forward_full``) against the eager chunked one.
- :func:`check_portable` (.pte): only the XNNPACK delegate and core ATen (portable) operators outside it.
- :func:`step_timings`: the step's time (ONNX Runtime or ExecuTorch) at chunk index 1, 100, 1000 of a stream (1
  thread): flat by design.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from edgeser.runtime.metadata import METADATA_KEY, METADATA_METHOD, ModelInfo

from .core import ExportMismatch, export_onnx, export_pte

NORMALISATION = ("input: raw log10-mel (edgeser.features.log_mel, 100 frames/s). Per chunk, running peak "
                 "m = max(max(chunk), m_prev - peak_decay), initial -10 (log10 of the feature floor); every frame of "
                 "the chunk -> (max(x, m - 8) + 4) / 4 (Whisper's normalisation with the window maximum replaced by "
                 "the running peak).")


def state_spec(model) -> tuple[dict, ...]:
    init = [float(t.reshape(-1)[0]) for t in model.initial_state(1)]
    return tuple({"name": n, "output": f"{n}_out", "shape": list(s), "dtype": "float32", "init": v, "scope": "segment"}
                 for n, s, v in zip(model.state_names(), model.state_shapes(1), init))


def causal_info(model, labels, **kw) -> ModelInfo:
    """ModelInfo of the step graph of ``model`` (a CausalEncoder)."""
    from edgeser.constants import HOP_LENGTH, N_FFT, N_MELS, SAMPLE_RATE

    c = model.cfg
    training = dict(kw.pop("training", {}))
    training["streaming"] = {
        "kind": "stateful step: (logmel chunk, *state) -> (logits, *new_state); reset the state per utterance",
        "chunk_frames": c.chunk_frames, "encoder_frames_per_chunk": c.chunk_out,
        "left_context_encoder_frames": c.left_context, "conv_kernel": c.conv_kernel,
        "latency_ms": c.chunk_frames * 10, "normalisation": NORMALISATION, "peak_decay": c.peak_decay,
        "pool_decay": c.pool_decay, "logits": "streaming attention pooling over every frame since the state was reset",
        "config": c.to_dict(),
    }
    return ModelInfo(labels=tuple(labels), sample_rate=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP_LENGTH,
                     n_mels=N_MELS, window_frames=c.chunk_frames, hop_frames=c.chunk_frames,
                     first_frames=c.chunk_frames, input_shape=(1, N_MELS, c.chunk_frames), state=state_spec(model),
                     aggregate="last", training=training, **kw)


def export_causal_onnx(model, path, info: ModelInfo, quantize: str | None = None) -> Path:
    """Write the step function of ``model`` (CausalEncoder) to ``path`` with ``info`` embedded; int8 = ONNX Runtime
    dynamic quantization of the Linear layers (:func:`export.core.export_onnx`)."""

    from train.models.causal import CausalStep

    step = CausalStep(model.eval()).eval()
    return export_onnx(step, _example(model), path, info, quantize,
                       input_names=[info.input_name] + [s["name"] for s in info.state],
                       output_names=[info.output_name] + [s["output"] for s in info.state])


def _example(model):
    import torch

    c = model.cfg
    return (torch.zeros(1, c.n_mels, c.chunk_frames) - 5.0, *model.initial_state(1))


def _layer_norm_4d():
    import torch
    from torch import nn

    class LayerNorm4d(nn.Module):
        """``nn.LayerNorm`` over the last dim, written with what XNNPACK takes: mean over the two innermost dims
        of a 4-D view (global average pooling), mul, rsqrt. ExecuTorch's ``native_layer_norm`` is a portable op:
        each one would split the graph into one more XNNPACK delegate call (38 -> 16 calls per step here)."""

        def __init__(self, ln: nn.LayerNorm):
            super().__init__()
            self.weight, self.bias, self.eps = ln.weight, ln.bias, ln.eps

        def forward(self, x):
            shape = x.shape
            x4 = x.reshape(1, -1, 1, shape[-1])
            xc = x4 - x4.mean(dim=(2, 3), keepdim=True)
            var = (xc * xc).mean(dim=(2, 3), keepdim=True)
            return (xc * torch.rsqrt(var + self.eps)).reshape(shape) * self.weight + self.bias

    return LayerNorm4d


def pte_ready(model):
    """A copy of ``model`` (CausalEncoder) whose step lowers to fewer, larger XNNPACK partitions; the same function:
    every LayerNorm as :class:`LayerNorm4d`, every attention's relative-position bias gathered once into a constant
    (``ChunkAttention.frozen_bias``). Only for export: the frozen bias would not follow training."""
    import copy

    import torch
    from torch import nn

    from train.models.causal import ChunkAttention

    ln4 = _layer_norm_4d()
    m = copy.deepcopy(model).eval()

    def swap(mod):
        for name, child in mod.named_children():
            if isinstance(child, nn.LayerNorm):
                if child.weight is None or len(child.normalized_shape) != 1:
                    raise ValueError(f"{name}: only affine LayerNorm over the last dim is rewritten")
                setattr(mod, name, ln4(child))
            else:
                swap(child)

    swap(m)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, ChunkAttention):
                mod.frozen_bias = mod.rel_bias[:, mod.chunk_index].detach().clone()
    return m


def export_causal_pte(model, path, info: ModelInfo, quantize: str | None = None) -> Path:
    """Write the step function of ``model`` (CausalEncoder) as an ExecuTorch program (XNNPACK delegate + portable
    ops, fixed chunk length) with ``info`` embedded (constant method + sidecar JSON); int8 = XNNPACK dynamic int8
    (per-channel weights, activations quantized per call) of the Linear layers (:func:`export.core.export_pte`).
    What is exported is :func:`pte_ready` of the model; the check (:func:`verify_causal`) is against the model."""
    from train.models.causal import CausalStep

    step = CausalStep(pte_ready(model)).eval()
    path = export_pte(step, _example(model), path, info, quantize)
    check_portable(path)
    return path


def pte_program_ops(path) -> dict:
    """What the ``forward`` method of a .pte needs from a runtime: its delegates, how many delegate calls one step
    makes, and the operators run outside them (ExecuTorch kernel names)."""
    from executorch.exir._serialize._program import deserialize_pte_binary

    prog = deserialize_pte_binary(Path(path).read_bytes())
    prog = getattr(prog, "program", prog)
    plan = next(p for p in prog.execution_plan if p.name == "forward")
    return {"delegates": sorted({d.id for d in plan.delegates}), "delegate_calls": len(plan.delegates),
            "operators": sorted({f"{o.name}.{o.overload}" for o in plan.operators})}


def check_portable(path) -> dict:
    """Raise ``ExportMismatch`` unless the .pte uses only the XNNPACK delegate and core ATen operators (which the
    portable kernel library implements): what an ExecuTorch mobile runtime built with XNNPACK + portable loads."""
    ops = pte_program_ops(path)
    bad = [d for d in ops["delegates"] if d != "XnnpackBackend"] + [o for o in ops["operators"]
                                                                    if not o.startswith("aten::")]
    if bad:
        raise ExportMismatch(f"{path}: needs more than XNNPACK + portable ops: {bad}")
    return ops


def export_causal(model, path, info: ModelInfo, quantize: str | None = None) -> Path:
    """:func:`export_causal_onnx` or :func:`export_causal_pte`, by the suffix of ``path``."""
    suffix = Path(path).suffix
    if suffix == ".onnx":
        return export_causal_onnx(model, path, info, quantize)
    if suffix == ".pte":
        return export_causal_pte(model, path, info, quantize)
    raise ValueError(f"{path}: unknown format (use .onnx or .pte)")


class _Step:
    info: ModelInfo

    def initial_state(self) -> tuple[np.ndarray, ...]:
        return tuple(np.full(s["shape"], s["init"], np.float32) for s in self.info.state)

    def _check(self, path):
        if not self.info.state:
            raise ValueError(f"{path}: not a stateful model (no state in its metadata)")


class OnnxStep(_Step):
    """Runs an exported step graph with onnxruntime (numpy only): ``initial_state()``, ``step(chunk, state)``."""

    def __init__(self, path, threads: int = 1):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        self.info = ModelInfo.from_json(self.session.get_modelmeta().custom_metadata_map[METADATA_KEY], str(path))
        self._check(path)
        self.in_names = [self.info.input_name] + [s["name"] for s in self.info.state]
        self.out_names = [self.info.output_name] + [s["output"] for s in self.info.state]

    def step(self, chunk: np.ndarray, state) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        out = self.session.run(self.out_names, dict(zip(self.in_names, (chunk, *state))))
        return out[0], tuple(out[1:])


def read_pte_info(program, path) -> ModelInfo:
    """The ``ModelInfo`` of a loaded ExecuTorch program: its ``edgeser_metadata`` constant method, else the sidecar."""
    path = Path(path)
    if METADATA_METHOD in set(program.method_names):
        raw = program.load_method(METADATA_METHOD).execute([])[0]
        return ModelInfo.from_json(bytes(raw.numpy().astype(np.uint8).tobytes()), str(path))
    side = path.with_name(path.name + ".json")
    if side.is_file():
        return ModelInfo.from_json(side.read_text(), str(side))
    raise ValueError(f"{path}: no edgeser metadata (no {METADATA_METHOD} method and no {side.name})")


def _pte_threads_once(n: int) -> None:
    try:  # the SDK's backend keeps the once-per-process guard: share it, so both agree
        from edgeser.runtime.executorch import _set_threads_once
    except ImportError:  # pragma: no cover - an SDK without it: our own guard
        global _PTE_THREADS_SET
        if not _PTE_THREADS_SET:
            _PTE_THREADS_SET = True
            from executorch.extension.pybindings.portable_lib import (
                _unsafe_reset_threadpool,
            )

            _unsafe_reset_threadpool(n)
        return
    _set_threads_once(n)


_PTE_THREADS_SET = False


class PteStep(_Step):
    """Runs an exported step program with ExecuTorch's Python runtime: ``initial_state()``, ``step(chunk, state)``.

    ExecuTorch's thread pool is sized once per process, before the first program is loaded (resizing it after a
    load segfaulted, ../shared/notes/toolchain.md): ``threads`` only counts for the first program of a process.
    Outputs are copied out of the method's planned memory (the next call reuses it)."""

    def __init__(self, path, threads: int = 1):
        import torch
        from executorch.runtime import Runtime

        self._torch = torch
        _pte_threads_once(threads)
        self.program = Runtime.get().load_program(str(path))
        self.method = self.program.load_method("forward")
        self.info = read_pte_info(self.program, path)
        self._check(path)

    def step(self, chunk: np.ndarray, state) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        t = self._torch
        out = self.method.execute([t.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in (chunk, *state)])
        out = [np.array(o.numpy(), dtype=np.float32, copy=True) for o in out]
        return out[0], tuple(out[1:])


def open_step(path, threads: int = 1) -> OnnxStep | PteStep:
    """:class:`OnnxStep` or :class:`PteStep`, by the suffix of ``path``."""
    suffix = Path(path).suffix
    if suffix == ".onnx":
        return OnnxStep(path, threads)
    if suffix == ".pte":
        return PteStep(path, threads)
    raise ValueError(f"{path}: unknown format (use .onnx or .pte)")


def _chunks(mel: np.ndarray, f: int) -> np.ndarray:
    """[80, T] -> [n, 1, 80, f] (T padded with digital silence to a multiple of f)."""
    r = (-mel.shape[1]) % f
    if r:
        mel = np.concatenate([mel, np.full((mel.shape[0], r), -10.0, np.float32)], axis=1)
    return np.ascontiguousarray(mel.reshape(mel.shape[0], -1, f).transpose(1, 0, 2)[:, None])


def verify_causal(model, path, mel: np.ndarray, *, atol: float, min_label_agreement: float = 1.0,
                  state_rtol: float | None = None, full_atol: float = 1e-4) -> dict:
    """Stream ``mel`` [80, T] chunk by chunk through the exported file (.onnx or .pte) and through eager
    ``model.step``; compare the logits after every chunk (``atol``, arg-max agreement) and the final state
    (``state_rtol``, default ``atol``: max |file - eager| of each state array over max(1, max |eager|), since the
    pooled sums grow with the stream); and eager ``forward_full`` vs eager chunked. Raise on mismatch."""
    import torch

    stepper = open_step(path)
    f = model.cfg.chunk_frames
    chunks = _chunks(mel, f)
    st_o = stepper.initial_state()
    st_e = model.initial_state(1)
    if len(st_o) != len(st_e):
        raise ExportMismatch(f"{path}: {len(st_o)} state arrays in the metadata, the model has {len(st_e)}")
    for a, b in zip(st_o, st_e):
        if a.shape != tuple(b.shape) or not np.array_equal(a, b.numpy()):
            raise ExportMismatch(f"{path}: initial state in the metadata differs from the model's")
    lo, le = [], []
    with torch.no_grad():
        for ch in chunks:
            out = model.step(torch.from_numpy(ch), *st_e)
            le.append(out[0].numpy()[0])
            st_e = out[1:]
            lg, st_o = stepper.step(ch, st_o)
            lo.append(np.asarray(lg).reshape(-1))
            if len(st_o) != len(st_e):
                raise ExportMismatch(f"{path}: the file returns {len(st_o)} state arrays, eager {len(st_e)}")
            for s, ref in zip(st_o, st_e):
                if s.shape != tuple(ref.shape):
                    raise ExportMismatch(f"{path}: state shape {s.shape} != eager {tuple(ref.shape)}")
        _, full_lg = model.forward_full(torch.from_numpy(chunks[:, 0].transpose(1, 0, 2).reshape(1, 80, -1)))
    lo, le = np.stack(lo), np.stack(le)
    names = [s["name"] for s in stepper.info.state]
    abs_d = {n: float(np.abs(s - r.numpy()).max()) for n, s, r in zip(names, st_o, st_e)}
    rel_d = {n: abs_d[n] / max(1.0, float(np.abs(r.numpy()).max())) for n, r in zip(names, st_e)}
    rep = {"chunks": len(chunks), "seconds": len(chunks) * f / 100.0,
           "max_abs_logit_diff": float(np.abs(lo - le).max()), "mean_abs_logit_diff": float(np.abs(lo - le).mean()),
           "label_agreement": float(np.mean(lo.argmax(1) == le.argmax(1))),
           "final_state_max_abs_diff": max(abs_d.values()), "final_state_max_rel_diff": max(rel_d.values()),
           "final_state_rel_diff": rel_d,
           "full_vs_chunked_eager_max_abs_logit_diff": float(np.abs(full_lg[0].numpy() - le).max())}
    state_rtol = atol if state_rtol is None else state_rtol
    if rep["full_vs_chunked_eager_max_abs_logit_diff"] > full_atol:
        raise ExportMismatch(f"eager whole-utterance differs from eager chunked: {rep}")
    finite = np.all(np.isfinite(lo)) and all(np.all(np.isfinite(s)) for s in st_o)
    if (not finite or rep["max_abs_logit_diff"] > atol or rep["label_agreement"] < min_label_agreement
            or rep["final_state_max_rel_diff"] > state_rtol):
        raise ExportMismatch(f"{path} differs from eager chunk-by-chunk: {rep} (atol {atol}, state rtol {state_rtol}, "
                             f"label agreement needed {min_label_agreement})")
    return rep


def step_timings(path, mel: np.ndarray, positions=(1, 100, 1000), repeats: int = 50, threads: int = 1) -> dict:
    """Milliseconds of one step of the exported file (.onnx or .pte) at chunk ``positions`` of a stream (the state
    the stream reached there; ``mel`` tiled as needed): median and min over ``repeats`` calls of that same step. The
    positions are timed in turns (one call each per round), so a slow spell of the machine hits them all alike."""
    s = open_step(path, threads=threads)
    f = s.info.window_frames
    need = (max(positions) + 1) * f
    reps = -(-need // mel.shape[1])
    chunks = _chunks(np.tile(mel, (1, reps))[:, :need], f)
    state = s.initial_state()
    at = {}  # position -> (its chunk, the state the stream reached before it)
    for i, ch in enumerate(chunks):
        if i in positions:
            at[i] = (ch, state)
        _, state = s.step(ch, state)
    ts: dict[int, list[float]] = {i: [] for i in at}
    for _ in range(repeats):
        for i, (ch, st) in at.items():
            t0 = time.perf_counter()
            s.step(ch, st)
            ts[i].append(time.perf_counter() - t0)
    return {str(i): {"median_ms": float(np.median(v) * 1e3), "min_ms": float(np.min(v) * 1e3)} for i, v in ts.items()}


def ravdess_stream_mel(clips, seconds: float = 60.0, pause: float = 0.6) -> np.ndarray:
    """Log-mel [80, seconds * 100] of RAVDESS clips back to back (with ``pause`` s of silence between)."""
    from edgeser.audio import load as load_audio
    from edgeser.constants import SAMPLE_RATE
    from edgeser.features import log_mel

    parts, total, i = [], 0, 0
    while total < seconds * SAMPLE_RATE:
        x = load_audio(clips[i % len(clips)].path)
        parts += [x, np.zeros(int(pause * SAMPLE_RATE), np.float32)]
        total += x.size + int(pause * SAMPLE_RATE)
        i += 1
    return log_mel(np.concatenate(parts)[: int(seconds * SAMPLE_RATE)])


def build_from_checkpoint(ck: dict):
    from train.models.causal import CausalEncoder, CausalEncoderConfig

    model = CausalEncoder(CausalEncoderConfig(**ck["config"]))
    model.load_state_dict(ck["model"])
    return model.eval()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m export.causal", description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--name", default="edgeser-causal")
    ap.add_argument("--format", nargs="+", choices=("onnx", "pte"), default=["onnx", "pte"])
    ap.add_argument("--quantize", nargs="+", choices=("none", "int8"), default=["none", "int8"])
    ap.add_argument("--seconds", type=float, default=60.0, help="RAVDESS stream compared with eager")
    ap.add_argument("--atol", type=float, default=1e-3, help="max |logit - eager| of the fp32 files")
    ap.add_argument("--atol-int8", type=float, default=1.0, help="max |logit - eager| of the int8 files")
    ap.add_argument("--min-agreement-int8", type=float, default=0.9,
                    help="fraction of chunks whose label must equal eager's (int8; fp32 files need 1.0)")
    ap.add_argument("--state-rtol-int8", type=float, default=0.1,
                    help="max |state - eager| / max(1, max |eager|) after the stream (int8; fp32: --atol)")
    ap.add_argument("--repeats", type=int, default=50)
    a = ap.parse_args(argv)
    import torch

    from edgeser import __version__
    from train.data.ravdess import load_ravdess

    torch.set_num_threads(1)
    ck = torch.load(a.checkpoint, map_location="cpu", weights_only=True)
    model = build_from_checkpoint(ck)
    val = ck["validation"]
    held_out = set(val["test_speakers"])
    clips = [c for c in load_ravdess() if c.speaker in held_out]
    mel = ravdess_stream_mel(clips, a.seconds)
    rep_path = a.out / f"{a.name}.export.json"
    report = json.loads(rep_path.read_text()) if rep_path.is_file() else {"files": {}}
    report.update({"checkpoint": str(a.checkpoint),
                   "command": "python -m export.causal " + " ".join(argv or sys.argv[1:]),
                   "date": time.strftime("%Y-%m-%d %H:%M:%S")})
    for fmt in a.format:
        for q in (None if x == "none" else x for x in a.quantize):
            info = causal_info(model, ck["labels"], name=a.name, version=__version__, quantization=q or "none",
                               backbone="causal chunked Conformer distilled from whisper-base (train/models/causal.py)",
                               training={"validation": {k: val[k] for k in ("uar", "wa", "stream", "test_speakers", "n")},
                                         "command": ck.get("command", "")})
            path = a.out / f"{a.name}{'-int8' if q else ''}.{fmt}"
            t0 = time.time()
            export_causal(model, path, info, quantize=q)
            took = time.time() - t0
            v = verify_causal(model, path, mel, atol=a.atol if q is None else a.atol_int8,
                              min_label_agreement=1.0 if q is None else a.min_agreement_int8,
                              state_rtol=a.atol if q is None else a.state_rtol_int8)
            tm = step_timings(path, mel, repeats=a.repeats)
            report["files"][path.name] = {"bytes": path.stat().st_size, "export_seconds": round(took, 1),
                                          "stream_vs_eager": v, "step_ms_1thread": tm}
            if fmt == "pte":
                report["files"][path.name]["program"] = pte_program_ops(path)
            print(f"{path}: {path.stat().st_size / 2**20:.2f} MiB, {json.dumps(v)}, step ms {json.dumps(tm)}",
                  flush=True)
            rep_path.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
