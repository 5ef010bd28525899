"""Shortcut check: does the bundled model's answer depend on things that are not emotion -- leading or trailing
silence, clip length, level? On the held-out RAVDESS actors of the model (never trained on).

    python benchmarks/shortcuts.py [--model PATH]

Per condition: UAR, and the fraction of clips whose label is the same as on the unmodified clip (each clip alone
through ``Model.classify``, as a user calls it). Training randomises edge silence, level and speed
(``train/augment.py``: pad_edges, gain, speed) so that none of these is a usable cue; this measures what is left.
Writes benchmarks/results/shortcuts.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import write_result  # noqa: E402

SR = 16000


def _noise_floor(n: int, rng, db: float = -60.0) -> np.ndarray:
    return (rng.standard_normal(n) * 10 ** (db / 20)).astype(np.float32)


def conditions() -> dict:
    """name -> f(x, rng) (x: the clip as recorded, 16 kHz float32)."""
    def lead(sec, noise):
        return lambda x, rng: np.concatenate([_noise_floor(int(sec * SR), rng) if noise
                                              else np.zeros(int(sec * SR), np.float32), x])

    def trail(sec):
        return lambda x, rng: np.concatenate([x, np.zeros(int(sec * SR), np.float32)])

    def first(sec):
        return lambda x, rng: x[: int(sec * SR)]

    def level(db):
        return lambda x, rng: np.clip(x * np.float32(10 ** (db / 20)), -1, 1).astype(np.float32)

    return {
        "as recorded": lambda x, rng: x,
        "+2 s leading digital silence": lead(2.0, False),
        "+2 s leading room noise (-60 dBFS)": lead(2.0, True),
        "+2 s trailing digital silence": trail(2.0),
        "first 1.5 s only (shorter clip)": first(1.5),
        "first 2.5 s only": first(2.5),
        "level -20 dB": level(-20.0),
        "level +12 dB (clipped)": level(12.0),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="exported .onnx/.pte (default: the bundled model)")
    a = ap.parse_args(argv)
    import edgeser
    from benchmarks.default_model import _clips
    from edgeser.audio import load as load_audio
    from train.metrics import classification_report

    m = edgeser.load(a.model, threads=1)
    root, rows = _clips(m.info)
    clips = [load_audio(root / r["path"]) for r in rows]
    y = [m.labels.index(r["emotion"]) for r in rows]
    out, base = {}, None
    for name, f in conditions().items():
        pred = []
        for i, x in enumerate(clips):
            rng = np.random.default_rng(i)
            pred.append(m.labels.index(m.classify(f(x, rng), SR).label))
        rep = classification_report(y, pred, m.labels)
        if base is None:
            base = pred
        same = float(np.mean(np.asarray(pred) == np.asarray(base)))
        out[name] = {"uar": rep["uar"], "wa": rep["wa"], "recall": rep["recall"], "same_label_as_recorded": same}
        print(f"{name:36s} UAR {rep['uar']:.3f}  same label {same:.3f}", flush=True)
    path = write_result("shortcuts.json", {
        "model": m.path, "test_speakers": m.info.training["validation"]["test_speakers"], "clips": len(clips),
        "protocol": "each held-out clip alone through Model.classify (adaptation within the clip only)",
        "conditions": out}, argv)
    print(path)
    return 0


def render_markdown(d: dict) -> str:
    lines = ["## Shortcuts: silence, clip length, level", "",
             f"_`{d['command']}` — {d['machine']['cpu']} — {d['date']}_", "",
             f"{d['clips']} clips of the actors the bundled model never trained on ({', '.join(d['test_speakers'])}); "
             f"{d['protocol']}.", "",
             "| condition | UAR % | same label as recorded % |", "|---|---|---|"]
    for name, r in d["conditions"].items():
        lines.append(f"| {name} | {100 * r['uar']:.1f} | {100 * r['same_label_as_recorded']:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
