"""benchmarks/compare.py and its report section: the pure parts, on tiny fake results (no data, no runs/)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import compare as C
from benchmarks.common import export_mismatch
from benchmarks import report as R

LABELS = ["neutral", "happy", "angry", "sad"]


def _conf(diag: int, off: int = 1) -> list[list[int]]:
    m = np.full((4, 4), off, dtype=int)
    np.fill_diagonal(m, diag)
    return m.tolist()


def _row(kind, variant="full", uar=0.8, clip=100.0, mib=10.0, **kw):
    row = {
        "kind": kind, "model": "mmer" if kind == "teacher" else "m", "variant": variant,
        "format": {"teacher": "pytorch"}.get(kind, "onnx"), "quantization": "fp32", "uar": uar, "wa": uar + 0.01,
        "folds": [0, 1, 2, 3, 4], "confusion": _conf(20), "labels": LABELS, "params": 44_900_000,
        "text_encoder_params": 22_600_000 if kind == "teacher" else 0, "text_tokens": 10 if kind == "teacher" else 0,
        "file_mib": mib,
        "clip_ms": {"cpu": {"p50": clip, "p95": clip * 1.2}, "wall": {"p50": clip * 3, "p95": clip * 4},
                    "clip_seconds": 3.5},
        "rtf": {"cpu": clip / 3500, "wall": 3 * clip / 3500},
        "chunk_ms": None if kind == "teacher" else {"cpu": {"p50": 5.0, "p95": 6.0}, "wall": {"p50": 9.0, "p95": 12.0},
                                                      "what": "model, one 2 s window"},
        "peak_rss_mib": 120.0, "final_after_speech_end_s": {"mean": 0.3, "p95": 0.35, "max": 0.4},
        "final_how": "measured", "trained_on": "cpu", "gpu": None, "speed_fold": 0, "rtf_audio_seconds": 120.0,
        "protocol": "stream protocol",
    }
    row.update(kw)
    return row


def _fake_results(with_gpu=True):
    gpu = {"device": "NVIDIA H100", "fp32_ms": {"p50": 7.5, "p95": 8.0}, "bf16_ms": {"p50": 5.25, "p95": 6.0}}
    return {
        "command": "python benchmarks/compare.py", "machine": {"cpu": "test cpu", "cores": 2}, "date": "2026-01-01",
        "clock": "cpu", "protocol": "fake protocol",
        "inputs": {"teacher_timing_cuda": {"command": "python benchmarks/teacher_timing.py --device cuda"}
                   if with_gpu else None},
        "rows": [
            _row("teacher", gpu=gpu if with_gpu else None, clip=900.0, mib=256.0),
            _row("teacher", variant="no_ctc", uar=0.75, clip=880.0, mib=256.0),
            _row("student", variant="onnx-int8", uar=0.79, clip=60.0, mib=12.0, quantization="int8",
                 export_check_failed={"2": "label agreement 0.966"}, note="fold 2 failed the export check"),
            _row("adaptive", variant="onnx-int8", uar=0.83, clip=61.0, mib=12.1, quantization="int8",
                 headline="session", per_clip={"uar": 0.795, "wa": 0.80}, protocol="sessions per speaker"),
            _row("causal", variant="onnx-fp32", uar=0.66, clip=20.0, mib=8.0, folds=[0],
                 stream_fresh_state_uar={"0": 0.656}, trained_on="NVIDIA H100 80GB HBM3",
                 chunk_ms={"cpu": {"p50": 1.1, "p95": 1.3}, "wall": {"p50": 2.0, "p95": 3.0},
                           "what": "one step, 200 ms chunk"}),
            _row("causal", variant="onnx-int8", uar=0.64, clip=18.0, mib=2.6, quantization="int8", folds=[0, 1]),
            {"kind": "causal", "model": "c", "variant": "pte-int8", "format": "pte", "quantization": "int8",
             "uar": None, "wa": None, "folds": [], "params": 2_000_000, "text_encoder_params": 0,
             "note": "not exported"},
        ],
        "missing": ["causal student fold 1: no runs/causal_f1/causal.pt yet"],
    }


def test_percentiles():
    p = C.percentiles([1.0, 2.0, 3.0, 4.0, 100.0])
    assert p["p50"] == 3.0 and p["n"] == 5 and p["mean"] == pytest.approx(22.0)
    assert p["p95"] == pytest.approx(np.percentile([1, 2, 3, 4, 100], 95))
    with pytest.raises(ValueError):
        C.percentiles([])


def test_clock_and_both():
    with C.Clock() as k:
        sum(range(10000))
    assert k.wall >= 0 and k.cpu >= 0
    b = C.both([2.0, 4.0], [1.0, 3.0])
    assert b["wall"]["p50"] == 3.0 and b["cpu"]["p50"] == 2.0


def test_aggregate_folds():
    folds = [{"fold": 1, "uar": 0.6, "wa": 0.7, "confusion": _conf(5, 0)},
             {"fold": 0, "uar": 0.8, "wa": 0.9, "confusion": _conf(3, 1)}]
    a = C.aggregate_folds(folds)
    assert a["folds"] == [0, 1]
    assert a["uar"] == pytest.approx(0.7) and a["wa"] == pytest.approx(0.8)
    assert a["uar_sd"] == pytest.approx(0.1)
    assert np.array_equal(a["confusion"], np.asarray(_conf(5, 0)) + np.asarray(_conf(3, 1)))
    assert a["per_fold"][0] == {"fold": 0, "uar": 0.8, "wa": 0.9, "n": 4 * 3 + 12}
    assert a["pooled_wa"] == pytest.approx(32 / (32 + 12))
    with pytest.raises(ValueError):
        C.aggregate_folds([])
    with pytest.raises(ValueError):
        C.aggregate_folds(folds + [folds[0]])
    with pytest.raises(ValueError):
        C.aggregate_folds([{"fold": 0, "uar": 1, "wa": 1, "confusion": [[1, 0], [0, 1]]}])


def _is_png(path):
    import matplotlib.image as mpimg

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100


def test_plot_tradeoff_writes_png(tmp_path):
    out = C.plot_tradeoff(_fake_results()["rows"], tmp_path / "t.png")
    _is_png(out)
    with pytest.raises(ValueError):
        C.plot_tradeoff([_fake_results()["rows"][-1]], tmp_path / "none.png")


def test_plot_confusions_writes_png(tmp_path):
    items = [(f"model {i}", _conf(10 + i)) for i in range(5)]  # 5 -> a 2 x 4 grid with empty cells
    _is_png(C.plot_confusions(items, LABELS, tmp_path / "c.png"))
    with pytest.raises(ValueError):
        C.plot_confusions([], LABELS, tmp_path / "none.png")


def test_short_names():
    rows = _fake_results()["rows"]
    assert [C.short_name(r) for r in rows[:5]] == ["mmer", "mmer/no_ctc", "student onnx int8",
                                                   "adaptive onnx int8", "causal onnx fp32"]


def test_compare_table_renders():
    lines = R.compare(_fake_results())
    text = "\n".join(lines)
    table = [ln for ln in lines if ln.startswith("| ")]
    assert len(table) == 1 + 7  # header + one line per row
    n_cols = table[0].count("|")
    assert all(ln.count("|") == n_cols for ln in table)
    assert "NVIDIA H100" in table[0] and "per-clip UAR % (session rows)" in table[0]
    teacher = table[1]
    assert "**teacher mmer**" in teacher and "80.0" in teacher and "81.0" in teacher and "all 5" in teacher
    assert "44.9 + 22.6 text" in teacher and "900 / 1080" in teacher and "7.5 / 5.2" in teacher
    assert "0.2571" in teacher  # RTF = 900 ms / 3.5 s
    assert "| teacher mmer | no_ctc |" in table[2] and table[2].rstrip().endswith("| — |")  # no GPU timing
    assert "onnx int8 (!)" in table[3] and "5.0 / 6.0" in table[3]
    adaptive = table[4]
    assert "**student (adaptive) — session**" in adaptive and "| 83.0 | 84.0 | 79.5 |" in adaptive
    assert "| 0 |" in table[5] and "1.1 / 1.3" in table[5] and "NVIDIA H100 80GB HBM3" in table[5]  # causal fold 0
    assert "| 0, 1 |" in table[6]
    assert "not exported" in table[7]
    assert "fold 2 failed the export check" in text
    assert "UAR / WA are per session" in text and "sessions per speaker" in text
    assert "onnx fp32 65.6" in text  # the causal cross-check (stream from a fresh state)
    assert "causal student fold 1" in text  # missing inputs are listed
    assert "results/compare_tradeoff.png" in text and "results/compare_confusion.png" in text


def test_compare_table_notes_kept_rows():
    d = _fake_results()
    d["kept"] = {"windowed": {"command": "python benchmarks/compare.py --limit pte-fp32:0", "date": "2026-01-01"}}
    text = "\n".join(R.compare(d))
    assert "student (windowed) rows kept from the earlier run `python benchmarks/compare.py --limit pte-fp32:0`" in text


def test_compare_table_without_gpu_file():
    d = _fake_results(with_gpu=False)
    lines = R.compare(d)
    assert "no GPU timing file" in lines[[i for i, ln in enumerate(lines) if ln.startswith("| model")][0]]
    assert "teacher_timing.py --device cuda" in "\n".join(lines)


def test_compare_summary_for_readme():
    lines = R.compare_summary(_fake_results())
    table = [ln for ln in lines if ln.startswith("| ")]
    # best teacher, windowed int8, adaptive int8 session + per clip, causal int8 (not the fp32 one, not unexported)
    assert len(table) == 1 + 5
    assert "| best teacher (mmer) | pytorch fp32 | 80.0 | all 5 | 256.0 |" in table[1]
    assert table[2].startswith("| windowed student | onnx int8 (!) | 79.0 |")
    assert table[3].startswith("| adaptive student, session | onnx int8 | 83.0 |")
    assert table[4].startswith("| adaptive student, per clip | onnx int8 | 79.5 |")
    assert table[5].startswith("| causal student | onnx int8 | 64.0 | 0, 1 | 2.6 |")
    d = _fake_results()  # a row of the noisy-session recipe gets its own lines, the plain adaptive ones stay
    sess = dict(next(r for r in d["rows"] if r["kind"] == "adaptive" and r.get("uar") is not None), recipe="sess", uar=0.81)
    d["rows"].append(sess)
    table = [ln for ln in R.compare_summary(d) if ln.startswith("| ")]
    assert len(table) == 1 + 7 and table[3].startswith("| adaptive student, session | onnx int8 | 83.0 |")
    assert any(ln.startswith("| adaptive student + noisy-session training (the previous default's recipe), session") and
               "| 81.0 |" in ln for ln in table)
    assert all(ln.rstrip().endswith("| 0.30 |") for ln in table[1:])
    assert "Session = " in "\n".join(lines)
    assert not any("earlier runs" in ln for ln in lines)
    # rows kept from an earlier run: the summary says their costs come from another day
    d["date"], d["kept"] = "2026-12-06 23:00:00 UTC", {"sess": {"command": "c", "date": "2026-11-23 14:00:00 UTC"},
                                                       "gone": {"command": "c", "date": "2026-01-01"}}
    note = [ln for ln in R.compare_summary(d) if "earlier runs" in ln]
    assert len(note) == 1 and "(2026-11-23; this run 2026-12-06)" in note[0] and "previous default" in note[0]
    assert "2026-01-01" not in note[0]  # a recipe with no row in the summary is not named


def test_compare_summary_without_adaptive_or_causal():
    d = _fake_results()
    d["rows"] = [r for r in d["rows"] if r["kind"] in ("teacher", "student")]
    table = [ln for ln in R.compare_summary(d) if ln.startswith("| ")]
    assert len(table) == 1 + 2 and "Session = " not in "\n".join(R.compare_summary(d))


def test_variant_naming():
    assert C.split_variant("onnx-int8") == ("windowed", "onnx-int8")
    assert C.split_variant("adapt-pte-fp32") == ("adapt", "pte-fp32")
    assert C.split_variant("causal-pte-int8") == ("causal", "pte-int8")
    for name in C.ALL_VARIANTS:
        assert C.variant_name(*C.split_variant(name)) == name
    with pytest.raises(ValueError):
        C.split_variant("adapt-tflite-int8")
    assert C.variant_dir("windowed", "pte-int8", 3) == C.COMPARE_RUNS / "pte-int8" / "fold3"  # the cached layout
    assert C.variant_dir("adapt", "pte-int8", 3) == C.COMPARE_RUNS / "adapt-pte-int8" / "fold3"
    with pytest.raises(ValueError):
        C.variant_dir("causal", "onnx-fp32", 0)
    assert C.RECIPES["adapt"][0] == C.ROOT / "runs" / "cv_adapt"
    # the previous default's recipe (noisy-session training): its own prefix, folder and checkpoints
    assert C.split_variant("sess-onnx-int8") == ("sess", "onnx-int8")
    assert C.variant_dir("sess", "onnx-int8", 0) == C.COMPARE_RUNS / "sess-onnx-int8" / "fold0"
    assert C.RECIPES["sess"][0] == C.ROOT / "runs" / "cv_adapt_sess" and C.RECIPES["sess"][2] == "adaptive"
    assert C.short_name({"kind": "adaptive", "recipe": "sess", "format": "onnx", "quantization": "int8"}) != \
        C.short_name({"kind": "adaptive", "recipe": "adapt", "format": "onnx", "quantization": "int8"})
    # the bundled default's recipe (noisy sessions + emotion mixes) likewise
    assert C.split_variant("mix-onnx-int8") == ("mix", "onnx-int8") and "mix-pte-fp32" in C.ALL_VARIANTS
    assert C.RECIPES["mix"][0] == C.ROOT / "runs" / "cv_adapt_mix" and C.RECIPES["mix"][1] == "student_cv_adapt_mix.json"
    names = {C.short_name({"kind": "adaptive", "recipe": r, "format": "onnx", "quantization": "int8"})
             for r in ("adapt", "sess", "mix")}
    assert len(names) == 3 and len(C.ALL_VARIANTS) == len(set(C.ALL_VARIANTS)) == 4 * len(C.RECIPES) + 4
    assert "mix" in R.RECIPE_NAMES and "bundled default" in R.RECIPE_NAMES["mix"]


def test_session_order_is_default_models():
    speakers = ["Actor_03"] * 5 + ["Actor_10"] * 4 + ["Actor_03"] * 3 + ["Actor_16"] * 6
    order = C.session_order(speakers)
    # default_model.accuracy(session=True): a default_rng(0) permutation, then a stable sort by speaker
    perm = np.random.default_rng(0).permutation(len(speakers))
    assert order == [int(i) for i in sorted(perm, key=lambda i: speakers[i])]
    assert sorted(order) == list(range(len(speakers)))
    got = [speakers[i] for i in order]
    assert got == sorted(got)  # grouped by speaker
    assert order[:8] != sorted(order[:8])  # shuffled within a speaker
    assert C.session_order(speakers) == order  # fixed


def test_causal_trained_on_reads_the_record(tmp_path):
    (tmp_path / "causal_f0").mkdir()
    ck = tmp_path / "causal_f0" / "causal.pt"
    assert C.causal_trained_on(ck) == "?"
    (tmp_path / "causal_f0" / "record.json").write_text(json.dumps({"device": "cuda (NVIDIA H100 80GB HBM3)"}))
    assert C.causal_trained_on(ck) == "NVIDIA H100 80GB HBM3"


def _fake_robustness():
    cond = {"off": {"n": 112, "uar": 0.7, "wa": 0.71, "recall": {k: 0.7 for k in LABELS}},
            "running": {"n": 112, "uar": 0.75, "wa": 0.76, "recall": {k: 0.75 for k in LABELS}, "no_event": 0,
                        "split": 1, "merged": 0}}
    summ = {m: {"clean_uar": 0.8, "clean_neutral_recall": 0.8, "mean_shift_uar": u, "n_shift_conditions": 2,
                "worst": {"condition": "babble 0 dB", "uar": 0.41}, "mean_shift_drop": 0.8 - u,
                "neutral_recall_min": {"condition": "reverb", "value": 0.5, "conditions": ["reverb", "opus", "hum"]}}
            for m, u in (("off", 0.7), ("running", 0.75))}
    return {"command": "python benchmarks/robustness.py", "machine": {"cpu": "c", "cores": 2}, "date": "d",
            "models": {"m.onnx": {"modes_run": ["off", "running"], "labels": LABELS, "test_speakers": ["Actor_03"],
                                  "clips_per_condition": 112, "conditions": {"clean": cond, "babble 0 dB": cond},
                                  "summary": summ}}}


def test_robustness_summary_and_section():
    lines = R.robustness_summary(_fake_robustness())
    assert len(lines) == 2  # one per adaptation mode
    assert "adaptation `running`" in lines[1] and "clean UAR 80.0 % vs 75.0 %" in lines[1]
    assert "worst babble 0 dB 41.0 %" in lines[0] and "lowest neutral recall 50.0 % (reverb, opus and 1 more)" in lines[0]
    assert "no `benchmarks/results/robustness.json`" in R.robustness_summary(None)[0]
    assert "summary" in R.robustness_summary({"models": {"m": {"summary": {}}}})[0]
    sec = "\n".join(R.robustness_section(_fake_robustness()))
    assert sec.startswith("## Robustness") and "babble 0 dB" in sec
    assert "No `results/robustness.json` yet" in "\n".join(R.robustness_section(None))
    bad = "\n".join(R.robustness_section({"models": {"m": {}}}))  # half-written: a note, no crash
    assert "could not be rendered" in bad


def test_robustness_change_split_control_in_the_reports():
    """The control run (session modes without emotion-change cuts) is compared line by line with the main run."""
    on, off = _fake_robustness(), _fake_robustness()
    mo = off["models"]["m.onnx"]
    mo["summary"]["running"] = {**mo["summary"]["running"], "worst": {"condition": "cafe 0 dB", "uar": 0.3},
                                "neutral_recall_min": {"condition": "cafe 0 dB", "value": 0.25}}
    mo["conditions"] = {"clean": mo["conditions"]["clean"],
                        "babble 0 dB": {**mo["conditions"]["babble 0 dB"],
                                        "running": {**mo["conditions"]["babble 0 dB"]["running"], "uar": 0.5,
                                                    "merged": 90}}}
    lines = R.robustness_summary(on, off)
    assert len(lines) == 3 and "cut at emotion changes" in lines[2]
    assert "worst babble 0 dB 41.0 % vs cafe 0 dB 30.0 %" in lines[2] and "50.0 % vs 25.0 %" in lines[2]
    assert len(R.robustness_summary(on, None)) == 2
    sec = "\n".join(R.robustness_section(on, off))
    assert "cut at emotion changes vs segments of the VAD alone" in sec
    rows = [ln for ln in sec.splitlines() if ln.startswith("| babble 0 dB |") and "/" in ln]
    assert rows and "75.0 / 50.0" in rows[-1] and "running: 0 / 90" in rows[-1]

    # a control run of another model file is not compared with this one
    on["models"]["m.onnx"]["sha256"], mo["sha256"] = "a" * 64, "b" * 64
    lines = R.robustness_summary(on, off)
    assert len(lines) == 3 and "another model file; not compared" in lines[2]
    sec = "\n".join(R.robustness_section(on, off))
    assert "not compared" in sec and not [ln for ln in sec.splitlines() if ln.startswith("| babble 0 dB |")
                                          and "75.0 / 50.0" in ln]
    mo["sha256"] = "a" * 64
    assert "cut at emotion changes" in R.robustness_summary(on, off)[2]


def _fake_calibration(ece_after=0.04):
    m = {"n": 20, "ece": 0.1, "nll": 0.6, "accuracy": 0.8, "mean_confidence": 0.7, "brier": 0.3}
    return {"pooled": {"clips": 560, "speakers": 20, "before": m, "after": {**m, "ece": ece_after}},
            "ece_target": 0.05, "reliability_png": "reliability_adapt.png"}


def test_calibration_summary_and_sections():
    files = [("calibration.json", "Cal A", "non-adaptive", "cmd a", _fake_calibration(0.0501)),
             ("calibration_adapt.json", "Cal B", "adaptive, session", "cmd b", None)]
    lines = R.calibration_summary(files)
    assert lines == [("- Calibration (non-adaptive, 560 clips of 20 held-out speakers pooled): ECE 0.1000 before, "
                      "0.0501 after temperature scaling (target 0.05: not met).")]
    assert "no `benchmarks/results/calibration" in R.calibration_summary([files[1]])[0]
    pooled_logits = ("c.json", "h", "shipped", "c", {**_fake_calibration(0.0399), "aggregate": "mean_logits"})
    assert R.calibration_summary([pooled_logits])[0].endswith(
        "0.0399 after temperature scaling, windows pooled by their mean logits (target 0.05: met).")
    assert "incomplete" in R.calibration_summary([("x.json", "h", "s", "c", {"pooled": {}})])[0]
    sec = R.calibration_sections(files)
    text = "\n".join(sec)
    assert "## Cal A" in sec and "## Cal B" in sec  # its own heading each; the absent one says so
    assert "No `results/calibration_adapt.json` yet" in text and "`cmd b`" in text


def test_report_skips_absent_files(tmp_path, monkeypatch):
    monkeypatch.setattr(R, "RES", tmp_path)
    (tmp_path / "robustness.json").write_text('{"models": {')  # being written
    assert R._load("robustness.json") is None and R._load("nothing.json") is None
    block = R.readme_summary()
    assert block[0] == R.README_START and block[-1] == R.README_END
    text = "\n".join(block)
    assert "no `benchmarks/results/robustness.json`" in text and "no `benchmarks/results/calibration" in text
    (tmp_path / "calibration_adapt.json").write_text(json.dumps(_fake_calibration()))
    assert "adaptive student, session protocol" in "\n".join(R.readme_summary())


def test_missing_input_names_the_command(tmp_path):
    with pytest.raises(SystemExit) as e:
        C._load_json(C.ROOT / "benchmarks" / "results" / "no_such_file.json", "a thing", "python make_it.py")
    assert "python make_it.py" in str(e.value) and "no_such_file.json" in str(e.value)


def test_parse_limits():
    assert C._parse_limits(["pte-fp32:0", "onnx-int8:1,3"]) == {"pte-fp32": [0], "onnx-int8": [1, 3]}
    assert C._parse_limits(["adapt-pte-fp32:0", "causal-pte-int8:2,0"]) == {"adapt-pte-fp32": [0],
                                                                           "causal-pte-int8": [0, 2]}
    with pytest.raises(SystemExit):
        C._parse_limits(["tflite:0"])
    with pytest.raises(SystemExit):
        C._parse_limits(["adapt-pte-fp32"])


def test_export_mismatch_is_read_from_the_log(tmp_path):
    log = tmp_path / "export.log"
    assert export_mismatch(log) is None
    log.write_text("Traceback\nexport.core.ExportMismatch: x.onnx differs from eager PyTorch: {'label_agreement': 0.96}\n")
    assert export_mismatch(log).startswith("x.onnx differs")


def test_calibrated_recipe_exports_with_each_folds_calibration(tmp_path):
    """The bundled model's recipe is exported as the bundled file is (its fold's temperature, threshold, pooling);
    an export made with other options is redone, not reused."""
    cal = json.loads((C.RESULTS / C.RECIPE_CALIBRATION["mix"]).read_text())
    for k in (0, 3):
        r = next(f for f in cal["folds"] if f["fold"] == k)
        assert C.export_options("mix", k) == ["--temperature", f"{r['temperature']:.3f}", "--abstain-below",
                                              f"{r['threshold']['value']:.2f}", "--aggregate", cal["aggregate"]]
    assert C.export_options("sess", 0) == [] and C.export_options("windowed", 0) == []
    opts = C.export_options("mix", 0)
    report, log = tmp_path / "student.export.json", tmp_path / "export.log"
    assert not C._exported_with(report, log, opts)  # nothing exported yet
    base = "python -m export --checkpoint ck --format onnx --quantize int8 --out o --name student"
    report.write_text(json.dumps({"command": base}))  # an earlier export at the exporter's defaults
    assert C._exported_with(report, log, []) and not C._exported_with(report, log, opts)
    report.write_text(json.dumps({"command": base + " " + " ".join(opts)}))
    assert C._exported_with(report, log, opts) and not C._exported_with(report, log, [])
    report.unlink()  # a failed check writes no report: the log's first line holds the command
    log.write_text(base + " " + " ".join(opts) + "\nTraceback ...\nExportMismatch: x\n")
    assert C._exported_with(report, log, opts) and not C._exported_with(report, log, opts[:2])


def test_teacher_timing_helpers():
    from benchmarks import teacher_timing as T

    p = T.percentiles([1.0, 3.0])
    assert p["p50"] == 2.0 and p["min"] == 1.0
    assert json.dumps(T.MINILM) and T.WHISPER_BASE["d_model"] == 512


def _cv_file(uar, neutral_ctx=None, sessions=None, voices=None):
    cfg = {"d_rnn": 32, "n_heads": 4, "d_head": 16, "dropout": 0.5}
    v = {"mean_uar": uar, "mean_wa": uar, "folds": [{"uar": uar, "head_config": cfg}]}
    if neutral_ctx is not None:
        v["neutral_ctx_mean"] = {"uar": neutral_ctx[0], "neutral_recall": neutral_ctx[1]}
    if sessions is not None:
        v["sessions_val_mean"] = {"uar": sessions[0], "neutral_recall": sessions[1]}
        if len(sessions) > 2:
            v["sessions_val_mean"].update(uar_neutral_ctx=sessions[2], neutral_recall_neutral_ctx=sessions[3])
    if voices is not None:
        v["voices_val_mean"] = {"uar": voices[0], "uar_off": voices[0] - 0.1, "neutral_recall": voices[1]}
    return {"command": "python -m train.student cv", "variants": {"head": v}}


def test_ablations_report_the_ordinary_speech_baseline():
    lines = R.ablations([("old.json", _cv_file(0.84, sessions=(0.77, 0.8))),
                         ("new.json", _cv_file(0.83, (0.78, 0.64), (0.75, 0.81, 0.67, 0.49)))])
    old = next(ln for ln in lines if ln.startswith("| `old.json`"))
    new = next(ln for ln in lines if ln.startswith("| `new.json`"))
    assert old.endswith("| 77.0 / 80.0 | – | – |")  # older files lack the measures: a dash, not a number
    assert new.endswith("| 75.0 / 81.0 | 78.0 / 64.0; 67.0 / 49.0 | – |")
    assert all(ln.count("|") == lines[2].count("|") for ln in (old, new))  # as many columns as the header
    assert any("Ordinary-speech baseline" in ln for ln in lines)
    assert not any("Ordinary-speech baseline" in ln for ln in R.ablations([("old.json", _cv_file(0.84))]))
    assert not any("In other voices" in ln for ln in lines)
    voiced = R.ablations([("v.json", _cv_file(0.83, voices=(0.72, 0.55)))])
    row = next(ln for ln in voiced if ln.startswith("| `v.json`"))
    assert row.endswith("| 83.0 | – | – | 72.0 / 55.0 |") and row.count("|") == voiced[2].count("|")
    assert any("In other voices" in ln for ln in voiced)


def test_robustness_vs_previous_default():
    new, old = _fake_robustness(), _fake_robustness()
    old["models"]["m.onnx"]["summary"]["running"]["neutral_recall_min"]["value"] = 0.25
    new["models"]["m.onnx"]["tts"] = {"running": {"uar": 0.46, "recall": {k: 0.2 for k in LABELS}}}
    old["models"]["m.onnx"]["tts"] = {"running": {"uar": 0.36, "recall": {k: 0.1 for k in LABELS}}}
    lines = R.robustness_vs_previous(new, old)
    rows = [ln for ln in lines if ln.startswith("| `m.onnx`")]
    assert len(rows) == 2  # one per mode both runs have
    running = next(ln for ln in rows if "| running |" in ln)
    assert "| 50.0 / 25.0 |" in running and "46.0 / 20.0 vs 36.0 / 10.0" in running
    assert "| 80.0 / 80.0 | 75.0 / 75.0 |" in running
    assert "| — |" in next(ln for ln in rows if "| off |" in ln)  # no TTS in one of them: a dash
    assert R.robustness_vs_previous(new, None) == [] and R.robustness_vs_previous(None, old) == []
