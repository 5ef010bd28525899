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
- **windowed student** (Whisper tiny.en + CTA-RNN head, no adaptation; ``runs/cv_small/fold<k>/student.pt``):
  each fold exported with ``python -m export`` to ``runs/compare/<format>-<fp32|int8>/fold<k>/`` (cached: redone only
  when the checkpoint is newer) and evaluated through the SDK, ``edgeser.load(path).classify(clip)``, on that fold's
  held-out actors; speed (``analyze()`` RTF, per-window latency), live latency and peak RSS on the first fold's
  export with the functions of ``benchmarks/default_model.py``.
- **adaptive student** (the same with test-time adaptive normalisation: the speaker/session mean of the encoder
  features subtracted before the head; ``runs/cv_adapt/fold<k>/student.pt``): exported the same way to
  ``runs/compare/adapt-<format>-<fp32|int8>/fold<k>/`` (graph ``(logmel, norm_sum, norm_count) -> (logits,
  norm_sum_out, norm_count_out)``) and evaluated through the SDK both per clip (a fresh stream each clip) and as
  sessions (per held-out speaker one ``model.stream(emit_partial=False)``, the speaker's clips in
  ``default_model.accuracy(session=True)``'s fixed shuffled order through ``classify(x, 16000, stream=s)``). The
  row's UAR/WA are the session ones; ``per_clip`` holds the per-clip ones.
- **causal streaming student** (``train/models/causal.py``; ``runs/causal_f<k>/causal.pt``, trained on a GPU by
  ``scripts/gpu_causal.sh``): exported with ``python -m export.causal`` to ``runs/compare/causal/fold<k>/`` and
  evaluated through the SDK like the windowed students (the runtime runs the stateful step: state reset per speech
  segment, a segment's score = the model's latest output); live latency measured. Cross-check kept in the JSON
  (``stream_fresh_state_uar``): each clip's log-mel streamed from a fresh state with ``export.causal``'s runner,
  logits after the last chunk (``train.distill_causal.evaluate``'s ``stream`` protocol).

    python benchmarks/compare.py --only adapt causal      # measure these; keep the windowed rows of compare.json
    python benchmarks/compare.py --limit adapt-pte-fp32:0 causal-pte-int8:0   # fewer folds (the rows say which)

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

from benchmarks.common import RESULTS, export_mismatch, write_result

LABELS = ("neutral", "happy", "angry", "sad")
N_FOLDS = 5
STUDENT_RUNS = ROOT / "runs" / "cv_small"
ADAPT_RUNS = ROOT / "runs" / "cv_adapt"
SESS_RUNS = ROOT / "runs" / "cv_adapt_sess"
MIX_RUNS = ROOT / "runs" / "cv_adapt_mix"
COMPARE_RUNS = ROOT / "runs" / "compare"
STUDENT_VARIANTS = ("onnx-fp32", "onnx-int8", "pte-int8", "pte-fp32")  # <format>-<quantization>, in run order
CAUSAL_VARIANTS = ("onnx-fp32", "onnx-int8", "pte-fp32", "pte-int8")
# windowed recipes: name -> (checkpoints, results file with the training command, row kind, prefix of the variant
# names and of the export folders under runs/compare/)
RECIPES = {
    "windowed": (STUDENT_RUNS, "student_cv.json", "student", ""),
    "adapt": (ADAPT_RUNS, "student_cv_adapt.json", "adaptive", "adapt-"),
    "sess": (SESS_RUNS, "student_cv_adapt_sess.json", "adaptive", "sess-"),
    "mix": (MIX_RUNS, "student_cv_adapt_mix.json", "adaptive", "mix-"),
}
# recipes exported as the bundled model is: with the temperature, abstain threshold and pooling that
# benchmarks/calibration.py fitted for each fold on the other folds (the others: the exporter's defaults)
RECIPE_CALIBRATION = {"mix": "calibration_adapt_mix.json"}
CAUSAL_PREFIX = "causal-"
ALL_VARIANTS = (tuple(prefix + v for _, _, _, prefix in RECIPES.values() for v in STUDENT_VARIANTS)
                + tuple(CAUSAL_PREFIX + v for v in CAUSAL_VARIANTS))
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


def split_variant(name: str) -> tuple[str, str]:
    """``"adapt-pte-fp32"`` -> ``("adapt", "pte-fp32")``; ``"causal-onnx-int8"`` -> ``("causal", "onnx-int8")``;
    ``"onnx-int8"`` -> ``("windowed", "onnx-int8")`` (the windowed recipe keeps its unprefixed names)."""
    if name.startswith(CAUSAL_PREFIX) and name[len(CAUSAL_PREFIX):] in CAUSAL_VARIANTS:
        return "causal", name[len(CAUSAL_PREFIX):]
    for recipe, (_, _, _, prefix) in RECIPES.items():
        if prefix and name.startswith(prefix) and name[len(prefix):] in STUDENT_VARIANTS:
            return recipe, name[len(prefix):]
    if name in STUDENT_VARIANTS:
        return "windowed", name
    raise ValueError(f"unknown variant {name!r} (one of {', '.join(ALL_VARIANTS)})")


def variant_name(recipe: str, variant: str) -> str:
    """Inverse of :func:`split_variant`."""
    return (CAUSAL_PREFIX if recipe == "causal" else RECIPES[recipe][3]) + variant


def variant_dir(recipe: str, variant: str, fold: int) -> Path:
    """Export folder of a windowed recipe's variant: ``runs/compare/<variant>/fold<k>`` (the windowed recipe) or
    ``runs/compare/adapt-<variant>/fold<k>``."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown windowed recipe {recipe!r}")
    return COMPARE_RUNS / variant_name(recipe, variant) / f"fold{fold}"


def session_order(speakers) -> list[int]:
    """Order of the clips (given by their speakers, manifest order) in a session evaluation: one fixed shuffle
    (``default_rng(0)``), then grouped by speaker (stable), exactly ``default_model.accuracy(session=True)``'s order."""
    speakers = list(speakers)
    perm = np.random.default_rng(0).permutation(len(speakers))
    return [int(i) for i in sorted(perm, key=lambda i: speakers[i])]


def short_name(row: dict) -> str:
    if row["kind"] == "teacher":
        return row["model"] if row["variant"] == "full" else f"{row['model']}/{row['variant']}"
    if row["kind"] == "student":
        return f"student {row['format']} {row['quantization']}"
    if row["kind"] == "adaptive":
        tag = {"sess": "adaptive+sessions", "mix": "adaptive+sessions+mix"}.get(row.get("recipe"), "adaptive")
        return f"{tag} {row['format']} {row['quantization']}"
    return f"causal {row['format']} {row['quantization']}"


def plot_tradeoff(rows: list[dict], path) -> Path:
    """UAR (%) vs per-clip CPU latency (ms, log scale); marker area ~ file size; teachers / students distinguished."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    style = {"teacher": ("tab:blue", "o", "teacher (full)"), "ablation": ("lightsteelblue", "o", "teacher ablation"),
             "student": ("tab:orange", "s", "windowed student (SDK)"),
             "adaptive": ("tab:red", "D", "adaptive student (SDK, session)"),
             "causal": ("tab:green", "^", "causal student (SDK)")}
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


def student_checkpoint(fold: int, recipe: str = "windowed") -> Path:
    runs, results, _, _ = RECIPES[recipe]
    ck = runs / f"fold{fold}" / "student.pt"
    if not ck.is_file():
        cmd = f"python -m train.student cv --runs {runs.relative_to(ROOT)} ..."
        p = RESULTS / results
        if p.is_file():
            cmd = json.loads(p.read_text()).get("command", cmd)
        raise MissingInput(f"the {recipe} student checkpoint of fold {fold} ({ck.relative_to(ROOT)})", cmd)
    return ck


def _fresh(path: Path, source: Path) -> bool:
    return path.is_file() and path.stat().st_mtime >= source.stat().st_mtime


def export_options(recipe: str, fold: int) -> list[str]:
    """The exporter's options beyond format and quantisation for ``recipe``'s fold: the fold's calibration
    (:data:`RECIPE_CALIBRATION`) or none."""
    if recipe not in RECIPE_CALIBRATION:
        return []
    from benchmarks.export_folds import calibration_args, load_calibration

    name = RECIPE_CALIBRATION[recipe]
    if not (RESULTS / name).is_file():
        raise MissingInput(f"{name} (the {recipe} recipe's per-fold calibration)",
                           f"python benchmarks/calibration.py --runs {RECIPES[recipe][0].relative_to(ROOT)} ...")
    return calibration_args(load_calibration(name, RECIPES[recipe][0]), fold)


def _exported_with(report: Path, log: Path, options: list[str]) -> bool:
    """Whether the export in this folder ran with ``options`` (its report's command, or the first line of its log
    when the check failed and no report was written)."""
    want = " ".join(options)
    if report.is_file():
        cmd = json.loads(report.read_text()).get("command", "")
    elif log.is_file():
        cmd = log.read_text().split("\n", 1)[0]
    else:
        return False
    return cmd.endswith(f"--name student {want}".rstrip()) if want else cmd.rstrip().endswith("--name student")


def export_student(variant: str, fold: int, recipe: str = "windowed") -> tuple[Path, str | None]:
    """(``runs/compare/[adapt-]<variant>/fold<k>/student.<fmt>``, None) exported and verified by ``python -m
    export`` (with the fold's calibration for the recipes of :data:`RECIPE_CALIBRATION`), redone when the checkpoint
    is newer or the options changed. If the exporter wrote the file but its check against eager failed, the file is
    returned with that failure (reported with the row, never hidden)."""
    fmt, q = variant.split("-")
    ck = student_checkpoint(fold, recipe)
    options = export_options(recipe, fold)
    out = variant_dir(recipe, variant, fold)
    path, report, log = out / f"student.{fmt}", out / "student.export.json", out / "export.log"
    if _fresh(path, ck) and _exported_with(report, log, options):
        if _fresh(report, path) and path.name in json.loads(report.read_text()).get("files", {}):
            return path, None
        if export_mismatch(log):
            return path, export_mismatch(log)
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "export", "--checkpoint", str(ck), "--format", fmt, "--quantize",
           "none" if q == "fp32" else q, "--out", str(out), "--name", "student", *options]
    print("export:", " ".join(cmd[1:]), flush=True)
    t0 = time.time()
    report.unlink(missing_ok=True)  # a report of an export with other options must not vouch for this file
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                       check=False)
    log.write_text("python " + " ".join(cmd[1:]) + "\n" + p.stdout + p.stderr)
    if p.returncode != 0:
        if path.is_file() and _fresh(path, ck) and export_mismatch(log):
            print(f"  {path.relative_to(ROOT)}: the exporter's check FAILED: {export_mismatch(log)}", flush=True)
            return path, export_mismatch(log)
        raise SystemExit(f"compare.py: export failed ({' '.join(cmd[1:])}):\n{p.stderr[-3000:]}")
    print(f"  {path.relative_to(ROOT)} {path.stat().st_size / 2**20:.1f} MiB in {time.time() - t0:.0f} s", flush=True)
    return path, None


def classify_fold(model, session: bool = False) -> tuple[dict, list[float], list[float], list[float]]:
    """``model.classify`` on every clip of the held-out actors of the model's fold (what a user gets): the
    classification report, per-clip wall and CPU ms (features + VAD + model), clip seconds. ``session``: per held-out
    speaker one ``model.stream(emit_partial=False)``, the speaker's clips in :func:`session_order` through
    ``classify(x, 16000, stream=s)`` (an adaptive model carries its statistics from clip to clip;
    ``default_model.accuracy(model, session=True)``); otherwise each clip alone (a fresh stream)."""
    from benchmarks.default_model import _clips
    from edgeser.audio import load as load_audio
    from train.metrics import classification_report

    root, rows = _clips(model.info)
    order = session_order([r["speaker"] for r in rows]) if session else list(range(len(rows)))
    streams: dict[str, object] = {}
    y_true, y_pred, wall, cpu, dur = [], [], [], [], []
    for i in order:
        r = rows[i]
        x = load_audio(root / r["path"])
        st = streams.setdefault(r["speaker"], model.stream(emit_partial=False)) if session else None
        with Clock() as k:
            res = model.classify(x, 16000, stream=st)
        wall.append(k.wall)
        cpu.append(k.cpu)
        dur.append(x.size / 16000)
        y_true.append(model.labels.index(r["emotion"]))
        y_pred.append(model.labels.index(res.label))
    return classification_report(y_true, y_pred, model.labels), wall, cpu, dur


def model_speed(model, audio: np.ndarray, windows: int = 100) -> dict:
    """``analyze()`` real-time factor over ``audio`` (features + VAD + model) and the model's time per window (a
    stateful model: one step from its initial state), wall and process CPU (``benchmarks/default_model.speed`` with
    both clocks)."""
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


def student_params(fold: int, recipe: str = "windowed") -> int:
    import torch

    from edgeser import __version__
    from export.student import build_from_checkpoint

    ck = torch.load(student_checkpoint(fold, recipe), map_location="cpu", weights_only=True)
    model, _ = build_from_checkpoint(ck, name="count", version=__version__, quantization="none")
    return sum(p.numel() for p in model.parameters())


def _trained_on(recipe: str, fold: int) -> str:
    p = RECIPES[recipe][0] / f"fold{fold}" / "validation.json"
    dev = json.loads(p.read_text()).get("device", "cpu") if p.is_file() else "cpu"
    return dev.split(" (")[0] if dev.startswith("cpu") else dev


_STUDENT_RSS = """
import sys, edgeser
m = edgeser.load(sys.argv[1], threads=1)
m.analyze(sys.argv[2])
"""


def evaluate_sdk(paths: dict[int, Path], recipe: str, label: str, seconds: float, *, session: bool) -> dict:
    """Every fold's exported file through the SDK (per clip; and as sessions if ``session``), then speed, live latency
    and peak RSS on the first fold's file: the measured parts of a row."""
    import tempfile

    import soundfile as sf

    import edgeser
    from benchmarks.default_model import live_latency, recording

    folds, sess, wall, cpu, dur = [], [], [], [], []
    for k, path in sorted(paths.items()):
        m = edgeser.load(path, threads=1)
        got = fold_of(m.info.training["validation"]["test_speakers"])
        if got != k:
            raise SystemExit(f"compare.py: {path} holds fold {got}'s model, expected fold {k}")
        rep, w, c, d = classify_fold(m)
        folds.append({"fold": k, **{x: rep[x] for x in ("uar", "wa", "confusion", "n", "recall")}})
        wall, cpu, dur = wall + w, cpu + c, dur + d
        txt = ""
        if session:
            srep = classify_fold(m, session=True)[0]
            sess.append({"fold": k, **{x: srep[x] for x in ("uar", "wa", "confusion", "n", "recall")}})
            txt = f", session UAR {srep['uar']:.4f} WA {srep['wa']:.4f}"
        print(f"{label} fold {k}: UAR {rep['uar']:.4f} WA {rep['wa']:.4f} per clip{txt} ({np.median(c):.0f} ms "
              "CPU/clip)", flush=True)
    k0 = min(paths)
    m = edgeser.load(paths[k0], threads=1)
    audio, spans = recording(m, seconds)
    sp = model_speed(m, audio)
    lv = live_latency(m, audio, spans)
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "recording.wav"
        sf.write(wav, audio, 16000)
        rss = fresh_process_peak_rss(_STUDENT_RSS, paths[k0], wav)
    print(f"{label}: RTF {sp['rtf']['cpu']:.4f} CPU / {sp['rtf']['wall']:.4f} wall, window p50 "
          f"{sp['window_ms']['cpu']['p50']:.1f} ms CPU, RSS {rss:.0f} MiB, final after end "
          f"{lv['final_after_speech_end_s']['mean']:.2f} s", flush=True)
    return {"folds": folds, "session": sess, "clip": {**both(wall, cpu), "clip_seconds": float(np.mean(dur))},
            "speed": sp, "live": lv, "rss": rss, "k0": k0, "info": m.info, "audio": audio, "spans": spans}


def _sdk_row(base: dict, ev: dict, paths: dict[int, Path], chunk_what: str) -> dict:
    clip, sp, lv, k0 = ev["clip"], ev["speed"], ev["live"], ev["k0"]
    return {**base, "file_mib": paths[k0].stat().st_size / 2**20,
            "files": {str(k): str(p.relative_to(ROOT)) for k, p in paths.items()},
            "clip_ms": clip, "ms_per_audio_s": clip["cpu"]["p50"] / clip["clip_seconds"], "rtf": sp["rtf"],
            "rtf_audio_seconds": sp["audio_seconds"], "chunk_ms": {**sp["window_ms"], "what": chunk_what},
            "peak_rss_mib": ev["rss"], "final_after_speech_end_s": lv["final_after_speech_end_s"],
            "first_partial_after_onset_s": lv["first_partial_after_onset_s"],
            "final_how": "measured: default_model.live_latency (20 ms chunks, audio time)", "speed_fold": k0}


def _mark_unverified(row: dict, unverified: dict) -> dict:
    if unverified:
        row["export_check_failed"] = unverified
        row["note"] = (f"fold(s) {', '.join(unverified)}: the file was written but FAILED the exporter's check "
                       "against eager PyTorch; evaluated anyway")
    return row


MODEL_TEXT = {
    "windowed": "whisper-tiny.en + CTA-RNN head (windowed)",
    "adapt": "whisper-tiny.en + CTA-RNN head + test-time adaptive normalisation (windowed)",
    "sess": "whisper-tiny.en + CTA-RNN head + test-time adaptive normalisation, trained under noisy sessions "
            "(windowed; the previous default's recipe)",
    "mix": "whisper-tiny.en + CTA-RNN head + test-time adaptive normalisation, trained under noisy sessions and "
           "varied emotion mixes (windowed; the bundled default's recipe)",
}


def student_rows(variants, folds_for: dict, seconds: float, recipe: str = "windowed") -> tuple[list[dict], dict]:
    """One row per variant of a windowed recipe; returns (rows, context: the first speed fold's recording and VAD end
    delay). The adaptive recipe is evaluated per clip and as sessions; its headline UAR/WA is the session one."""
    from concurrent.futures import ThreadPoolExecutor

    rows, ctx = [], {}
    kind = RECIPES[recipe][2]
    session = kind == "adaptive"  # adaptive recipes: sessions as the headline
    params = student_params(min(min(f) for f in folds_for.values()), recipe)
    # exports run one at a time in the background, in the order the variants are evaluated (so a slow .pte export
    # overlaps the evaluation of the files already there); costs are measured as process CPU time, which the
    # export subprocess does not add to
    pool = ThreadPoolExecutor(max_workers=1)
    pending = {(v, k): pool.submit(export_student, v, k, recipe) for v in variants for k in folds_for[v]}
    for variant in variants:
        fmt, q = variant.split("-")
        paths, unverified = {}, {}
        for k in folds_for[variant]:
            paths[k], bad = pending[(variant, k)].result()
            if bad:
                unverified[str(k)] = bad
        ev = evaluate_sdk(paths, recipe, variant_name(recipe, variant), seconds, session=session)
        if recipe == "windowed" and "vad_final" not in ctx:  # the VAD's end decision, for the teachers' rows
            ctx.update(audio=ev["audio"], spans=ev["spans"], info=ev["info"], fold=ev["k0"],
                       vad_final=vad_final_delay(ev["info"], ev["audio"], ev["spans"]))
        per_clip = aggregate_folds(ev["folds"])
        head = aggregate_folds(ev["session"]) if session else per_clip
        base = {"kind": kind, "recipe": recipe, "model": MODEL_TEXT[recipe], "variant": variant, "format": fmt,
                "quantization": q, "backbone": "whisper-tiny.en", **head, "params": params, "text_encoder_params": 0,
                "trained_on": _trained_on(recipe, min(paths)), "gpu": None,
                "pooling": ev["info"].aggregate, "temperature": ev["info"].temperature}
        if recipe in RECIPE_CALIBRATION:
            base["calibration"] = (f"{RECIPE_CALIBRATION[recipe]}: each fold exported with its own temperature, "
                                   "abstain threshold and pooling (temperature/pooling here: the speed fold's)")
        if session:
            base.update(headline="session", per_clip={k: per_clip[k] for k in (
                "uar", "wa", "uar_sd", "folds", "per_fold", "confusion", "pooled_uar", "pooled_wa")},
                protocol=("headline UAR/WA: one session per held-out speaker (model.stream(emit_partial=False), the "
                          "speaker's clips in default_model.accuracy(session=True)'s fixed shuffled order through "
                          "classify(x, 16000, stream=s): the adaptation statistics carried from clip to clip); "
                          "per_clip: each clip alone through classify(x, 16000) (a fresh stream)"))
        rows.append(_mark_unverified(_sdk_row(base, ev, paths, "model, one 2 s window"), unverified))
    pool.shutdown()
    return rows, ctx


# ------------------------------------------------------------------------------------------- causal student


def causal_checkpoints() -> tuple[dict[int, Path], list[str]]:
    """{fold: checkpoint} of the causal student: ``runs/causal_f<k>/causal.pt`` (trained on a GPU by
    ``scripts/gpu_causal.sh``); the folds with none are reported as missing. The old CPU fold-0 run
    (``runs/causal_cpu24``) is not part of the comparison."""
    import torch

    found: dict[int, Path] = {}
    for p in sorted((ROOT / "runs").glob("causal_f[0-9]*/causal.pt")):
        ck = torch.load(p, map_location="cpu", weights_only=True)
        k = fold_of(ck["validation"]["test_speakers"])
        if ck["validation"].get("fold", k) != k:
            raise SystemExit(f"compare.py: {p}: validation fold {ck['validation']['fold']}, held-out actors of fold {k}")
        if k in found:
            raise SystemExit(f"compare.py: two causal checkpoints for fold {k}: {found[k]} and {p}")
        found[k] = p
    if not found:
        raise MissingInput("the causal student (runs/causal_f<k>/causal.pt)",
                           "bash scripts/gpu_causal.sh (on a GPU machine; see benchmarks/README.md)")
    missing = [f"causal student fold {k}: no runs/causal_f{k}/causal.pt yet (bash scripts/gpu_causal.sh)"
               for k in range(N_FOLDS) if k not in found]
    return found, missing


def causal_trained_on(ck_path: Path) -> str:
    """The device of a causal fold's training record (``runs/causal_f<k>/record.json``): the GPU name."""
    rec = ck_path.parent / "record.json"
    dev = json.loads(rec.read_text()).get("device", "?") if rec.is_file() else "?"
    return dev[dev.index("(") + 1 : dev.rindex(")")] if "(" in dev and dev.endswith(")") else dev


def _pte_supported() -> bool:
    import export.causal as ec

    return hasattr(ec, "export_causal_pte") and hasattr(ec, "open_step")


def export_causal(fold: int, ck: Path, fmts=("onnx", "pte")) -> tuple[dict[str, Path], dict[str, str], dict[str, str]]:
    """({"onnx-fp32": path, ...}, {variant: why not}, {variant: export check failure}) in
    ``runs/compare/causal/fold<k>/``, by ``python -m export.causal`` (cached; one call per format; .pte only if
    export/causal.py can make it). A file that was written but failed the exporter's check is returned with the
    failure (reported with the row)."""
    out = COMPARE_RUNS / "causal" / f"fold{fold}"
    fmts = [f for f in fmts if f == "onnx" or _pte_supported()]
    got, why, bad = {}, {}, {}
    for fmt in fmts:
        paths = {f"{fmt}-fp32": out / f"{CAUSAL_NAME}.{fmt}", f"{fmt}-int8": out / f"{CAUSAL_NAME}-int8.{fmt}"}
        log = out / f"export-{fmt}.log"
        if not all(_fresh(p, ck) for p in paths.values()):
            out.mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, "-m", "export.causal", "--checkpoint", str(ck), "--out", str(out), "--name",
                   CAUSAL_NAME, "--format", fmt]
            print("export:", " ".join(cmd[1:]), flush=True)
            p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"}, check=False)
            log.write_text(p.stdout + p.stderr)
            if p.returncode != 0 and not export_mismatch(log):
                if fmt == "onnx":
                    raise SystemExit(f"compare.py: causal export failed ({' '.join(cmd[1:])}):\n{p.stderr[-3000:]}")
                reason = (p.stderr.strip().splitlines() or ["?"])[-1][:300]
                why.update({v: f"export failed: {reason}" for v in paths})
                continue
        mm = export_mismatch(log)
        for v, path in paths.items():
            if _fresh(path, ck):
                got[v] = path
                if mm and path.name in mm:
                    bad[v] = mm
            else:
                why[v] = f"not exported ({mm or 'see ' + str(log.relative_to(ROOT))})"
    return got, why, bad


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


def causal_rows(seconds: float, folds_for: dict[str, list[int]] | None = None) -> tuple[list[dict], list[str]]:
    """The causal student's rows: each fold's exported step through the SDK (``edgeser.load(path).classify``, state
    scope "segment", aggregate "last"), speed / live latency / memory as for the windowed students; the old protocol
    (clip streamed from a fresh state with ``export.causal``'s runner) kept as a cross-check per fold."""
    import torch

    from export.causal import build_from_checkpoint

    cks, missing = causal_checkpoints()
    folds_for = folds_for or {}
    want = {v: [k for k in folds_for.get(v, sorted(cks)) if k in cks] for v in CAUSAL_VARIANTS}
    paths: dict[str, dict[int, Path]] = {v: {} for v in CAUSAL_VARIANTS}
    why_not: dict[str, str] = {}
    bad: dict[str, dict[str, str]] = {v: {} for v in CAUSAL_VARIANTS}
    cross: dict[str, dict[str, float]] = {v: {} for v in CAUSAL_VARIANTS}
    eager: dict[str, float] = {}
    for k, ck_path in sorted(cks.items()):
        fmts = [f for f in ("onnx", "pte") if any(k in want[v] for v in CAUSAL_VARIANTS if v.startswith(f))]
        if not fmts:
            continue
        ck = torch.load(ck_path, map_location="cpu", weights_only=True)
        eager[str(k)] = ck["validation"].get("stream", {}).get("uar")
        got, why, b = export_causal(k, ck_path, fmts)
        why_not.update(why)
        for v, path in got.items():
            if k not in want[v]:
                continue
            paths[v][k] = path
            if v in b:
                bad[v][str(k)] = b[v]
            rep, _ = causal_eval(_open_step(path), ck["validation"]["test_speakers"])
            cross[v][str(k)] = rep["uar"]
    k0 = min(cks)
    model = build_from_checkpoint(torch.load(cks[k0], map_location="cpu", weights_only=True))
    params = sum(p.numel() for p in model.parameters())
    chunk_ms = model.cfg.chunk_frames * 10
    trained = sorted({causal_trained_on(p) for p in cks.values()})
    rows = []
    for variant in CAUSAL_VARIANTS:
        fmt, q = variant.split("-")
        base = {"kind": "causal", "recipe": "causal", "model": "causal chunked Conformer distilled from whisper-base",
                "variant": variant, "format": fmt, "quantization": q, "backbone": "causal Conformer (200 ms chunks)",
                "params": params, "text_encoder_params": 0, "trained_on": ", ".join(trained), "gpu": None}
        if not paths[variant]:
            rows.append({**base, "uar": None, "wa": None, "folds": [],
                         "note": why_not.get(variant, "not exported" if want[variant] else "not run (--limit)")})
            continue
        ev = evaluate_sdk(paths[variant], "causal", variant_name("causal", variant), seconds, session=False)
        row = {**base, **aggregate_folds(ev["folds"]),
               "stream_fresh_state_uar": cross[variant], "eager_stream_uar": {k: eager.get(k) for k in cross[variant]},
               "protocol": ("the exported step through the SDK (edgeser.load(path).classify: Silero VAD segments, "
                            f"state reset per segment, one step per {chunk_ms} ms chunk, the segment's score = the "
                            "model's latest output; the clip's = the segments' weighted by their chunks); "
                            "stream_fresh_state_uar: cross-check, the whole clip's log-mel streamed from a fresh state "
                            "with export.causal's runner, logits after the last chunk")}
        rows.append(_mark_unverified(_sdk_row(row, ev, paths[variant], f"one step, {chunk_ms} ms chunk"),
                                     bad[variant]))
    return rows, missing


# ------------------------------------------------------------------------------------------- driver


def _parse_limits(items) -> dict[str, list[int]]:
    """``["pte-fp32:0", "adapt-pte-int8:0,1", "causal-pte-fp32:0"]`` -> {variant name: folds}."""
    out = {}
    for it in items or []:
        v, _, folds = it.partition(":")
        if v not in ALL_VARIANTS or not folds:
            raise SystemExit(f"--limit {it!r}: use VARIANT:FOLDS, e.g. pte-fp32:0 or adapt-pte-fp32:0 (variants "
                             f"{', '.join(ALL_VARIANTS)})")
        out[v] = sorted(int(x) for x in folds.split(","))
    return out


def plots(rows: list[dict]) -> list[str]:
    teachers = [r for r in rows if r["kind"] == "teacher"]
    best = max(teachers, key=lambda r: r["uar"])
    items = [(f"best teacher: {short_name(best)}\nUAR {100 * best['uar']:.1f}, folds "
              f"{','.join(map(str, best['folds']))}", best["confusion"])]
    for r in rows:
        if r["kind"] != "teacher" and r.get("confusion"):
            sess = " (session)" if r.get("headline") == "session" else ""
            items.append((f"{short_name(r)}{sess}\nUAR {100 * r['uar']:.1f}, folds {','.join(map(str, r['folds']))}",
                          r["confusion"]))
    a = plot_tradeoff(rows, RESULTS / TRADEOFF_PNG)
    b = plot_confusions(items, LABELS, RESULTS / CONFUSION_PNG)
    return [a.name, b.name]


ROW_RECIPE = {"student": "windowed", "adaptive": "adapt", "causal": "causal"}
PROTOCOL = ("RAVDESS actors 01-20, neutral/happy/angry/sad, the 5 speaker-independent folds of "
            "train.data.ravdess.speaker_folds; UAR/WA = mean over the folds listed per row. Teachers: per-fold results "
            "trained and evaluated on an H100 (teachers.json). Students: each fold's exported file through the SDK "
            "(edgeser.load(path).classify) on that fold's held-out actors: the windowed student clip by clip; the "
            "adaptive student (test-time adaptive normalisation) as sessions (headline: per held-out speaker one "
            "stream, the speaker's clips in a fixed shuffled order, the adaptation statistics carried from clip to "
            "clip) and clip by clip (per_clip); the causal student clip by clip (the stateful step, state reset per "
            "speech segment, score = its latest output). Costs on one CPU thread of this machine, as process CPU "
            "time ('cpu': the cost itself; the machine is shared, so wall time, also recorded, includes other jobs).")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="+", choices=(*RECIPES, "causal"), default=None,
                    help="measure only these students; the other student rows, the front end and the VAD delay are "
                         "kept from results/compare.json (teacher rows re-read)")
    ap.add_argument("--variants", nargs="+", default=list(STUDENT_VARIANTS), choices=STUDENT_VARIANTS,
                    help="windowed / adaptive student variants")
    ap.add_argument("--folds", nargs="+", type=int, default=list(range(N_FOLDS)), help="student folds")
    ap.add_argument("--limit", nargs="*", default=[],
                    help="fewer folds for a variant: VARIANT:FOLDS (pte-fp32:0 adapt-pte-int8:0 causal-pte-fp32:0)")
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
    measure = a.only or [*RECIPES, "causal"]
    prev = None
    if "windowed" not in measure or a.only:
        prev = _load_json(RESULTS / "compare.json", "the comparison whose other rows --only keeps",
                          "python benchmarks/compare.py")
    limits = _parse_limits(a.limit)
    folds_for = {r: {v: limits.get(variant_name(r, v), sorted(a.folds)) for v in a.variants} for r in RECIPES}
    causal_folds = {v: limits[variant_name("causal", v)] for v in CAUSAL_VARIANTS if variant_name("causal", v) in limits}
    for r in RECIPES:  # fail early on missing inputs
        if r in measure:
            for v in a.variants:
                for k in folds_for[r][v]:
                    student_checkpoint(k, r)
    for name, what, cmd in (("teachers.json", "the teachers' per-fold results",
                             "bash scripts/gpu_teachers.sh ... (see benchmarks/README.md, 'Teachers')"),
                            ("teacher_timing_cpu.json", "the teachers' CPU timings",
                             "python benchmarks/teacher_timing.py --device cpu")):
        _load_json(RESULTS / name, what, cmd)
    if "causal" in measure:
        causal_checkpoints()
    rows_by: dict[str, list[dict]] = {}
    kept: dict[str, dict] = {}
    ctx: dict = {}
    for r in RECIPES:
        if r in measure:
            rows_by[r], c = student_rows(a.variants, folds_for[r], a.seconds, r)
            if r == "windowed":
                ctx = c
    c_missing: list[str] = []
    if "causal" in measure:
        rows_by["causal"], c_missing = causal_rows(a.seconds, causal_folds)
    if prev is not None:
        for r in (*RECIPES, "causal"):
            if r not in measure:
                rows_by[r] = [x for x in prev["rows"] if (x.get("recipe") or ROW_RECIPE.get(x["kind"])) == r]
                if rows_by[r]:  # the run that measured them (through any number of --only runs since)
                    kept[r] = (prev.get("kept") or {}).get(r) or {"command": prev.get("command"),
                                                                  "date": prev.get("date")}
                if r == "causal":
                    c_missing = [m for m in prev.get("missing", []) if m.startswith("causal student fold")]
    if ctx:
        _, clips = _ravdess()
        held = set(ctx["info"].training["validation"]["test_speakers"])
        fe = frontend_cost(next(c.path for c in clips if c.speaker in held))
        vad_final = ctx["vad_final"]
        rec = {"seconds": float(ctx["audio"].size / 16000), "fold": ctx["fold"], "clips": len(ctx["spans"]),
               "what": "held-out clips of that fold back to back with 0.8 s pauses (default_model.recording)"}
    else:
        fe, vad_final, rec = prev["frontend"], prev["vad_final_after_speech_end_s"], prev["recording"]
    t_rows, t_missing = teacher_rows(fe, vad_final)
    s_rows = [row for r in RECIPES for row in rows_by.get(r, [])]
    c_rows = rows_by.get("causal", [])
    rows = t_rows + s_rows + c_rows
    missing = t_missing + c_missing + [f"{short_name(r)}: {r['note']}" for r in s_rows + c_rows if r.get("uar") is None]
    pngs = plots(rows)
    cpu = json.loads((RESULTS / "teacher_timing_cpu.json").read_text())
    cuda_p = RESULTS / "teacher_timing_cuda.json"
    cuda = json.loads(cuda_p.read_text()) if cuda_p.is_file() else None
    payload = {
        "threads": 1, "clock": "cpu", "labels": list(LABELS), "rows": rows, "missing": missing, "plots": pngs,
        "measured": list(measure), "kept": kept,
        "frontend": fe, "vad_final_after_speech_end_s": vad_final, "recording": rec,
        "inputs": {"teachers": "benchmarks/results/teachers.json",
                   "teacher_timing_cpu": {k: cpu[k] for k in ("command", "date", "machine", "load_average") if k in cpu},
                   "teacher_timing_cuda": ({k: cuda[k] for k in ("command", "date", "environment") if k in cuda}
                                           if cuda else None)},
        "protocol": PROTOCOL,
        "load_average": {"start": list(load0), "end": list(os.getloadavg())},
        "wall_seconds": round(time.time() - t_start, 1),
    }
    print(write_result("compare.json", payload, argv))
    for m in missing:
        print("missing:", m)
    return 0


if __name__ == "__main__":
    sys.exit(main())
