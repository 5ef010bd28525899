"""Tests of the training models: CTA-RNN (train/models/cta_rnn.py) against torch references and the paper's
equations, and the CTranslate2 Whisper reader (train/backbones/whisper.py) against a hand-built transformers encoder."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
import torch
from torch import nn

from train.backbones.whisper import WhisperDims, dims_of, read_ct2, whisper_encoder
from train.models.cta_rnn import (
    CTARNN,
    ChannelRNNs,
    ChannelTemporalAttention,
    CTARNNConfig,
    GroupedGRU,
)


def copy_gru_into_group(grouped: GroupedGRU, g: int, gru: nn.GRU, suffix: str = "_l0") -> None:
    """Copy nn.GRU weights (one layer, one direction) into group ``g`` of a GroupedGRU."""
    with torch.no_grad():
        grouped.w_ih[g] = getattr(gru, f"weight_ih{suffix}").T
        grouped.w_hh[g] = getattr(gru, f"weight_hh{suffix}").T
        grouped.b_ih[g, 0] = getattr(gru, f"bias_ih{suffix}")
        grouped.b_hh[g, 0] = getattr(gru, f"bias_hh{suffix}")


# --------------------------------------------------------------------------------------------- GroupedGRU


def test_grouped_gru_one_group_equals_nn_gru():
    torch.manual_seed(0)
    d_in, hd, b, t = 5, 7, 3, 11
    ref = nn.GRU(d_in, hd, batch_first=True)
    g = GroupedGRU(1, d_in, hd)
    copy_gru_into_group(g, 0, ref)
    x = torch.randn(b, t, d_in)
    want, h_n = ref(x)
    got = g(x.unsqueeze(0))
    assert got.shape == (1, b, t, hd)
    torch.testing.assert_close(got[0], want, atol=1e-5, rtol=0)
    torch.testing.assert_close(got[0, :, -1], h_n[0], atol=1e-5, rtol=0)


def test_grouped_gru_groups_are_independent_grus():
    torch.manual_seed(1)
    groups, d_in, hd, b, t = 4, 6, 5, 2, 9
    refs = [nn.GRU(d_in, hd, batch_first=True) for _ in range(groups)]
    g = GroupedGRU(groups, d_in, hd)
    for i, r in enumerate(refs):
        copy_gru_into_group(g, i, r)
    x = torch.randn(groups, b, t, d_in)
    got = g(x)
    for i, r in enumerate(refs):
        torch.testing.assert_close(got[i], r(x[i])[0], atol=1e-5, rtol=0)
    # changing one group's input changes only that group's output
    x2 = x.clone()
    x2[2] += 1.0
    got2 = g(x2)
    for i in range(groups):
        assert torch.equal(got2[i], got[i]) == (i != 2)


# --------------------------------------------------------------------------------------------- ChannelRNNs


@pytest.mark.parametrize("layers", [1, 2])
def test_channel_rnns_bidirectional_equal_nn_gru(layers):
    torch.manual_seed(2)
    n, d_in, hd, b, t = 3, 6, 4, 2, 8
    rnns = ChannelRNNs(n, d_in, hd, layers, bidirectional=True, dropout=0.0)
    refs = [nn.GRU(d_in, hd, num_layers=layers, batch_first=True, bidirectional=True) for _ in range(n)]
    for c, r in enumerate(refs):
        for layer in range(layers):
            copy_gru_into_group(rnns.layers[layer], c, r, f"_l{layer}")  # forward groups: 0..N-1
            copy_gru_into_group(rnns.layers[layer], n + c, r, f"_l{layer}_reverse")  # reverse groups: N..2N-1
    e = torch.randn(b, n, t, d_in)
    out = rnns(e)
    assert out.shape == (b, n, t, 2 * hd)
    for c, r in enumerate(refs):
        torch.testing.assert_close(out[:, c], r(e[:, c])[0], atol=1e-5, rtol=0)


def test_channel_rnns_reverse_half_is_gru_on_flipped_sequence():
    torch.manual_seed(3)
    n, d_in, hd, b, t = 2, 5, 4, 3, 7
    rnns = ChannelRNNs(n, d_in, hd, 1, bidirectional=True, dropout=0.0)
    e = torch.randn(b, n, t, d_in)
    out = rnns(e)
    for c in range(n):
        fwd = nn.GRU(d_in, hd, batch_first=True)
        rev = nn.GRU(d_in, hd, batch_first=True)
        g = rnns.layers[0]
        with torch.no_grad():
            for ref, grp in ((fwd, c), (rev, n + c)):
                ref.weight_ih_l0.copy_(g.w_ih[grp].T)
                ref.weight_hh_l0.copy_(g.w_hh[grp].T)
                ref.bias_ih_l0.copy_(g.b_ih[grp, 0])
                ref.bias_hh_l0.copy_(g.b_hh[grp, 0])
            torch.testing.assert_close(out[:, c, :, :hd], fwd(e[:, c])[0], atol=1e-5, rtol=0)
            flipped = rev(e[:, c].flip(1))[0].flip(1)
            torch.testing.assert_close(out[:, c, :, hd:], flipped, atol=1e-5, rtol=0)
    # the reverse half at t = 0 depends on the last frame, the forward half does not
    e2 = e.clone()
    e2[:, :, -1] += 1.0
    out2 = rnns(e2)
    assert torch.equal(out2[:, :, 0, :hd], out[:, :, 0, :hd])
    assert not torch.allclose(out2[:, :, 0, hd:], out[:, :, 0, hd:])


def test_channel_rnns_unidirectional_shape():
    rnns = ChannelRNNs(3, 5, 4, 2, bidirectional=False, dropout=0.0)
    assert rnns(torch.randn(2, 3, 6, 5)).shape == (2, 3, 6, 4)
    assert rnns.layers[1].w_ih.shape == (3, 4, 12)


# --------------------------------------------------------------------------------------------- attention


def test_channel_temporal_attention_weights():
    torch.manual_seed(4)
    b, n, m, dh, heads, da = 2, 3, 7, 8, 4, 5
    att = ChannelTemporalAttention(dh, heads, da)
    h = torch.randn(b, n, m, dh)
    v, a = att(h)
    assert v.shape == (b, heads * da) and a.shape == (b, n, m, heads)
    assert torch.all(a >= 0)
    # A_j is a distribution over (N, m) for each head
    torch.testing.assert_close(a.sum(dim=(1, 2)), torch.ones(b, heads), atol=1e-6, rtol=0)
    # eq. 3: A_j = alpha_c^T alpha_t is the outer product of its marginals (rank one)
    a_t = a.sum(dim=2)  # [B, N, heads]
    a_c = a.sum(dim=1)  # [B, m, heads]
    torch.testing.assert_close(a, a_t.unsqueeze(2) * a_c.unsqueeze(1), atol=1e-6, rtol=0)
    # eq. 1: alpha_t is the softmax over channels of q_t . (W^K_t H~_t)
    kt = att.k_t(h.mean(dim=2)).reshape(b, n, heads, da)
    want_t = torch.softmax((kt * att.q_t).sum(-1) / math.sqrt(da), dim=1)
    torch.testing.assert_close(a_t, want_t, atol=1e-6, rtol=0)
    kc = att.k_c(h.mean(dim=1)).reshape(b, m, heads, da)
    want_c = torch.softmax((kc * att.q_c).sum(-1) / math.sqrt(da), dim=1)
    torch.testing.assert_close(a_c, want_c, atol=1e-6, rtol=0)
    # eq. 4: v_j = sum over (N, m) of (W^V H) weighted by A_j
    val = att.v(h).reshape(b, n, m, heads, da)
    want_v = torch.einsum("bnmhd,bnmh->bhd", val, a).reshape(b, heads * da)
    torch.testing.assert_close(v, want_v, atol=1e-5, rtol=0)


# --------------------------------------------------------------------------------------------- CTARNN


def test_ctarnn_tiny_forward_and_grads():
    torch.manual_seed(5)
    cfg = CTARNNConfig.tiny()
    model = CTARNN(cfg)
    e = torch.randn(3, cfg.n_channels, 10, cfg.d_in)
    logits = model(e)
    assert logits.shape == (3, cfg.n_classes)
    assert torch.isfinite(logits).all()
    loss = nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2]))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_ctarnn_time_pool():
    cfg = CTARNNConfig(n_channels=2, d_in=8, d_rnn=4, n_heads=2, d_head=3, n_classes=3, dropout=0.0, time_pool=3)
    model = CTARNN(cfg).eval()
    e = torch.randn(2, 2, 10, 8)
    pooled = model.pool(e)
    assert pooled.shape == (2, 2, 3, 8)
    torch.testing.assert_close(pooled[:, :, 1], e[:, :, 3:6].mean(dim=2))
    torch.testing.assert_close(model(e), model(pooled, pooled=True))


def test_ctarnn_learns_a_separable_set():
    torch.manual_seed(6)
    cfg = CTARNNConfig.tiny()
    n_per, t = 6, 8
    centres = torch.randn(cfg.n_classes, cfg.d_in) * 2.0
    y = torch.arange(cfg.n_classes).repeat_interleave(n_per)
    e = 0.5 * torch.randn(len(y), cfg.n_channels, t, cfg.d_in) + centres[y][:, None, None, :]
    model = CTARNN(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(e), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    assert (model(e).argmax(dim=1) == y).float().mean() >= 0.9


def test_ctarnn_paper_config_sizes():
    cfg = CTARNNConfig.paper()
    assert (cfg.d_rnn, cfg.rnn_layers, cfg.n_heads, cfg.d_head, cfg.bidirectional) == (256, 2, 8, 64, True)
    assert cfg.dropout == 0.3
    model = CTARNN(cfg)
    n2 = 2 * cfg.n_channels
    assert model.rnns.layers[0].w_ih.shape == (n2, cfg.d_in, 3 * 256)
    assert model.rnns.layers[1].w_ih.shape == (n2, 2 * 256, 3 * 256)
    assert model.rnns.layers[1].w_hh.shape == (n2, 256, 3 * 256)
    assert model.attn.v.weight.shape == (8 * 64, 2 * 256)
    assert model.out.weight.shape == (cfg.n_classes, 8 * 64)


def test_config_round_trip(tmp_path):
    for cfg in (CTARNNConfig(), CTARNNConfig.tiny(), CTARNNConfig.paper(n_channels=7, d_in=384, n_classes=6)):
        d = cfg.to_dict()
        assert isinstance(d, dict) and CTARNNConfig(**d) == cfg
        p = tmp_path / "cfg.pt"
        torch.save({"config": d, "state": CTARNN(CTARNNConfig.tiny()).state_dict()}, p)
        back = torch.load(p, weights_only=True)
        assert back["config"] == d
        assert CTARNNConfig(**back["config"]) == cfg


# --------------------------------------------------------------------------------------------- CTranslate2 Whisper

D, HEADS, FFN, MELS, LAYERS, POS = 16, 2, 32, 80, 2, 1500
_DT = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2, np.dtype(np.int32): 3,
       np.dtype(np.float16): 4}


def _s(text: str) -> bytes:
    b = text.encode() + b"\0"
    return struct.pack("<H", len(b)) + b


def write_ct2(path, variables: dict[str, np.ndarray], aliases: dict[str, str] | None = None) -> None:
    """Minimal CTranslate2 model.bin writer (binary version 6)."""
    out = [struct.pack("<I", 6), _s("WhisperSpec"), struct.pack("<I", 3), struct.pack("<I", len(variables))]
    for name, arr in variables.items():
        arr = np.asarray(arr)  # (not ascontiguousarray: it turns 0-d scalars into shape (1,))
        out.append(_s(name))
        out.append(struct.pack("<B", arr.ndim) + struct.pack("<" + "I" * arr.ndim, *arr.shape))
        raw = arr.tobytes(order="C")
        out.append(struct.pack("<BI", _DT[arr.dtype], len(raw)) + raw)
    aliases = aliases or {}
    out.append(struct.pack("<I", len(aliases)))
    for alias, target in aliases.items():
        out.append(_s(alias) + _s(target))
    with open(path, "wb") as f:
        f.write(b"".join(out))


def make_weights(seed: int = 0, half: bool = False) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    dt = np.float16 if half else np.float32

    def r(*shape, scale=0.2):
        return (scale * rng.standard_normal(shape)).astype(dt)

    w = {
        "encoder/conv1/weight": r(D, MELS, 3, scale=0.1),
        "encoder/conv1/bias": r(D),
        "encoder/conv2/weight": r(D, D, 3),
        "encoder/conv2/bias": r(D),
        "encoder/position_encodings/encodings": r(POS, D, scale=0.5),
    }
    for i in range(LAYERS):
        p = f"encoder/layer_{i}"
        for blk in ("self_attention", "ffn"):
            w[f"{p}/{blk}/layer_norm/gamma"] = (1.0 + r(D, scale=0.1)).astype(dt)
            w[f"{p}/{blk}/layer_norm/beta"] = r(D, scale=0.1)
        w[f"{p}/self_attention/linear_0/weight"] = r(3 * D, D, scale=0.3)
        w[f"{p}/self_attention/linear_0/bias"] = r(3 * D)  # the k part is ignored: softmax is shift-invariant
        w[f"{p}/self_attention/linear_1/weight"] = r(D, D)
        w[f"{p}/self_attention/linear_1/bias"] = r(D)
        w[f"{p}/ffn/linear_0/weight"] = r(FFN, D)
        w[f"{p}/ffn/linear_0/bias"] = r(FFN)
        w[f"{p}/ffn/linear_1/weight"] = r(D, FFN)
        w[f"{p}/ffn/linear_1/bias"] = r(D)
    w["encoder/layer_norm/gamma"] = (1.0 + r(D, scale=0.1)).astype(dt)
    w["encoder/layer_norm/beta"] = r(D, scale=0.1)
    w["encoder/num_heads"] = np.array(HEADS, dtype=np.int32)
    return w


@pytest.fixture(scope="module")
def ct2_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("ct2")
    w = make_weights()
    write_ct2(d / "model.bin", w)
    return d, w


def test_read_ct2_exact_arrays(tmp_path):
    for half in (False, True):
        w = make_weights(seed=1, half=half)
        w["extra/int8"] = np.arange(-5, 5, dtype=np.int8).reshape(2, 5)
        w["extra/int16"] = np.arange(6, dtype=np.int16)
        p = tmp_path / f"model_{half}.bin"
        write_ct2(p, w, aliases={"encoder/alias_of_bias": "encoder/conv1/bias"})
        got = read_ct2(p)
        assert set(got) == set(w) | {"encoder/alias_of_bias"}
        for k, v in w.items():
            assert got[k].dtype == v.dtype, k
            assert got[k].shape == v.shape, k
            np.testing.assert_array_equal(got[k], v, err_msg=k)
        np.testing.assert_array_equal(got["encoder/alias_of_bias"], w["encoder/conv1/bias"])
        assert dims_of(got) == WhisperDims(LAYERS, D, HEADS, FFN, POS)


def test_read_ct2_rejects_old_version(tmp_path):
    p = tmp_path / "old.bin"
    p.write_bytes(struct.pack("<I", 4) + _s("x") + struct.pack("<II", 0, 0) + struct.pack("<I", 0))
    with pytest.raises(ValueError):
        read_ct2(p)


def reference_encoder(w: dict[str, np.ndarray], n_frames: int):
    """A transformers WhisperEncoder built by hand from the CT2 arrays (q/k/v split from the fused linear_0)."""
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    cfg = WhisperConfig(num_mel_bins=MELS, d_model=D, encoder_layers=LAYERS, encoder_attention_heads=HEADS,
                        encoder_ffn_dim=FFN, max_source_positions=n_frames // 2, decoder_layers=1,
                        decoder_attention_heads=HEADS, decoder_ffn_dim=FFN, dropout=0.0, attention_dropout=0.0,
                        activation_dropout=0.0)
    cfg._attn_implementation = "eager"
    enc = WhisperEncoder(cfg).eval()
    f = lambda a: torch.tensor(np.asarray(a, dtype=np.float32))  # noqa: E731
    with torch.no_grad():
        enc.conv1.weight.copy_(f(w["encoder/conv1/weight"]))
        enc.conv1.bias.copy_(f(w["encoder/conv1/bias"]))
        enc.conv2.weight.copy_(f(w["encoder/conv2/weight"]))
        enc.conv2.bias.copy_(f(w["encoder/conv2/bias"]))
        enc.embed_positions.weight.copy_(f(w["encoder/position_encodings/encodings"][: n_frames // 2]))
        enc.layer_norm.weight.copy_(f(w["encoder/layer_norm/gamma"]))
        enc.layer_norm.bias.copy_(f(w["encoder/layer_norm/beta"]))
        for i, layer in enumerate(enc.layers):
            p = f"encoder/layer_{i}"
            qkv_w = f(w[f"{p}/self_attention/linear_0/weight"])
            qkv_b = f(w[f"{p}/self_attention/linear_0/bias"])
            sa = layer.self_attn
            assert sa.k_proj.bias is None
            sa.q_proj.weight.copy_(qkv_w[:D])
            sa.q_proj.bias.copy_(qkv_b[:D])
            sa.k_proj.weight.copy_(qkv_w[D : 2 * D])
            sa.v_proj.weight.copy_(qkv_w[2 * D :])
            sa.v_proj.bias.copy_(qkv_b[2 * D :])
            sa.out_proj.weight.copy_(f(w[f"{p}/self_attention/linear_1/weight"]))
            sa.out_proj.bias.copy_(f(w[f"{p}/self_attention/linear_1/bias"]))
            layer.self_attn_layer_norm.weight.copy_(f(w[f"{p}/self_attention/layer_norm/gamma"]))
            layer.self_attn_layer_norm.bias.copy_(f(w[f"{p}/self_attention/layer_norm/beta"]))
            layer.fc1.weight.copy_(f(w[f"{p}/ffn/linear_0/weight"]))
            layer.fc1.bias.copy_(f(w[f"{p}/ffn/linear_0/bias"]))
            layer.fc2.weight.copy_(f(w[f"{p}/ffn/linear_1/weight"]))
            layer.fc2.bias.copy_(f(w[f"{p}/ffn/linear_1/bias"]))
            layer.final_layer_norm.weight.copy_(f(w[f"{p}/ffn/layer_norm/gamma"]))
            layer.final_layer_norm.bias.copy_(f(w[f"{p}/ffn/layer_norm/beta"]))
    return enc


def manual_encoder(w: dict[str, np.ndarray], x: torch.Tensor) -> torch.Tensor:
    """Whisper's encoder written out from the CT2 arrays, *with* the k bias (which must not matter)."""
    f = lambda k: torch.tensor(np.asarray(w[k], dtype=np.float32))  # noqa: E731
    F = nn.functional
    h = F.gelu(F.conv1d(x, f("encoder/conv1/weight"), f("encoder/conv1/bias"), padding=1))
    h = F.gelu(F.conv1d(h, f("encoder/conv2/weight"), f("encoder/conv2/bias"), stride=2, padding=1))
    h = h.transpose(1, 2)
    h = h + f("encoder/position_encodings/encodings")[: h.shape[1]]
    b, t, _ = h.shape
    dh = D // HEADS
    for i in range(LAYERS):
        p = f"encoder/layer_{i}"
        y = F.layer_norm(h, (D,), f(f"{p}/self_attention/layer_norm/gamma"), f(f"{p}/self_attention/layer_norm/beta"))
        qkv = F.linear(y, f(f"{p}/self_attention/linear_0/weight"), f(f"{p}/self_attention/linear_0/bias"))
        q, k, v = (z.reshape(b, t, HEADS, dh).transpose(1, 2) for z in qkv.split(D, dim=-1))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh), dim=-1) @ v
        att = att.transpose(1, 2).reshape(b, t, D)
        h = h + F.linear(att, f(f"{p}/self_attention/linear_1/weight"), f(f"{p}/self_attention/linear_1/bias"))
        y = F.layer_norm(h, (D,), f(f"{p}/ffn/layer_norm/gamma"), f(f"{p}/ffn/layer_norm/beta"))
        y = F.linear(F.gelu(F.linear(y, f(f"{p}/ffn/linear_0/weight"), f(f"{p}/ffn/linear_0/bias"))),
                     f(f"{p}/ffn/linear_1/weight"), f(f"{p}/ffn/linear_1/bias"))
        h = h + y
    return F.layer_norm(h, (D,), f("encoder/layer_norm/gamma"), f("encoder/layer_norm/beta"))


def test_whisper_encoder_matches_hand_built(ct2_dir):
    d, w = ct2_dir
    enc, dims = whisper_encoder(str(d), n_frames=200)
    assert dims == WhisperDims(LAYERS, D, HEADS, FFN, POS)
    assert not enc.training
    torch.testing.assert_close(enc.embed_positions.weight, torch.from_numpy(w["encoder/position_encodings/encodings"][:100]))
    ref = reference_encoder(w, 200)
    torch.manual_seed(7)
    x = torch.randn(2, MELS, 200)
    with torch.no_grad():
        got = enc(x, output_hidden_states=True)
        want = ref(x, output_hidden_states=True)
        manual = manual_encoder(w, x)
    assert len(got.hidden_states) == LAYERS + 1
    for a, b in zip(got.hidden_states, want.hidden_states):
        assert a.shape == (2, 100, D)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.last_hidden_state, want.last_hidden_state, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.last_hidden_state, manual, atol=1e-4, rtol=0)


def test_whisper_encoder_f16_weights_and_truncation(tmp_path):
    w = make_weights(seed=3, half=True)
    write_ct2(tmp_path / "model.bin", w)
    enc, _ = whisper_encoder(str(tmp_path / "model.bin"), n_frames=64)
    full, _ = whisper_encoder(str(tmp_path), n_frames=64)
    one, _ = whisper_encoder(str(tmp_path), n_frames=64, n_layers=1)
    assert len(one.layers) == 1
    x = torch.randn(1, MELS, 64)
    with torch.no_grad():
        got = enc(x, output_hidden_states=True).hidden_states
        torch.testing.assert_close(got[-1], full(x, output_hidden_states=True).hidden_states[-1])
        h1 = one(x, output_hidden_states=True).hidden_states
        torch.testing.assert_close(h1[0], got[0], atol=1e-6, rtol=0)
        torch.testing.assert_close(h1[1], got[1], atol=1e-6, rtol=0)
        torch.testing.assert_close(got[-1], manual_encoder(w, x), atol=1e-4, rtol=0)


def test_whisper_encoder_rejects_bad_windows(ct2_dir):
    d, _ = ct2_dir
    with pytest.raises(ValueError, match="even"):
        whisper_encoder(str(d), n_frames=201)
    with pytest.raises(ValueError, match="exceeds"):
        whisper_encoder(str(d), n_frames=2 * POS + 2)
    enc, _ = whisper_encoder(str(d), n_frames=2 * POS)  # the full 30 s table is fine
    assert enc.embed_positions.weight.shape == (POS, D)


def test_whisper_encoder_unknown_name():
    with pytest.raises(FileNotFoundError):
        whisper_encoder("/nonexistent/whisper-dir", n_frames=200)
