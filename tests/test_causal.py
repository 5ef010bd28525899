"""The streaming causal encoder: chunked == whole-utterance, constant state, ONNX/.pte step == eager step, flat cost."""

import numpy as np
import pytest
import torch

from train.models.causal import (
    CausalEncoder,
    CausalEncoderConfig,
    CausalStep,
    pad_to_chunks,
)


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    m = CausalEncoder(CausalEncoderConfig.tiny(**kw)).eval()
    with torch.no_grad():  # non-trivial positions (the bias starts at zero)
        for b in m.blocks:
            b.attn.rel_bias.normal_(0.0, 0.5)
    return m


def _mel(b, t, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 80, t, generator=g) * 2.0 - 5.0
    x[:, :, : t // 4] -= 3.0  # a quiet start: the running peak (and the clamp) change over the stream
    return x


@pytest.mark.parametrize("n_chunks", [1, 2, 5, 17])
def test_full_equals_chunked(n_chunks):
    m = _model()
    f = m.cfg.chunk_frames
    mel = _mel(2, n_chunks * f)
    with torch.no_grad():
        h_full, lg_full, layers = m.forward_full(mel, return_layers=True)
        h_chunk, lg_chunk, _ = m.run_chunks(mel)
    assert h_full.shape == (2, n_chunks * f // 2, m.cfg.d_model) and len(layers) == m.cfg.n_layers
    assert lg_full.shape == (2, n_chunks, m.cfg.n_classes)
    torch.testing.assert_close(h_chunk, h_full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lg_chunk, lg_full, atol=1e-5, rtol=1e-5)


def test_default_config_full_equals_chunked():
    """The real size (d 144, 4 blocks, kernel 15, left context 64 > the stream here is longer than it)."""
    torch.manual_seed(0)
    m = CausalEncoder(CausalEncoderConfig.default()).eval()
    mel = _mel(1, 20 * 16)
    with torch.no_grad():
        h_full, lg_full = m.forward_full(mel)
        h_chunk, lg_chunk, _ = m.run_chunks(mel)
    torch.testing.assert_close(h_chunk, h_full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lg_chunk, lg_full, atol=1e-5, rtol=1e-5)


def test_prefix_is_unaffected_by_the_future():
    """Causality: the output up to chunk k does not depend on anything after chunk k."""
    m = _model()
    f = m.cfg.chunk_frames
    a = _mel(1, 8 * f, seed=1)
    b = a.clone()
    b[:, :, 5 * f :] = _mel(1, 3 * f, seed=2)
    with torch.no_grad():
        ha, la = m.forward_full(a)
        hb, lb = m.forward_full(b)
    torch.testing.assert_close(ha[:, : 5 * f // 2], hb[:, : 5 * f // 2])
    torch.testing.assert_close(la[:, :5], lb[:, :5])
    assert not torch.allclose(la[:, 5:], lb[:, 5:])


def test_left_context_is_bounded():
    """Attention forgets frames more than left_context encoder frames back: with pool and peak out of the way
    (identical), two streams that differ only long ago give the same frames now."""
    m = _model()
    c = m.cfg
    f = c.chunk_frames
    n = 12
    a = _mel(1, n * f, seed=3)
    b = a.clone()
    top = a[:, :, :f].amax()
    b0 = torch.minimum(a[:, :, :f] + 0.5 * torch.randn(1, 80, f), top - 1e-3)  # chunk 0 only, same maximum:
    b0.view(-1)[a[:, :, :f].argmax()] = top  # the running peak (normalisation) stays the same
    b[:, :, :f] = b0
    with torch.no_grad():
        ha, _ = m.forward_full(a)
        hb, _ = m.forward_full(b)
    # receptive field: stem + per block (left context + conv kernel); beyond it, identical
    reach = 2 + c.n_layers * (c.left_context + c.chunk_out - 1 + c.conv_kernel - 1)
    later = ha.shape[1] - reach
    assert later > 0
    torch.testing.assert_close(ha[:, -later:], hb[:, -later:], atol=1e-6, rtol=1e-6)
    assert not torch.allclose(ha[:, : c.chunk_out], hb[:, : c.chunk_out])


def test_state_shapes_constant():
    m = _model()
    f = m.cfg.chunk_frames
    state = m.initial_state(1)
    shapes = tuple(tuple(s.shape) for s in state)
    assert shapes == m.state_shapes(1) and len(state) == len(m.state_names())
    mel = _mel(1, 40 * f)
    with torch.no_grad():
        for k in range(40):
            out = m.step(mel[:, :, k * f : (k + 1) * f], *state)
            logits, state = out[0], out[1:]
            assert logits.shape == (1, m.cfg.n_classes) and torch.isfinite(logits).all()
            assert tuple(tuple(s.shape) for s in state) == shapes


def test_continuing_from_a_state_equals_one_pass():
    m = _model()
    f = m.cfg.chunk_frames
    mel = _mel(1, 9 * f)
    with torch.no_grad():
        _, lg_all, _ = m.run_chunks(mel)
        _, _, st = m.run_chunks(mel[:, :, : 4 * f])
        _, lg_rest, _ = m.run_chunks(mel[:, :, 4 * f :], st)
    torch.testing.assert_close(lg_rest, lg_all[:, 4:], atol=1e-5, rtol=1e-5)


def test_pad_to_chunks():
    x = torch.zeros(1, 80, 13)
    y = pad_to_chunks(x, 8)
    assert y.shape == (1, 80, 16) and float(y[0, 0, -1]) == -10.0
    with pytest.raises(ValueError):
        _model().forward_full(x)


# -- ONNX ------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from export.causal import causal_info, export_causal_onnx

    m = _model()
    info = causal_info(m, ("neutral", "happy", "angry", "sad"), name="t")
    path = export_causal_onnx(m, tmp_path_factory.mktemp("causal") / "c.onnx", info)
    return m, info, path


def test_onnx_step_equals_eager(exported):
    from export.causal import OnnxStep, verify_causal

    m, info, path = exported
    s = OnnxStep(path)
    assert s.info == info and s.in_names[0] == "logmel" and s.out_names[0] == "logits"
    assert [tuple(st["shape"]) for st in info.state] == list(m.state_shapes(1))
    assert [st["name"] for st in info.state] == list(m.state_names())
    assert info.window_frames == m.cfg.chunk_frames == info.input_shape[2]
    mel = _mel(1, 30 * m.cfg.chunk_frames, seed=4)[0].numpy()
    rep = verify_causal(m, path, mel, atol=1e-4)
    assert rep["chunks"] == 30 and rep["max_abs_logit_diff"] < 1e-4 and rep["label_agreement"] == 1.0
    assert rep["full_vs_chunked_eager_max_abs_logit_diff"] < 1e-5


def test_onnx_mismatch_fails_loudly(exported):
    from export.causal import verify_causal
    from export.core import ExportMismatch

    _, _, path = exported
    other = _model(seed=1)
    with pytest.raises(ExportMismatch):
        verify_causal(other, path, _mel(1, 5 * other.cfg.chunk_frames)[0].numpy(), atol=1e-4)


def _assert_flat_cost(exported, slack_ms: float = 0.0):
    """Per-chunk time at chunk 1, 100 and 1000 of a stream: the state never grows, so neither does the cost."""
    from export.causal import step_timings

    m, _, path = exported
    t = step_timings(path, _mel(1, 50 * m.cfg.chunk_frames, seed=5)[0].numpy(), positions=(1, 100, 1000),
                     repeats=40)
    assert t["1000"]["min_ms"] < 1.5 * t["1"]["min_ms"] + slack_ms, t
    assert t["100"]["min_ms"] < 1.5 * t["1"]["min_ms"] + slack_ms, t


def test_onnx_cost_is_flat(exported):
    _assert_flat_cost(exported)


def test_int8_export_roundtrip(tmp_path):
    from export.causal import causal_info, export_causal_onnx, verify_causal

    m = _model()
    info = causal_info(m, ("neutral", "happy", "angry", "sad"), quantization="int8")
    path = export_causal_onnx(m, tmp_path / "c8.onnx", info, quantize="int8")
    rep = verify_causal(m, path, _mel(1, 20 * m.cfg.chunk_frames)[0].numpy(), atol=0.2, min_label_agreement=0.8)
    assert rep["chunks"] == 20


def test_step_module_traces():
    """CausalStep is what export traces: same outputs as model.step."""
    m = _model()
    st = m.initial_state(1)
    x = _mel(1, m.cfg.chunk_frames)
    with torch.no_grad():
        a = CausalStep(m)(x, *st)
        b = m.step(x, *st)
    assert len(a) == 1 + len(st)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v)


def _buzz(seconds: float, seed: int) -> np.ndarray:
    """Voiced, syllable-modulated audio between silences: speech for the energy VAD."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    x = sum(np.sin(2 * np.pi * 140.0 * k * t) / k for k in range(1, 12))
    env = 0.5 * (1 + np.sin(2 * np.pi * 4 * t)) * np.minimum(1, t * 10) * np.minimum(1, (seconds - t) * 10)
    pad = np.zeros(8000)
    return np.concatenate([pad, 0.3 * x * env + 0.003 * rng.standard_normal(t.size), pad]).astype(np.float32)


def test_sdk_runs_the_stateful_step(exported):
    """edgeser.Model runs the exported step: state restarts per speech segment, chunks tile the segment, the final
    event's scores are the last step's output, every step equals eager model.step, and chunking never matters."""
    from edgeser.model import Model
    from edgeser.runtime import open_backend
    from edgeser.runtime.base import Backend
    from edgeser.stream import softmax

    m, info, onnx_path = exported
    onnx = open_backend(onnx_path)
    assert onnx.info.aggregate == "last" and set(onnx.info.state_scopes()) == {"segment"}

    class Rec(Backend):
        name, path = "rec", "<rec>"

        def __init__(self):
            self.info, self.calls = onnx.info, []

        def run(self, window):
            return self.step(window, self.info.initial_state())[0]

        def step(self, window, state):
            logits, new = onnx.step(window, state)
            self.calls.append((window.copy(), tuple(a.copy() for a in state), logits))
            return logits, new

    x = np.concatenate([_buzz(1.5, 0), _buzz(1.1, 1)])
    rec = Rec()
    events = Model(rec, vad="energy").analyze(x, 16000)
    assert len(events) == 2 and len(rec.calls) > 10
    init = info.initial_state()
    starts = [i for i, (_, st, _) in enumerate(rec.calls) if all(np.array_equal(a, b) for a, b in zip(st, init))]
    assert len(starts) == 2  # one fresh state per segment
    state = None
    with torch.no_grad():
        for i, (w, st, logits) in enumerate(rec.calls):
            if i in starts:
                state = m.initial_state(1)
            for a, b in zip(st, state):  # the runtime carried exactly the eager state
                np.testing.assert_allclose(a, b.numpy(), atol=1e-4)
            out = m.step(torch.from_numpy(w), *state)
            np.testing.assert_allclose(logits, out[0].numpy().reshape(-1), atol=1e-4)
            state = out[1:]
    for e, end in zip(events, [starts[1] - 1, len(rec.calls) - 1]):  # "last": the segment's latest output
        assert list(e.scores.values()) == pytest.approx(list(softmax(rec.calls[end][2])), abs=1e-5)
    model = Model(onnx, vad="energy")
    for chunk in (160, 320, 592):
        s = model.stream(emit_partial=True)
        got = []
        for i in range(0, x.size, chunk):
            got += s.accept(x[i : i + chunk], 16000)
        got += s.flush()
        ref = model.analyze(x, 16000, partial=True)
        assert [(e.start, e.end, e.label, e.final) for e in got] == [(e.start, e.end, e.label, e.final) for e in ref]


# -- ExecuTorch (.pte) -------------------------------------------------------------------------------------------------

LABELS = ("neutral", "happy", "angry", "sad")


@pytest.fixture(scope="module")
def exported_pte(tmp_path_factory):
    """One-block tiny model (lowering time grows with the graph): fp32 .pte of its step."""
    pytest.importorskip("executorch")
    from export.causal import causal_info, export_causal_pte

    m = _model(n_layers=1)
    info = causal_info(m, LABELS, name="t-pte")
    path = export_causal_pte(m, tmp_path_factory.mktemp("causal_pte") / "c.pte", info)
    return m, info, path


def test_pte_step_equals_eager_chunk_by_chunk(exported_pte):
    from export.causal import PteStep, verify_causal

    m, info, path = exported_pte
    s = PteStep(path)
    assert s.info == info
    mel = _mel(1, 40 * m.cfg.chunk_frames, seed=6)[0].numpy()
    rep = verify_causal(m, path, mel, atol=1e-4)
    assert rep["chunks"] == 40 and rep["label_agreement"] == 1.0
    assert rep["max_abs_logit_diff"] < 1e-4 and rep["final_state_max_rel_diff"] < 1e-4
    assert set(rep["final_state_rel_diff"]) == set(m.state_names())
    # and by hand: logits and every state array after each chunk
    st_p, st_e = s.initial_state(), m.initial_state(1)
    f = m.cfg.chunk_frames
    with torch.no_grad():
        for k in range(6):
            ch = mel[None, :, k * f : (k + 1) * f].copy()
            lg, st_p = s.step(ch, st_p)
            out = m.step(torch.from_numpy(ch), *st_e)
            st_e = out[1:]
            torch.testing.assert_close(torch.from_numpy(lg), out[0], atol=1e-5, rtol=1e-5)
            for a, b in zip(st_p, st_e):
                torch.testing.assert_close(torch.from_numpy(a), b, atol=1e-4, rtol=1e-5)


def test_pte_metadata_in_constant_method(exported_pte):
    """The .pte describes itself: constant method edgeser_metadata (and the sidecar) = the ONNX file's ModelInfo."""
    import json

    from executorch.runtime import Runtime

    from edgeser.runtime.metadata import METADATA_METHOD, ModelInfo

    m, info, path = exported_pte
    program = Runtime.get().load_program(str(path))
    assert {"forward", METADATA_METHOD} <= set(program.method_names)
    raw = program.load_method(METADATA_METHOD).execute([])[0]
    got = ModelInfo.from_json(bytes(raw.numpy().astype("uint8").tobytes()))
    assert got == info
    assert [s["name"] for s in got.state] == list(m.state_names())
    assert [tuple(s["shape"]) for s in got.state] == list(m.state_shapes(1))
    assert [s["init"] for s in got.state] == [float(t.reshape(-1)[0]) for t in m.initial_state(1)]
    assert got.input_shape == (1, 80, m.cfg.chunk_frames) and got.training["streaming"]["chunk_frames"] == 8
    side = json.loads(path.with_name(path.name + ".json").read_text())
    assert ModelInfo.from_json(json.dumps(side)) == info


def test_pte_needs_only_xnnpack_and_portable_ops(exported_pte):
    from export.causal import check_portable

    _, _, path = exported_pte
    ops = check_portable(path)
    assert ops["delegates"] == ["XnnpackBackend"] and all(o.startswith("aten::") for o in ops["operators"])
    assert not any("layer_norm" in o or "index" in o for o in ops["operators"])  # pte_ready moved them into XNNPACK


def test_pte_mismatch_fails_loudly(exported_pte):
    from export.causal import verify_causal
    from export.core import ExportMismatch

    _, _, path = exported_pte
    other = _model(seed=1, n_layers=1)
    with pytest.raises(ExportMismatch):
        verify_causal(other, path, _mel(1, 5 * other.cfg.chunk_frames)[0].numpy(), atol=1e-4)


def test_pte_cost_is_flat(exported_pte):
    _assert_flat_cost(exported_pte, slack_ms=0.05)


def test_pte_ready_is_the_same_function():
    """What the .pte is traced from (LayerNorm rewritten, position bias frozen) equals the model, and the frozen
    constant never reaches a checkpoint."""
    from export.causal import pte_ready

    m = _model()
    r = pte_ready(m)
    assert set(r.state_dict()) == set(m.state_dict())
    mel = _mel(1, 6 * m.cfg.chunk_frames, seed=7)
    with torch.no_grad():
        _, a, sa = m.run_chunks(mel)
        _, b, sb = r.run_chunks(mel)
    torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    for u, v in zip(sa, sb):
        torch.testing.assert_close(v, u, atol=1e-5, rtol=1e-5)


# -- distillation without the dataset (the GPU path, run here on the CPU) ----------------------------------------------


def _tiny_whisper(n_layers=2):
    transformers = pytest.importorskip("transformers")
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    cfg = transformers.WhisperConfig(num_mel_bins=80, d_model=32, encoder_layers=n_layers, encoder_attention_heads=2,
                                     encoder_ffn_dim=64, max_source_positions=100, decoder_layers=1,
                                     decoder_attention_heads=2, decoder_ffn_dim=64, dropout=0.0, attention_dropout=0.0,
                                     activation_dropout=0.0)
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    enc = WhisperEncoder(cfg).eval()
    state = {k: v for k, v in enc.state_dict().items() if not k.startswith("layer_norm.")}
    geo = {"name": "whisper-random", "d_model": 32, "n_heads": 2, "n_layers": n_layers, "window_frames": 200}
    return enc, state, geo


def test_teacher_file_and_math_match_transformers(tmp_path):
    """The teacher file is bit-exact fp16, and whisper_hidden is transformers' WhisperEncoder (hidden states)."""
    from train.distill_causal import (
        load_teacher,
        save_teacher,
        teacher_targets,
        whisper_hidden,
    )
    from train.models.cta_rnn import whisper_normalize

    enc, state, geo = _tiny_whisper()
    path = save_teacher(tmp_path / "t.npz", state, geo)
    w, geo2 = load_teacher(path)
    assert geo2 == geo and set(w) == set(state)
    for k, v in state.items():
        assert torch.equal(w[k], v.half().float()), k
    w = {k: v.float() for k, v in state.items()}  # compare the math at full precision
    mel = _mel(3, 200, seed=8)
    with torch.no_grad():
        ref = enc(whisper_normalize(mel), output_hidden_states=True).hidden_states
        got = whisper_hidden(w, geo, mel, 2)
        torch.testing.assert_close(got[0], ref[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got[1], ref[1], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(enc.layer_norm(got[2]), ref[2], atol=1e-5, rtol=1e-5)  # HF norms the last one
        t = teacher_targets(w, geo, mel, (1, 2))
    assert t.shape == (3, 2, 50, 32)
    torch.testing.assert_close(t[:, 0], ref[1].reshape(3, 50, 2, 32).mean(2), atol=1e-5, rtol=1e-5)


def test_portable_mel_is_an_exact_clamp_plus_rounding():
    import numpy as np

    from train.distill_causal import (
        DYNAMIC_RANGE,
        _pack_bytes,
        _unpack_bytes,
        dequantize_mel,
        quantize_mel,
    )

    mel = _mel(1, 300, seed=9)[0].numpy()
    mel[:, :40] = -10.0  # digital silence
    q, top = quantize_mel(mel)
    assert q.dtype == np.uint8 and np.array_equal(_unpack_bytes(_pack_bytes(q), q.shape), q)
    back = dequantize_mel(q, top)
    clamped = np.maximum(mel, mel.max(0)[None] - DYNAMIC_RANGE)
    assert np.abs(back - clamped).max() <= DYNAMIC_RANGE / 510 + 1e-5
    np.testing.assert_allclose(back.max(0), mel.max(0), atol=1e-5)  # every frame's peak survives


def _tiny_portable(tmp_path):
    """Two clips, each with training windows and runtime windows, as --pack-gpu writes them."""
    import numpy as np

    from train.distill_causal import save_teacher, write_portable_inputs

    lens = (260, 300)
    mel = torch.cat([_mel(1, n, seed=10 + i)[0] for i, n in enumerate(lens)], dim=1).numpy()
    inp = {"mel": mel, "offset": np.asarray([0, lens[0], sum(lens)]),
           "win_clip": np.asarray([0, 0, 0, 1, 1, 1]), "win_end": np.asarray([120, 200, 260, 150, -1, 300]),
           "rt_clip": np.asarray([0, 0, 1, 1]), "rt_end": np.asarray([200, 260, 250, 300])}
    info = {"y": np.asarray([0, 2]), "fold": np.asarray([0, 1]), "speaker": np.asarray(["01", "02"]),
            "clip_id": np.asarray(["a.wav", "b.wav"]), "labels": np.asarray(LABELS)}
    inputs = write_portable_inputs(tmp_path / "inputs.npz", inp, info)
    _, state, geo = _tiny_whisper()
    return inp, inputs, save_teacher(tmp_path / "teacher.npz", state, geo)


def test_gpu_path_trains_on_cpu_without_the_dataset(tmp_path):
    """--inputs + --teacher-weights (no RAVDESS, no cache): trains, validates, writes a loadable fp16 checkpoint and
    the JSON record; the time-budgeted schedule ends the run."""
    import json

    import numpy as np

    from export.causal import build_from_checkpoint
    from train.distill_causal import WindowBank, load_portable_inputs, main, window

    inp, inputs, teacher = _tiny_portable(tmp_path)
    got, info, _ = load_portable_inputs(inputs)
    assert np.array_equal(got["win_end"], inp["win_end"]) and list(info["labels"]) == list(LABELS)
    bank = WindowBank(got, "cpu")  # the batched gather = the CPU path's window(), silence before the clip
    ok = got["win_end"] > 0
    torch.testing.assert_close(bank.windows(got["win_clip"][ok], got["win_end"][ok]),
                               torch.from_numpy(np.stack([window(got, c, e) for c, e in
                                                          zip(got["win_clip"][ok], got["win_end"][ok])])))
    cfg = json.dumps(CausalEncoderConfig.tiny().to_dict())
    common = ["--inputs", str(inputs), "--teacher-weights", str(teacher), "--device", "cpu", "--config", cfg,
              "--layers", "1,2", "--batch", "2", "--fold", "1", "--max-minutes", "0"]
    out = tmp_path / "run"
    assert main([*common, "--epochs", "2", "--jitter", "10", "--save-dtype", "float16", "--out", str(out),
                 "--record", str(tmp_path / "rec.json")]) == 0
    rec = json.loads((tmp_path / "rec.json").read_text())
    for k in ("uar", "wa", "stream_uar", "recall", "train_seconds", "device", "distill_cosine"):
        assert k in rec, k
    assert rec["device"].startswith("cpu") and rec["steps"] == 2 and set(rec["recall"]) == set(LABELS)
    ck = torch.load(out / "causal.pt", map_location="cpu", weights_only=True)
    assert all(v.dtype == torch.float16 for v in ck["model"].values() if v.is_floating_point())
    assert ck["validation"]["test_speakers"] == ["02"] and ck["validation"]["training_windows"] == 3
    m = build_from_checkpoint(ck)
    with torch.no_grad():
        out_ = m.step(_mel(1, m.cfg.chunk_frames), *m.initial_state(1))
    assert torch.isfinite(out_[0]).all()
    # time-budgeted: the schedule is complete (and the run over) long before 500 epochs
    assert main([*common, "--epochs", "500", "--budget-minutes", "0.0002", "--out", str(tmp_path / "b"),
                 "--record", str(tmp_path / "b.json")]) == 0
    rec = json.loads((tmp_path / "b.json").read_text())
    assert rec["stopped"].startswith("schedule complete") and rec["epochs_run"] < 500
