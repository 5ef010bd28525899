"""train.calibration on synthetic data: ECE, temperature fitting (clip- and window-level), abstention, diagrams."""

from __future__ import annotations

import numpy as np
import pytest

from train import calibration as C


def _sample(p: np.ndarray, rng) -> np.ndarray:
    """One class index per row drawn from the row's probabilities."""
    u = rng.random((len(p), 1))
    return np.minimum((np.cumsum(p, axis=1) < u).sum(1), p.shape[1] - 1)


def _synthetic_clips(rng, n_clips: int, t_true: float, n_classes: int = 4, max_windows: int = 7):
    """Clips with 1..max_windows windows whose labels follow the clip probability at temperature ``t_true``:
    mean over windows of softmax(logits / t_true). So ``t_true`` is the calibrating temperature."""
    clips = []
    for _ in range(n_clips):
        base = rng.normal(0, 1.5, n_classes)
        n = int(rng.integers(1, max_windows + 1))
        clips.append((base + rng.normal(0, 0.8, (n, n_classes))) * t_true)
    p = C.clip_probs(clips, t_true)
    return clips, _sample(p, rng)


def test_ece_of_calibrated_probabilities_is_near_zero():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.full(4, 0.7), size=40000)
    y = _sample(p, rng)  # labels drawn from the probabilities: calibrated by construction
    assert C.expected_calibration_error(p, y) < 0.015
    # one-hot predictions that are always right: ECE exactly 0
    y2 = rng.integers(0, 4, 500)
    assert C.expected_calibration_error(np.eye(4)[y2], y2) == pytest.approx(0.0)


def test_ece_known_value_and_bins():
    # 10 predictions at confidence 0.9, 6 right: one bin, gap 0.3
    p = np.tile([0.9, 0.1 / 3, 0.1 / 3, 0.1 / 3], (10, 1))
    y = np.array([0] * 6 + [1] * 4)
    assert C.expected_calibration_error(p, y, n_bins=15) == pytest.approx(0.3)
    r = C.reliability_bins(p, y, n_bins=10)
    assert sum(r["count"]) == 10 and r["count"][8] == 10  # 0.9 in (0.8, 0.9]
    assert r["accuracy"][8] == pytest.approx(0.6) and r["gap"][8] == pytest.approx(0.3)
    assert np.isnan(r["accuracy"][0])


def test_ece_noise_floor_shrinks_with_more_clips():
    rng = np.random.default_rng(7)
    small = C.ece_noise_floor(rng.dirichlet(np.ones(4), size=100), reps=200)
    large = C.ece_noise_floor(rng.dirichlet(np.ones(4), size=3000), reps=200)
    assert 0 < large["mean"] < small["mean"] <= small["p95"]


def test_overconfident_ece_is_reduced_by_fitted_temperature():
    rng = np.random.default_rng(1)
    clips, y = _synthetic_clips(rng, 3000, t_true=1.0)
    sharp = [3.0 * c for c in clips]  # overconfident by a factor 3
    before = C.expected_calibration_error(C.clip_probs(sharp), y)
    assert before > 0.05
    t = C.fit_temperature(sharp, y)
    after = C.expected_calibration_error(C.clip_probs(sharp, t), y)
    assert t > 2.0 and after < before / 2 and after < 0.03
    assert C.clip_nll(sharp, y, t) < C.clip_nll(sharp, y, 1.0)


@pytest.mark.parametrize("t_true", [0.5, 2.5])
def test_fit_temperature_recovers_known_temperature(t_true):
    rng = np.random.default_rng(2)
    clips, y = _synthetic_clips(rng, 4000, t_true)
    assert {len(c) for c in clips} == set(range(1, 8))  # different window counts per clip
    t = C.fit_temperature(clips, y)
    assert abs(t - t_true) / t_true < 0.10


def test_window_variant_recovers_window_temperature():
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 2.0, (20000, 4))
    y = _sample(C.softmax(logits), rng)  # calibrated at T = 1 per window
    clips = [(1.7 * logits[i])[None] for i in range(len(y))]  # one window per clip, overconfident x1.7
    t_w = C.fit_window_temperature(clips, y)
    assert abs(t_w - 1.7) / 1.7 < 0.10
    # with one window per clip the clip-level and window-level objectives are the same
    assert C.fit_temperature(clips, y) == pytest.approx(t_w, rel=1e-3)


def test_clip_probs_mean_of_window_softmax_with_ragged_clips():
    rng = np.random.default_rng(4)
    clips = [rng.normal(size=(n, 4)) for n in (1, 3, 6, 2)]
    p = C.clip_probs(clips, 1.3)
    for i, c in enumerate(clips):
        e = np.exp(c / 1.3)
        np.testing.assert_allclose(p[i], (e / e.sum(1, keepdims=True)).mean(0), rtol=1e-12)
    # the same as the runtime's float32 softmax averaged over the windows
    from edgeser.stream import softmax as runtime_softmax

    np.testing.assert_allclose(p[2], np.mean([runtime_softmax(w, 1.3) for w in clips[2]], axis=0), atol=1e-6)
    with pytest.raises(ValueError):
        C.clip_probs([np.zeros((0, 4))])
    with pytest.raises(ValueError):
        C.fit_temperature(clips, [0, 1, 2])  # one label per clip


def test_abstain_curve_and_threshold_choice():
    rng = np.random.default_rng(5)
    p = rng.dirichlet(np.full(4, 0.5), size=2000)
    y = _sample(p, rng)
    curve = C.abstain_curve(p, y)
    cov = np.asarray(curve["coverage"])
    assert cov[0] == 1.0 and np.all(np.diff(cov) <= 0)  # coverage never grows with the threshold
    np.testing.assert_allclose(cov + np.asarray(curve["abstained"]), 1.0)
    acc = np.asarray(curve["selective_accuracy"])
    assert acc[0] == pytest.approx(C.accuracy(p, y))
    assert np.nanmax(acc) > acc[0]  # confidence ranks right answers first (calibrated probabilities)
    ch = C.choose_threshold(curve, target_accuracy=0.9)
    assert ch.met and ch.selective_accuracy >= 0.9
    i = curve["thresholds"].index(ch.threshold)
    assert curve["kept"][i] >= C.DEFAULT_MIN_KEPT
    # the smallest such threshold: one step lower misses the target (or keeps too few)
    assert i == 0 or not (acc[i - 1] >= 0.9 and curve["kept"][i - 1] >= C.DEFAULT_MIN_KEPT)
    at = C.at_threshold(p, y, ch.threshold)
    assert at["coverage"] == pytest.approx(ch.coverage) and at["selective_accuracy"] == pytest.approx(ch.selective_accuracy)
    # an unreachable target: the best selective accuracy, flagged
    miss = C.choose_threshold(curve, target_accuracy=1.01)
    assert not miss.met


def test_reliability_diagram_is_a_png(tmp_path):
    rng = np.random.default_rng(6)
    p = rng.dirichlet(np.ones(4), size=300)
    y = _sample(p, rng)
    out = C.reliability_diagram([("before", p, y), ("after", C.softmax(np.log(p), 2.0), y)], tmp_path / "r.png",
                                title="test")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(out) as im:
        im.verify()
    with Image.open(out) as im:
        assert im.size[0] > 400 and im.size[1] > 300


def _synthetic_folds(rng):
    from benchmarks.calibration import FoldLogits

    folds = []
    for k in range(5):
        clips, y = _synthetic_clips(rng, 120, t_true=1.0)
        spk = [f"Actor_{4 * k + i % 4 + 1:02d}" for i in range(len(y))]
        folds.append(FoldLogits(k, sorted(set(spk)), ("neutral", "happy", "angry", "sad"),
                                [f"{s}/{i}.flac" for i, s in enumerate(spk)], spk, y, [0.6 * c for c in clips],
                                "synthetic", 0.0))
    return folds


def test_protocol_fits_on_other_folds_and_renders():
    from benchmarks.calibration import evaluate, render_markdown

    folds = _synthetic_folds(np.random.default_rng(8))
    res, arrays = evaluate(folds)
    assert res["folds"][0]["fit_folds"] == [1, 2, 3, 4]
    assert all(r["fit_clips"] == 480 for r in res["folds"])
    # logits shrunk by 0.6: underconfident, the fitted temperature sharpens (T ~ 0.6)
    assert all(0.45 < r["temperature"] < 0.75 for r in res["folds"])
    assert res["pooled"]["after"]["ece"] < res["pooled"]["before"]["ece"]
    assert arrays["after"].shape == (600, 4)
    md = render_markdown({"command": "x", "machine": "m", "date": "d", "protocol": "p", "ece_target": 0.05,
                          "threshold_criterion": "c", **res, "shipped": None})
    assert "| **pooled** |" in md and "Target ECE <= 0.05" in md
    # a speaker held out by two folds is refused
    folds[1].test_speakers.append(folds[0].test_speakers[0])
    with pytest.raises(ValueError, match="not speaker-independent"):
        evaluate(folds)


def test_recording_backend_reproduces_classify_scores(espeak_speech):
    from benchmarks.calibration import _recording_backend
    from conftest import FakeBackend
    from edgeser.model import Model

    x, _ = espeak_speech
    rec = _recording_backend(FakeBackend())
    res = Model(rec).classify(x, 16000)
    assert len(rec.logits) >= 2
    p = C.clip_probs([np.stack(rec.logits)])[0]
    np.testing.assert_allclose(p, [res.scores[k] for k in ("neutral", "happy", "angry", "sad")], atol=1e-5)


def test_mean_logits_pooling_and_its_temperature():
    """``aggregate="mean_logits"``: softmax of the mean window logits / T; the fit recovers the T that generated the
    labels under that pooling, and the pooling is a real choice (one-window clips pool the same either way)."""
    rng = np.random.default_rng(11)
    clips = [rng.normal(0, 1.5, (int(rng.integers(1, 8)), 4)) for _ in range(4000)]
    p = C.clip_probs(clips, 0.7, "mean_logits")
    np.testing.assert_allclose(p[0], C.softmax(clips[0].mean(0), 0.7))
    y = _sample(p, rng)
    assert C.fit_temperature(clips, y, aggregate="mean_logits") == pytest.approx(0.7, rel=0.08)
    one = [c[:1] for c in clips[:50]]
    np.testing.assert_allclose(C.clip_probs(one, 0.7, "mean_logits"), C.clip_probs(one, 0.7, "mean"))
    multi = [c for c in clips if len(c) > 2][:50]
    assert np.abs(C.clip_probs(multi, 0.7, "mean_logits") - C.clip_probs(multi, 0.7, "mean")).max() > 0.01
    with pytest.raises(ValueError, match="aggregate"):
        C.clip_probs(clips, 1.0, "max")
    with pytest.raises(ValueError, match="aggregate"):
        C.fit_temperature(clips, y, aggregate="median")


def test_protocol_compares_poolings_and_fits_the_chosen_one():
    from benchmarks.calibration import evaluate, render_markdown

    folds = _synthetic_folds(np.random.default_rng(9))
    res, arrays = evaluate(folds, aggregate="mean_logits")
    assert res["pooled"]["aggregate"] == "mean_logits"
    ps = {g["aggregate"]: g for g in res["pooled"]["poolings"]}
    assert set(ps) == {"mean", "mean_logits"}
    # the run's own pooling, cross-fitted, is the pooled "after" figure
    assert ps["mean_logits"]["ece"] == res["pooled"]["after"]["ece"]
    assert ps["mean_logits"]["temperatures"] == [r["temperature"] for r in res["folds"]]
    # the synthetic labels follow the mean of probabilities: that pooling fits them better (NLL, a proper score)
    assert ps["mean"]["nll"] < ps["mean_logits"]["nll"]
    md = render_markdown({"command": "x", "machine": "m", "date": "d", "protocol": "p", "ece_target": 0.05,
                          "threshold_criterion": "c", **res, "shipped": None})
    assert "`mean_logits` (this run's)" in md and "| `mean` |" in md


def test_export_folds_uses_each_folds_fitted_temperature_threshold_and_pooling():
    from benchmarks.export_folds import fold_command

    cal = {"aggregate": "mean_logits", "folds": [
        {"fold": 0, "temperature": 0.5758, "threshold": {"value": 0.67}},
        {"fold": 2, "temperature": 0.6018, "threshold": {"value": 0.7}}]}
    cmd = fold_command(cal, "runs/cv", "runs/out", 2, python="py")
    assert cmd == ["py", "-m", "export", "--checkpoint", "runs/cv/fold2/student.pt", "--format", "onnx",
                   "--quantize", "int8", "--out", "runs/out/fold2", "--name", "edgeser-fold2", "--temperature",
                   "0.602", "--abstain-below", "0.70", "--aggregate", "mean_logits"]
    assert fold_command({"folds": cal["folds"]}, "r", "o", 0, ("onnx", "pte"), python="py")[-1] == "mean"
    with pytest.raises(ValueError, match="no fold 1"):
        fold_command(cal, "r", "o", 1)


def test_export_folds_refuses_calibration_of_other_runs(tmp_path):
    import json

    from benchmarks.export_folds import main

    cal = tmp_path / "cal.json"
    cal.write_text(json.dumps({"runs": "runs/cv_other", "aggregate": "mean", "folds": []}))
    with pytest.raises(SystemExit, match="fitted on runs/cv_other, not runs/cv_adapt_mix"):
        main(["--runs", "runs/cv_adapt_mix", "--calibration", str(cal), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()  # nothing exported
