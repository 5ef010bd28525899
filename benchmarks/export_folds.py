"""Export every fold's model of a cross-validation run the way the bundled model is exported, for benchmarks that
measure all 20 held-out actors instead of fold 0's four (``robustness.py --model ... --folds ...``):

    python benchmarks/export_folds.py --runs runs/cv_adapt_mix --calibration calibration_adapt_mix.json \
        --out runs/folds_mean_logits --folds 1 2 3 4

Fold k's checkpoint ``RUNS/fold{k}/student.pt`` goes through ``python -m export`` (int8 ONNX by default) with the
temperature and abstain threshold ``benchmarks/calibration.py`` fitted for fold k on the other folds, and the pooling
(``aggregate``) that calibration was fitted for, as ``RUNS/../<out>/fold{k}/edgeser-fold{k}.onnx``. A file the exporter
wrote but whose check against eager PyTorch failed is kept and reported (its ``export.log`` holds the failure; no
``.export.json`` is written next to it, which ``robustness.py`` records), never hidden.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import RESULTS, export_mismatch  # noqa: E402


def _abs(p) -> Path:
    p = Path(p)
    return (p if p.is_absolute() else ROOT / p).resolve()


def calibration_args(calibration: dict, fold: int) -> list[str]:
    """``python -m export`` options for fold ``fold``: the temperature and abstain threshold fitted for it on the
    other folds, and the pooling (``aggregate``) they were fitted for."""
    recs = [r for r in calibration["folds"] if r["fold"] == fold]
    if not recs:
        raise ValueError(f"the calibration results have no fold {fold}")
    r = recs[0]
    return ["--temperature", f"{r['temperature']:.3f}", "--abstain-below", f"{r['threshold']['value']:.2f}",
            "--aggregate", calibration.get("aggregate", "mean")]


def load_calibration(name, runs) -> dict:
    """``benchmarks/calibration.py`` results (a name in benchmarks/results, or a path), refused unless fitted on the
    checkpoints of ``runs``."""
    path = Path(name) if Path(name).is_file() else RESULTS / name
    calibration = json.loads(path.read_text())
    if _abs(calibration.get("runs", runs)) != _abs(runs):
        raise SystemExit(f"{path} was fitted on {calibration.get('runs')}, not {runs}")
    return calibration


def fold_command(calibration: dict, runs: Path, out: Path, fold: int, formats=("onnx",), quantize: str = "int8",
                 python: str = sys.executable) -> list[str]:
    """The ``python -m export`` command of fold ``fold`` with its fitted temperature, threshold and pooling."""
    return [python, "-m", "export", "--checkpoint", str(Path(runs) / f"fold{fold}" / "student.pt"),
            "--format", *formats, "--quantize", quantize, "--out", str(Path(out) / f"fold{fold}"),
            "--name", f"edgeser-fold{fold}", *calibration_args(calibration, fold)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=Path, required=True, help="the cv run's folder (RUNS/fold{k}/student.pt)")
    ap.add_argument("--calibration", required=True,
                    help="benchmarks/calibration.py results for these runs (a name in benchmarks/results, or a path)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--folds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--format", nargs="+", choices=["onnx", "pte"], default=["onnx"])
    ap.add_argument("--quantize", choices=["none", "int8"], default="int8")
    a = ap.parse_args(argv)
    calibration = load_calibration(a.calibration, a.runs)
    failed = []
    for k in a.folds:
        cmd = fold_command(calibration, a.runs, a.out, k, a.format, a.quantize)
        print("export:", " ".join(cmd[1:]), flush=True)
        (a.out / f"fold{k}").mkdir(parents=True, exist_ok=True)
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
        log = a.out / f"fold{k}" / "export.log"
        log.write_text(p.stdout + p.stderr)
        if p.returncode != 0:
            why = export_mismatch(log)
            if not why:
                raise SystemExit(f"export of fold {k} failed:\n{p.stderr[-3000:]}")
            failed.append(k)
            print(f"  fold {k}: the exporter's check FAILED (file kept): {why}", flush=True)
    print(f"exported folds {a.folds} to {a.out}" + (f"; check failed for folds {failed}" if failed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
