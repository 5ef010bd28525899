"""The streaming causal encoder: chunked == whole-utterance, constant state, ONNX step == eager step, flat cost."""

import pytest
import torch

from train.models.causal import CausalEncoder, CausalEncoderConfig, CausalStep, pad_to_chunks


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


def test_onnx_cost_is_flat(exported):
    """Per-chunk time at chunk 1, 100 and 1000 of a stream: the state never grows, so neither does the cost."""
    from export.causal import step_timings

    m, _, path = exported
    t = step_timings(path, _mel(1, 50 * m.cfg.chunk_frames, seed=5)[0].numpy(), positions=(1, 100, 1000),
                     repeats=40)
    assert t["1000"]["min_ms"] < 1.5 * t["1"]["min_ms"], t
    assert t["100"]["min_ms"] < 1.5 * t["1"]["min_ms"], t


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


def test_sdk_refuses_stateful_models_at_load(exported):
    """edgeser's runtime runs windowed models; a stateful step model is refused at load with a clear ModelError."""
    import edgeser
    from edgeser.errors import ModelError

    _, _, path = exported
    with pytest.raises(ModelError, match="stateful streaming model"):
        edgeser.load(path)
