"""Export the streaming causal encoder (train/models/causal.py) as a pure ONNX step function, and check it.

    python -m export.causal --checkpoint runs/causal/causal.pt --out runs/causal/export

The graph is ``(logmel [1, 80, chunk_frames], *state) -> (logits [1, n_classes], *new_state)``: the caller holds
the state, as for silero-vad or icefall's streaming exports. Input ``i`` of the state is named ``<name>`` and the
matching output ``<name>_out``; the metadata (``edgeser`` key, ``ModelInfo``) lists them in ``state`` as
``{"name", "output", "shape", "dtype", "init"}`` (``init``: the fill value of the initial state), in graph order,
and sets ``window_frames = hop_frames = first_frames = chunk_frames`` and ``input_shape = (1, 80, chunk_frames)``.
What a stateful model needs beyond that (chunk semantics, the streaming normalisation) is described under
``training["streaming"]`` -- ``ModelInfo`` has no free-form field for it (yet).

Checks (each raises ``ExportMismatch``):
- :func:`verify_causal`: a long log-mel stream (RAVDESS clips back to back) run chunk by chunk through the file and
  through eager ``CausalEncoder.step``: logits after every chunk, and the final state, within ``atol``; and the
  eager whole-utterance pass (``forward_full``) against the eager chunked one.
- :func:`step_timings`: the ONNX step's time at chunk index 1, 100, 1000 of a stream (1 thread): flat by design.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from edgeser.runtime.metadata import METADATA_KEY, ModelInfo

from .core import ExportMismatch, export_onnx

NORMALISATION = ("input: raw log10-mel (edgeser.features.log_mel, 100 frames/s). Per chunk, running peak "
                 "m = max(max(chunk), m_prev - peak_decay), initial -10 (log10 of the feature floor); every frame of "
                 "the chunk -> (max(x, m - 8) + 4) / 4 (Whisper's normalisation with the window maximum replaced by "
                 "the running peak).")


def state_spec(model) -> tuple[dict, ...]:
    init = [float(t.reshape(-1)[0]) for t in model.initial_state(1)]
    return tuple({"name": n, "output": f"{n}_out", "shape": list(s), "dtype": "float32", "init": v}
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
                     training=training, **kw)


def export_causal_onnx(model, path, info: ModelInfo, quantize: str | None = None) -> Path:
    """Write the step function of ``model`` (CausalEncoder) to ``path`` with ``info`` embedded; int8 = ONNX Runtime
    dynamic quantization of the Linear layers (:func:`export.core.export_onnx`)."""
    import torch

    from train.models.causal import CausalStep

    step = CausalStep(model.eval()).eval()
    c = model.cfg
    example = (torch.zeros(1, c.n_mels, c.chunk_frames) - 5.0, *model.initial_state(1))
    return export_onnx(step, example, path, info, quantize,
                       input_names=[info.input_name] + [s["name"] for s in info.state],
                       output_names=[info.output_name] + [s["output"] for s in info.state])


class OnnxStep:
    """Runs an exported step graph with onnxruntime (numpy only): ``initial_state()``, ``step(chunk, state)``."""

    def __init__(self, path, threads: int = 1):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        self.info = ModelInfo.from_json(self.session.get_modelmeta().custom_metadata_map[METADATA_KEY], str(path))
        if not self.info.state:
            raise ValueError(f"{path}: not a stateful model (no state in its metadata)")
        self.in_names = [self.info.input_name] + [s["name"] for s in self.info.state]
        self.out_names = [self.info.output_name] + [s["output"] for s in self.info.state]

    def initial_state(self) -> tuple[np.ndarray, ...]:
        return tuple(np.full(s["shape"], s["init"], np.float32) for s in self.info.state)

    def step(self, chunk: np.ndarray, state) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        out = self.session.run(self.out_names, dict(zip(self.in_names, (chunk, *state))))
        return out[0], tuple(out[1:])


def _chunks(mel: np.ndarray, f: int) -> np.ndarray:
    """[80, T] -> [n, 1, 80, f] (T padded with digital silence to a multiple of f)."""
    r = (-mel.shape[1]) % f
    if r:
        mel = np.concatenate([mel, np.full((mel.shape[0], r), -10.0, np.float32)], axis=1)
    return np.ascontiguousarray(mel.reshape(mel.shape[0], -1, f).transpose(1, 0, 2)[:, None])


def verify_causal(model, path, mel: np.ndarray, *, atol: float, min_label_agreement: float = 1.0,
                  full_atol: float = 1e-4) -> dict:
    """Stream ``mel`` [80, T] chunk by chunk through the ONNX file and through eager ``model.step``; compare the
    logits after every chunk and the final state; and eager ``forward_full`` vs eager chunked. Raise on mismatch."""
    import torch

    onnx_step = OnnxStep(path)
    f = model.cfg.chunk_frames
    chunks = _chunks(mel, f)
    st_o = onnx_step.initial_state()
    st_e = model.initial_state(1)
    for a, b in zip(st_o, st_e):
        if a.shape != tuple(b.shape) or not np.array_equal(a, b.numpy()):
            raise ExportMismatch(f"{path}: initial state in the metadata differs from the model's")
    lo, le = [], []
    with torch.no_grad():
        for ch in chunks:
            out = model.step(torch.from_numpy(ch), *st_e)
            le.append(out[0].numpy()[0])
            st_e = out[1:]
            lg, st_o = onnx_step.step(ch, st_o)
            lo.append(lg[0])
            for s, ref in zip(st_o, st_e):
                if s.shape != tuple(ref.shape):
                    raise ExportMismatch(f"{path}: state shape {s.shape} != eager {tuple(ref.shape)}")
        _, full_lg = model.forward_full(torch.from_numpy(chunks[:, 0].transpose(1, 0, 2).reshape(1, 80, -1)))
    lo, le = np.stack(lo), np.stack(le)
    state_diff = max(float(np.abs(s - r.numpy()).max()) for s, r in zip(st_o, st_e))
    rep = {"chunks": len(chunks), "seconds": len(chunks) * f / 100.0,
           "max_abs_logit_diff": float(np.abs(lo - le).max()), "mean_abs_logit_diff": float(np.abs(lo - le).mean()),
           "label_agreement": float(np.mean(lo.argmax(1) == le.argmax(1))), "final_state_max_abs_diff": state_diff,
           "full_vs_chunked_eager_max_abs_logit_diff": float(np.abs(full_lg[0].numpy() - le).max())}
    if rep["full_vs_chunked_eager_max_abs_logit_diff"] > full_atol:
        raise ExportMismatch(f"eager whole-utterance differs from eager chunked: {rep}")
    if rep["max_abs_logit_diff"] > atol or rep["label_agreement"] < min_label_agreement:
        raise ExportMismatch(f"{path} differs from eager chunk-by-chunk: {rep} (atol {atol}, "
                             f"label agreement needed {min_label_agreement})")
    return rep


def step_timings(path, mel: np.ndarray, positions=(1, 100, 1000), repeats: int = 50, threads: int = 1) -> dict:
    """Milliseconds of one ONNX step at chunk ``positions`` of a stream (the state the stream reached there; ``mel``
    tiled as needed): median and min over ``repeats`` calls of that same step."""
    s = OnnxStep(path, threads=threads)
    f = s.info.window_frames
    need = (max(positions) + 1) * f
    reps = -(-need // mel.shape[1])
    chunks = _chunks(np.tile(mel, (1, reps))[:, :need], f)
    state = s.initial_state()
    out = {}
    for i, ch in enumerate(chunks):
        if i in positions:
            ts = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                s.step(ch, state)
                ts.append(time.perf_counter() - t0)
            out[str(i)] = {"median_ms": float(np.median(ts) * 1e3), "min_ms": float(np.min(ts) * 1e3)}
        _, state = s.step(ch, state)
    return out


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
    ap.add_argument("--seconds", type=float, default=60.0, help="RAVDESS stream compared with eager")
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
    report = {"checkpoint": str(a.checkpoint), "command": "python -m export.causal " + " ".join(argv or sys.argv[1:]),
              "date": time.strftime("%Y-%m-%d %H:%M:%S"), "files": {}}
    for q in (None, "int8"):
        info = causal_info(model, ck["labels"], name=a.name, version=__version__, quantization=q or "none",
                           backbone="causal chunked Conformer distilled from whisper-base (train/models/causal.py)",
                           training={"validation": {k: val[k] for k in ("uar", "wa", "stream", "test_speakers", "n")},
                                     "command": ck.get("command", "")})
        path = a.out / f"{a.name}{'-int8' if q else ''}.onnx"
        t0 = time.time()
        export_causal_onnx(model, path, info, quantize=q)
        took = time.time() - t0
        v = verify_causal(model, path, mel, atol=1e-3 if q is None else 1.0,
                          min_label_agreement=1.0 if q is None else 0.9)
        tm = step_timings(path, mel, repeats=a.repeats)
        report["files"][path.name] = {"bytes": path.stat().st_size, "export_seconds": round(took, 1),
                                      "stream_vs_eager": v, "step_ms_1thread": tm}
        print(f"{path}: {path.stat().st_size / 2**20:.2f} MiB, {json.dumps(v)}, step ms {json.dumps(tm)}", flush=True)
    (a.out / f"{a.name}.export.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
