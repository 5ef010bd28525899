"""Every teacher and every student on the same speaker-independent RAVDESS folds: accuracy, size, speed, memory.

    python benchmarks/teacher_timing.py --device cpu     # inputs: teachers' CPU cost (cuda: on a GPU machine)
    python benchmarks/compare.py            # exports what is missing, measures, writes results/compare.json + PNGs
    python benchmarks/report.py             # renders it into benchmarks/README.md and the README results block

    python benchmarks/compare.py --limit pte-fp32:0     # fewer folds for a slow variant (the rows say which)
    python benchmarks/compare.py --refresh-teachers     # re-read the teacher files (e.g. a new GPU timing) only

Rows (RAVDESS 4 classes, the 5 folds of ``train.data.ravdess.speaker_folds``, clean audio, CPU timings on 1 thread):

- **teachers** (``train/models``; every variant of ``train.__main__.VARIANTS``): UAR/WA per fold from
  ``results/teachers.json`` (trained and evaluated on an H100); parameters, fp32 file size, eager per-clip latency
  and peak RSS from ``results/teacher_timing_cpu.json`` (``benchmarks/teacher_timing.py``: random weights at full size,
  one 3.5 s clip); GPU timings from ``results/teacher_timing_cuda.json`` if it exists. Their per-clip latency and RTF
  add the edgeser front end (log-mel + Silero VAD over the same 3.5 s, measured here); the transcript a text teacher
  needs (ASR) is not counted.
- **windowed student** (Whisper tiny.en + CTA-RNN head, the shipped recipe; ``runs/cv_small/fold<k>/student.pt``):
  each fold exported with ``python -m export`` to ``runs/compare/<format>-<fp32|int8>/fold<k>/`` (cached: redone only
  when the checkpoint is newer) and evaluated through the SDK, ``edgeser.load(path).classify(clip)``, on that fold's
  held-out actors; speed (``analyze()`` RTF, per-window latency), live latency and peak RSS on fold 0's export with
  the functions of ``benchmarks/default_model.py``.
- **causal streaming student** (``train/models/causal.py``; ``runs/causal/causal.pt`` and any
  ``runs/causal_f<k>/causal.pt``): exported with ``python -m export.causal`` to ``runs/compare/causal/fold<k>/`` and
  run with ``export.causal.OnnxStep`` (the SDK runtime does not run stateful models yet). Clip label = logits after
  the clip's last 200 ms chunk, streamed from a fresh state over the clip's log-mel padded with digital silence (the
  ``stream`` protocol of ``train.distill_causal.evaluate``).

Plots: ``results/compare_tradeoff.png`` (UAR vs per-clip CPU latency, marker area ~ file size) and
``results/compare_confusion.png`` (fold-summed confusion matrices: the best teacher and every student).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import RESULTS, write_result

LABELS = ("neutral", "happy", "angry", "sad")
N_FOLDS = 5
STUDENT_RUNS = ROOT / "runs" / "cv_small"
COMPARE_RUNS = ROOT / "runs" / "compare"
STUDENT_VARIANTS = ("onnx-fp32", "onnx-int8", "pte-int8", "pte-fp32")  # <format>-<quantization>, in run order
CAUSAL_NAME = "edgeser-causal"
TRADEOFF_PNG = "compare_tradeoff.png"
CONFUSION_PNG = "compare_confusion.png"


class MissingInput(SystemExit):
    """An input the comparison needs is absent: the message says which command produces it."""

    def __init__(self, what: str, command: str):
        super().__init__(f"compare.py: missing {what}\n  produce it with: {command}")


# ------------------------------------------------------------------------------------------- pure helpers (tested)


def percentiles(ms) -> dict:
    """p50 / p95 / mean / n of a list of latencies (ms)."""
    a = np.asarray(list(ms), dtype=np.float64)
    if a.size == 0:
        raise ValueError("no latencies to summarise")
    return {"p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)), "mean": float(a.mean()),
            "n": int(a.size)}


class Clock:
    """Wall and process-CPU milliseconds of a block (``with Clock() as c: ...``; then ``c.wall``, ``c.cpu``). On one
    thread the process CPU time is the cost itself; the wall time also holds whatever else the machine ran."""

    def __enter__(self):
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = (time.perf_counter() - self._w) * 1e3
        self.cpu = (time.process_time() - self._c) * 1e3
        return False


def both(wall, cpu) -> dict:
    """``{"cpu": percentiles(cpu), "wall": percentiles(wall)}``."""
    return {"cpu": percentiles(cpu), "wall": percentiles(wall)}


def aggregate_folds(folds: list[dict], labels=LABELS) -> dict:
    """Per-fold records (``fold``, ``uar``, ``wa``, ``confusion``; optional ``n``) -> mean UAR/WA over the folds, the
    folds used, the per-fold figures and the fold-summed confusion matrix (with the UAR/WA it implies, pooled)."""
    if not folds:
        raise ValueError("no folds to aggregate")
    folds = sorted(folds, key=lambda r: r["fold"])
    if len({r["fold"] for r in folds}) != len(folds):
        raise ValueError(f"duplicate folds: {[r['fold'] for r in folds]}")
    conf = np.sum([np.asarray(r["confusion"], dtype=np.int64) for r in folds], axis=0)
    if conf.shape != (len(labels), len(labels)):
        raise ValueError(f"confusion matrices must be {len(labels)}x{len(labels)}, got {conf.shape}")
    support = conf.sum(1)
    recall = np.divide(np.diag(conf), support, out=np.zeros(len(labels)), where=support > 0)
    uars = [float(r["uar"]) for r in folds]
    return {"uar": float(np.mean(uars)), "wa": float(np.mean([float(r["wa"]) for r in folds])),
            "uar_sd": float(np.std(uars)), "folds": [int(r["fold"]) for r in folds],
            "per_fold": [{"fold": int(r["fold"]), "uar": float(r["uar"]), "wa": float(r["wa"]),
                          "n": int(r.get("n", np.sum(r["confusion"])))} for r in folds],
            "confusion": conf.tolist(), "labels": list(labels),
            "pooled_uar": float(recall[support > 0].mean()), "pooled_wa": float(np.trace(conf) / max(conf.sum(), 1))}


def short_name(row: dict) -> str:
    if row["kind"] == "teacher":
        return row["model"] if row["variant"] == "full" else f"{row['model']}/{row['variant']}"
    if row["kind"] == "student":
        return f"student {row['format']} {row['quantization']}"
    return f"causal {row['format']} {row['quantization']}"


def plot_tradeoff(rows: list[dict], path) -> Path:
    """UAR (%) vs per-clip CPU latency (ms, log scale); marker area ~ file size; teachers / students distinguished."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    style = {"teacher": ("tab:blue", "o", "teacher (full)"), "ablation": ("lightsteelblue", "o", "teacher ablation"),
             "student": ("tab:orange", "s", "windowed student (SDK)"), "causal": ("tab:green", "^", "causal student")}
    fig, ax = plt.subplots(figsize=(9, 6), dpi=110)
    seen = set()
    pts = [r for r in rows if r.get("uar") is not None and ((r.get("clip_ms") or {}).get("cpu") or {}).get("p50")]
    if not pts:
        raise ValueError("no row has both a UAR and a per-clip latency")
    mib = np.array([max(r.get("file_mib") or 0.5, 0.5) for r in pts])
    sizes = 30 + 900 * np.sqrt(mib / mib.max())
    for r, s in zip(pts, sizes):
        key = "ablation" if r["kind"] == "teacher" and r.get("variant") != "full" else r["kind"]
        color, marker, label = style[key]
        ax.scatter(r["clip_ms"]["cpu"]["p50"], 100 * r["uar"], s=s, c=color, marker=marker, alpha=0.75, edgecolors="k",
                   linewidths=0.5, label=None if key in seen else label, zorder=3 if key != "ablation" else 2)
        seen.add(key)
    ax.set_xscale("log")
    xs = [r["clip_ms"]["cpu"]["p50"] for r in pts]
    ys = [100 * r["uar"] for r in pts]
    ax.set_xlim(min(xs) / 1.4, max(xs) * 1.6)
    ax.set_ylim(min(ys) - 2.5, max(ys) + 1.5)
    fig.canvas.draw()
    pt = fig.dpi / 72.0  # pixels per point
    placed: list[tuple[float, float]] = []  # label anchors in pixels: move a label down until it clears the others
    for r in sorted(pts, key=lambda r: (-r["uar"], r["clip_ms"]["cpu"]["p50"])):
        key = "ablation" if r["kind"] == "teacher" and r.get("variant") != "full" else r["kind"]
        x, y = r["clip_ms"]["cpu"]["p50"], 100 * r["uar"]
        px, py = ax.transData.transform((x, y))
        dy = 4.0
        while any(abs(px - qx) < 70 and abs(py + dy * pt - qy) < 8 * pt for qx, qy in placed):
            dy -= 8.0
        placed.append((px, py + dy * pt))
        ax.annotate(short_name(r), (x, y), fontsize=6.5 if key == "ablation" else 8, xytext=(6, dy),
                    textcoords="offset points", color="dimgray" if key == "ablation" else "black",
                    arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "gray"} if dy != 4.0 else None)
    fmt = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_major_formatter(fmt)
    ax.xaxis.set_minor_formatter(fmt)
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel("per-clip latency on 1 CPU thread, ms (p50; log scale; features + VAD + model)")
    ax.set_ylabel("UAR % (mean over the folds used)")
    ax.set_title("RAVDESS 4 classes, speaker-independent folds: accuracy vs latency (marker area ~ file size)")
    ax.grid(True, which="both", alpha=0.3)
    leg = ax.legend(loc="lower right", fontsize=8, markerscale=0.5)
    for h in leg.legend_handles:
        h.set_sizes([40])
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_confusions(items: list[tuple[str, list[list[int]]]], labels, path) -> Path:
    """A grid of small heatmaps (row-normalised, counts written in): ``items`` = [(title, confusion), ...]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not items:
        raise ValueError("no confusion matrices to plot")
    n = len(items)
    cols = min(4, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.1 * cols, 3.0 * rows), dpi=110, squeeze=False)
    short = [lab[:3] for lab in labels]
    for ax, (title, conf) in zip(axes.flat, items):
        m = np.asarray(conf, dtype=np.float64)
        norm = m / np.maximum(m.sum(1, keepdims=True), 1)
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=8,
                        color="white" if norm[i, j] > 0.6 else "black")
        ax.set_xticks(range(len(labels)), short, fontsize=7)
        ax.set_yticks(range(len(labels)), short, fontsize=7)
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("predicted", fontsize=7)
        ax.set_ylabel("true", fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle("Fold-summed confusion matrices (rows = truth; colour = row-normalised recall)", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------- shared measurement bits


def _load_json(path: Path, what: str, command: str):
    if not path.is_file():
        raise MissingInput(f"{what} ({path.relative_to(ROOT)})", command)
    return json.loads(path.read_text())


@functools.lru_cache(maxsize=1)
def _ravdess():
    from train.data.ravdess import load_ravdess, ravdess_root

    try:
        root = ravdess_root()
        clips = load_ravdess()
    except (FileNotFoundError, OSError) as exc:
        raise MissingInput(f"the RAVDESS data ({exc})", "see ../shared/data/ravdess/README.md "
                           "(or set EDGESER_RAVDESS)") from exc
    return root, clips


def _folds() -> list[list[str]]:
    from train.data.ravdess import speaker_folds

    return speaker_folds(_ravdess()[1], N_FOLDS)


def fold_of(test_speakers) -> int:
    """Index of the speaker-independent fold whose held-out actors are ``test_speakers``."""
    want = sorted(test_speakers)
    for k, f in enumerate(_folds()):
        if sorted(f) == want:
            return k
    raise ValueError(f"{want} is not one of the {N_FOLDS} RAVDESS folds")


def _vmhwm_code(body: str) -> str:
    return (body + "\nhwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
            "print('VMHWM', int(hwm) / 1024.0)\n")


def fresh_process_peak_rss(body: str, *args) -> float:
    """VmHWM (MiB) of a fresh Python process running ``body`` (``sys.argv[1:]`` = ``args``), 1 thread."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", _vmhwm_code(body), *map(str, args)], capture_output=True, text=True,
                         cwd=ROOT, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"peak-RSS subprocess failed:\n{out.stderr[-2000:]}")
    return float([ln for ln in out.stdout.splitlines() if ln.startswith("VMHWM")][-1].split()[1])


class NullBackend:
    """A windowed model that returns zeros: its stream's events come exactly when the VAD decides (audio time)."""

    name = "null"

    def __init__(self, info):
        self.info, self.path = info, "<null>"

    def run(self, window):
        return np.zeros(len(self.info.labels), np.float32)

    def step(self, window, state):
        return self.run(window), ()


def vad_final_delay(info, audio, spans) -> dict:
    """End of speech -> the VAD's end decision, in audio time (20 ms chunks): ``default_model.live_latency`` on a
    model that costs nothing. A model that answers at the segment end adds its own compute to this."""
    from benchmarks.default_model import live_latency
    from edgeser.model import Model

    return live_latency(Model(NullBackend(info)), audio, spans)["final_after_speech_end_s"]


# ------------------------------------------------------------------------------------------- teachers


def teacher_rows(frontend: dict, vad_final: dict) -> tuple[list[dict], list[str]]:
    """One row per (teacher, variant): accuracy from teachers.json, cost from teacher_timing_<device>.json."""
    teachers = _load_json(RESULTS / "teachers.json", "the teachers' per-fold results",
                          "bash scripts/gpu_teachers.sh ... on a GPU machine, then python -m train merge "
                          "(see benchmarks/README.md, 'Teachers')")
    cpu = _load_json(RESULTS / "teacher_timing_cpu.json", "the teachers' CPU timings",
                     "python benchmarks/teacher_timing.py --device cpu")
    cuda_p = RESULTS / "teacher_timing_cuda.json"
    cuda = json.loads(cuda_p.read_text()) if cuda_p.is_file() else None
    missing = [] if cuda else [f"{cuda_p.relative_to(ROOT)}: GPU timings of the teachers (run "
                               "`python benchmarks/teacher_timing.py --device cuda` on a GPU machine)"]
    timing = {(t["model"], t["variant"]): t for t in cpu["teachers"]}
    gtiming = {(t["model"], t["variant"]): t for t in cuda["teachers"]} if cuda else {}
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in teachers:
        groups.setdefault((r["model"], r["variant"]), []).append(r)
    order = ["mmer", "cma", "cta_rnn", "mtl_ctc", "gmp_atl"]
    rows = []
    for key in sorted(groups, key=lambda k: (order.index(k[0]) if k[0] in order else 99, k[1] != "full", k[1])):
        recs = groups[key]
        if key not in timing:
            raise MissingInput(f"CPU timing of teacher {key[0]}:{key[1]}",
                               "python benchmarks/teacher_timing.py --device cpu")
        t = timing[key]
        if t["params"] != recs[0]["params"]:
            raise SystemExit(f"compare.py: {key}: {t['params']} parameters built here, {recs[0]['params']} in "
                             "teachers.json: the random-init build does not match the trained teacher")
        f32 = t["timings"]["fp32"]
        sec = t["clip_seconds"]
        clip, rtf = {"clip_seconds": sec}, {}
        for clock, sfx in (("cpu", "_cpu_ms"), ("wall", "_ms")):
            fe = frontend["features"][clock]["p50"] + frontend["vad"][clock]["p50"]
            text = f32.get("text_encoder" + sfx)
            model = f32["model" + sfx]
            clip[clock] = {q: model[q] + (text[q] if text else 0.0) + fe for q in ("p50", "p95")}
            clip[clock].update(model_p50=model["p50"], text_encoder_p50=text["p50"] if text else None,
                               frontend_p50=fe)
            rtf[clock] = clip[clock]["p50"] / 1000.0 / sec
        row = {"kind": "teacher", "model": key[0], "variant": key[1], "format": "pytorch", "quantization": "fp32",
               "backbone": recs[0]["backbone"], **aggregate_folds(recs),
               "params": t["params"], "text_encoder_params": t["text_encoder_params"], "text_tokens": t["text_tokens"],
               "file_mib": (t["state_dict_bytes"] + t["text_encoder_state_dict_bytes"]) / 2**20,
               "clip_ms": clip, "ms_per_audio_s": clip["cpu"]["p50"] / sec, "rtf": rtf, "chunk_ms": None,
               "peak_rss_mib": t["peak_rss_mib"],
               "final_after_speech_end_s": {k: v + clip["cpu"]["p50"] / 1000.0 for k, v in vad_final.items()},
               "final_how": "derived: VAD end decision (measured, audio time) + features + VAD + model (CPU p50) "
                            "on the whole clip",
               "trained_on": recs[0]["device"].replace("cuda:", ""), "gpu": None}
        if key in gtiming:
            g = gtiming[key]["timings"]
            bf = g.get("bf16_autocast", {})
            row["gpu"] = {"device": cuda["environment"].get("gpu", "cuda"),
                          "fp32_ms": g["fp32"]["model_ms"], "bf16_ms": bf.get("model_ms"),
                          "text_encoder_fp32_ms": g["fp32"].get("text_encoder_ms"),
                          "max_memory_allocated_mib": {k: v.get("cuda_max_memory_allocated_mib") for k, v in g.items()}}
        rows.append(row)
    extra = sorted(set(timing) - set(groups))
    if extra:
        missing.append(f"timed but without accuracy in teachers.json: {extra}")
    return rows, missing


def frontend_cost(clip_path, seconds: float = 3.5, repeats: int = 10) -> dict:
    """ms of the edgeser front end (whole-clip log-mel; Silero VAD segmentation) on ``seconds`` of a real clip."""
    from edgeser.audio import load as load_audio
    from edgeser.features import log_mel
    from edgeser.vad import Segmenter, SileroVad, speech_segments

    x = load_audio(clip_path)
    n = int(seconds * 16000)
    x = np.pad(x, (0, max(0, n - x.size)))[:n]
    seg = Segmenter(SileroVad(threads=1))
    out = {"seconds": seconds}
    for name, fn in (("features", lambda: log_mel(x)), ("vad", lambda: speech_segments(x, seg))):
        w, c = [], []
        for _ in range(repeats):
            with Clock() as k:
                fn()
            w.append(k.wall)
            c.append(k.cpu)
        out[name] = both(w, c)
    return out


# ------------------------------------------------------------------------------------------- windowed student


def student_checkpoint(fold: int) -> Path:
    ck = STUDENT_RUNS / f"fold{fold}" / "student.pt"
    if not ck.is_file():
        cmd = "python -m train.student cv --runs runs/cv_small ..."
        p = RESULTS / "student_cv.json"
        if p.is_file():
            cmd = json.loads(p.read_text()).get("command", cmd)
        raise MissingInput(f"the student checkpoint of fold {fold} ({ck.relative_to(ROOT)})", cmd)
    return ck


def _fresh(path: Path, source: Path) -> bool:
    return path.is_file() and path.stat().st_mtime >= source.stat().st_mtime


def _mismatch(log: Path) -> str | None:
    """The exporter's verification failure recorded in ``log`` (the file was written, then rejected), if any."""
    if not log.is_file():
        return None
    lines = [ln for ln in log.read_text().splitlines() if "ExportMismatch" in ln]
    return lines[-1].split("ExportMismatch: ", 1)[-1] if lines else None


def export_student(variant: str, fold: int) -> tuple[Path, str | None]:
    """(``runs/compare/<variant>/fold<k>/student.<fmt>``, None) exported and verified by ``python -m export``, redone
    only when the checkpoint is newer. If the exporter wrote the file but its check against eager failed, the file is
    returned with that failure (reported with the row, never hidden)."""
    fmt, q = variant.split("-")
    ck = student_checkpoint(fold)
    out = COMPARE_RUNS / variant / f"fold{fold}"
    path, report, log = out / f"student.{fmt}", out / "student.export.json", out / "export.log"
    if _fresh(path, ck):
        if _fresh(report, path) and path.name in json.loads(report.read_text()).get("files", {}):
            return path, None
        if _mismatch(log):
            return path, _mismatch(log)
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "export", "--checkpoint", str(ck), "--format", fmt, "--quantize",
           "none" if q == "fp32" else q, "--out", str(out), "--name", "student"]
    print("export:", " ".join(cmd[1:]), flush=True)
    t0 = time.time()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                       check=False)
    log.write_text(p.stdout + p.stderr)
    if p.returncode != 0:
        if path.is_file() and _fresh(path, ck) and _mismatch(log):
            print(f"  {path.relative_to(ROOT)}: the exporter's check FAILED: {_mismatch(log)}", flush=True)
            return path, _mismatch(log)
        raise SystemExit(f"compare.py: export failed ({' '.join(cmd[1:])}):\n{p.stderr[-3000:]}")
    print(f"  {path.relative_to(ROOT)} {path.stat().st_size / 2**20:.1f} MiB in {time.time() - t0:.0f} s", flush=True)
    return path, None


def classify_fold(model) -> tuple[dict, list[float], list[float], list[float]]:
    """``model.classify`` on every clip of the held-out actors of the model's fold (what a user gets): the
    classification report, per-clip wall and CPU ms (features + VAD + model), clip seconds."""
    from benchmarks.default_model import _clips
    from edgeser.audio import load as load_audio
    from train.metrics import classification_report

    root, rows = _clips(model.info)
    y_true, y_pred, wall, cpu, dur = [], [], [], [], []
    for r in rows:
        x = load_audio(root / r["path"])
        with Clock() as k:
            res = model.classify(x, 16000)
        wall.append(k.wall)
        cpu.append(k.cpu)
        dur.append(x.size / 16000)
        y_true.append(model.labels.index(r["emotion"]))
        y_pred.append(model.labels.index(res.label))
    return classification_report(y_true, y_pred, model.labels), wall, cpu, dur


def model_speed(model, audio: np.ndarray, windows: int = 100) -> dict:
    """``analyze()`` real-time factor over ``audio`` (features + VAD + model) and the model's time per window, wall
    and process CPU (``benchmarks/default_model.speed`` with both clocks)."""
    with Clock() as k:
        model.analyze(audio, 16000)
    dur = audio.size / 16000
    w = np.random.default_rng(0).standard_normal((1, 80, model.info.window_frames)).astype(np.float32) - 5
    for _ in range(5):
        model.backend.run(w)
    wall, cpu = [], []
    for _ in range(windows):
        with Clock() as c:
            model.backend.run(w)
        wall.append(c.wall)
        cpu.append(c.cpu)
    return {"audio_seconds": dur, "rtf": {"cpu": k.cpu / 1000 / dur, "wall": k.wall / 1000 / dur},
            "window_ms": both(wall, cpu)}


def student_params(fold: int) -> int:
    import torch

    from edgeser import __version__
    from export.student import build_from_checkpoint

    ck = torch.load(student_checkpoint(fold), map_location="cpu", weights_only=True)
    model, _ = build_from_checkpoint(ck, name="count", version=__version__, quantization="none")
    return sum(p.numel() for p in model.parameters())


_STUDENT_RSS = """
import sys, edgeser
m = edgeser.load(sys.argv[1], threads=1)
m.analyze(sys.argv[2])
"""


def student_rows(variants, folds_for: dict, seconds: float) -> tuple[list[dict], dict]:
    """One row per variant; returns (rows, context: the first speed fold's recording and VAD end delay)."""
    import tempfile

    import soundfile as sf

    import edgeser
    from benchmarks.default_model import live_latency, recording

    from concurrent.futures import ThreadPoolExecutor

    rows, ctx = [], {}
    params = student_params(0)
    # exports run one at a time in the background, in the order the variants are evaluated (so a slow .pte export
    # overlaps the evaluation of the files already there); costs are measured as process CPU time, which the
    # export subprocess does not add to
    pool = ThreadPoolExecutor(max_workers=1)
    pending = {(v, k): pool.submit(export_student, v, k) for v in variants for k in folds_for[v]}
    for variant in variants:
        fmt, q = variant.split("-")
        folds, wall, cpu, dur, unverified = [], [], [], [], {}
        paths = {}
        for k in folds_for[variant]:
            paths[k], bad = pending[(variant, k)].result()
            if bad:
                unverified[str(k)] = bad
        for k, path in paths.items():
            m = edgeser.load(path, threads=1)
            got = fold_of(m.info.training["validation"]["test_speakers"])
            if got != k:
                raise SystemExit(f"compare.py: {path} holds fold {got}'s model, expected fold {k}")
            rep, w, c, d = classify_fold(m)
            folds.append({"fold": k, **{x: rep[x] for x in ("uar", "wa", "confusion", "n", "recall")}})
            wall, cpu, dur = wall + w, cpu + c, dur + d
            print(f"{variant} fold {k}: UAR {rep['uar']:.4f} WA {rep['wa']:.4f} ({np.median(c):.0f} ms CPU/clip)",
                  flush=True)
        # speed, live latency, memory: on the first fold's export (the same architecture on every fold)
        k0 = min(paths)
        m = edgeser.load(paths[k0], threads=1)
        audio, spans = recording(m, seconds)
        sp = model_speed(m, audio)
        lv = live_latency(m, audio, spans)
        if "vad_final" not in ctx:
            ctx.update(audio=audio, spans=spans, info=m.info, fold=k0, vad_final=vad_final_delay(m.info, audio, spans))
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "recording.wav"
            sf.write(wav, audio, 16000)
            rss = fresh_process_peak_rss(_STUDENT_RSS, paths[k0], wav)
        clip = {**both(wall, cpu), "clip_seconds": float(np.mean(dur))}
        row = {"kind": "student", "model": "whisper-tiny.en + CTA-RNN head (windowed, shipped recipe)",
               "variant": variant, "format": fmt, "quantization": q, "backbone": "whisper-tiny.en",
               **aggregate_folds(folds), "params": params, "text_encoder_params": 0,
               "file_mib": paths[k0].stat().st_size / 2**20,
               "files": {str(k): str(p.relative_to(ROOT)) for k, p in paths.items()},
               "clip_ms": clip, "ms_per_audio_s": clip["cpu"]["p50"] / clip["clip_seconds"], "rtf": sp["rtf"],
               "rtf_audio_seconds": sp["audio_seconds"],
               "chunk_ms": {**sp["window_ms"], "what": "model, one 2 s window"},
               "peak_rss_mib": rss, "final_after_speech_end_s": lv["final_after_speech_end_s"],
               "first_partial_after_onset_s": lv["first_partial_after_onset_s"],
               "final_how": "measured: default_model.live_latency (20 ms chunks, audio time)",
               "speed_fold": k0, "trained_on": "cpu", "gpu": None}
        if unverified:
            row["export_check_failed"] = unverified
            row["note"] = (f"fold(s) {', '.join(unverified)}: the file was written but FAILED the exporter's check "
                           "against eager PyTorch; evaluated anyway")
        rows.append(row)
        print(f"{variant}: RTF {sp['rtf']['cpu']:.4f} CPU / {sp['rtf']['wall']:.4f} wall, window p50 "
              f"{sp['window_ms']['cpu']['p50']:.1f} ms CPU, RSS {rss:.0f} MiB", flush=True)
    pool.shutdown()
    return rows, ctx


# ------------------------------------------------------------------------------------------- causal student


def causal_checkpoints() -> tuple[dict[int, Path], list[str]]:
    """{fold: checkpoint} of the causal student: runs/causal/causal.pt (its fold from its held-out actors) and any
    runs/causal_f<k>/causal.pt; the folds with none are reported as missing."""
    import torch

    found: dict[int, Path] = {}
    cands = [ROOT / "runs" / "causal" / "causal.pt"] + sorted((ROOT / "runs").glob("causal_f[0-9]*/causal.pt"))
    for p in cands:
        if not p.is_file():
            continue
        ck = torch.load(p, map_location="cpu", weights_only=True)
        k = fold_of(ck["validation"]["test_speakers"])
        if ck["validation"].get("fold", k) != k:
            raise SystemExit(f"compare.py: {p}: validation fold {ck['validation']['fold']}, held-out actors of fold {k}")
        if k in found:
            raise SystemExit(f"compare.py: two causal checkpoints for fold {k}: {found[k]} and {p}")
        found[k] = p
    if not found:
        raise MissingInput("the causal student (runs/causal/causal.pt)",
                           "EDGESER_THREADS=1 python -m train.distill_causal --epochs 24 --out runs/causal")
    missing = [f"causal student fold {k}: no runs/causal_f{k}/causal.pt yet (python -m train.distill_causal "
               f"--fold {k} --out runs/causal_f{k})" for k in range(N_FOLDS) if k not in found]
    return found, missing


def _pte_supported() -> bool:
    import export.causal as ec

    return hasattr(ec, "export_causal_pte") and hasattr(ec, "open_step")


def export_causal(fold: int, ck: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """({"onnx-fp32": path, ...}, {variant: why not}) in runs/compare/causal/fold<k>/, by ``python -m export.causal``
    (cached; one call per format; .pte only if export/causal.py can make it)."""
    out = COMPARE_RUNS / "causal" / f"fold{fold}"
    fmts = ["onnx"] + (["pte"] if _pte_supported() else [])
    got, why = {}, {}
    if "pte" not in fmts:
        why.update({"pte-fp32": "not exported (export/causal.py has no .pte export)", "pte-int8": "not exported"})
    for fmt in fmts:
        paths = {f"{fmt}-fp32": out / f"{CAUSAL_NAME}.{fmt}", f"{fmt}-int8": out / f"{CAUSAL_NAME}-int8.{fmt}"}
        if not all(_fresh(p, ck) for p in paths.values()):
            out.mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, "-m", "export.causal", "--checkpoint", str(ck), "--out", str(out), "--name",
                   CAUSAL_NAME] + (["--format", fmt] if fmts != ["onnx"] else [])
            print("export:", " ".join(cmd[1:]), flush=True)
            p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"}, check=False)
            (out / f"export-{fmt}.log").write_text(p.stdout + p.stderr)
            if p.returncode != 0:
                if fmt == "onnx":
                    raise SystemExit(f"compare.py: causal export failed ({' '.join(cmd[1:])}):\n{p.stderr[-3000:]}")
                reason = (p.stderr.strip().splitlines() or ["?"])[-1][:300]
                why.update({v: f"export failed: {reason}" for v in paths})
                continue
        got.update(paths)
    return got, why


def _open_step(path):
    import export.causal as ec

    return ec.open_step(path, threads=1) if hasattr(ec, "open_step") else ec.OnnxStep(path, threads=1)


def causal_eval(step, fold_speakers) -> tuple[dict, dict]:
    """Each held-out clip streamed from a fresh state over its log-mel (padded with digital silence to whole chunks),
    label = logits after the last chunk (``train.distill_causal.evaluate``'s ``stream`` protocol): (report, timings:
    per-step and per-clip (features included) wall/CPU ms, clip seconds)."""
    from edgeser.audio import load as load_audio
    from edgeser.features import log_mel
    from export.causal import _chunks
    from train.metrics import classification_report

    _, clips = _ravdess()
    held = set(fold_speakers)
    f = step.info.window_frames
    y_true, y_pred = [], []
    t = {"step_wall": [], "step_cpu": [], "clip_wall": [], "clip_cpu": [], "dur": []}
    for c in (c for c in clips if c.speaker in held):
        x = load_audio(c.path)
        with Clock() as clip:
            chunks = _chunks(log_mel(x), f)
            state = step.initial_state()
            for ch in chunks:
                with Clock() as k:
                    logits, state = step.step(ch, state)
                t["step_wall"].append(k.wall)
                t["step_cpu"].append(k.cpu)
        t["clip_wall"].append(clip.wall)
        t["clip_cpu"].append(clip.cpu)
        t["dur"].append(x.size / 16000)
        y_true.append(LABELS.index(c.label))
        y_pred.append(int(np.argmax(logits)))
    return classification_report(y_true, y_pred, list(step.info.labels)), t


def causal_stream_rtf(step, audio: np.ndarray, piece: int = 3200) -> dict:
    """Cost / audio time of the causal model as a live stream on 1 thread: ``LogMelStream`` features, Silero VAD
    segmentation and the step on every complete chunk (speech or not: an upper bound of a VAD-gated run), fed
    ``piece`` samples (200 ms) at a time. Wall and process CPU."""
    from edgeser.features import LogMelStream
    from edgeser.vad import Segmenter, SileroVad

    f = step.info.window_frames
    feats, seg = LogMelStream(), Segmenter(SileroVad(threads=1))
    state = step.initial_state()
    buf = np.zeros((80, 0), np.float32)
    n_steps = 0
    with Clock() as k:
        for i in range(0, audio.size, piece):
            x = audio[i : i + piece]
            seg.accept(x)
            buf = np.concatenate([buf, feats.accept(x)], axis=1)
            while buf.shape[1] >= f:
                _, state = step.step(np.ascontiguousarray(buf[None, :, :f]), state)
                buf = buf[:, f:]
                n_steps += 1
    dur = audio.size / 16000
    return {"audio_seconds": dur, "rtf": {"cpu": k.cpu / 1000 / dur, "wall": k.wall / 1000 / dur}, "steps": n_steps}


_CAUSAL_RSS = """
import sys, soundfile as sf
from benchmarks.compare import _open_step, causal_stream_rtf
x, sr = sf.read(sys.argv[2], dtype='float32')
causal_stream_rtf(_open_step(sys.argv[1]), x)
"""


def causal_rows(ctx: dict) -> tuple[list[dict], list[str]]:
    import tempfile

    import soundfile as sf
    import torch

    from benchmarks.default_model import recording
    from export.causal import build_from_checkpoint

    cks, missing = causal_checkpoints()
    per: dict[str, dict] = {}
    why_not: dict[str, str] = {}
    for k, ck_path in sorted(cks.items()):
        ck = torch.load(ck_path, map_location="cpu", weights_only=True)
        paths, why = export_causal(k, ck_path)
        why_not.update(why)
        for variant, path in paths.items():
            step = _open_step(path)
            rep, t = causal_eval(step, ck["validation"]["test_speakers"])
            eager = ck["validation"].get("stream", {})
            d = per.setdefault(variant, {"folds": [], "paths": {}, **{x: [] for x in t}})
            d["folds"].append({"fold": k, **{x: rep[x] for x in ("uar", "wa", "confusion", "n", "recall")},
                               "eager_stream_uar": eager.get("uar")})
            for x, v in t.items():
                d[x] += v
            d["paths"][k] = path
            print(f"causal {variant} fold {k}: UAR {rep['uar']:.4f} WA {rep['wa']:.4f} (eager stream UAR "
                  f"{eager.get('uar')}), step p50 {np.median(t['step_cpu']):.2f} ms CPU", flush=True)
    k0 = min(cks)
    model = build_from_checkpoint(torch.load(cks[k0], map_location="cpu", weights_only=True))
    params = sum(p.numel() for p in model.parameters())
    chunk_s = model.cfg.chunk_frames / 100.0
    rows = []
    for variant in ("onnx-fp32", "onnx-int8", "pte-fp32", "pte-int8"):
        fmt, q = variant.split("-")
        base = {"kind": "causal", "model": "causal chunked Conformer distilled from whisper-base", "variant": variant,
                "format": fmt, "quantization": q, "backbone": "causal Conformer (200 ms chunks)", "params": params,
                "text_encoder_params": 0}
        if variant not in per:
            rows.append({**base, "uar": None, "wa": None, "folds": [], "note": why_not.get(variant, "not exported")})
            continue
        d = per[variant]
        path = d["paths"][k0]
        step = _open_step(path)

        class _Shim:  # default_model.recording reads the held-out actors from the model's metadata
            info = step.info

        audio, spans = recording(_Shim, ctx["seconds"])
        rtf = causal_stream_rtf(step, audio)
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "recording.wav"
            sf.write(wav, audio, 16000)
            rss = fresh_process_peak_rss(_CAUSAL_RSS, path, wav)
        # the VAD's end decision on this recording (the students' one when it is the same fold)
        vad = ctx["vad_final"] if ctx["fold"] == k0 else vad_final_delay(ctx["info"], audio, spans)
        steps = both(d["step_wall"], d["step_cpu"])
        clip = {**both(d["clip_wall"], d["clip_cpu"]), "clip_seconds": float(np.mean(d["dur"]))}
        rows.append({
            **base, **aggregate_folds(d["folds"]),
            "eager_stream_uar": {str(f["fold"]): f["eager_stream_uar"] for f in d["folds"]},
            "file_mib": path.stat().st_size / 2**20, "files": {str(k): str(p.relative_to(ROOT)) for k, p in d["paths"].items()},
            "clip_ms": clip, "ms_per_audio_s": clip["cpu"]["p50"] / clip["clip_seconds"], "rtf": rtf["rtf"],
            "rtf_audio_seconds": rtf["audio_seconds"],
            "chunk_ms": {**steps, "what": f"one step, {chunk_s * 1000:.0f} ms chunk"}, "peak_rss_mib": rss,
            "final_after_speech_end_s": {x: v + steps["cpu"]["p50"] / 1000.0 for x, v in vad.items()},
            "final_how": ("derived: VAD end decision (default_model.live_latency on a zero-cost model, audio time) + one "
                          f"step (CPU p50) on the pending partial chunk; add up to {chunk_s:.1f} s if the runtime "
                          "waits for the chunk to fill instead"),
            "speed_fold": k0, "trained_on": "cpu", "gpu": None,
            "protocol": ("clip streamed from a fresh state, logits after its last chunk (train.distill_causal.evaluate, "
                         "'stream'), through the exported file (export.causal step runner; the SDK runtime does not "
                         "run stateful models yet)")})
        print(f"causal {variant}: RTF {rtf['rtf']['cpu']:.4f} CPU, RSS {rss:.0f} MiB", flush=True)
    return rows, missing


# ------------------------------------------------------------------------------------------- driver


def _parse_limits(items) -> dict[str, list[int]]:
    out = {}
    for it in items or []:
        v, _, folds = it.partition(":")
        if v not in STUDENT_VARIANTS or not folds:
            raise SystemExit(f"--limit {it!r}: use VARIANT:FOLDS, e.g. pte-fp32:0 (variants {STUDENT_VARIANTS})")
        out[v] = sorted(int(x) for x in folds.split(","))
    return out


def plots(rows: list[dict]) -> list[str]:
    teachers = [r for r in rows if r["kind"] == "teacher"]
    best = max(teachers, key=lambda r: r["uar"])
    items = [(f"best teacher: {short_name(best)}\nUAR {100 * best['uar']:.1f}, folds "
              f"{','.join(map(str, best['folds']))}", best["confusion"])]
    for r in rows:
        if r["kind"] != "teacher" and r.get("confusion"):
            items.append((f"{short_name(r)}\nUAR {100 * r['uar']:.1f}, folds {','.join(map(str, r['folds']))}",
                          r["confusion"]))
    a = plot_tradeoff(rows, RESULTS / TRADEOFF_PNG)
    b = plot_confusions(items, LABELS, RESULTS / CONFUSION_PNG)
    return [a.name, b.name]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", nargs="+", default=list(STUDENT_VARIANTS), choices=STUDENT_VARIANTS)
    ap.add_argument("--folds", nargs="+", type=int, default=list(range(N_FOLDS)), help="student folds")
    ap.add_argument("--limit", nargs="*", default=[], help="fewer folds for a variant: VARIANT:FOLDS (pte-fp32:0)")
    ap.add_argument("--seconds", type=float, default=120.0, help="recording for RTF / live latency / memory")
    ap.add_argument("--plots-only", action="store_true", help="redraw the PNGs from results/compare.json")
    ap.add_argument("--refresh-teachers", action="store_true",
                    help="re-read teachers.json and teacher_timing_{cpu,cuda}.json into results/compare.json (e.g. "
                         "after a GPU run), keeping the measured student rows; redraws the PNGs")
    a = ap.parse_args(argv)
    if a.plots_only or a.refresh_teachers:
        path = RESULTS / "compare.json"
        d = _load_json(path, "the comparison", "python benchmarks/compare.py")
        if a.refresh_teachers:
            t_rows, t_missing = teacher_rows(d["frontend"], d["vad_final_after_speech_end_s"])
            d["rows"] = t_rows + [r for r in d["rows"] if r["kind"] != "teacher"]
            d["missing"] = t_missing + [m for m in d["missing"] if m.startswith("causal")]
            cpu = json.loads((RESULTS / "teacher_timing_cpu.json").read_text())
            d["inputs"]["teacher_timing_cpu"] = {k: cpu[k] for k in ("command", "date", "machine", "load_average")
                                                 if k in cpu}
            cuda_p = RESULTS / "teacher_timing_cuda.json"
            cuda = json.loads(cuda_p.read_text()) if cuda_p.is_file() else None
            d["inputs"]["teacher_timing_cuda"] = ({k: cuda[k] for k in ("command", "date", "environment") if k in cuda}
                                                  if cuda else None)
            d["teachers_refreshed"] = {"command": "python benchmarks/compare.py --refresh-teachers",
                                       "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
        d["plots"] = plots(d["rows"])
        path.write_text(json.dumps(d, indent=1) + "\n")
        print(path, d["plots"])
        return 0
    import torch

    torch.set_num_threads(1)
    t_start, load0 = time.time(), os.getloadavg()
    limits = _parse_limits(a.limit)
    folds_for = {v: limits.get(v, sorted(a.folds)) for v in a.variants}
    for v in a.variants:  # fail early on missing inputs
        for k in folds_for[v]:
            student_checkpoint(k)
    for name, what, cmd in (("teachers.json", "the teachers' per-fold results",
                             "bash scripts/gpu_teachers.sh ... (see benchmarks/README.md, 'Teachers')"),
                            ("teacher_timing_cpu.json", "the teachers' CPU timings",
                             "python benchmarks/teacher_timing.py --device cpu")):
        _load_json(RESULTS / name, what, cmd)
    causal_checkpoints()
    s_rows, ctx = student_rows(a.variants, folds_for, a.seconds)
    ctx["seconds"] = a.seconds
    c_rows, c_missing = causal_rows(ctx)
    _, clips = _ravdess()
    held = set(ctx["info"].training["validation"]["test_speakers"])
    fe = frontend_cost(next(c.path for c in clips if c.speaker in held))
    t_rows, t_missing = teacher_rows(fe, ctx["vad_final"])
    rows = t_rows + s_rows + c_rows
    missing = t_missing + c_missing + [f"causal {r['variant']}: {r['note']}" for r in c_rows if r.get("uar") is None]
    pngs = plots(rows)
    cpu = json.loads((RESULTS / "teacher_timing_cpu.json").read_text())
    cuda_p = RESULTS / "teacher_timing_cuda.json"
    cuda = json.loads(cuda_p.read_text()) if cuda_p.is_file() else None
    payload = {
        "threads": 1, "clock": "cpu", "labels": list(LABELS), "rows": rows, "missing": missing, "plots": pngs,
        "frontend": fe, "vad_final_after_speech_end_s": ctx["vad_final"],
        "recording": {"seconds": float(ctx["audio"].size / 16000), "fold": ctx["fold"], "clips": len(ctx["spans"]),
                      "what": "held-out clips of that fold back to back with 0.8 s pauses (default_model.recording)"},
        "inputs": {"teachers": "benchmarks/results/teachers.json",
                   "teacher_timing_cpu": {k: cpu[k] for k in ("command", "date", "machine", "load_average") if k in cpu},
                   "teacher_timing_cuda": ({k: cuda[k] for k in ("command", "date", "environment") if k in cuda}
                                           if cuda else None)},
        "protocol": ("RAVDESS actors 01-20, neutral/happy/angry/sad, the 5 speaker-independent folds of "
                     "train.data.ravdess.speaker_folds; UAR/WA = mean over the folds listed per row. Teachers: "
                     "per-fold results trained and evaluated on an H100 (teachers.json); windowed students: the "
                     "exported file through the SDK (edgeser.load(path).classify) on each fold's held-out actors; "
                     "causal student: the exported step through export.causal's runner, clip streamed from a fresh "
                     "state, logits after the last chunk. Costs on one CPU thread of this machine, as process CPU "
                     "time ('cpu': the cost itself; the machine is shared, so wall time, also recorded, includes "
                     "other jobs)."),
        "load_average": {"start": list(load0), "end": list(os.getloadavg())},
        "wall_seconds": round(time.time() - t_start, 1),
    }
    print(write_result("compare.json", payload, argv))
    for m in missing:
        print("missing:", m)
    return 0


if __name__ == "__main__":
    sys.exit(main())
