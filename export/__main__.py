"""Export a trained student checkpoint to self-describing .onnx / .pte files, verified against eager PyTorch.

    python -m export --checkpoint edgeser/models/default/edgeser-default.pt --out /tmp/out   # the bundled head
    python -m export --checkpoint runs/default/student.pt --format onnx pte --quantize int8 \
        --out edgeser/models/default --name edgeser-default --verify-dir ../shared/data/ravdess/Actor_03

Every export is compared with eager PyTorch on synthetic log-mel windows (always), and, unless ``--verify-clips 0``,
clip by clip and over a continuous stream on speech: the audio files of ``--verify-dir``, or sentences generated
with espeak-ng when no folder is given. Any difference beyond the tolerances fails the export (exit code 1);
a missing or wrong checkpoint, an unwritable output folder, unusable clips or missing extras print one line and exit
with code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

EXIT_OK = 0
EXIT_MISMATCH = 1
EXIT_ERROR = 2
PROG = "python -m export"


def _args(argv):
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", type=Path, required=True,
                    help="student head checkpoint: train.student's student.pt or the bundled "
                         "edgeser/models/default/edgeser-default.pt")
    ap.add_argument("--format", nargs="+", choices=["onnx", "pte"], default=["onnx", "pte"])
    ap.add_argument("--quantize", choices=["none", "int8"], default="int8")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--name", default="edgeser-default")
    ap.add_argument("--verify-dir", type=Path, metavar="FOLDER",
                    help="audio files to compare the export with eager PyTorch on (default: espeak-ng speech)")
    ap.add_argument("--verify-clips", type=int, default=24,
                    help="how many clips (drawn from --verify-dir, or generated) are compared with eager; 0 = no clip "
                         "or stream check (synthetic windows are still compared)")
    ap.add_argument("--stream-seconds", type=float, default=60.0, help="continuous stream compared with eager")
    ap.add_argument("--temperature", type=float, default=1.0,
                    help="softmax temperature for calibrated confidence (benchmarks/calibration.py fits it)")
    ap.add_argument("--aggregate", choices=["mean", "mean_logits"], default="mean",
                    help="how the runtime pools a segment's windows: mean of their probabilities, or softmax of their "
                         "mean logits (fit --temperature for the same one: benchmarks/calibration.py --aggregate)")
    ap.add_argument("--abstain-below", type=float, default=0.0,
                    help='default confidence under which the runtime answers "uncertain" (0 = never)')
    a = ap.parse_args(argv)
    if a.verify_clips < 0:
        ap.error("--verify-clips must be 0 or more")
    return a


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def check_extras(formats) -> None:
    """Raise ExportError naming the install command if a package the export needs is not installed."""
    from edgeser.errors import ExportError

    need = {"torch": "torch", "transformers": "transformers", "train": "the repository's train/ package"}
    if "onnx" in formats:
        need.update(onnx="onnx", onnxscript="onnxscript")
    for mod, what in need.items():
        if importlib.util.find_spec(mod) is None:
            raise ExportError(f"exporting needs {what}, which is not installed: pip install -e '.[train]' "
                              f"(run from the repository root)")
    if "pte" in formats:
        for mod in ("executorch", "torchao"):
            if importlib.util.find_spec(mod) is None:
                from edgeser.runtime.executorch import INSTALL

                raise ExportError(f"--format pte needs {mod}, which is not installed: {INSTALL} (or export "
                                  f"--format onnx only)")


def check_out_dir(out: Path) -> None:
    """Create ``out`` and prove it is writable (a file made and removed), or raise ExportError."""
    from edgeser.errors import ExportError

    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".export-probe-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ExportError(f"cannot write to the output folder {out}: {exc.strerror or _one_line(exc)}") from exc


def load_checkpoint(path: Path) -> dict:
    """The checkpoint as a dict, loaded without unpickling code; ExportError if missing, unreadable or of another
    kind."""
    import torch

    from edgeser.errors import ExportError

    from .student import check_checkpoint

    if not path.exists():
        raise ExportError(f"checkpoint not found: {path} (train one with `python -m train.student fit`, or use the "
                          f"bundled edgeser/models/default/edgeser-default.pt)")
    if not path.is_file():
        raise ExportError(f"checkpoint {path} is not a file")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch file, truncated, or holding objects weights_only refuses
        raise ExportError(f"{path}: not a readable PyTorch checkpoint ({_one_line(exc)[:200]})") from exc
    check_checkpoint(ck, str(path))
    return ck


def _build(ck: dict, path: Path, a):
    from edgeser import __version__
    from edgeser.errors import ExportError

    from edgeser.runtime.quiet import captured_stderr, without_noise

    from .student import build_from_checkpoint

    rest = ""
    try:
        # transformers imports torchao, whose CUDA kernels fail to load and whose Enum registrations warn on every
        # run: that noise is dropped, anything else printed meanwhile is passed on (after the redirect has ended)
        with captured_stderr() as printed:
            try:
                return build_from_checkpoint(ck, name=a.name, version=__version__, quantization=a.quantize)
            finally:
                rest = without_noise(printed())
    except FileNotFoundError as exc:  # the encoder's packaged weights
        raise ExportError(f"{path}: {_one_line(exc)}") from exc
    except (TypeError, ValueError, KeyError, RuntimeError) as exc:  # config / weights that do not fit together
        raise ExportError(f"{path}: the checkpoint's head does not fit its config or encoder ({_one_line(exc)[:300]})"
                          ) from exc
    finally:
        if rest:
            sys.stderr.write(rest)


def _clips(a, tmp: str):
    """(clips, description) to compare on, per --verify-dir / --verify-clips."""
    from .student import folder_clips, generated_clips

    if a.verify_clips == 0:
        return [], "none (--verify-clips 0)"
    if a.verify_dir is not None:
        clips = folder_clips(a.verify_dir, a.verify_clips)
        return clips, f"{len(clips)} audio files drawn from {a.verify_dir}"
    clips = generated_clips(a.verify_clips, tmp)
    return clips, f"{len(clips)} sentences generated by espeak-ng (train.data.synth, 8 voices)"


def _export(a, argv) -> int:
    check_extras(a.format)
    check_out_dir(a.out)
    ck = load_checkpoint(a.checkpoint)
    import torch

    from .core import export_onnx, export_pte, verify
    from .student import clip_check, probe_windows, stream_check, verification_windows

    model, info = _build(ck, a.checkpoint, a)
    info = dataclasses.replace(info, temperature=a.temperature, abstain_below=a.abstain_below, aggregate=a.aggregate)
    with tempfile.TemporaryDirectory(prefix="edgeser-export-") as tmp:
        pick, described = _clips(a, tmp)
        windows = probe_windows()  # always: synthetic input, no recording needed
        if pick:
            windows = np.concatenate([verification_windows(pick), windows])
        example = (torch.from_numpy(windows[:1]), *(torch.from_numpy(s) for s in info.initial_state()))
        names = {}
        if info.state:  # stateful graph: (logmel, *state) -> (logits, *new_state)
            names = {"input_names": [info.input_name] + [s["name"] for s in info.state],
                     "output_names": [info.output_name] + [s["output"] for s in info.state]}
        report = {"checkpoint": str(a.checkpoint), "command": f"{PROG} " + " ".join(argv or sys.argv[1:]),
                  "date": time.strftime("%Y-%m-%d %H:%M:%S"), "verification_clips": described,
                  "verification_sources": [c.source for c in pick], "files": {}}
        # fp32 exports must match eager closely. Dynamic int8: logits within 0.6, single windows near a tie may flip
        # (>= 95 % of windows agree), but every clip's label (Model.classify) and every segment of a 60 s stream
        # must be identical to eager PyTorch's, except near ties: where eager's two best classes are within 0.05
        # (the size of int8's score noise) the export may pick eager's runner-up; such flips are listed in the report
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
            s = stream_check(model, info, path, pick, seconds=a.stream_seconds, tie_margin=tie) if pick else None
            c = clip_check(model, info, path, pick, tie_margin=tie) if pick else None
            report["files"][path.name] = {"bytes": path.stat().st_size, "export_seconds": round(took, 1),
                                          "windows_vs_eager": v, "clips_vs_eager": c, "stream_vs_eager": s}
            checks = f"clips {json.dumps(c)}, stream {json.dumps(s)}" if pick else "clip and stream checks skipped"
            print(f"{path}: {path.stat().st_size / 2**20:.2f} MiB, {took:.0f} s, windows {json.dumps(v)}, {checks}")
    (a.out / f"{a.name}.export.json").write_text(json.dumps(report, indent=1))
    return EXIT_OK


def main(argv=None) -> int:
    a = _args(argv)
    from edgeser.errors import ExportError

    from .core import ExportMismatch

    try:
        return _export(a, argv)
    except ExportError as exc:
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except ExportMismatch as exc:  # the project rule: an export that differs from eager PyTorch fails, loudly
        # "ExportMismatch: <what>" is what benchmarks.common.export_mismatch reads back from an export's log
        print(f"{PROG}: FAILED, do not ship the file: ExportMismatch: {_one_line(exc)}", file=sys.stderr)
        return EXIT_MISMATCH


if __name__ == "__main__":
    sys.exit(main())
