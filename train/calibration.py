"""Calibrated confidence: temperature scaling fitted on validation speakers, ECE, reliability diagrams, abstention.

Numpy only (matplotlib is imported inside :func:`reliability_diagram`).

The runtime's confidence of a clip (``edgeser.Model.classify``) or a segment (``EmotionEvent``) is, as the model's
metadata ``aggregate`` says, the **mean over its windows of softmax(logits / T)** (``"mean"``) or **softmax of the
mean window logits / T** (``"mean_logits"``), ``T`` = the metadata ``temperature``. So the temperature is fitted on
exactly that quantity: :func:`fit_temperature` minimises the negative log-likelihood of the clip-level probability

    p_clip(T) = 1/n_i * sum_w softmax(z_w / T)   (or softmax(1/n_i * sum_w z_w / T)),
    NLL(T) = -mean_i log p_clip_i(T)[y_i]

over ``log T`` (a bounded 1-D problem: a coarse grid, then golden-section search around the grid's minimum, so a
non-convex NLL cannot trap it at a far local minimum). :func:`fit_window_temperature` is the textbook variant (each
window on its own, labelled with its clip's label), kept for comparison: averaging window probabilities already
softens the clip probability, so the two optima differ.

Inputs ``window_logits_per_clip`` are a sequence of ``[n_windows_i, n_classes]`` arrays (clips may have different
window counts), ``labels`` the class index of each clip.

Abstention: a clip is *kept* when its confidence (top clip probability) is >= a threshold ``t``. :func:`abstain_curve`
gives coverage, selective accuracy, UAR on the kept clips and the fraction abstained for thresholds 0..1;
:func:`choose_threshold` picks the threshold. Default criterion (documented in its docstring): the *largest
coverage* (smallest threshold) whose selective accuracy on the fitting clips is >= ``target_accuracy`` = 0.90,
among thresholds keeping at least ``min_kept`` clips.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

T_BOUNDS = (0.05, 20.0)  # search interval of the temperature
DEFAULT_TARGET_ACCURACY = 0.90  # choose_threshold's default: selective accuracy to keep on the fitting clips
DEFAULT_MIN_KEPT = 20  # ... measured on at least this many kept clips (fewer: the accuracy estimate is noise)
THRESHOLDS = np.round(np.linspace(0.0, 1.0, 101), 2)  # abstain thresholds 0.00, 0.01, .., 1.00


# ---------------------------------------------------------------------------------------------------------------
# probabilities


def softmax(logits, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax(logits / T) in float64 (the runtime's ``edgeser.stream.softmax``, batched)."""
    z = np.asarray(logits, dtype=np.float64) / max(float(temperature), 1e-6)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _pack(window_logits_per_clip) -> tuple[np.ndarray, np.ndarray]:
    """All windows stacked ``[N, C]`` and the start offset of each clip's windows ``[n_clips]``."""
    arrs = [np.asarray(a, dtype=np.float64) for a in window_logits_per_clip]
    if not arrs:
        raise ValueError("no clips")
    arrs = [a[None] if a.ndim == 1 else a for a in arrs]
    c = arrs[0].shape[-1]
    for i, a in enumerate(arrs):
        if a.ndim != 2 or a.shape[1] != c:
            raise ValueError(f"clip {i}: window logits must be [n_windows, {c}], got shape {a.shape}")
        if a.shape[0] == 0:
            raise ValueError(f"clip {i} has no windows")
        if not np.isfinite(a).all():
            raise ValueError(f"clip {i}: non-finite logits")
    counts = np.asarray([a.shape[0] for a in arrs])
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return np.concatenate(arrs), offsets


def _clip_mean(flat_probs: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    counts = np.diff(np.append(offsets, len(flat_probs)))
    return np.add.reduceat(flat_probs, offsets, axis=0) / counts[:, None]


AGGREGATES = ("mean", "mean_logits")  # the runtime's pooling of window outputs (ModelInfo.aggregate) fitted here


def _check_aggregate(aggregate: str) -> None:
    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {AGGREGATES}, got {aggregate!r}")


def _pooled(flat: np.ndarray, offsets: np.ndarray, temperature: float, aggregate: str) -> np.ndarray:
    if aggregate == "mean_logits":
        return softmax(_clip_mean(flat, offsets), temperature)
    return _clip_mean(softmax(flat, temperature), offsets)


def clip_probs(window_logits_per_clip, temperature: float = 1.0, aggregate: str = "mean") -> np.ndarray:
    """``[n_clips, C]``: the runtime's clip scores: per clip, the mean over its windows of softmax(logits / T)
    (``aggregate="mean"``), or softmax(mean of its window logits / T) (``"mean_logits"``)."""
    _check_aggregate(aggregate)
    flat, offsets = _pack(window_logits_per_clip)
    return _pooled(flat, offsets, temperature, aggregate)


def _labels(labels, n: int, c: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.shape != (n,):
        raise ValueError(f"labels: expected {n} class indices, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or (y.size and (y.min() < 0 or y.max() >= c)):
        raise ValueError(f"labels must be class indices in 0..{c - 1}")
    return y.astype(np.int64)


def nll(probs, labels, eps: float = 1e-12) -> float:
    """Mean negative log-likelihood of the true class under ``probs`` ``[n, C]``."""
    p = np.asarray(probs, dtype=np.float64)
    y = _labels(labels, len(p), p.shape[1])
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], eps, None))))


def accuracy(probs, labels) -> float:
    p = np.asarray(probs)
    y = _labels(labels, len(p), p.shape[1])
    return float(np.mean(p.argmax(1) == y))


# ---------------------------------------------------------------------------------------------------------------
# temperature scaling


def _minimise_log_t(f, bounds=T_BOUNDS, grid: int = 81, tol: float = 1e-5) -> float:
    """argmin over T in ``bounds`` of ``f(T)``: a grid over log T, then golden-section search in the bracket around
    the grid minimum (both ends included, so a minimum at a bound is found)."""
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    xs = np.linspace(lo, hi, grid)
    vals = np.asarray([f(math.exp(x)) for x in xs])
    i = int(np.argmin(vals))
    a, b = xs[max(i - 1, 0)], xs[min(i + 1, grid - 1)]
    g = (math.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = f(math.exp(c)), f(math.exp(d))
    while b - a > tol:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = f(math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = f(math.exp(d))
    best = (a + b) / 2
    # never return something worse than the grid's best point
    return math.exp(best) if f(math.exp(best)) <= vals[i] else math.exp(xs[i])


def clip_nll(window_logits_per_clip, labels, temperature: float, aggregate: str = "mean") -> float:
    """NLL of the clip-level probability (:func:`clip_probs`) -- what :func:`fit_temperature` minimises."""
    return nll(clip_probs(window_logits_per_clip, temperature, aggregate), labels)


def fit_temperature(window_logits_per_clip, labels, bounds=T_BOUNDS, aggregate: str = "mean") -> float:
    """Temperature ``T`` minimising the NLL of the runtime's clip probability (:func:`clip_probs` with
    ``aggregate``: the mean over the clip's windows of softmax(logits / T), or softmax of the mean logits / T);
    clips may have different numbers of windows."""
    _check_aggregate(aggregate)
    flat, offsets = _pack(window_logits_per_clip)
    y = _labels(labels, len(offsets), flat.shape[1])
    rows = np.arange(len(y))

    def f(t: float) -> float:
        p = _pooled(flat, offsets, t, aggregate)[rows, y]
        return float(-np.mean(np.log(np.clip(p, 1e-12, None))))

    return _minimise_log_t(f, bounds)


def fit_window_temperature(window_logits_per_clip, labels, bounds=T_BOUNDS) -> float:
    """The plain variant: ``T`` minimising the mean NLL of every *window's* softmax(logits / T), each window labelled
    with its clip's label (for comparison with :func:`fit_temperature`)."""
    flat, offsets = _pack(window_logits_per_clip)
    y = _labels(labels, len(offsets), flat.shape[1])
    counts = np.diff(np.append(offsets, len(flat)))
    yw = np.repeat(y, counts)
    rows = np.arange(len(yw))

    def f(t: float) -> float:
        z = flat / t
        z = z - z.max(1, keepdims=True)
        logp = z[rows, yw] - np.log(np.exp(z).sum(1))
        return float(-np.mean(logp))

    return _minimise_log_t(f, bounds)


# ---------------------------------------------------------------------------------------------------------------
# calibration error and reliability


def reliability_bins(probs, labels, n_bins: int = 15) -> dict:
    """Per-bin data of the top-label reliability diagram, equal-width bins over [0, 1]: a prediction with confidence
    ``c`` is in bin ``b`` when ``edges[b] < c <= edges[b + 1]`` (confidence 0 goes to the first bin).

    Returns ``edges`` [n_bins + 1], and per bin ``count``, ``accuracy`` and ``confidence`` (mean; NaN in empty
    bins) and ``gap`` = confidence - accuracy (> 0: overconfident).
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or len(p) == 0:
        raise ValueError(f"probs must be [n, C] with n > 0, got shape {p.shape}")
    y = _labels(labels, len(p), p.shape[1])
    conf = p.max(1)
    correct = (p.argmax(1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    b = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(b, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.bincount(b, weights=correct, minlength=n_bins) / count
        mean_conf = np.bincount(b, weights=conf, minlength=n_bins) / count
    return {"edges": edges.tolist(), "count": count.tolist(), "accuracy": acc.tolist(),
            "confidence": mean_conf.tolist(), "gap": (mean_conf - acc).tolist()}


def expected_calibration_error(probs, labels, n_bins: int = 15) -> float:
    """Top-label ECE (Guo et al. 2017): sum over equal-width confidence bins of |bin| / n * |accuracy - confidence|."""
    r = reliability_bins(probs, labels, n_bins)
    count = np.asarray(r["count"], dtype=np.float64)
    gap = np.nan_to_num(np.abs(np.asarray(r["gap"])))
    return float((count * gap).sum() / count.sum())


def ece_noise_floor(probs, n_bins: int = 15, reps: int = 500, seed: int = 0) -> dict:
    """ECE that a *perfectly calibrated* model with these confidences would show on this many clips: labels drawn
    from ``probs`` themselves, ``reps`` times. Binned ECE is biased upwards on small samples (|accuracy - confidence|
    of a bin with few clips is mostly sampling noise); an ECE near this floor cannot be told from perfect calibration.
    Returns the mean and the 95th percentile."""
    p = np.asarray(probs, dtype=np.float64)
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(p, axis=1)
    vals = []
    for _ in range(reps):
        y = np.minimum((cdf < rng.random((len(p), 1))).sum(1), p.shape[1] - 1)
        vals.append(expected_calibration_error(p, y, n_bins))
    return {"mean": float(np.mean(vals)), "p95": float(np.percentile(vals, 95))}


def reliability_diagram(panels, path, n_bins: int = 15, title: str | None = None) -> Path:
    """Write a PNG with one reliability diagram per panel. ``panels``: a sequence of ``(title, probs, labels)``.

    Each panel: per-bin accuracy (bars) against the diagonal (perfect calibration), the gap to mean confidence
    (hatched), the ECE in the corner, and the share of predictions per bin (the small histogram below).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = list(panels)
    fig = Figure(figsize=(4.2 * len(panels), 5.2), dpi=110)
    FigureCanvasAgg(fig)
    gs = fig.add_gridspec(2, len(panels), height_ratios=[3.2, 1], hspace=0.08)
    for j, (name, probs, labels) in enumerate(panels):
        r = reliability_bins(probs, labels, n_bins)
        ece = expected_calibration_error(probs, labels, n_bins)
        edges = np.asarray(r["edges"])
        centers, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
        acc = np.nan_to_num(np.asarray(r["accuracy"], dtype=float))
        conf = np.asarray(r["confidence"], dtype=float)
        count = np.asarray(r["count"], dtype=float)
        ax = fig.add_subplot(gs[0, j])
        ax.bar(centers, acc, width=width, edgecolor="black", color="#4c72b0", label="accuracy")
        has = count > 0
        ax.bar(centers[has], (conf - acc)[has], bottom=acc[has], width=width, edgecolor="#c44e52", color="none",
               hatch="//", label="gap to confidence")
        ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(name, fontsize=10)
        ax.text(0.04, 0.93, f"ECE {ece:.3f}\nn = {len(np.asarray(probs))}", transform=ax.transAxes, va="top",
                bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"})
        ax.set_xticklabels([])
        if j == 0:
            ax.set_ylabel("accuracy")
            ax.legend(loc="lower right", fontsize=8)
        h = fig.add_subplot(gs[1, j])
        h.bar(centers, count / count.sum(), width=width, color="#999999", edgecolor="black")
        h.set_xlim(0, 1)
        h.set_xlabel("confidence (top clip probability)")
        if j == 0:
            h.set_ylabel("share")
    if title:
        fig.suptitle(title, fontsize=11)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", bbox_inches="tight")
    return path


# ---------------------------------------------------------------------------------------------------------------
# abstention


def abstain_curve(probs, labels, thresholds=THRESHOLDS) -> dict:
    """Keep a clip when its confidence (top probability) is >= t; for each threshold ``t``: ``coverage`` (share kept),
    ``abstained`` (1 - coverage), ``kept`` (count), ``selective_accuracy`` and ``selective_uar`` (mean recall over
    the classes present among the kept clips) -- NaN when nothing is kept."""
    p = np.asarray(probs, dtype=np.float64)
    y = _labels(labels, len(p), p.shape[1])
    conf, pred = p.max(1), p.argmax(1)
    t = np.asarray(thresholds, dtype=np.float64)
    out = {k: [] for k in ("coverage", "abstained", "kept", "selective_accuracy", "selective_uar")}
    for th in t:
        keep = conf >= th
        k = int(keep.sum())
        out["kept"].append(k)
        out["coverage"].append(k / len(y))
        out["abstained"].append(1 - k / len(y))
        if k == 0:
            out["selective_accuracy"].append(float("nan"))
            out["selective_uar"].append(float("nan"))
            continue
        yk, pk = y[keep], pred[keep]
        out["selective_accuracy"].append(float(np.mean(yk == pk)))
        out["selective_uar"].append(float(np.mean([np.mean(pk[yk == c] == c) for c in np.unique(yk)])))
    return {"thresholds": t.tolist(), **out}


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    coverage: float  # on the clips the choice was made on
    selective_accuracy: float
    met: bool  # whether the target was reached (else: the threshold with the best selective accuracy)
    criterion: str


def choose_threshold(curve: dict, target_accuracy: float = DEFAULT_TARGET_ACCURACY,
                     min_kept: int = DEFAULT_MIN_KEPT) -> ThresholdChoice:
    """Abstain threshold from an :func:`abstain_curve` (computed on *fitting* clips, never on the test clips).

    Default criterion: the smallest threshold -- i.e. the largest coverage -- whose selective accuracy is
    >= ``target_accuracy`` (0.90), among thresholds that keep at least ``min_kept`` (20) clips. If none reaches the
    target, the threshold with the highest selective accuracy among those keeping ``min_kept`` clips (``met`` False).
    """
    t = np.asarray(curve["thresholds"], dtype=float)
    acc = np.asarray(curve["selective_accuracy"], dtype=float)
    kept = np.asarray(curve["kept"])
    ok = kept >= min(min_kept, kept.max())
    crit = f"largest coverage with selective accuracy >= {target_accuracy:.2f} (>= {min_kept} clips kept)"
    good = np.nonzero(ok & (acc >= target_accuracy))[0]
    if len(good):
        i, met = int(good[0]), True
    else:
        cand = np.nonzero(ok)[0]
        i, met = int(cand[np.nanargmax(acc[cand])]), False
    return ThresholdChoice(float(t[i]), float(curve["coverage"][i]), float(acc[i]), met, crit)


def at_threshold(probs, labels, threshold: float) -> dict:
    """Coverage, selective accuracy and UAR on the kept clips of ``probs`` at one threshold."""
    c = abstain_curve(probs, labels, [threshold])
    return {"threshold": float(threshold), **{k: v[0] for k, v in c.items() if k != "thresholds"}}


def summary(probs, labels, n_bins: int = 15) -> dict:
    """ECE, NLL, accuracy, mean confidence and Brier score of clip probabilities."""
    p = np.asarray(probs, dtype=np.float64)
    y = _labels(labels, len(p), p.shape[1])
    onehot = np.eye(p.shape[1])[y]
    return {"n": len(y), "ece": expected_calibration_error(p, y, n_bins), "nll": nll(p, y),
            "accuracy": accuracy(p, y), "mean_confidence": float(p.max(1).mean()),
            "brier": float(np.mean(np.sum((p - onehot) ** 2, axis=1)))}
