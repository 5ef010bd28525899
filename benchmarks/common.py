"""Shared helpers for benchmark scripts: machine description and result files."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "os": platform.platform()}


def file_sha256(path) -> str:
    """Hex sha256 of a file (which model or checkpoint a result was measured on)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def export_mismatch(log) -> str | None:
    """The exporter's verification failure recorded in the log ``log`` of a ``python -m export`` run (the file was
    written, then rejected), if any."""
    log = Path(log)
    if not log.is_file():
        return None
    lines = [ln for ln in log.read_text().splitlines() if "ExportMismatch" in ln]
    return lines[-1].split("ExportMismatch: ", 1)[-1] if lines else None


def write_result(name: str, payload: dict, argv=None, folder: Path | None = None, script: str | None = None) -> Path:
    """``payload`` with the command, machine and date as ``folder/name`` (default: benchmarks/results). The command
    is ``script`` (default: the running program) with ``argv`` (default: this process's arguments), shell-quoted so
    that it can be pasted to re-run."""
    import shlex

    folder = RESULTS if folder is None else Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / name
    rec = {
        "command": "python " + shlex.join([script or sys.argv[0]] + list(sys.argv[1:] if argv is None else argv)),
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        **payload,
    }
    out.write_text(json.dumps(rec, indent=1) + "\n")
    return out


def peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def ravdess_held_out(info) -> list[str]:
    """The RAVDESS actors (bare ids, ``Actor_03``) a model's metadata lists as held out from its training; pooled
    models list speakers of every corpus prefixed with the corpus (``ravdess:Actor_03``)."""
    spk = (info.training or {}).get("validation", {}).get("test_speakers") or []
    return sorted(s.split(":", 1)[1] if s.startswith("ravdess:") else s for s in spk
                  if s.startswith("ravdess:") or ":" not in s)
