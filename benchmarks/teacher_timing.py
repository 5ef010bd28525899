"""Inference cost of every teacher (train/models/*, full size, random weights) on one device.

    python benchmarks/teacher_timing.py --device cpu                 # eager fp32, 1 thread
    python benchmarks/teacher_timing.py --device cuda --out $OUT     # fp32 and bf16 autocast, on a GPU machine

For every (model, variant) of ``train.__main__.VARIANTS``, a fresh subprocess builds the teacher at its paper size
(``Config.paper().variant(v)``) on a randomly initialised **Whisper base** encoder (the architecture of the packaged
weights: 6 layers x 512, 8 heads, FFN 2048; weights do not change the cost) and, for the teachers with a text
branch (MMER, CMA early fusion), a randomly initialised **all-MiniLM-L6-v2** text encoder (BERT, 6 x 384), and
times one clip of ``--seconds`` (3.5 s: a typical RAVDESS clip) at batch 1:

- ``model``: ``teacher(batch)`` on the clip's Whisper-normalised log-mel ``[1, 80, 100 * seconds]`` (+ the text
  features of a ``--tokens``-token transcript for text teachers); p50/p95/mean over ``--runs`` after 2 warm-up runs,
  wall clock (``*_ms``; CUDA-synchronised on a GPU) and, on the CPU, process CPU time too (``*_cpu_ms``: on one
  thread, the cost itself even when other jobs share the machine);
- ``text_encoder``: the MiniLM pass over those tokens (text teachers only; the transcript itself would need ASR,
  which is not counted);
- parameters and the fp32 state-dict size (``torch.save`` to memory) of the teacher and of the text encoder;
- peak memory: the subprocess' VmHWM (host RSS high-water mark) and, on CUDA, ``torch.cuda.max_memory_allocated``
  for the fp32 and the bf16 runs.

Needs only torch, transformers and numpy (no RAVDESS, no packaged weights, no onnxruntime): the input is synthetic.
Writes ``teacher_timing_<device>.json`` into benchmarks/results (and into ``--out`` if given).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: all-MiniLM-L6-v2's geometry (its config.json); random weights have the same cost
MINILM = {"vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12,
          "intermediate_size": 1536, "max_position_embeddings": 512, "type_vocab_size": 2}
#: Whisper base's encoder geometry (the packaged CTranslate2 weights: d 512, 6 layers, 8 heads, FFN 2048, 80 mels)
WHISPER_BASE = {"d_model": 512, "n_layers": 6, "n_heads": 8, "ffn": 2048, "n_mels": 80}


def random_whisper_backbone(name: str = "whisper-base", geometry: dict | None = None):
    """A :class:`train.backbones.speech.WhisperBackbone` with the architecture of ``name`` and random weights
    (what ``build_backbone(name)`` builds from the packaged weights, without needing them)."""
    import torch
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    from train.backbones.speech import WhisperBackbone, _whisper_config

    if name != "whisper-base" and geometry is None:
        raise ValueError(f"no built-in geometry for {name!r}: pass geometry")
    torch.manual_seed(0)
    return WhisperBackbone(WhisperEncoder(_whisper_config(**(geometry or WHISPER_BASE))), name)


def random_text_encoder():
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    return BertModel(BertConfig(**MINILM), add_pooling_layer=False).eval()


def build_teacher(model: str, variant: str):
    """(teacher in eval mode, uses_text) at the paper's size on a random Whisper-base backbone."""
    from dataclasses import replace

    from train.fit import model_classes

    cls, cfg_cls = model_classes(model)
    cfg = cfg_cls.paper().variant(variant)
    if hasattr(cfg, "n_classes"):
        cfg = replace(cfg, n_classes=4)
    if hasattr(cfg, "d_text"):
        cfg = replace(cfg, d_text=MINILM["hidden_size"])
    if cfg.backbone != "whisper-base":
        raise ValueError(f"{model}:{variant} uses {cfg.backbone}; this benchmark builds whisper-base")
    teacher = cls(cfg, backbone=random_whisper_backbone(cfg.backbone)).eval()
    if hasattr(teacher, "set_stage"):
        teacher.set_stage(3)  # GMP-ATL's inference stage
    return teacher, hasattr(teacher, "text_proj")


def state_dict_bytes(module) -> int:
    """Size of ``torch.save(module.state_dict())`` (fp32), measured in memory."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save(module.state_dict(), buf)
    return buf.getbuffer().nbytes


def percentiles(ms) -> dict:
    import numpy as np

    a = np.asarray(ms, dtype=np.float64)
    return {"p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)), "mean": float(a.mean()),
            "min": float(a.min()), "n": int(a.size)}


def _vmhwm_mib() -> float | None:
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _time(fn, runs: int, sync) -> tuple[list[float], list[float]]:
    """(wall ms, process CPU ms) of ``runs`` calls after 2 warm-up calls."""
    for _ in range(2):
        fn()
    sync()
    wall, cpu = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        sync()
        wall.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    return wall, cpu


def measure_one(model: str, variant: str, device: str, seconds: float, runs: int, tokens: int, threads: int) -> dict:
    """Everything measured for one teacher, in this process."""
    import torch

    from train.models.common import Batch, count_parameters

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    teacher, uses_text = build_teacher(model, variant)
    text_enc = random_text_encoder() if uses_text else None
    build_s = time.perf_counter() - t0
    rec = {"model": model, "variant": variant, "backbone": teacher.config.backbone, "uses_text": uses_text,
           "params": count_parameters(teacher), "state_dict_bytes": state_dict_bytes(teacher),
           "text_encoder_params": count_parameters(text_enc) if text_enc is not None else 0,
           "text_encoder_state_dict_bytes": state_dict_bytes(text_enc) if text_enc is not None else 0,
           "build_seconds": round(build_s, 2), "clip_seconds": seconds, "mel_frames": int(round(seconds * 100)),
           "text_tokens": tokens if uses_text else 0, "runs": runs}
    dev = torch.device(device)
    g = torch.Generator().manual_seed(0)
    mel = (torch.rand(1, 80, rec["mel_frames"], generator=g) * 2 - 1)  # Whisper-normalised range [-1, 1]
    ids = torch.randint(1000, 30000, (1, tokens), generator=g)
    teacher.to(dev)
    if text_enc is not None:
        text_enc.to(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def text_features():
        h = text_enc(input_ids=ids.to(dev), attention_mask=torch.ones_like(ids, device=dev)).last_hidden_state
        return h, torch.ones(1, tokens, dtype=torch.bool, device=dev)

    text, text_mask = text_features() if uses_text else (None, None)
    batch = Batch(mel=mel.to(dev), mel_lengths=torch.tensor([rec["mel_frames"]], device=dev), text=text,
                  text_mask=text_mask)
    modes = [("fp32", False)] + ([("bf16_autocast", True)] if dev.type == "cuda" else [])
    rec["timings"] = {}
    for name, amp in modes:
        with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            if dev.type == "cuda":
                sync()
                torch.cuda.reset_peak_memory_stats(dev)
            out = teacher(batch)
            if out["logits"].shape != (1, 4) or not torch.isfinite(out["logits"].float()).all():
                raise RuntimeError(f"{model}:{variant}: bad logits {out['logits']}")
            m = {}
            fns = [("model", lambda: teacher(batch))] + ([("text_encoder", text_features)] if uses_text else [])
            for what, fn in fns:
                wall, cpu = _time(fn, runs, sync)
                m[f"{what}_ms"] = percentiles(wall)  # wall clock (with CUDA synchronisation on a GPU)
                if dev.type == "cpu":
                    m[f"{what}_cpu_ms"] = percentiles(cpu)  # process CPU time: the cost on a loaded machine
            if dev.type == "cuda":
                m["cuda_max_memory_allocated_mib"] = torch.cuda.max_memory_allocated(dev) / 2**20
        rec["timings"][name] = m
    rec["peak_rss_mib"] = _vmhwm_mib()  # host memory high-water mark of this process
    return rec


def _env(device: str, threads: int) -> dict:
    import numpy
    import torch
    import transformers

    env = {"torch": torch.__version__, "transformers": transformers.__version__, "numpy": numpy.__version__,
           "python": platform.python_version(), "node": platform.node(), "threads": threads}
    if device == "cuda":
        p = torch.cuda.get_device_properties(0)
        env.update({"gpu": p.name, "gpu_memory_gib": round(p.total_memory / 2**30, 1),
                    "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()})
    return env


def jobs() -> list[tuple[str, str]]:
    from train.__main__ import VARIANTS

    return [(m, v) for m, vs in VARIANTS.items() for v in vs]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--runs", type=int, default=None, help="timed runs per teacher (default 10 cpu, 50 cuda)")
    ap.add_argument("--seconds", type=float, default=3.5, help="clip length (a typical RAVDESS clip)")
    ap.add_argument("--tokens", type=int, default=10, help="transcript tokens for the text teachers")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--only", nargs="*", default=None, help="model:variant subset (default: all)")
    ap.add_argument("--out", type=Path, default=None, help="also write the result file here")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # child mode: one model:variant -> JSON stdout
    a = ap.parse_args(argv)
    runs = a.runs or (50 if a.device == "cuda" else 10)
    if a.one:
        m, v = a.one.split(":")
        print("RESULT " + json.dumps(measure_one(m, v, a.device, a.seconds, runs, a.tokens, a.threads)))
        return 0
    if a.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: torch sees no CUDA device")
    todo = jobs() if not a.only else [tuple(s.split(":")) for s in a.only]
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads),
           "TOKENIZERS_PARALLELISM": "false"}
    recs, load0 = [], os.getloadavg()
    for m, v in todo:
        t0 = time.time()
        cmd = [sys.executable, str(Path(__file__).resolve()), "--device", a.device, "--runs", str(runs), "--seconds",
               str(a.seconds), "--tokens", str(a.tokens), "--threads", str(a.threads), "--one", f"{m}:{v}"]
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
        lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
        if p.returncode != 0 or not lines:
            raise SystemExit(f"{m}:{v} failed (exit {p.returncode}):\n{p.stderr[-3000:]}")
        rec = json.loads(lines[-1][len("RESULT "):])
        recs.append(rec)
        t = rec["timings"]
        print(f"{m}:{v} params {rec['params'] / 1e6:.1f} M, "
              + ", ".join(f"{k} p50 {x['model_ms']['p50']:.1f} ms wall" + (
                  f" / {x['model_cpu_ms']['p50']:.1f} ms CPU" if "model_cpu_ms" in x else "") for k, x in t.items())
              + f", RSS {rec['peak_rss_mib']:.0f} MiB ({time.time() - t0:.0f} s)", flush=True)
    from benchmarks.common import write_result

    payload = {"device": a.device, "environment": _env(a.device, a.threads), "seconds": a.seconds, "runs": runs,
               "load_average": {"start": list(load0), "end": list(os.getloadavg())},
               "protocol": ("batch 1, one clip of the given length, synthetic Whisper-normalised log-mel (+ text tokens "
                            "for text teachers), random weights at the paper's size on the Whisper-base architecture; "
                            "each teacher in a fresh subprocess; eager PyTorch, torch.inference_mode; 2 warm-up runs"),
               "teachers": recs}
    path = write_result(f"teacher_timing_{a.device}.json", payload, argv)
    if a.out is not None:
        a.out.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, a.out / path.name)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
