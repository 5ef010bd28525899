"""Stateful models in the runtime: test-time adaptive normalisation (stream-scoped state), calibration, abstention,
segment-scoped state (streaming encoders), export of stateful graphs (ONNX and .pte) checked against eager."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from edgeser.errors import AudioError, ModelError
from edgeser.model import Model
from edgeser.runtime import open_backend
from edgeser.runtime.metadata import ModelInfo
from edgeser.stream import MIN_CALIBRATION_SPEECH_S
from edgeser.types import UNCERTAIN
from export.core import ExportMismatch, export_onnx, export_pte, verify
from export.student import TorchBackend
from train.models.cta_rnn import CTARNN, CTARNNConfig, EncoderCTARNN

W = 40
STATE = (
    {"name": "norm_sum", "output": "norm_sum_out", "shape": [1, 3, 16], "dtype": "float32", "init": 0.0,
     "scope": "stream"},
    {"name": "norm_count", "output": "norm_count_out", "shape": [1, 1], "dtype": "float32", "init": 0.0,
     "scope": "stream"},
)


def _adaptive_model(seed=0, decay=0.9):
    from tests.test_export import tiny_encoder

    enc = tiny_encoder(seed, W)
    head = CTARNN(CTARNNConfig(n_channels=3, d_in=16, d_rnn=8, n_heads=2, d_head=4, dropout=0.0, time_pool=2,
                               adapt=True, adapt_prior=2.0, adapt_decay=decay))
    with torch.no_grad():
        head.ref_mean.copy_(torch.randn(3, 16) * 0.5)
    return EncoderCTARNN(enc, head).eval()


def _info(**kw):
    base = dict(labels=("neutral", "happy", "angry", "sad"), sample_rate=16000, n_fft=400, hop_length=160, n_mels=80,
                window_frames=W, hop_frames=10, first_frames=10, input_shape=(1, 80, W), state=STATE,
                adaptation={"kind": "test", "default": "running"})
    base.update(kw)
    return ModelInfo(**base)


@pytest.fixture(scope="module")
def model():
    return _adaptive_model()


@pytest.fixture(scope="module")
def onnx_path(model, tmp_path_factory):
    info = _info()
    ex = (torch.full((1, 80, W), -5.0), *(torch.from_numpy(a) for a in info.initial_state()))
    return export_onnx(model, ex, tmp_path_factory.mktemp("adapt") / "a.onnx", info,
                       input_names=["logmel", "norm_sum", "norm_count"],
                       output_names=["logits", "norm_sum_out", "norm_count_out"])


def _speech(seconds=3.0, seed=0, f0=150.0):
    """A voiced buzz with syllable-like amplitude modulation, between short silences (speech for the VAD)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 12))
    env = 0.5 * (1 + np.sin(2 * np.pi * 4 * t)) * np.minimum(1, t * 10) * np.minimum(1, (seconds - t) * 10)
    x = 0.3 * x * env + 0.003 * rng.standard_normal(t.size)
    pad = np.zeros(8000)
    return np.concatenate([pad, x, pad]).astype(np.float32)


def test_graph_is_pure_and_updates_statistics(model):
    x = torch.full((1, 80, W), -5.0)
    s0, c0 = torch.zeros(1, 3, 16), torch.zeros(1, 1)
    a = model(x, s0, c0)
    b = model(x, s0, c0)
    assert all(torch.equal(p, q) for p, q in zip(a, b))  # same inputs, same outputs: no hidden state
    logits, s1, c1 = a
    assert float(c1) == pytest.approx(1.0)
    assert torch.allclose(s1, model.embed(x).mean(dim=2))
    # with no statistics the window is normalised by the training mean alone (the prior) = the stateless head
    assert torch.allclose(logits, model.head(model.embed(x), pooled=True), atol=1e-6)
    _, s2, c2 = model(x, s1, c1)
    assert float(c2) == pytest.approx(0.9 * 1.0 + 1.0)


def test_onnx_matches_eager_with_state(model, onnx_path):
    rng = np.random.default_rng(0)
    windows = (rng.standard_normal((8, 80, W)) - 5).astype(np.float32)
    rep = verify(model, onnx_path, windows, atol=1e-4)
    assert rep["windows"] == 8 and rep["max_rel_state_diff"] < 1e-4
    with pytest.raises(ExportMismatch):
        verify(_adaptive_model(seed=3), onnx_path, windows, atol=1e-4)


def test_pte_matches_eager_with_state(model, tmp_path):
    info = _info()
    ex = (torch.full((1, 80, W), -5.0), *(torch.from_numpy(a) for a in info.initial_state()))
    path = export_pte(model, ex, tmp_path / "a.pte", info, quantize="int8")
    b = open_backend(path)
    assert b.info == info and [s["scope"] for s in b.info.state] == ["stream", "stream"]
    rng = np.random.default_rng(1)
    windows = (rng.standard_normal((6, 80, W)) - 5).astype(np.float32)
    rep = verify(model, path, windows, atol=0.2, min_label_agreement=0.8)
    assert rep["max_rel_state_diff"] < 0.05


def test_running_adaptation_changes_state_off_does_not(onnx_path):
    m = Model(open_backend(onnx_path), vad="energy")
    assert m.adaptive
    x = _speech()
    s_run, s_off = m.stream(), m.stream(adapt="off")
    assert s_run.adapt == "running"  # the model's metadata default
    ev_run = s_run.accept(x, 16000) + s_run.flush()
    ev_off = s_off.accept(x, 16000) + s_off.flush()
    assert s_run.windows_run == s_off.windows_run > 2
    assert float(s_run._state[1][0, 0]) > 1.0 and float(s_off._state[1][0, 0]) == 0.0
    assert [(e.start, e.end) for e in ev_run] == [(e.start, e.end) for e in ev_off]
    # off = every window normalised by the prior alone = what a stateless export of the same head gives
    ref = Model(TorchBackend(_adaptive_model(), _info()), vad="energy").stream(adapt="off")
    ev_ref = ref.accept(x, 16000) + ref.flush()
    for a, b in zip(ev_off, ev_ref):
        assert a.label == b.label and a.scores == pytest.approx(b.scores, abs=1e-4)


@pytest.mark.parametrize("chunk_ms", [10, 20, 37])
def test_adaptive_events_do_not_depend_on_chunk_size(onnx_path, chunk_ms):
    m = Model(open_backend(onnx_path), vad="energy")
    x = np.concatenate([_speech(seed=1), _speech(seed=2, f0=220.0)])
    whole = m.analyze(x, 16000, partial=True)
    s = m.stream()
    n = int(16000 * chunk_ms / 1000)
    got = []
    for i in range(0, x.size, n):
        got += s.accept(x[i : i + n], 16000)
    got += s.flush()
    assert [(e.start, e.end, e.label, e.final) for e in got] == [(e.start, e.end, e.label, e.final) for e in whole]
    for a, b in zip(got, whole):
        assert a.scores == pytest.approx(b.scores, abs=1e-5)


def test_calibrate_sets_a_baseline_kept_across_reset(onnx_path):
    m = Model(open_backend(onnx_path), vad="energy")
    s = m.stream(adapt="off")
    assert not s.calibrated
    speech = s.calibrate(_speech(seconds=4.0, seed=5), 16000)
    assert speech >= MIN_CALIBRATION_SPEECH_S and s.calibrated
    base = [a.copy() for a in s._state]
    assert float(base[1][0, 0]) > 3.0  # the calibration's windows are in the statistics
    ev1 = s.accept(_speech(seed=6), 16000) + s.flush()
    assert all(np.array_equal(a, b) for a, b in zip(s._state, base))  # adapt="off": the baseline stays
    s.reset()
    assert all(np.array_equal(a, b) for a, b in zip(s._state, base))
    ev2 = s.accept(_speech(seed=6), 16000) + s.flush()
    assert [e.scores for e in ev1] == [e.scores for e in ev2]  # reset is deterministic
    s.reset(forget_calibration=True)
    assert not s.calibrated and float(s._state[1][0, 0]) == 0.0
    # calibrated and uncalibrated streams score the same audio differently
    ev3 = s.accept(_speech(seed=6), 16000) + s.flush()
    assert ev3[-1].scores != pytest.approx(ev1[-1].scores, abs=1e-6)
    # calibration audio must contain speech
    with pytest.raises(AudioError, match="no speech"):
        s.calibrate(np.zeros(32000, np.float32), 16000)


def test_calibrate_refused_without_adaptation_state():
    from tests.conftest import FakeBackend

    s = Model(FakeBackend(), vad="energy").stream()
    with pytest.raises(ModelError, match="no adaptation state"):
        s.calibrate(_speech(), 16000)


def test_classify_session_keeps_adaptation_between_clips(onnx_path):
    m = Model(open_backend(onnx_path), vad="energy")
    s = m.stream(emit_partial=False)
    r1 = m.classify(_speech(seed=7), 16000, stream=s)
    n1 = float(s._state[1][0, 0])
    r2 = m.classify(_speech(seed=7), 16000, stream=s)
    assert float(s._state[1][0, 0]) > n1 > 0  # statistics carried on to the next clip
    fresh = m.classify(_speech(seed=7), 16000)
    assert r1.scores == pytest.approx(fresh.scores, abs=1e-6) and r2.scores != pytest.approx(r1.scores, abs=1e-6)


def test_abstain_labels_uncertain_and_keeps_scores(fake_model):
    x = _speech(seed=8)
    normal = fake_model.classify(x, 16000)
    unsure = fake_model.classify(x, 16000, abstain_below=0.999)
    assert unsure.label == UNCERTAIN and unsure.scores == normal.scores and unsure.confidence == normal.confidence
    events = fake_model.analyze(x, 16000, abstain_below=0.999)
    assert events and all(e.label == UNCERTAIN for e in events)
    assert fake_model.classify(x, 16000, abstain_below=0.0).label == normal.label != UNCERTAIN
    with pytest.raises(ValueError):
        fake_model.stream(abstain_below=1.5)
    # opt-in: the model's recommended threshold (metadata) applies with "auto", never by default
    from tests.conftest import FakeBackend

    b = FakeBackend()
    b.info = replace(b.info, abstain_below=0.999)
    assert Model(b).classify(x, 16000, abstain_below="auto").label == UNCERTAIN
    assert Model(b).classify(x, 16000).label == normal.label


@pytest.mark.parametrize("bad", [
    {"scope": "forever"}, {"shape": [0, 3]}, {"dtype": "int64"}, {"init": "zero"}, {"output": None},
])
def test_metadata_rejects_bad_state(bad):
    entry = {**STATE[0], **bad}
    with pytest.raises(ModelError):
        ModelInfo.from_json(_info(state=(entry,)).to_json())


class SegmentStateBackend:
    """A numpy streaming 'encoder' with segment-scoped state: logits = running mean of band energies since the
    segment began; records every chunk it is given (chunks must tile the segment without overlap)."""

    name, path = "segstate", "<segstate>"

    def __init__(self, chunk=20):
        self.info = ModelInfo(labels=("a", "b", "c", "d"), sample_rate=16000, n_fft=400, hop_length=160, n_mels=80,
                              window_frames=chunk, hop_frames=chunk, first_frames=chunk, input_shape=(1, 80, chunk),
                              aggregate="last",
                              state=({"name": "acc", "output": "acc_out", "shape": [5], "init": 0.0,
                                      "scope": "segment"},))
        self.chunks, self.outputs = [], []

    def run(self, window):
        return self.step(window, self.info.initial_state())[0]

    def step(self, window, state):
        self.chunks.append(window[0].copy())
        acc = state[0].copy()
        bands = np.array_split(window[0], 4, axis=0)
        acc[:4] += np.array([b.mean() for b in bands]) * np.array([1.0, 2.0, 3.0, 4.0])
        acc[4] += 1
        logits = (acc[:4] / acc[4]).astype(np.float32)
        self.outputs.append((logits, int(acc[4])))
        return logits, (acc.astype(np.float32),)


def test_segment_state_restarts_per_segment_and_last_chunk_does_not_overlap():
    b = SegmentStateBackend()
    m = Model(b, vad="energy")
    # the second segment is still going on when the audio ends: flush closes it with a partial last chunk
    x = np.concatenate([_speech(seconds=1.23, seed=9), _speech(seconds=0.87, seed=10)[:-8000 - 1930]])
    s = m.stream(emit_partial=True)
    events = s.accept(x, 16000) + s.flush()
    finals = [e for e in events if e.final]
    assert len(finals) == 2
    # segment state restarts: each segment's first chunk starts from the initial state (count 1 after it)
    firsts = [i for i, o in enumerate(b.outputs) if o[1] == 1]
    assert len(firsts) == 2
    # "last": a final event's scores are the model's latest output in its segment, not a mean over the windows
    from edgeser.stream import softmax

    groups = [b.outputs[firsts[0] : firsts[1]], b.outputs[firsts[1] :]]
    for e, g in zip(finals, groups):
        assert len(g) > 2
        assert list(e.scores.values()) == pytest.approx(list(softmax(g[-1][0])), abs=1e-6)
        mean = np.mean([softmax(o[0]) for o in g], axis=0)
        assert not np.allclose(list(e.scores.values()), mean, atol=1e-4)
    # the final chunk of the cut segment holds only frames after the previous chunk, then digital silence
    silence = np.float32(-10.0)
    last = b.chunks[-1]
    assert np.all(last[:, -1] == silence) and not np.all(last[:, 0] == silence)
    k = int(np.argmax(np.all(last == silence, axis=0)))
    assert k == 18 and np.all(last[:, k:] == silence)  # 347 - 329 frames of speech, 2 of padding
    # chunk-size invariance holds for segment state too
    b2 = SegmentStateBackend()
    s2 = Model(b2, vad="energy").stream(emit_partial=True)
    ev2 = []
    for i in range(0, x.size, 592):
        ev2 += s2.accept(x[i : i + 592], 16000)
    ev2 += s2.flush()
    assert [(e.start, e.end, e.label, e.final) for e in ev2] == [(e.start, e.end, e.label, e.final) for e in events]
    assert len(b2.chunks) == len(b.chunks) and all(np.array_equal(p, q) for p, q in zip(b.chunks, b2.chunks))


def test_running_adaptation_refused_for_models_without_it(fake_model):
    with pytest.raises(ModelError, match="no test-time adaptation"):
        fake_model.stream(adapt="running")
    assert fake_model.stream().adapt == "off" and not fake_model.adaptive


def test_export_clip_and_stream_checks(model, onnx_path, tmp_path):
    """export.student's checks through Model.classify / analyze: the export passes against its own eager model and
    fails loudly against another one."""
    from types import SimpleNamespace

    import soundfile as sf

    from export.student import clip_check, stream_check

    clips = []
    for k in range(2):
        p = tmp_path / f"c{k}.wav"
        sf.write(p, _speech(seed=20 + k, f0=130.0 + 40 * k), 16000)
        clips.append(SimpleNamespace(path=str(p)))
    info = open_backend(onnx_path).info
    rep = clip_check(model, info, onnx_path, clips)
    assert rep["clips"] == rep["identical_labels"] == 2 and rep["max_score_diff"] < 1e-3
    assert stream_check(model, info, onnx_path, clips, seconds=8.0)["label_agreement"] == 1.0
    with pytest.raises(ExportMismatch):
        for seed in range(6, 12):  # some random model disagrees on some clip's label
            other = _adaptive_model(seed=seed)
            clip_check(other, info, onnx_path, clips)


def test_export_checks_tolerate_only_near_ties():
    """A quantized export may pick eager's runner-up only where eager's two best classes are within the tie
    margin; a wider margin, or any other class, is a mismatch (export.student._tie_flip)."""
    from types import SimpleNamespace as E

    from export.student import _margin, _tie_flip, clip_check, stream_check

    ref = E(label="neutral", scores={"neutral": 0.443, "happy": 0.071, "angry": 0.072, "sad": 0.414})
    assert abs(_margin(ref.scores) - 0.029) < 1e-9
    assert _tie_flip(ref, E(label="sad"), 0.05)
    assert not _tie_flip(ref, E(label="sad"), 0.0)  # fp32 exports: strict
    assert not _tie_flip(ref, E(label="sad"), 0.02)
    assert not _tie_flip(ref, E(label="happy"), 0.05)  # not eager's runner-up
    far = E(label="neutral", scores={"neutral": 0.6, "happy": 0.1, "angry": 0.1, "sad": 0.2})
    assert not _tie_flip(far, E(label="sad"), 0.05)
    for bad in (-0.1, 1.0):  # a margin that tolerates everything or nothing sensible is refused before any audio runs
        with pytest.raises(ValueError, match="tie_margin"):
            clip_check(None, None, "unused.onnx", [], tie_margin=bad)
        with pytest.raises(ValueError, match="tie_margin"):
            stream_check(None, None, "unused.onnx", [], tie_margin=bad)
