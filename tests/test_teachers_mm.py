"""Tests of the multimodal teachers MMER (train/models/mmer.py) and CMA (train/models/cma.py) at tiny sizes, plus
the paper-size heads built on a tiny backbone."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from train.backbones.speech import build_backbone
from train.models.cma import CMA, CMAConfig, MaskedBatchNorm1d
from train.models.common import Batch, checkpoint
from train.models.mmer import MMER, MMERConfig

D_TEXT = 16
V = 32


def make_batch(mel_lens=(120, 90, 60, 100), text_lens=(7, 5, 3, 6), char_lens=(10, 8, 5, 9), labels=None, seed=0,
               aug=False, t_pad=0, l_pad=0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    b = len(mel_lens)
    t, l_max, s = max(mel_lens) + t_pad, max(text_lens) + l_pad, max(char_lens)
    mel = torch.full((b, 80, t), -1.5)  # padding: a constant (the log-mel of silence in real batches)
    text = torch.zeros(b, l_max, D_TEXT)
    chars = torch.zeros(b, s, dtype=torch.long)
    for i in range(b):
        mel[i, :, : mel_lens[i]] = torch.randn(80, mel_lens[i], generator=g)
        text[i, : text_lens[i]] = torch.randn(text_lens[i], D_TEXT, generator=g)
        chars[i, : char_lens[i]] = torch.randint(1, V, (char_lens[i],), generator=g)
    if labels is None:
        labels = [i % 2 for i in range(b)]  # every class twice: SCL has positives
    batch = Batch(
        mel=mel, mel_lengths=torch.tensor(mel_lens), labels=torch.tensor(labels),
        text=text, text_mask=torch.arange(l_max)[None] < torch.tensor(text_lens)[:, None],
        chars=chars, char_lengths=torch.tensor(char_lens),
    )
    if aug:  # another "voice": different lengths and features, same transcript features
        view = make_batch(tuple(m - 10 for m in mel_lens), text_lens, char_lens, labels, seed=seed + 100)
        batch = replace(batch, aug=replace(view, text=batch.text, text_mask=batch.text_mask))
    return batch


def item(batch: Batch, i: int) -> Batch:
    """Item ``i`` alone, cropped to its own lengths."""
    t, n = int(batch.mel_lengths[i]), int(batch.text_mask[i].sum())
    return Batch(mel=batch.mel[i : i + 1, :, :t], mel_lengths=batch.mel_lengths[i : i + 1],
                 labels=batch.labels[i : i + 1], text=batch.text[i : i + 1, :n], text_mask=batch.text_mask[i : i + 1, :n])


class PerItemBackbone(nn.Module):
    """Wraps a backbone: runs it on each item cropped to its own length, fills the padding with large noise.

    (Whisper's encoder attends over its padding frames by design, so an item's encoder output depends on how much
    padding follows it; this wrapper isolates what the padding-invariance tests check: the heads' masks.)
    """

    input_kind = "mel"

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    @property
    def d_model(self):
        return self.inner.d_model

    def freeze_frontend(self):
        self.inner.freeze_frontend()

    def forward(self, mel, mel_lengths, mask_time=None):
        outs, lens = [], []
        for i in range(mel.shape[0]):
            hs, ln = self.inner(mel[i : i + 1, :, : int(mel_lengths[i])], mel_lengths[i : i + 1])
            outs.append(hs[-1][0])
            lens.append(ln)
        t = max(int(mel.shape[-1] - 1) // 2 + 1, max(o.shape[0] for o in outs))
        h = 100.0 * torch.randn(len(outs), t, outs[0].shape[-1])
        for i, o in enumerate(outs):
            h[i, : o.shape[0]] = o
        return (h,), torch.cat(lens)


@pytest.fixture(scope="module")
def tiny_backbone():
    return build_backbone("random-tiny")  # (reseeds torch's global RNG: build first, seed after)


def fresh(model_cls, cfg, backbone=None):
    bb = build_backbone("random-tiny") if backbone is None else backbone
    torch.manual_seed(1)
    return model_cls(cfg, backbone=bb)


# --------------------------------------------------------------------------------------------- configs


def test_configs_and_variants():
    c = MMERConfig.tiny()
    assert c.backbone == "random-tiny" and MMERConfig.paper().backbone == "whisper-base"
    assert (c.alpha_ctc, c.beta_scl, c.gamma_acl) == (0.1, 0.1, 0.1)
    assert MMERConfig.variant("no_ctc").alpha_ctc == 0.0 and MMERConfig.variant("no_ctc").beta_scl == 0.1
    assert c.variant("no_scl").beta_scl == 0.0 and c.variant("no_scl").backbone == "random-tiny"
    assert c.variant("no_acl").gamma_acl == 0.0
    assert c.variant("no_acl").variant("full") == c
    with pytest.raises(ValueError):
        c.variant("nope")
    k = CMAConfig.tiny()
    assert k.fusion == "early" and CMAConfig.variant("audio_only").fusion == "audio_only"
    assert k.variant("text_only").variant("full") == k
    with pytest.raises(ValueError):
        CMAConfig(fusion="late")
    for cfg in (c, k):
        assert type(cfg)(**cfg.to_dict()) == cfg


# --------------------------------------------------------------------------------------------- MMER


def test_mmer_forward_losses_backward():
    model = fresh(MMER, MMERConfig.tiny())
    model.train()
    batch = make_batch(aug=True)
    out = model(batch)
    b = len(batch)
    assert out["logits"].shape == (b, 4)
    assert out["embedding"].shape == (b, 2 * 16) and out["z"].shape == (b, 16) and out["z_aug"].shape == (b, 16)
    assert out["ctc_log_probs"].shape == (b, 60, V)
    assert out["lengths"].tolist() == [60, 45, 30, 50]
    terms = model.losses(batch, out)
    assert set(terms) == {"ce", "ctc", "scl", "acl", "total"}
    for k, v in terms.items():
        assert v.dim() == 0 and torch.isfinite(v) and v > 0, k
    torch.testing.assert_close(terms["total"], terms["ce"] + terms["ctc"] + terms["scl"] + terms["acl"])
    terms["total"].backward()
    for n, p in model.named_parameters():
        if n.startswith("backbone."):
            continue
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, n
    last = model.backbone.encoder.layers[-1]
    assert last.fc2.weight.grad is not None and last.fc2.weight.grad.abs().sum() > 0
    assert not model.backbone.encoder.conv1.weight.requires_grad  # front end frozen
    ids_b = {id(p) for p in model.backbone_parameters()}
    ids_h = {id(p) for p in model.head_parameters()}
    assert ids_b and ids_h and not ids_b & ids_h
    assert ids_b | ids_h == {id(p) for p in model.parameters() if p.requires_grad}


@pytest.mark.parametrize("variant,absent", [("no_ctc", "ctc"), ("no_scl", "scl"), ("no_acl", "acl")])
def test_mmer_variants_drop_their_term(tiny_backbone, variant, absent):
    model = fresh(MMER, MMERConfig.tiny().variant(variant), tiny_backbone)
    batch = make_batch(aug=True)
    out = model(batch)
    terms = model.losses(batch, out)
    assert absent not in terms
    assert set(terms) == {"ce", "ctc", "scl", "acl", "total"} - {absent}
    torch.testing.assert_close(terms["total"], sum(v for k, v in terms.items() if k != "total"))
    if variant == "no_acl":
        assert "z_aug" not in out  # the augmented view is not even encoded


def test_mmer_without_aug_has_no_acl(tiny_backbone):
    model = fresh(MMER, MMERConfig.tiny(), tiny_backbone)
    batch = make_batch()
    terms = model.losses(batch, model(batch))
    assert set(terms) == {"ce", "ctc", "scl", "total"}


def test_mmer_padding_invariance(tiny_backbone):
    model = fresh(MMER, MMERConfig.tiny(), PerItemBackbone(tiny_backbone)).eval()
    batch = make_batch(mel_lens=(80, 140), text_lens=(4, 9), char_lens=(5, 9), t_pad=7, l_pad=2)
    with torch.no_grad():
        both = model(batch)
        alone = model(item(batch, 0))
    torch.testing.assert_close(both["logits"][0], alone["logits"][0], atol=1e-4, rtol=0)
    torch.testing.assert_close(both["embedding"][0], alone["embedding"][0], atol=1e-4, rtol=0)


def test_mmer_paper_sizes(tiny_backbone):
    model = MMER(MMERConfig.paper(), backbone=tiny_backbone)
    d = 768
    assert model.audio_proj.weight.shape == (d, tiny_backbone.d_model)
    assert model.text_proj.weight.shape == (d, 384)
    for blk in (model.cme_b, model.cme_c, model.cme_d):
        assert blk.attn.embed_dim == d and blk.attn.num_heads == 8
        assert blk.ffn[0].weight.shape == (3072, d) and blk.ffn[-1].weight.shape == (d, 3072)
        assert blk.attn.dropout == 0.1
    assert model.gate.weight.shape == (d, 2 * d) and model.fuse.weight.shape == (d, 2 * d)
    assert model.classifier.weight.shape == (4, 2 * d)
    assert model.ctc_head.weight.shape == (V, tiny_backbone.d_model)
    n_head = sum(p.numel() for p in model.head_parameters())
    assert 20e6 < n_head < 26e6  # 3 CME blocks at d=768 (7.1 M each) + gate, l(.), projections, heads


# --------------------------------------------------------------------------------------------- CMA


def test_cma_forward_losses_backward():
    model = fresh(CMA, CMAConfig.tiny())
    model.train()
    batch = make_batch()
    out = model(batch)
    b = len(batch)
    assert out["logits"].shape == (b, 4)
    assert out["embedding"].shape == (b, 4 * 16)  # stats pooling (2x) of two 2*lstm_hidden streams
    # encoder frames 60, 45, 30, 50 -> /2 (k3 s2 p1) twice
    assert out["lengths"].tolist() == [15, 12, 8, 13]
    terms = model.losses(batch, out)
    assert set(terms) == {"ce", "total"} and torch.isfinite(terms["ce"]) and terms["ce"] > 0
    torch.testing.assert_close(terms["total"], terms["ce"])
    terms["total"].backward()
    for n, p in model.named_parameters():
        if n.startswith("backbone."):
            continue
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, n
    assert model.backbone.encoder.layers[-1].fc2.weight.grad.abs().sum() > 0
    assert not model.backbone.encoder.conv1.weight.requires_grad
    assert {id(p) for p in model.backbone_parameters()}.isdisjoint({id(p) for p in model.head_parameters()})


def test_cma_audio_only_needs_no_text(tiny_backbone):
    model = fresh(CMA, CMAConfig.tiny().variant("audio_only"), tiny_backbone)
    assert not hasattr(model, "cma1") and not hasattr(model, "text_proj")
    batch = replace(make_batch(), text=None, text_mask=None)
    out = model(batch)
    assert out["logits"].shape == (4, 4) and out["embedding"].shape == (4, 2 * 16)
    terms = model.losses(batch, out)
    terms["total"].backward()
    assert all(p.grad is not None for p in model.head_parameters())


def test_cma_text_only_builds_no_backbone():
    model = CMA(CMAConfig.tiny().variant("text_only"))
    assert model.backbone is None and list(model.backbone_parameters()) == []
    out = model(make_batch())
    assert out["logits"].shape == (4, 4) and out["embedding"].shape == (4, 2 * 16)


@pytest.mark.parametrize("variant", ["full", "audio_only", "text_only"])
def test_cma_padding_invariance(tiny_backbone, variant):
    model = fresh(CMA, CMAConfig.tiny().variant(variant), PerItemBackbone(tiny_backbone))
    model.train()
    model(make_batch(seed=3))  # move BatchNorm's running statistics off their initial values
    model.eval()
    for lens in ((80, 140), (81, 141), (83, 90)):
        batch = make_batch(mel_lens=lens, text_lens=(4, 9), char_lens=(5, 9), t_pad=5, l_pad=3)
        with torch.no_grad():
            both = model(batch)
            alone = model(item(batch, 0))
        torch.testing.assert_close(both["logits"][0], alone["logits"][0], atol=1e-4, rtol=0)


def test_masked_batchnorm_uses_valid_frames_only():
    torch.manual_seed(0)
    bn, ref = MaskedBatchNorm1d(3), nn.BatchNorm1d(3)
    x = torch.randn(2, 3, 10)
    lens = torch.tensor([10, 6])
    mask = torch.arange(10)[None] < lens[:, None]
    valid = torch.cat([x[0], x[1, :, :6]], dim=1)  # [3, 16]: the valid frames as one sequence
    y = bn(x, mask)
    want = ref(valid[None])[0]
    torch.testing.assert_close(torch.cat([y[0], y[1, :, :6]], dim=1), want, atol=1e-5, rtol=0)
    torch.testing.assert_close(bn.running_mean, ref.running_mean)
    torch.testing.assert_close(bn.running_var, ref.running_var)
    bn.eval(), ref.eval()
    torch.testing.assert_close(bn(x, mask), ref(x))


def test_cma_paper_sizes(tiny_backbone):
    model = CMA(CMAConfig.paper(), backbone=tiny_backbone)
    enc = model.audio_encoder
    assert [c.weight.shape for c in enc.convs] == [(256, tiny_backbone.d_model, 3), (256, 256, 3)]
    assert [c.stride for c in enc.convs] == [(2,), (2,)]
    assert all(isinstance(n, MaskedBatchNorm1d) and n.num_features == 256 for n in enc.norms)
    assert enc.lstm.hidden_size == 128 and enc.lstm.bidirectional and enc.lstm.num_layers == 1
    assert enc.drop.p == 0.2
    assert model.text_proj.weight.shape == (256, 384, 1)
    for blk in (model.cma1, model.cma2):
        assert blk.attn.embed_dim == 256 and blk.attn.num_heads == 8
        assert blk.ffn[0].weight.shape == (256, 256)
    assert model.classifier.weight.shape == (4, 4 * 256)
    a_only = CMA(CMAConfig.variant("audio_only"), backbone=tiny_backbone)
    assert a_only.classifier.weight.shape == (4, 2 * 256)


def test_paper_heads_run(tiny_backbone):
    batch = make_batch(mel_lens=(60, 40), text_lens=(5, 3), char_lens=(6, 4))
    batch = replace(batch, text=torch.randn(2, batch.text.shape[1], 384))
    for model in (MMER(MMERConfig.paper(), backbone=tiny_backbone), CMA(CMAConfig.paper(), backbone=tiny_backbone)):
        model.eval()
        with torch.no_grad():
            assert model(batch)["logits"].shape == (2, 4)


# --------------------------------------------------------------------------------------------- both


def test_checkpoint_roundtrip(tmp_path, tiny_backbone):
    for cls, cfg_cls in ((MMER, MMERConfig), (CMA, CMAConfig)):
        model = fresh(cls, cfg_cls.tiny(), tiny_backbone).eval()
        path = tmp_path / f"{cls.name}.pt"
        torch.save(checkpoint(model, cls.name), path)
        blob = torch.load(path, weights_only=True)
        again = cls(cfg_cls(**blob["config"]))
        again.load_state_dict(blob["state"])
        again.eval()
        batch = make_batch()
        with torch.no_grad():
            torch.testing.assert_close(again(batch)["logits"], model(batch)["logits"])


def energy_batch(seed=0) -> Batch:
    """8 items, 2 classes; the class is the mel energy (class 1: +1.5 on every bin)."""
    labels = [0, 1] * 4
    batch = make_batch(mel_lens=(60, 70, 50, 64, 56, 72, 66, 58), text_lens=(3, 4, 5, 3, 4, 5, 3, 4),
                       char_lens=(4, 5, 6, 4, 5, 6, 4, 5), labels=labels, seed=seed, aug=True)
    for b in (batch, batch.aug):
        for i, y in enumerate(labels):
            n = int(b.mel_lengths[i])
            b.mel[i, :, :n] = 0.3 * b.mel[i, :, :n] + 1.5 * y
    return batch


@pytest.mark.parametrize("model_cls,cfg", [(MMER, MMERConfig.tiny()), (CMA, CMAConfig.tiny())])
def test_tiny_training_reduces_loss(model_cls, cfg):
    model = fresh(model_cls, cfg)
    model.train()
    batch = energy_batch()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    first = None
    for _ in range(20):
        terms = model.losses(batch, model(batch))
        opt.zero_grad()
        terms["total"].backward()
        opt.step()
        first = float(terms["total"].detach()) if first is None else first
    model.eval()
    with torch.no_grad():
        out = model(batch)
        last = float(model.losses(batch, out)["total"])
    assert last < 0.7 * first, (first, last)
    assert (out["logits"].argmax(-1) == batch.labels).float().mean() >= 0.75
