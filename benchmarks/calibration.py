"""Calibrated confidence on held-out speakers: temperature scaling fitted on validation speakers, ECE, abstention.

    python benchmarks/calibration.py [--runs runs/cv_small] [--checkpoint student.pt] [--refresh]

Protocol (no retraining): the 5 speaker-independent folds of ``python -m train.student cv --runs DIR``.
1. Every clip of fold k's held-out actors is classified by fold k's model (eager PyTorch fp32 from
   ``DIR/fold{k}/<checkpoint>``) through the runtime itself (``edgeser.Model.classify`` over a backend that records
   the logits of every window; stateful / adaptive models are run with the state the runtime carries, a fresh
   stream per clip as ``classify`` does): the windows are exactly the runtime's. Cached per checkpoint (sha256) and
   runtime/model code (``FINGERPRINT_FILES``) under ``runs/calibration/``; ``--refresh`` recomputes.
2. The temperature used for fold k is fitted (``train.calibration.fit_temperature``: NLL of the runtime's clip
   probability = mean of window softmax(logits / T)) on the held-out clips of the OTHER four folds -- speakers never
   in fold k's test set, i.e. validation speakers for the recipe; so is the abstain threshold
   (``choose_threshold``). ECE / NLL / accuracy / abstention are then measured on fold k's held-out clips, at T = 1
   (before) and at the fitted T (after); pooled = all five test folds together (each with its own T).
3. The shipped model (``edgeser/models/default/edgeser-default.onnx``, int8, exported from one fold's checkpoint, the
   fold whose held-out actors its metadata names): its temperature is the one fitted on the other folds' clips; its
   ECE is measured through ``edgeser.load(...).classify`` on that fold's held-out clips with that temperature put
   into its metadata (``dataclasses.replace`` on ``backend.info``; the file is not changed).

Writes benchmarks/results/calibration.json, benchmarks/results/reliability.png (pooled, before / after) and
benchmarks/results/reliability_shipped.png. ``render_markdown(results)`` renders the section for the report.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import RESULTS, file_sha256, write_result  # noqa: E402
from train import calibration as C  # noqa: E402

N_FOLDS = 5
N_BINS = 15
ECE_TARGET = 0.05
CACHE_DIR = ROOT / "runs" / "calibration"
SHIPPED = ROOT / "edgeser" / "models" / "default" / "edgeser-default.onnx"


@dataclass
class FoldLogits:
    """Held-out clips of one fold scored by that fold's model: per clip the logits of every runtime window."""

    fold: int
    test_speakers: list[str]
    label_names: tuple[str, ...]
    clip_ids: list[str]  # "Actor_XX/file.flac"
    speakers: list[str]
    labels: np.ndarray  # class index per clip
    logits: list[np.ndarray]  # [n_windows_i, C] per clip
    source: str  # what produced the logits
    seconds: float  # extraction time (0 when read from the cache)


# ---------------------------------------------------------------------------------------------------------------
# logits source: a fold's checkpoint run through the runtime


def _recording_backend(inner):
    from edgeser.runtime.base import Backend

    class LogitRecorder(Backend):
        """Passes windows to ``inner`` and records the logits of every window the runtime runs."""

        name = "recording"

        def __init__(self):
            self.info, self.path, self.logits = inner.info, inner.path, []

        def run(self, window):
            out = np.asarray(inner.run(window), np.float32).reshape(-1)
            self.logits.append(out.copy())
            return out

        def step(self, window, state):  # stateful (e.g. test-time adaptive) models: the runtime carries the state
            logits, new = inner.step(window, state)
            out = np.asarray(logits, np.float32).reshape(-1)
            self.logits.append(out.copy())
            return out, new

    return LogitRecorder()


# code whose change changes the windows or the logits: part of the cache key with the checkpoint's hash
FINGERPRINT_FILES = ("edgeser/audio.py", "edgeser/features.py", "edgeser/vad.py", "edgeser/stream.py",
                     "edgeser/model.py", "export/student.py", "train/models/cta_rnn.py", "train/backbones/whisper.py")


def _code_fingerprint() -> str:
    h = hashlib.sha256()
    for name in FINGERPRINT_FILES:
        p = ROOT / name
        h.update(name.encode() + b"\0" + (p.read_bytes() if p.is_file() else b"<missing>") + b"\0")
    return h.hexdigest()


def _clip_id(path: str) -> str:
    p = Path(path)
    return f"{p.parent.name}/{p.name}"


def checkpoint_logits(runs: Path, fold: int, *, checkpoint: str = "student.pt", cache_dir: Path | None = CACHE_DIR,
                      refresh: bool = False, log=print, session: bool = False) -> FoldLogits:
    """Fold ``fold``'s held-out clips scored by ``runs/fold{fold}/<checkpoint>`` (eager PyTorch, fp32) through
    ``edgeser.Model.classify`` (the runtime's VAD and windows), cached under ``cache_dir`` by checkpoint sha256.

    ``session``: per speaker, one stream through which the speaker's clips are classified one after another (in a
    fixed shuffled order), so that a test-time adaptive model carries its statistics from clip to clip, as in a
    live session; otherwise every clip starts from a fresh stream."""
    ck_path = Path(runs) / f"fold{fold}" / checkpoint
    if not ck_path.is_file():
        raise FileNotFoundError(f"no checkpoint {ck_path} (train it with `python -m train.student cv --runs {runs}`)")
    sha = file_sha256(ck_path)
    code = _code_fingerprint()
    tag = "-session" if session else ""
    cache = None if cache_dir is None else Path(cache_dir) / f"logits-{sha[:16]}-{code[:8]}{tag}.npz"
    if cache is not None and cache.is_file() and not refresh:
        z = np.load(cache, allow_pickle=False)
        counts = z["counts"]
        flat = z["logits"]
        offs = np.concatenate([[0], np.cumsum(counts)])
        if int(z["fold"]) != fold:
            raise ValueError(f"{cache}: cached for fold {int(z['fold'])}, not {fold}")
        return FoldLogits(fold, [str(s) for s in z["test_speakers"]], tuple(str(s) for s in z["label_names"]),
                          [str(s) for s in z["clip_ids"]], [str(s) for s in z["speakers"]], z["labels"].astype(int),
                          [flat[offs[i]:offs[i + 1]] for i in range(len(counts))], f"{ck_path} (sha256 {sha[:16]})", 0.0)

    import torch

    from edgeser import __version__
    from edgeser.audio import load as load_audio
    from edgeser.constants import SAMPLE_RATE
    from edgeser.model import Model
    from export.student import TorchBackend, build_from_checkpoint
    from train.data.ravdess import load_ravdess

    torch.set_num_threads(1)
    ck = torch.load(ck_path, map_location="cpu", weights_only=True)
    if ck["validation"].get("fold", fold) != fold:
        raise ValueError(f"{ck_path}: trained for fold {ck['validation']['fold']}, not {fold}")
    model, info = build_from_checkpoint(ck, name=f"fold{fold}", version=__version__, quantization="none")
    if getattr(info, "aggregate", "mean") != "mean":
        raise ValueError(f"{ck_path}: clip scores aggregate {info.aggregate!r}; the temperature fit assumes the mean "
                         "of the window probabilities")
    held = sorted(ck["validation"]["test_speakers"])
    labels = tuple(ck["labels"])
    clips = [c for c in load_ravdess(labels=labels) if c.speaker in held]
    if session:  # speakers in turn, each one's clips in a fixed shuffled order
        order = np.random.default_rng(0).permutation(len(clips))
        clips = sorted((clips[i] for i in order), key=lambda c: c.speaker)
    t0 = time.time()
    logits, worst = [], 0.0
    rec = streams = None
    for i, c in enumerate(clips):
        if not session or rec is None:
            rec = _recording_backend(TorchBackend(model, info))
            m = Model(rec)
            streams = {}
        n0 = len(rec.logits)
        st = streams.setdefault(c.speaker, m.stream(emit_partial=False)) if session else None
        res = m.classify(load_audio(c.path), SAMPLE_RATE, stream=st)
        lg = np.stack(rec.logits[n0:])
        # the runtime's confidence is the mean of the recorded windows' softmax (checks the recording is complete)
        p = C.clip_probs([lg], info.temperature)[0]
        worst = max(worst, float(np.abs(p - np.asarray([res.scores[k] for k in labels])).max()))
        logits.append(lg)
        if log and (i + 1) % 28 == 0:
            log(f"fold {fold}: {i + 1}/{len(clips)} clips, {time.time() - t0:.0f} s")
    if worst > 1e-4:
        raise RuntimeError(f"recorded window logits do not reproduce classify()'s scores (max diff {worst})")
    seconds = time.time() - t0
    out = FoldLogits(fold, held, labels, [_clip_id(c.path) for c in clips], [c.speaker for c in clips],
                     np.asarray([labels.index(c.label) for c in clips]), logits,
                     f"{ck_path} (sha256 {sha[:16]}){' session' if session else ''}", seconds)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, fold=fold, test_speakers=np.asarray(held), label_names=np.asarray(labels),
                 clip_ids=np.asarray(out.clip_ids), speakers=np.asarray(out.speakers), labels=out.labels,
                 counts=np.asarray([len(x) for x in logits]), logits=np.concatenate(logits),
                 checkpoint=str(ck_path), sha256=sha, code_fingerprint=code)
        os.replace(tmp, cache)
    return out


# ---------------------------------------------------------------------------------------------------------------
# evaluation


def _check_folds(folds: list[FoldLogits]) -> None:
    seen: dict[str, int] = {}
    for f in folds:
        for s in f.test_speakers:
            if s in seen:
                raise ValueError(f"speaker {s} is held out by folds {seen[s]} and {f.fold}: not speaker-independent")
            seen[s] = f.fold
        if set(f.speakers) - set(f.test_speakers):
            raise ValueError(f"fold {f.fold} scores clips of speakers it did not hold out")
        if f.label_names != folds[0].label_names:
            raise ValueError("folds disagree on the label order")


def _other(folds: list[FoldLogits], k: int):
    logits = [x for f in folds if f.fold != k for x in f.logits]
    labels = np.concatenate([f.labels for f in folds if f.fold != k])
    return logits, labels


def _r(x, n=4):
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else round(float(x), n)


def _rd(d: dict, n=4) -> dict:
    return {k: (_r(v, n) if isinstance(v, float) else v) for k, v in d.items()}


def _speaker_bootstrap_ece(probs, labels, speakers, reps: int = 2000, seed: int = 0) -> list[float]:
    """95 % interval of the ECE, resampling speakers (clips of one speaker are not independent)."""
    rng = np.random.default_rng(seed)
    spk = np.asarray(speakers)
    ids = sorted(set(speakers))
    idx = {s: np.nonzero(spk == s)[0] for s in ids}
    vals = []
    for _ in range(reps):
        pick = np.concatenate([idx[s] for s in rng.choice(ids, size=len(ids), replace=True)])
        vals.append(C.expected_calibration_error(probs[pick], labels[pick], N_BINS))
    return [round(float(v), 4) for v in np.percentile(vals, [2.5, 97.5])]


POOLING = {"mean": "mean of window softmax(logits / T)", "mean_logits": "softmax(mean of window logits / T)"}


def _cross_fitted(folds: list[FoldLogits], aggregate: str, temperatures: list[float] | None = None) -> dict:
    """Pooled held-out summary of one pooling with each fold's T fitted on the other folds (for comparing poolings);
    ``temperatures``: those fits where the caller has them already (one per fold, in order)."""
    from train.metrics import classification_report

    if temperatures is None:
        temperatures = [C.fit_temperature(*_other(folds, f.fold), aggregate=aggregate) for f in folds]
    p = np.concatenate([C.clip_probs(f.logits, t, aggregate) for f, t in zip(folds, temperatures)])
    y = np.concatenate([f.labels for f in folds])
    spk = [s for f in folds for s in f.speakers]
    uar = classification_report(y, p.argmax(1), folds[0].label_names)["uar"]
    return {"aggregate": aggregate, "clip_probability": POOLING[aggregate],
            "temperatures": [round(t, 4) for t in temperatures], **_rd(C.summary(p, y, N_BINS)), "uar": _r(uar),
            "ece_speaker_bootstrap_95": _speaker_bootstrap_ece(p, y, spk)}


def evaluate(folds: list[FoldLogits], *, target_accuracy: float = C.DEFAULT_TARGET_ACCURACY,
             min_kept: int = C.DEFAULT_MIN_KEPT, aggregate: str = "mean") -> tuple[dict, dict]:
    """Per-fold and pooled results (JSON-ready) and the pooled arrays for the plots; ``aggregate``: the runtime's
    pooling of a clip's windows the temperature is fitted for (the model's metadata ``aggregate``)."""
    _check_folds(folds)
    per_fold, pooled_before, pooled_after, pooled_y, pooled_spk, kept_total, right_total = [], [], [], [], [], 0, 0
    temperatures = []
    for f in folds:
        fit_logits, fit_y = _other(folds, f.fold)
        t = C.fit_temperature(fit_logits, fit_y, aggregate=aggregate)
        temperatures.append(t)
        t_win = C.fit_window_temperature(fit_logits, fit_y)
        choice = C.choose_threshold(C.abstain_curve(C.clip_probs(fit_logits, t, aggregate), fit_y), target_accuracy,
                                    min_kept)
        before, after = C.clip_probs(f.logits, 1.0, aggregate), C.clip_probs(f.logits, t, aggregate)
        win_after = C.clip_probs(f.logits, t_win, aggregate)
        at = C.at_threshold(after, f.labels, choice.threshold)
        kept_total += at["kept"]
        right_total += round(at["selective_accuracy"] * at["kept"]) if at["kept"] else 0
        per_fold.append({
            "fold": f.fold, "test_speakers": f.test_speakers, "clips": len(f.labels),
            "windows": int(sum(len(x) for x in f.logits)), "logits_from": f.source,
            "extract_seconds": round(f.seconds, 1),
            "fit_clips": len(fit_y), "fit_folds": [g.fold for g in folds if g.fold != f.fold],
            "temperature": round(t, 4), "temperature_window_level": round(t_win, 4),
            "before": _rd(C.summary(before, f.labels, N_BINS)), "after": _rd(C.summary(after, f.labels, N_BINS)),
            "after_window_level_T": _rd(C.summary(win_after, f.labels, N_BINS)),
            "ece_noise_floor": _rd(C.ece_noise_floor(after, N_BINS)),
            "threshold": {"value": choice.threshold, "met_on_fit_clips": choice.met,
                          "fit_coverage": round(choice.coverage, 4),
                          "fit_selective_accuracy": round(choice.selective_accuracy, 4), "test": _rd(at)},
        })
        pooled_before.append(before)
        pooled_after.append(after)
        pooled_y.append(f.labels)
        pooled_spk += f.speakers
    pb, pa, y = np.concatenate(pooled_before), np.concatenate(pooled_after), np.concatenate(pooled_y)
    all_logits = [x for f in folds for x in f.logits]
    t_in = C.fit_temperature(all_logits, y, aggregate=aggregate)
    pooled = {
        "aggregate": aggregate,
        "clips": len(y), "speakers": len(set(pooled_spk)),
        "before": _rd(C.summary(pb, y, N_BINS)), "after": _rd(C.summary(pa, y, N_BINS)),
        "after_window_level_T": _rd(C.summary(np.concatenate([C.clip_probs(f.logits, r["temperature_window_level"],
                                                                           aggregate)
                                                              for f, r in zip(folds, per_fold)]), y, N_BINS)),
        "ece_noise_floor": _rd(C.ece_noise_floor(pa, N_BINS)),
        "ece_after_speaker_bootstrap_95": _speaker_bootstrap_ece(pa, y, pooled_spk),
        "ece_before_speaker_bootstrap_95": _speaker_bootstrap_ece(pb, y, pooled_spk),
        "threshold": {"coverage": round(kept_total / len(y), 4),
                      "selective_accuracy": round(right_total / max(kept_total, 1), 4),
                      "note": "each fold's clips at its own threshold (chosen on the other folds)"},
        "in_sample_reference": {
            "note": "T fitted on all pooled test clips and evaluated on them: optimistic, not a held-out figure",
            "temperature": round(t_in, 4), **_rd(C.summary(C.clip_probs(all_logits, t_in, aggregate), y, N_BINS))},
        # every pooling the runtime offers, each with its own cross-fitted T: the choice of pooling, side by side
        "poolings": [_cross_fitted(folds, g, temperatures if g == aggregate else None) for g in C.AGGREGATES],
        "reliability_before": C.reliability_bins(pb, y, N_BINS),
        "reliability_after": C.reliability_bins(pa, y, N_BINS),
    }
    for key in ("reliability_before", "reliability_after"):
        pooled[key] = {k: [_r(v) if isinstance(v, float) else v for v in vals] for k, vals in pooled[key].items()}
    curves = {}
    for name, p in (("before", pb), ("after", pa)):
        c = C.abstain_curve(p, y, np.round(np.linspace(0, 1, 21), 2))
        curves[name] = {k: [_r(v) if isinstance(v, float) else v for v in vals] for k, vals in c.items()}
    pooled["abstain_curve"] = curves
    return {"folds": per_fold, "pooled": pooled}, {"before": pb, "after": pa, "labels": y}


def shipped(model_path: Path, folds: list[FoldLogits], fold_results: list[dict], log=print,
            session: bool = False, aggregate: str = "mean") -> tuple[dict, dict]:
    """ECE of the shipped model file through ``edgeser.load(path).classify`` on the held-out clips of the fold it
    was exported from, at T = 1 and at the temperature fitted on the other folds."""
    import edgeser
    from edgeser.audio import load as load_audio
    from train.data.ravdess import load_ravdess, ravdess_root

    base = edgeser.load(model_path, threads=1)
    if base.info.aggregate != aggregate:
        raise ValueError(f"{model_path}: its windows pool by {base.info.aggregate!r}, the temperatures were fitted for "
                         f"{aggregate!r} (--aggregate {base.info.aggregate})")
    held = sorted(base.info.training.get("validation", {}).get("test_speakers", []))
    match = [r for r in fold_results if sorted(r["test_speakers"]) == held]
    if not match:
        raise ValueError(f"{model_path}: its held-out actors {held} are no fold's test set in these runs")
    r = match[0]
    f = next(g for g in folds if g.fold == r["fold"])
    t = r["temperature"]
    root = ravdess_root()
    by_id = {_clip_id(c.path): c for c in load_ravdess(labels=f.label_names)}
    labels = list(base.labels)
    if tuple(labels) != f.label_names:
        raise ValueError(f"{model_path}: label order {labels} differs from the checkpoints' {f.label_names}")
    out, probs = {}, {}
    t0 = time.time()
    for name, temp in (("before", 1.0), ("after", t)):
        m = edgeser.load(model_path, threads=1)
        m.backend.info = replace(m.backend.info, temperature=float(temp))
        m = edgeser.Model(m.backend)  # a Model reads backend.info when created
        assert m.info.temperature == float(temp)
        streams = {}  # session: one stream per speaker, the clips in the logits' (session) order

        def one(cid):
            st = streams.setdefault(cid.split("/")[0], m.stream(emit_partial=False)) if session else None
            return m.classify(load_audio(by_id[cid].path), 16000, stream=st).scores

        p = np.asarray([[one(cid)[k] for k in labels] for cid in f.clip_ids], dtype=np.float64)
        probs[name] = p
        out[name] = _rd(C.summary(p, f.labels, N_BINS))
    thr = r["threshold"]["value"]
    export_json = Path(model_path).with_suffix("").with_suffix(".export.json")
    exported_from = None
    if export_json.is_file():
        exported_from = json.loads(export_json.read_text()).get("checkpoint")
    res = {
        "file": str(Path(model_path).resolve().relative_to(ROOT)) if Path(model_path).resolve().is_relative_to(ROOT)
        else str(model_path),
        "quantization": base.info.quantization, "metadata_temperature": base.info.temperature,
        "aggregate": base.info.aggregate,
        "exported_from": exported_from, "fold": f.fold, "test_speakers": held, "clips": len(f.labels),
        "corpus": str(root),
        "temperature": t, "temperature_fitted_on_folds": r["fit_folds"],
        "before": out["before"], "after": out["after"],
        "threshold": _rd(C.at_threshold(probs["after"], f.labels, thr)),
        "ece_noise_floor": _rd(C.ece_noise_floor(probs["after"], N_BINS)),
        "seconds": round(time.time() - t0, 1),
    }
    if log:
        log(f"shipped {res['file']}: T {t:.3f}  ECE {out['before']['ece']:.4f} -> {out['after']['ece']:.4f}")
    return res, {"before": probs["before"], "after": probs["after"], "labels": f.labels}


def collect(source: Callable[[int], FoldLogits], n_folds: int = N_FOLDS) -> list[FoldLogits]:
    return [source(k) for k in range(n_folds)]


# ---------------------------------------------------------------------------------------------------------------
# report


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def render_markdown(results: dict, image_dir: str = "results") -> str:
    """The calibration section for the benchmarks report (``image_dir``: where reliability.png lies, relative to the
    Markdown file)."""
    m = results.get("machine", {})
    mach = m if isinstance(m, str) else f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores"
    pooled, sh = results["pooled"], results.get("shipped")
    out = ["## Calibrated confidence: temperature fitted on validation speakers", "",
           f"_`{results.get('command', '?')}` — {mach} — {results.get('date', '?')}_", "",
           results["protocol"], "",
           "| fold | test actors | T (fitted on the other folds) | T window-level | accuracy % before / after | "
           "NLL before → after | ECE before → after | ECE noise floor | abstain threshold | coverage % | "
           "selective accuracy % |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["folds"]:
        b, a, th = r["before"], r["after"], r["threshold"]
        out.append(f"| {r['fold']} | {', '.join(s.replace('Actor_', '') for s in r['test_speakers'])} | "
                   f"{r['temperature']:.3f} | {r['temperature_window_level']:.3f} | {_pct(b['accuracy'])} / "
                   f"{_pct(a['accuracy'])} | {b['nll']:.3f} → {a['nll']:.3f} | {b['ece']:.3f} → {a['ece']:.3f} | "
                   f"{r['ece_noise_floor']['mean']:.3f} | {th['value']:.2f} | {_pct(th['test']['coverage'])} | {_pct(th['test']['selective_accuracy'])} |")
    b, a, th = pooled["before"], pooled["after"], pooled["threshold"]
    out.append(f"| **pooled** | all {pooled['speakers']} ({pooled['clips']} clips) | | | {_pct(b['accuracy'])} / "
               f"{_pct(a['accuracy'])} | {b['nll']:.3f} → {a['nll']:.3f} | **{b['ece']:.4f} → {a['ece']:.4f}** | "
               f"{pooled['ece_noise_floor']['mean']:.3f} | per fold | {_pct(th['coverage'])} | {_pct(th['selective_accuracy'])} |")
    lo, hi = pooled["ece_after_speaker_bootstrap_95"]
    lo0, hi0 = pooled["ece_before_speaker_bootstrap_95"]
    tgt = results["ece_target"]
    met = a["ece"] <= tgt
    n_ok = sum(r["after"]["ece"] <= tgt for r in results["folds"])
    out += ["", f"**Target ECE <= {tgt} on held-out speakers: {'met' if met else 'NOT met'}** — pooled ECE after "
            f"calibration {a['ece']:.4f} (95 % speaker-bootstrap interval {lo:.3f}–{hi:.3f}; before: {b['ece']:.4f}, "
            f"{lo0:.3f}–{hi0:.3f}); {n_ok} of {len(results['folds'])} folds at or below it on their own. "
            f"Binned ECE is biased upwards on few clips: the noise floor is the mean ECE a perfectly calibrated model "
            f"with the same confidences would show on as many clips (labels drawn from its own probabilities) — "
            f"{pooled['ece_noise_floor']['mean']:.3f} for the {pooled['clips']} pooled clips, about "
            f"{np.mean([r['ece_noise_floor']['mean'] for r in results['folds']]):.3f} for one fold's "
            f"{results['folds'][0]['clips']}. Mean confidence {_pct(b['mean_confidence'])} % → "
            f"{_pct(a['mean_confidence'])} % against {_pct(a['accuracy'])} % accuracy ("
            + ("T < 1 sharpens: the uncalibrated model is underconfident)." if np.mean(
                [r["temperature"] for r in results["folds"]]) < 1 else "T > 1 softens: the uncalibrated model is "
               "overconfident)."),
            "", f"Abstain threshold: {results['threshold_criterion']}, chosen on the fitting folds' clips and applied "
            "to the test fold; the model abstains when the clip's top probability is below it.", ""]
    ref = pooled["in_sample_reference"]
    out += [f"In-sample reference (not held-out): one T = {ref['temperature']:.3f} fitted on all pooled clips gives "
            f"ECE {ref['ece']:.3f}. Window-level T (each window fitted on its own) instead of the clip-level fit: "
            f"pooled ECE {pooled['after_window_level_T']['ece']:.3f}.", ""]
    if pooled.get("poolings"):
        out += ["How a clip's windows pool into its probability (the model's metadata `aggregate`; each row with its "
                "own temperatures fitted on the other folds, all 5 test folds pooled):", "",
                "| pooling | clip probability | T per fold | ECE (95 % speaker bootstrap) | NLL | Brier | accuracy % | "
                "UAR % |", "|---|---|---|---|---|---|---|---|"]
        for g in pooled["poolings"]:
            lo_g, hi_g = g["ece_speaker_bootstrap_95"]
            mark = " (this run's)" if g["aggregate"] == pooled.get("aggregate", "mean") else ""
            out.append(f"| `{g['aggregate']}`{mark} | {g['clip_probability']} | "
                       f"{', '.join(f'{t:.3f}' for t in g['temperatures'])} | {g['ece']:.4f} ({lo_g:.3f}–{hi_g:.3f}) | "
                       f"{g['nll']:.3f} | {g['brier']:.3f} | {_pct(g['accuracy'])} | {_pct(g['uar'])} |")
        out.append("")
    if sh:
        out += [f"**Shipped model** `{sh['file']}` ({sh['quantization']}, exported from `{sh['exported_from']}`), "
                f"through `edgeser.load(...).classify` on fold {sh['fold']}'s held-out actors ({sh['clips']} clips): "
                f"temperature **{sh['temperature']:.3f}** (fitted on folds "
                f"{', '.join(map(str, sh['temperature_fitted_on_folds']))}; the file's metadata has "
                f"{sh['metadata_temperature']}); ECE {sh['before']['ece']:.3f} → {sh['after']['ece']:.3f}, NLL "
                f"{sh['before']['nll']:.3f} → {sh['after']['nll']:.3f}, accuracy {_pct(sh['before']['accuracy'])} / "
                f"{_pct(sh['after']['accuracy'])} %; at threshold {sh['threshold']['threshold']:.2f}: coverage "
                f"{_pct(sh['threshold']['coverage'])} %, selective accuracy {_pct(sh['threshold']['selective_accuracy'])} %.",
                ""]
    out += [f"![reliability before / after, pooled over folds]({image_dir}/reliability.png)", ""]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=Path, default=Path("runs/cv_small"),
                    help="per-fold checkpoints DIR/fold{0..4}/<checkpoint> (python -m train.student cv --runs DIR)")
    ap.add_argument("--checkpoint", default="student.pt", help="file name inside each fold dir (e.g. finetune/student.pt)")
    ap.add_argument("--shipped", type=Path, default=SHIPPED, help="model file to calibrate for shipping ('' = skip)")
    ap.add_argument("--target-accuracy", type=float, default=C.DEFAULT_TARGET_ACCURACY,
                    help="abstain threshold: largest coverage with this selective accuracy on the fitting clips")
    ap.add_argument("--min-kept", type=int, default=C.DEFAULT_MIN_KEPT)
    ap.add_argument("--cache", type=Path, default=CACHE_DIR)
    ap.add_argument("--refresh", action="store_true", help="recompute the logits even if cached")
    ap.add_argument("--session", action="store_true",
                    help="score each speaker's clips through one stream (test-time adaptive models: a live session)")
    ap.add_argument("--aggregate", choices=list(C.AGGREGATES), default="mean",
                    help="the runtime's pooling of a clip's windows to fit the temperature for (export --aggregate)")
    ap.add_argument("--out", default="calibration.json")
    a = ap.parse_args(argv)
    runs = a.runs if a.runs.is_absolute() else ROOT / a.runs
    t0 = time.time()
    folds = collect(lambda k: checkpoint_logits(runs, k, checkpoint=a.checkpoint, cache_dir=a.cache, refresh=a.refresh,
                                                session=a.session))
    res, arrays = evaluate(folds, target_accuracy=a.target_accuracy, min_kept=a.min_kept, aggregate=a.aggregate)
    for r in res["folds"]:
        print(f"fold {r['fold']}: T {r['temperature']:.3f} (window {r['temperature_window_level']:.3f})  "
              f"ECE {r['before']['ece']:.4f} -> {r['after']['ece']:.4f}  acc {r['after']['accuracy']:.3f}  "
              f"thr {r['threshold']['value']:.2f} cov {r['threshold']['test']['coverage']:.3f} "
              f"sel.acc {r['threshold']['test']['selective_accuracy']}", flush=True)
    p = res["pooled"]
    print(f"pooled: ECE {p['before']['ece']:.4f} -> {p['after']['ece']:.4f} {p['ece_after_speaker_bootstrap_95']}", flush=True)
    stem = Path(a.out).stem
    suffix = "" if stem == "calibration" else "_" + stem.removeprefix("calibration_")
    plot = C.reliability_diagram(
        [("before (T = 1)", arrays["before"], arrays["labels"]),
         ("after (T fitted on the other folds)", arrays["after"], arrays["labels"])],
        RESULTS / f"reliability{suffix}.png",
        title=f"held-out speakers, 5 folds pooled ({len(arrays['labels'])} clips), {a.runs}")
    sh = None
    if str(a.shipped) not in ("", "."):
        sh, sarr = shipped(a.shipped, folds, res["folds"], session=a.session, aggregate=a.aggregate)
        C.reliability_diagram(
            [("shipped, T = 1", sarr["before"], sarr["labels"]),
             (f"shipped, T = {sh['temperature']:.3f}", sarr["after"], sarr["labels"])],
            RESULTS / f"reliability{suffix}_shipped.png",
            title=f"{Path(sh['file']).name} via classify(), fold {sh['fold']} held-out actors")
    payload = {
        "runs": str(a.runs), "checkpoint": a.checkpoint, "aggregate": a.aggregate,
        "protocol": ("RAVDESS 4 classes, the 5 speaker-independent folds of `train.student cv`. Each fold's held-out "
                     "clips are scored by that fold's model (eager PyTorch fp32) through `edgeser.Model.classify` (the "
                     f"runtime's VAD and windows; clip probability = {POOLING[a.aggregate]}). Fold k's "
                     "temperature (NLL of that clip probability, bounded 1-D search on log T) and abstain threshold "
                     "are fitted on the held-out clips of the other 4 folds (speakers never in fold k's test set) and "
                     f"evaluated on fold k's. ECE: top-label, {N_BINS} equal-width bins."),
        "ece_target": ECE_TARGET, "ece_target_met": bool(p["after"]["ece"] <= ECE_TARGET),
        "n_bins": N_BINS,
        "threshold_criterion":
        f"the largest coverage whose selective accuracy on the fitting clips is >= {a.target_accuracy:.2f} "
        f"(among thresholds keeping >= {a.min_kept} clips)",
        **res, "shipped": sh, "reliability_png": plot.name,
        "wall_seconds": round(time.time() - t0, 1),
    }
    out = write_result(a.out, payload, argv)
    print(f"wrote {out} and {plot} in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
