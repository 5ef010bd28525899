"""The .pte backend starts quietly: loading and running the bundled .pte prints at most one line on stderr (ExecuTorch's
C++ runtime and torchao print about ten on a bare import), and a failed load still says what the runtime printed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PTE = REPO / "edgeser" / "models" / "default" / "edgeser-default.pte"
CLIP = REPO / "samples" / "03-01-05-02-01-01-16.flac"

pytest.importorskip("executorch")


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def test_loading_and_running_the_pte_prints_at_most_one_line():
    p = _run(f"""
        import sys, edgeser
        m = edgeser.load({str(PTE)!r})
        r = m.classify({str(CLIP)!r})
        print(m.backend.name, r.label, r.confidence)
        print("heavy compiler imported:", "executorch.exir" in sys.modules)
    """)
    assert p.returncode == 0, p.stderr
    out = p.stdout.splitlines()
    assert out[0].split()[0] == "executorch" and out[0].split()[1] in ("neutral", "happy", "angry", "sad", "uncertain")
    assert out[1] == "heavy compiler imported: False"  # the slow, noisy executorch.exir stays out of the runtime
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) <= 1, p.stderr


def test_stderr_works_again_after_loading():
    p = _run(f"""
        import os, sys, edgeser
        edgeser.load({str(PTE)!r})
        print("python-level", file=sys.stderr, flush=True)
        os.write(2, b"fd-level\\n")
    """)
    assert p.returncode == 0, p.stderr
    assert p.stderr.splitlines()[-2:] == ["python-level", "fd-level"]


def test_corrupt_pte_is_a_model_error(tmp_path):
    import edgeser
    from edgeser.errors import ModelError

    bad = tmp_path / "bad.pte"
    bad.write_bytes(PTE.read_bytes()[:4096])  # a valid header, the rest cut off
    with pytest.raises(ModelError, match="could not load"):
        edgeser.load(bad)


def test_missing_executorch_names_the_honest_install_command():
    p = _run(f"""
        import sys
        sys.modules["executorch"] = None  # as if it were not installed
        import edgeser
        try:
            edgeser.load({str(PTE)!r})
        except edgeser.ModelError as exc:
            print(exc)
    """)
    assert p.returncode == 0, p.stderr
    assert "pip install 'edgeser[executorch]' && pip install --no-deps executorch==1.5.1" in p.stdout


def test_executorch_extra_is_lean():
    import tomllib

    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["executorch"]
    names = {r.split("=")[0].split("<")[0].split(">")[0].strip().lower() for r in extra}
    assert "torch" in names and "executorch" not in names  # executorch goes --no-deps (an extra cannot say so)
    assert not names & {"coremltools", "pandas", "scikit-learn", "hydra-core", "omegaconf"}
