"""Which packaged Whisper encoder should the on-device model use? Measured on the RAVDESS 4-class protocol
(speaker-independent 5-fold CV, the folds of train.data.ravdess.speaker_folds), clean audio:

- linear probe: a logistic regression on the mean-pooled frozen hidden states of all layers (the baseline the
  CTA-RNN head must beat);
- optionally the CTA-RNN head itself (``--head``), trained exactly as the default model but on clean windows only;
- encoder size and eager latency of one 2 s window on one thread.

    python benchmarks/encoders.py --encoders tiny.en base [--head]
Writes benchmarks/results/encoders.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import write_result  # noqa: E402


def probe(feats: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, labels, seed=0) -> dict:
    import torch

    from train.metrics import classification_report

    torch.manual_seed(seed)
    mu, sd = feats[train].mean(0), feats[train].std(0) + 1e-6
    x = torch.from_numpy(((feats - mu) / sd).astype(np.float32))
    yt = torch.from_numpy(y)
    lin = torch.nn.Linear(x.shape[1], len(labels))
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=200, line_search_fn="strong_wolfe")
    w = torch.from_numpy((1.0 / np.bincount(y[train], minlength=len(labels))).astype(np.float32))
    tr = torch.from_numpy(train)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(x[tr]), yt[tr], weight=w) + 1e-2 * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        pred = lin(x[torch.from_numpy(test)]).argmax(-1).numpy()
    return classification_report(y[test], pred, labels)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--encoders", nargs="+", default=["tiny.en", "base"])
    ap.add_argument("--head", action="store_true", help="also train the CTA-RNN head per fold (clean windows)")
    ap.add_argument("--epochs", type=int, default=25)
    a = ap.parse_args(argv)
    import torch

    from train.data.ravdess import LABELS4, load_ravdess, speaker_folds
    from train.student import build_encoder, embed, fit, load_cache

    torch.set_num_threads(1)
    clips = load_ravdess()
    folds = speaker_folds(clips, n_folds=5, seed=0)
    y = np.asarray([LABELS4.index(c.label) for c in clips])
    out = {"protocol": "RAVDESS 4 classes, speaker-independent 5-fold CV (4 actors per fold), clean audio", "encoders": {}}
    for enc in a.encoders:
        embed(enc, copies=1)
        emb, owner = load_cache(enc, 1)[0]
        n_clips = len(clips)
        feats = np.stack([emb[owner == i].astype(np.float32).mean(axis=(0, 2)).reshape(-1) for i in range(n_clips)])
        model, cfg, dims = build_encoder(enc)
        w = torch.randn(1, 80, 200)
        for _ in range(3):
            model.embed(w)
        t = []
        for _ in range(20):
            s = time.perf_counter()
            model.embed(w)
            t.append((time.perf_counter() - s) * 1000)
        rec = {"layers": dims.n_layers, "d_model": dims.d_model,
               "encoder_params": sum(p.numel() for p in model.encoder.parameters()),
               "window_ms_eager_1thread": float(np.median(t)), "probe": [], "head": []}
        speakers = np.asarray([c.speaker for c in clips])
        for f, test_spk in enumerate(folds):
            test = np.nonzero(np.isin(speakers, test_spk))[0]
            train = np.nonzero(~np.isin(speakers, test_spk))[0]
            r = probe(feats, y, train, test, LABELS4)
            rec["probe"].append({"fold": f, "uar": r["uar"], "wa": r["wa"], "recall": r["recall"]})
            if a.head:
                torch.set_num_threads(2)
                h = fit(enc, f, 1, a.epochs, None)
                torch.set_num_threads(1)
                rec["head"].append({"fold": f, "uar": h["uar"], "wa": h["wa"], "recall": h["recall"]})
        for k in ("probe", "head"):
            if rec[k]:
                rec[f"{k}_mean_uar"] = float(np.mean([r["uar"] for r in rec[k]]))
                rec[f"{k}_mean_wa"] = float(np.mean([r["wa"] for r in rec[k]]))
        out["encoders"][enc] = rec
        print(enc, {k: v for k, v in rec.items() if k.endswith("mean_uar") or k.endswith("ms_eager_1thread")}, flush=True)
    print(write_result("encoders.json", out, argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
