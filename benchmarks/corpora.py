"""An exported model through the SDK (``Model.classify``, each clip alone) on the corpora, and how its labels move
with the recording level.

    python benchmarks/corpora.py --model edgeser/models/default/edgeser-default.onnx --name corpora_default
    python benchmarks/corpora.py --model old.onnx --clips all --name corpora_previous_default

``--clips heldout``: only the speakers the model's metadata lists as held out from its training (per corpus);
``all``: every 4-class clip (for a model trained on other corpora). Per corpus: UAR, WA, recall, confusion. Level:
on up to ``--level-clips`` clips per corpus, the share whose label is unchanged when the recording is scaled by each
gain (peak-limited: the gain is lowered where it would clip, the effective gain is recorded). One CPU thread.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import file_sha256, write_result  # noqa: E402

GAINS = (0.03, 0.1, 0.3, 3.0)


def scaled(x: np.ndarray, gain: float) -> tuple[np.ndarray, float]:
    """``x`` times ``gain``, lowered so that the peak stays below full scale; returns (audio, gain applied)."""
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    g = min(gain, 0.999 / peak) if peak > 0 else gain
    return (x * g).astype(np.float32), g


def run(model_path: str, clips: str, corpora, level_clips: int, gains=GAINS, seed: int = 0) -> dict:
    import edgeser
    from edgeser.audio import load
    from train.data.corpora import corpus_available, load_corpus
    from train.metrics import classification_report

    model = edgeser.load(model_path, threads=1)
    labels = model.info.labels
    held = set(model.info.training.get("validation", {}).get("test_speakers", []))
    out = {"model": str(model_path), "model_sha256": file_sha256(model_path), "clips": clips, "labels": list(labels),
           "gains": list(gains), "per_corpus": {}}
    rng = np.random.default_rng(seed)
    for corpus in corpora:
        if not corpus_available(corpus):
            raise FileNotFoundError(f"corpus {corpus} not found (../shared/data/{corpus})")
        cs = load_corpus(corpus, labels)
        if clips == "heldout":
            # metadata of models trained on RAVDESS alone lists bare actor ids
            cs = [c for c in cs if c.speaker in held or (corpus == "ravdess" and c.speaker.split(":")[1] in held)]
        if not cs:
            continue
        t0 = time.time()
        y, pred, conf = [], [], []
        for c in cs:
            r = model.classify(load(c.path), 16000)
            y.append(labels.index(c.label))
            pred.append(labels.index(r.label) if r.label in labels else len(labels))  # no speech / uncertain: wrong
            conf.append(r.confidence)
        rep = classification_report(np.asarray(y), np.asarray(pred), (*labels, "none"))
        rec = {k: rep[k] for k in ("uar", "wa", "recall", "confusion", "n")}  # last column: no emotion label
        rec["recall"].pop("none")
        rec["speakers"] = len({c.speaker for c in cs})
        rec["seconds"] = round(time.time() - t0, 1)
        pick = rng.choice(len(cs), size=min(level_clips, len(cs)), replace=False)
        level = {}
        for g in gains:
            same, applied = 0, []
            for i in pick:
                x, ga = scaled(load(cs[i].path), g)
                applied.append(ga)
                same += model.classify(x, 16000).label == (labels[pred[i]] if pred[i] < len(labels) else None)
            level[str(g)] = {"unchanged": same / len(pick), "median_gain_applied": float(np.median(applied))}
        rec["level"] = {"clips": int(len(pick)), "per_gain": level}
        out["per_corpus"][corpus] = rec
        print(f"{corpus}: UAR {rec['uar']:.3f} neutral {rec['recall']['neutral']:.2f} n={rec['n']} | level "
              + " ".join(f"x{g}: {v['unchanged']:.3f}" for g, v in level.items()), flush=True)
    per = out["per_corpus"].values()
    out["level_unchanged_min"] = min(v["unchanged"] for r in per for v in r["level"]["per_gain"].values())
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="exported .onnx / .pte (default: the bundled model)")
    ap.add_argument("--clips", choices=["heldout", "all"], default="heldout")
    ap.add_argument("--corpora", nargs="+", default=["ravdess", "nemo", "ased"])
    ap.add_argument("--level-clips", type=int, default=100, help="clips per corpus for the level check")
    ap.add_argument("--name", default="corpora_default")
    a = ap.parse_args(argv)
    import edgeser

    path = a.model or str(edgeser.load().backend.path)
    res = run(path, a.clips, a.corpora, a.level_clips)
    print(write_result(f"{a.name}.json", res, argv, script="benchmarks/corpora.py"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
