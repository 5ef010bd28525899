"""Classification metrics: WA (accuracy), UA/UAR (mean per-class recall), macro-F1, confusion matrix."""

from __future__ import annotations

import numpy as np


def confusion(y_true, y_pred, n: int) -> np.ndarray:
    m = np.zeros((n, n), dtype=np.int64)
    np.add.at(m, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return m


def classification_report(y_true, y_pred, labels) -> dict:
    """WA, UAR, macro-F1, per-class recall and the confusion matrix (rows = truth, columns = prediction)."""
    n = len(labels)
    m = confusion(y_true, y_pred, n)
    support = m.sum(1)
    predicted = m.sum(0)
    tp = np.diag(m).astype(float)
    recall = np.divide(tp, support, out=np.zeros(n), where=support > 0)
    precision = np.divide(tp, predicted, out=np.zeros(n), where=predicted > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(n), where=(precision + recall) > 0)
    present = support > 0
    return {
        "wa": float(tp.sum() / max(m.sum(), 1)),
        "uar": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "recall": {lab: float(r) for lab, r in zip(labels, recall)},
        "confusion": m.tolist(),
        "labels": list(labels),
        "n": int(m.sum()),
    }
