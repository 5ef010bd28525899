"""Export a trained student checkpoint to self-describing .onnx / .pte files, verified against eager PyTorch.

    python -m export --checkpoint runs/default/student.pt --format onnx pte --quantize int8 \
        --out edgeser/models/default --name edgeser-default
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np


def _args(argv):
    ap = argparse.ArgumentParser(prog="python -m export", description=__doc__.split("\n")[1])
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--format", nargs="+", choices=["onnx", "pte"], default=["onnx", "pte"])
    ap.add_argument("--quantize", choices=["none", "int8"], default="int8")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--name", default="edgeser-default")
    ap.add_argument("--verify-clips", type=int, default=24, help="held-out RAVDESS clips compared with eager")
    ap.add_argument("--stream-seconds", type=float, default=60.0, help="continuous stream compared with eager")
    ap.add_argument("--temperature", type=float, default=1.0,
                    help="softmax temperature for calibrated confidence (benchmarks/calibration.py fits it)")
    ap.add_argument("--aggregate", choices=["mean", "mean_logits"], default="mean",
                    help="how the runtime pools a segment's windows: mean of their probabilities, or softmax of their "
                         "mean logits (fit --temperature for the same one: benchmarks/calibration.py --aggregate)")
    ap.add_argument("--abstain-below", type=float, default=0.0,
                    help='default confidence under which the runtime answers "uncertain" (0 = never)')
    return ap.parse_args(argv)


def main(argv=None) -> int:
    a = _args(argv)
    import torch

    from edgeser import __version__
    from train.data.ravdess import load_ravdess

    from .core import export_onnx, export_pte, verify
    from .student import build_from_checkpoint, clip_check, stream_check, verification_windows

    ck = torch.load(a.checkpoint, map_location="cpu", weights_only=True)
    model, info = build_from_checkpoint(ck, name=a.name, version=__version__, quantization=a.quantize)
    info = dataclasses.replace(info, temperature=a.temperature, abstain_below=a.abstain_below, aggregate=a.aggregate)
    held_out = set(ck["validation"]["test_speakers"])
    clips = [c for c in load_ravdess() if c.speaker in held_out]
    rng = np.random.default_rng(0)
    pick = [clips[i] for i in rng.choice(len(clips), size=min(a.verify_clips, len(clips)), replace=False)]
    windows = verification_windows(pick)
    example = (torch.from_numpy(windows[:1]), *(torch.from_numpy(a) for a in info.initial_state()))
    names = {}
    if info.state:  # stateful graph: (logmel, *state) -> (logits, *new_state)
        names = {"input_names": [info.input_name] + [s["name"] for s in info.state],
                 "output_names": [info.output_name] + [s["output"] for s in info.state]}
    report = {"checkpoint": str(a.checkpoint), "command": "python -m export " + " ".join(argv or sys.argv[1:]),
              "date": time.strftime("%Y-%m-%d %H:%M:%S"), "files": {}}
    # fp32 exports must match eager closely. Dynamic int8: logits within 0.6, single windows near a tie may flip
    # (>= 95 % of windows agree), but every clip's label (Model.classify) and every segment of a 60 s stream must be
    # identical to eager PyTorch's, except near ties: where eager's two best classes are within 0.05 (the size of
    # int8's score noise) the export may pick eager's runner-up; such flips are listed in the report
    atol = 1e-3 if a.quantize == "none" else 0.6
    agree = 1.0 if a.quantize == "none" else 0.95
    tie = 0.0 if a.quantize == "none" else 0.05
    for fmt in a.format:
        path = a.out / f"{a.name}.{fmt}"
        t0 = time.time()
        q = None if a.quantize == "none" else a.quantize
        if fmt == "onnx":
            export_onnx(model, example, path, info, quantize=q, **names)
        else:
            export_pte(model, example, path, info, quantize=q)
        took = time.time() - t0
        v = verify(model, path, windows, atol=atol, min_label_agreement=agree)
        s = stream_check(model, info, path, pick, seconds=a.stream_seconds, tie_margin=tie)
        c = clip_check(model, info, path, pick, tie_margin=tie)
        report["files"][path.name] = {"bytes": path.stat().st_size, "export_seconds": round(took, 1),
                                      "windows_vs_eager": v, "clips_vs_eager": c, "stream_vs_eager": s}
        print(f"{path}: {path.stat().st_size / 2**20:.2f} MiB, {took:.0f} s, {json.dumps(v)}, clips {json.dumps(c)}, "
              f"stream {json.dumps(s)}")
    (a.out / f"{a.name}.export.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
