"""apps/mobile/check_pte.py: the bundled .pte loads in ExecuTorch's own runtime, uses only XNNPACK delegates and
portable ATen operators, carries its metadata, and agrees with the ONNX model on log-mel windows of espeak speech."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import espeak_wav

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "apps" / "mobile" / "check_pte.py"
PTE = REPO / "edgeser" / "models" / "default" / "edgeser-default.pte"


def needs_executorch():
    # the set-up installs executorch; its absence is a broken install, not a reason to skip
    assert importlib.util.find_spec("executorch") is not None, "executorch missing: run scripts/setup.sh"


def check(*args, cwd=REPO):
    p = subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                       timeout=180)
    return p


def test_bundled_pte_passes_the_mobile_checks(tmp_path):
    needs_executorch()
    import edgeser

    clip = tmp_path / "speech.wav"
    espeak_wav(clip, "Please call me back as soon as you can, it is really important.")
    p = check("--audio", clip, "--windows", 6, "--json", cwd=tmp_path)  # runs from any folder
    assert p.returncode == 0, p.stdout + p.stderr
    rep = json.loads(p.stdout)
    assert rep["ok"] and all(c["ok"] for c in rep["checks"])
    names = {c["check"] for c in rep["checks"]}
    for want in ("methods", "forward signature", "delegates: XNNPACK only", "operators: ATen (portable kernels) only",
                 "metadata = sidecar .pte.json", "labels = ONNX model's", "first window: same label as ONNX"):
        assert want in names, (want, names)
    info = rep["info"]
    labels = list(edgeser.load().labels)
    assert info["metadata"]["labels"] == labels
    state = [list(st["shape"]) for st in edgeser.load().info.state]  # the adaptation state the app carries
    assert info["forward"] == {"inputs": [[1, 80, 200]] + state, "outputs": [[1, len(labels)]] + state}
    assert [s["name"] for s in info["state"]] == [s["name"] for s in edgeser.load().info.state]
    assert set(info["delegates"]) == {"XnnpackBackend"} and info["delegates"]["XnnpackBackend"] > 0
    assert info["operators"] and all(o.startswith("aten::") for o in info["operators"])
    cmp = info["comparison"]
    assert 3 <= cmp["windows"] <= 6 and cmp["label_agreement"] >= 0.8 and cmp["max_prob_diff"] <= 0.15
    assert set(cmp["first_window"]["pte"]) == set(labels)


def test_default_run_and_failure_exit_codes(tmp_path):
    needs_executorch()
    p = check()  # synthetic signal, text report
    assert p.returncode == 0, p.stdout + p.stderr
    assert "all checks passed" in p.stdout and "[FAIL]" not in p.stdout
    assert "XnnpackBackend" in p.stdout and "ms/window" in p.stdout

    not_pte = tmp_path / "model.pte"
    not_pte.write_bytes(PTE.read_bytes()[:4096])  # truncated program
    p = check("--pte", not_pte)
    assert p.returncode == 1 and "[FAIL]" in p.stdout and "SOME CHECKS FAILED" in p.stdout
    p = check("--pte", tmp_path / "missing.pte")
    assert p.returncode == 2 and "no such file" in p.stderr


def test_golden_vectors_describe_the_stream(tmp_path):
    """apps/mobile/golden.py: the window schedule rebuilt from the events reproduces every final event's scores
    (so the schedule documented in apps/mobile/README.md is the SDK's), and the arrays have the documented shapes."""
    import numpy as np

    from edgeser.audio import load
    from edgeser.features import log_mel, mel_filters

    clip = tmp_path / "speech.wav"
    espeak_wav(clip, "Please call me back as soon as you can. It is really important.")
    out = tmp_path / "golden"
    p = subprocess.run([sys.executable, str(REPO / "apps" / "mobile" / "golden.py"), str(clip), "--out", str(out)],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    doc = json.loads((out / "golden.json").read_text())
    assert doc["schedule_check_max_diff"] < 1e-4
    import edgeser

    assert doc["model"]["aggregate"] == edgeser.load().info.aggregate  # how a port pools the windows
    assert all(set(w["logits"]) == set(w["probs"]) == set(doc["labels"]) for w in doc["windows"])
    x = load(clip)
    assert np.array_equal(np.fromfile(out / "audio_16k.f32", "<f4"), x)
    mel = np.fromfile(out / "logmel_80xT.f32", "<f4").reshape(80, -1)
    assert mel.shape[1] == doc["frames"] == x.size // 160 and np.array_equal(mel, log_mel(x))
    assert np.array_equal(np.fromfile(out / "mel_filters_80x201.f32", "<f4").reshape(80, 201), mel_filters())
    assert np.fromfile(out / "vad_probs.f32", "<f4").size == x.size // 512
    finals = [e for e in doc["events"] if e["final"]]
    assert finals and doc["windows"]
    for e in finals:
        wins = [w for w in doc["windows"] if w["segment"] == e["segment"]]
        first = min(w["end_frame"] for w in wins)
        # 0.5 s after its start; a segment opened by an emotion change starts at the middle of its first window
        assert first - round(e["start"] * 16000) // 160 in (doc["model"]["first_frames"], doc["model"]["window_frames"] // 2)
        ends = sorted(w["end_frame"] for w in wins if w["kind"] == "partial")
        assert all(b - a == doc["model"]["hop_frames"] for a, b in zip(ends, ends[1:]))  # then every 0.5 s


@pytest.mark.parametrize("aggregate", ["mean", "mean_logits"])
def test_the_documented_schedule_reproduces_emotion_change_splits(aggregate):
    """The port's algorithm (apps/mobile/README.md section 4, golden.window_schedule): windows rebuilt from the events
    of a stream cut at an emotion change, run again on the whole clip's log-mel, give every final event's scores."""
    import numpy as np

    from apps.mobile.golden import window_schedule
    from edgeser.features import log_mel
    from edgeser.model import Model
    from edgeser.stream import SILENCE_LOGMEL, softmax
    from test_stream import _SharpBackend, _two_voices

    from dataclasses import replace

    b = _SharpBackend()
    b.info = replace(b.info, aggregate=aggregate)
    m = Model(b, vad="energy")
    x = _two_voices(5.0, 4.0)
    s = m.stream()
    events = []
    for i in range(0, x.size, 480):
        events += s.accept(x[i:i + 480], 16000)
    events += s.flush()
    finals = [e for e in events if e.final]
    assert len(finals) == 2  # one speech segment, cut once where the 'emotion' changes
    mel = log_mel(x)
    w = b.info.window_frames
    padded = np.concatenate([np.full((80, w), SILENCE_LOGMEL, np.float32), mel], axis=1)
    windows = window_schedule(events, mel.shape[1], b.info)
    for e in finals:
        ends = [win["end_frame"] for win in windows if win["segment"] == e.segment]
        logits = [b.run(np.ascontiguousarray(padded[None, :, k:k + w])) for k in ends]
        if aggregate == "mean_logits":  # softmax of the mean logits / T
            want = softmax(np.mean(logits, axis=0), b.info.temperature)
        else:  # the mean of the window probabilities
            want = np.mean([softmax(z, b.info.temperature) for z in logits], axis=0)
        assert np.allclose(want, [e.scores[k] for k in m.labels], atol=1e-5)
