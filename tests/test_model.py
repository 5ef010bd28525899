"""The public API on the bundled default model: load, classify, analyze, errors, and no torch on the ONNX path."""

import json
import subprocess
import sys

import numpy as np
import pytest

import edgeser
from edgeser import AudioError, EmotionResult, ModelError


@pytest.fixture(scope="module")
def model():
    return edgeser.load()


def test_import_does_not_import_torch():
    code = "import sys, edgeser; assert 'torch' not in sys.modules, 'torch imported'; print(edgeser.__all__)"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_onnx_path_runs_without_torch(tmp_path, espeak_speech):
    x, _ = espeak_speech
    np.save(tmp_path / "x.npy", x)
    code = (
        "import sys; sys.modules['torch'] = None\n"  # any `import torch` now raises ImportError
        "import numpy as np, edgeser\n"
        f"x = np.load({str(tmp_path / 'x.npy')!r})\n"
        "r = edgeser.classify(x, 16000); ev = edgeser.analyze(x, 16000)\n"
        "assert r.label in edgeser.load().labels and ev and ev[-1].final\n"
        "print(r.label)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_default_model_describes_itself(model):
    info = model.info
    assert model.labels == ("neutral", "happy", "angry", "sad")
    assert (info.sample_rate, info.hop_length, info.n_fft, info.n_mels) == (16000, 160, 400, 80)
    assert info.window_frames == 200 and info.input_shape == (1, 80, 200)
    assert "CC BY-NC-SA" in info.training["licence"]
    val = info.training["validation"]
    assert 0.25 < val["uar"] <= 1.0 and len(val["test_speakers"]) == 4
    assert info.quantization == "int8"


def test_classify_and_analyze(model, espeak_speech, tmp_path):
    import soundfile as sf

    x, _ = espeak_speech
    r = model.classify(x, 16000)
    assert isinstance(r, EmotionResult) and r.label in model.labels
    assert sum(r.scores.values()) == pytest.approx(1.0, abs=1e-4) and r.confidence == max(r.scores.values())
    assert r.duration > 1.0
    json.loads(r.to_json())
    path = tmp_path / "s.wav"
    sf.write(path, x, 16000)
    assert edgeser.classify(path).label == r.label
    ev_file = edgeser.analyze(str(path))
    ev_arr = edgeser.analyze(x, 16000)
    assert [(e.start, e.end, e.label) for e in ev_file] == [(e.start, e.end, e.label) for e in ev_arr]
    assert ev_arr and all(e.final for e in ev_arr)
    assert any(not e.final for e in edgeser.analyze(x, 16000, partial=True))


def test_classify_without_speech_says_so(model):
    r = model.classify(np.zeros(16000, np.float32), 16000)  # more signals in test_no_speech.py
    assert r.label == edgeser.NO_SPEECH and r.confidence == 0.0 and r.duration == 0.0


@pytest.mark.parametrize(
    "audio, rate",
    [
        (np.zeros(0, np.float32), 16000),
        (np.full(16000, np.nan, np.float32), 16000),
        (np.full(16000, np.inf, np.float32), 16000),
        (np.zeros((2, 2, 100), np.float32), 16000),
        (np.array(["a", "b"]), 16000),
        (np.zeros(16000, np.float32), 0),
        (np.zeros(16000, np.float32), -16000),
    ],
)
def test_bad_audio_is_a_typed_error(model, audio, rate):
    with pytest.raises(AudioError):
        model.classify(audio, rate)


def test_bad_files_and_arguments(tmp_path):
    with pytest.raises(AudioError, match="no such"):
        edgeser.classify(tmp_path / "missing.wav")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00not really audio")
    with pytest.raises(AudioError):
        edgeser.analyze(bad)
    with pytest.raises(AudioError, match="sample_rate is required"):
        edgeser.classify(np.zeros(1000, np.float32))


def test_bad_model_files(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    for name, data in (("x.onnx", b"\x00garbage" * 10), ("x.pte", b"\x00garbage" * 10), ("x.txt", b"hello")):
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(ModelError):
            edgeser.load(p)
    with pytest.raises(ModelError, match="not found"):
        edgeser.load(tmp_path / "nope.onnx")
    with pytest.raises(ModelError, match="unknown backend"):
        edgeser.load(backend="tensorflow")
    # a valid ONNX graph with no edgeser metadata, then one with a wrong schema version
    g = helper.make_graph([helper.make_node("Identity", ["logmel"], ["logits"])], "g",
                          [helper.make_tensor_value_info("logmel", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    p = tmp_path / "plain.onnx"
    onnx.save(m, str(p))
    with pytest.raises(ModelError, match="no edgeser metadata"):
        edgeser.load(p)
    e = m.metadata_props.add()
    e.key, e.value = "edgeser", json.dumps({"schema": 99, "labels": ["a"]})
    onnx.save(m, str(p))
    with pytest.raises(ModelError, match="schema"):
        edgeser.load(p)


# ------------------------------------------------------------------ one set of options; files as bytes or objects


def _params(f, drop=()):
    import inspect

    return [(p.name, p.kind, p.default) for p in inspect.signature(f).parameters.values() if p.name not in drop]


def test_top_level_functions_take_the_options_of_the_methods_they_wrap():
    """edgeser.classify / analyze have exactly Model.classify's / Model.analyze's parameters (same order, kinds and
    defaults) plus ``model``; listen (and Listener) take every option of Model.stream with the same default."""
    assert _params(edgeser.classify, {"model"}) == _params(edgeser.Model.classify, {"self"})
    assert _params(edgeser.analyze, {"model"}) == _params(edgeser.Model.analyze, {"self"})
    listen = {name: (kind, default) for name, kind, default in _params(edgeser.listen)}
    listener = {name: (kind, default) for name, kind, default in _params(edgeser.Listener.__init__, {"self"})}
    assert listener == {k: v for k, v in listen.items() if k != "start"}
    stream_options = _params(edgeser.Model.stream, {"self"})
    assert stream_options  # Model.stream's options are all keyword-only
    for name, kind, default in stream_options:
        assert listen.get(name) == (kind, default), name
    # and the stream options analyze also takes (calibration is Stream.calibrate's audio)
    for name, kind, default in _params(edgeser.Model.analyze, {"self", "source", "sample_rate", "partial"}):
        assert listen.get(name) == (kind, default), name


def test_top_level_options_reach_the_model(model, espeak_speech):
    x, _ = espeak_speech
    for kw in ({"abstain_below": 0.999}, {"abstain_below": "auto"}, {"adapt": "off"}):
        assert edgeser.classify(x, 16000, model=model, **kw) == model.classify(x, 16000, **kw)
    s1, s2 = model.stream(emit_partial=False), model.stream(emit_partial=False)
    assert edgeser.classify(x, 16000, model=model, stream=s1) == model.classify(x, 16000, stream=s2)
    for kw in ({"split_on_change": False, "adapt": "off"}, {"abstain_below": 0.99, "partial": True},
               {"calibration": (np.concatenate([x, x]), 16000)}):
        assert edgeser.analyze(x, 16000, model=model, **kw) == model.analyze(x, 16000, **kw)


def test_classify_and_analyze_read_bytes_and_file_objects(model, espeak_speech, tmp_path):
    import io

    import soundfile as sf

    x, _ = espeak_speech
    path = tmp_path / "s.flac"
    sf.write(path, x, 16000, format="FLAC")
    data = path.read_bytes()
    want, want_events = model.classify(path), model.analyze(path)
    assert want.label in model.labels
    with open(path, "rb") as f:
        for src in (data, io.BytesIO(data), f):
            assert model.classify(src) == want
    with open(path, "rb") as f:
        for src in (data, io.BytesIO(data), f):
            assert model.analyze(src) == want_events
    assert edgeser.classify(data, model=model) == want and edgeser.analyze(io.BytesIO(data), model=model) == want_events
    with pytest.raises(AudioError, match="only for array input"):
        model.classify(data, 16000)
    with pytest.raises(AudioError, match="empty"):
        edgeser.classify(b"", model=model)
