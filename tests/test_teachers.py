"""Tests of the teacher-training stack (train/): packed corpora, batching, the CTA-RNN / MTL-CTC / GMP-ATL teachers,
k-means, training loop, fit_fold for every model and the ``python -m train`` CLI. CPU, tiny presets, random-tiny
backbone, a synthetic corpus built in memory."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from train.backbones.speech import build_backbone, whisper_out_lengths
from train.data.packed import PackedCorpus, dequantize, load_pack, quantize, save_pack
from train.fit import Collator, FitConfig, fit_fold, predict, train_stage
from train.kmeans import kmeans, multiscale_kmeans
from train.models.common import Batch, length_mask
from train.models.cta_rnn import CTARNNTeacher, CTARNNTeacherConfig, _MaskedCTAttention
from train.models.gmp_atl import GMPATL, GMPATLConfig, span_mask
from train.models.mtl_ctc import MTLCTC, MTLCTCConfig
from train.text import CharVocab

LABELS = ("neutral", "happy", "angry", "sad")
TEXTS = ["KIDS ARE TALKING", "DOGS ARE SITTING"]
SPEAKERS = ["spk0", "spk1", "spk2", "spk3"]
GENDER = {"spk0": 0, "spk1": 0, "spk2": 1, "spk3": 1}  # 2 male, 2 female
FOLDS = [["spk0", "spk2"], ["spk1", "spk3"]]
D_TEXT = 16


def _mel(rng, label: int, t: int, top: float) -> np.ndarray:
    """A Whisper-normalised-like log-mel: values in [top - 2, top], a band of bins raised for the class."""
    m = (top - 2.0) + 0.6 * rng.random((80, t))
    band = slice(label * 20, label * 20 + 20)
    m[band] = top - 0.4 + 0.4 * rng.random((20, t))
    m[band.start, 0] = top
    return m.astype(np.float32)


def make_corpus(seed: int = 0, tts: bool = True) -> PackedCorpus:
    rng = np.random.default_rng(seed)
    clip_ids, speakers, y, gender, text_id, clean, aug = [], [], [], [], [], [], []
    for spk in SPEAKERS:
        for li in range(len(LABELS)):
            for k in range(2):
                t = int(rng.integers(60, 121))
                top = float(rng.uniform(0.5, 1.5))
                m = _mel(rng, li, t, top)
                clip_ids.append(f"{spk}-{li}-{k}.wav")
                speakers.append(spk)
                y.append(li)
                gender.append(GENDER[spk])
                text_id.append(k)
                clean.append(m)
                noisy = np.clip(m + 0.05 * rng.standard_normal(m.shape), top - 2.0, top).astype(np.float32)
                aug.append(noisy)
    c = PackedCorpus(
        name="synthetic", labels=LABELS, clip_ids=clip_ids, speakers=speakers, y=np.array(y, np.int64),
        gender=np.array(gender, np.int64), text_id=np.array(text_id, np.int64), texts=list(TEXTS),
        mels=[clean, aug], text_feats=[rng.standard_normal((n, D_TEXT)).astype(np.float32) for n in (5, 7)],
        text_encoder="random", folds=[list(f) for f in FOLDS], meta={"synthetic": True},
    )
    if tts:
        tm, tt, tl, tv = [], [], [], []
        for ti in range(len(TEXTS)):
            for li in range(len(LABELS)):
                for vi, voice in enumerate(("v0", "v1")):
                    tm.append(_mel(rng, li, int(rng.integers(60, 121)), float(rng.uniform(0.5, 1.5))))
                    tt.append(ti)
                    tl.append(li)
                    tv.append(voice)
        c.tts_mels, c.tts_text_id, c.tts_label, c.tts_voice = tm, np.array(tt, np.int64), np.array(tl, np.int64), tv
    return c


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models: intra-op threads only add overhead (and spin under load); restored after this module."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def corpus() -> PackedCorpus:
    return make_corpus()


@pytest.fixture(scope="module")
def pack_path(tmp_path_factory, corpus):
    return save_pack(corpus, tmp_path_factory.mktemp("pack") / "synthetic.npz")


@pytest.fixture
def backbone():
    return build_backbone("random-tiny")  # fresh per test: CTARNNTeacher freezes the backbone it is given


def _batch(corpus, idx, vocab=None, **kw) -> Batch:
    return Collator(corpus, vocab, **kw)(np.asarray(idx))


# ------------------------------------------------------------------------------------------------ 1. packing


def test_quantize_round_trip():
    rng = np.random.default_rng(1)
    for top in (-0.3, 0.7, 1.5):
        m = (top - 2.0 + 2.0 * rng.random((80, 97))).astype(np.float32)
        m[3, 5] = top
        q, t = quantize(m)
        assert q.dtype == np.uint8 and q.shape == m.shape and t == pytest.approx(top)
        back = dequantize(q, t)
        assert back.dtype == np.float32
        assert np.abs(back - m).max() <= 2.0 / 255 + 1e-6


def test_save_load_pack_round_trip(corpus, pack_path):
    c = load_pack(pack_path)
    assert c.name == corpus.name and c.labels == corpus.labels
    assert c.clip_ids == corpus.clip_ids and c.speakers == corpus.speakers
    assert np.array_equal(c.y, corpus.y) and np.array_equal(c.gender, corpus.gender)
    assert np.array_equal(c.text_id, corpus.text_id)
    assert c.texts == corpus.texts and c.folds == corpus.folds and c.meta == corpus.meta
    assert c.text_encoder == corpus.text_encoder
    assert len(c.mels) == 2
    for copy_a, copy_b in zip(c.mels, corpus.mels):
        assert len(copy_a) == len(copy_b)
        for a, b in zip(copy_a, copy_b):
            assert a.shape == b.shape and a.dtype == np.float32
            assert np.abs(a - b).max() <= 2.0 / 255 + 1e-5
    assert len(c.text_feats) == len(corpus.text_feats)
    for a, b in zip(c.text_feats, corpus.text_feats):
        assert a.shape == b.shape and a.dtype == np.float32
        np.testing.assert_allclose(a, b, atol=5e-3, rtol=1e-3)  # stored as float16
    assert len(c.tts_mels) == len(corpus.tts_mels) == 16
    for a, b in zip(c.tts_mels, corpus.tts_mels):
        assert a.shape == b.shape and np.abs(a - b).max() <= 2.0 / 255 + 1e-5
    assert np.array_equal(c.tts_text_id, corpus.tts_text_id) and np.array_equal(c.tts_label, corpus.tts_label)
    assert c.tts_voice == corpus.tts_voice


def test_save_load_pack_without_tts(tmp_path):
    c0 = make_corpus(tts=False)
    c = load_pack(save_pack(c0, tmp_path / "p.npz"))
    assert c.tts_mels == [] and len(c.tts_text_id) == 0 and len(c) == len(c0)


# ------------------------------------------------------------------------------------------------ 2. split


def test_split_is_speaker_independent(corpus):
    for fold in range(len(corpus.folds)):
        tr, te = corpus.split(fold)
        assert len(np.intersect1d(tr, te)) == 0
        assert sorted(np.concatenate([tr, te]).tolist()) == list(range(len(corpus)))
        spk_tr = {corpus.speakers[i] for i in tr}
        spk_te = {corpus.speakers[i] for i in te}
        assert not spk_tr & spk_te
        assert spk_te == set(corpus.folds[fold])
    for bad in (-1, len(corpus.folds)):
        with pytest.raises(ValueError):
            corpus.split(bad)


# ------------------------------------------------------------------------------------------------ 3. Collator


def test_collator_batch(corpus):
    vocab = CharVocab()
    coll = Collator(corpus, vocab)
    idx = np.array([0, 3, 9, 17])
    b = coll(idx)
    lens = [corpus.mels[0][i].shape[1] for i in idx]
    assert b.mel_lengths.tolist() == lens
    t = b.mel.shape[-1]
    assert t >= max(lens) and t % 2 == 0 and b.mel.shape[:2] == (4, 80)
    for j, i in enumerate(idx):
        m = corpus.mels[0][i]
        np.testing.assert_array_equal(b.mel[j, :, : lens[j]].numpy(), m)
        if t > lens[j]:
            pad = b.mel[j, :, lens[j]:].numpy()
            np.testing.assert_allclose(pad, float(m.max()) - 2.0, atol=1e-6)  # this clip's floor
    assert b.labels.tolist() == corpus.y[idx].tolist()
    assert b.gender.tolist() == corpus.gender[idx].tolist()
    assert b.index.tolist() == idx.tolist()
    # characters
    seqs = [vocab.encode(corpus.texts[corpus.text_id[i]]) for i in idx]
    assert b.char_lengths.tolist() == [len(s) for s in seqs]
    for j, s in enumerate(seqs):
        assert b.chars[j, : len(s)].tolist() == s
        assert (b.chars[j, len(s):] == 0).all()
    # text features + mask
    for j, i in enumerate(idx):
        f = corpus.text_feats[corpus.text_id[i]]
        assert int(b.text_mask[j].sum()) == f.shape[0]
        assert b.text_mask[j, : f.shape[0]].all()
        np.testing.assert_allclose(b.text[j, : f.shape[0]].numpy(), f)
        assert (b.text[j, f.shape[0]:] == 0).all()
    assert b.aug is None and b.frame_targets is None


def test_collator_without_vocab_has_no_chars(corpus):
    b = _batch(corpus, [0, 1])
    assert b.chars is None and b.char_lengths is None


def test_collator_aug_view(corpus):
    coll = Collator(corpus, CharVocab(), with_aug=True)
    idx = np.array([0, 5, 10, 20])
    assert coll(idx).aug is None  # no rng: evaluation batches carry no view
    b = coll(idx, rng=np.random.default_rng(0))
    assert isinstance(b.aug, Batch) and len(b.aug) == 4
    assert b.aug.labels.tolist() == b.labels.tolist()
    assert b.aug.text is not None and b.aug.text_mask.shape[0] == 4
    # each view: a TTS clip of the same transcript and emotion
    tts_lens = {m.shape[1] for m in corpus.tts_mels}
    assert set(b.aug.mel_lengths.tolist()) <= tts_lens
    for j, i in enumerate(idx):
        f = corpus.text_feats[corpus.text_id[i]]
        assert int(b.aug.text_mask[j].sum()) == f.shape[0]
    # no TTS views -> no aug view even if asked
    c = make_corpus(tts=False)
    assert Collator(c, with_aug=True)(idx, rng=np.random.default_rng(0)).aug is None


def test_collator_frame_targets(corpus):
    idx = np.array([0, 1, 2])
    targets = {int(i): np.full((5 + int(i), 3), int(i) + 1, np.int64) for i in idx}
    b = Collator(corpus, frame_targets=targets)(idx)
    t_enc = int(whisper_out_lengths(torch.tensor(b.mel.shape[-1])))
    assert b.frame_targets.shape == (3, t_enc, 3)
    for j, i in enumerate(idx):
        n = 5 + int(i)
        assert (b.frame_targets[j, :n] == int(i) + 1).all()
        assert (b.frame_targets[j, n:] == -100).all()


def test_collator_crop_and_spec_augment(corpus):
    coll = Collator(corpus)
    idx = np.array([0, 1, 2, 3])
    b = coll(idx, rng=np.random.default_rng(0), max_frames=50)
    assert b.mel.shape[-1] == 50 and (b.mel_lengths == 50).all()
    for j, i in enumerate(idx):  # a crop is a contiguous slice at an even offset (aligned with encoder frames)
        m, crop = corpus.mels[0][i], b.mel[j].numpy()
        offs = [o for o in range(0, m.shape[1] - 49, 2) if np.array_equal(m[:, o : o + 50], crop)]
        assert offs
    b = coll(idx, rng=np.random.default_rng(0), spec_augment=True)
    clean = coll(idx)
    assert not torch.equal(b.mel, clean.mel)
    for j, i in enumerate(idx):
        top = float(corpus.mels[0][i].max())
        changed = b.mel[j] != clean.mel[j]
        assert changed.any()
        torch.testing.assert_close(b.mel[j][changed], torch.full_like(b.mel[j][changed], top - 2.0))


# ------------------------------------------------------------------------------------------------ 4. CTA-RNN teacher


@pytest.mark.parametrize("variant,fusion", [("full", "cta"), ("wf", "wf"), ("ef", "ef"), ("lf", "lf")])
def test_cta_rnn_teacher_forward_backward(corpus, backbone, variant, fusion):
    cfg = CTARNNTeacherConfig.tiny().variant(variant)
    assert cfg.fusion == fusion
    model = CTARNNTeacher(cfg, backbone=backbone)
    model.train()
    assert not model.backbone.training  # frozen feature extractor stays in eval mode
    b = _batch(corpus, [0, 7, 12, 30])
    out = model(b)
    assert out["logits"].shape == (4, 4)
    terms = model.losses(b, out)
    assert set(terms) == {"ce", "total"}
    terms["total"].backward()
    assert all(p.grad is None and not p.requires_grad for p in model.backbone.parameters())
    head = list(model.head_parameters())
    assert head and all(p.grad is not None for p in head)
    assert list(model.backbone_parameters()) == []
    assert sum(float(p.grad.abs().sum()) for p in head) > 0
    if fusion == "wf":
        assert model.layer_weights.grad is not None


def test_cta_rnn_teacher_variants():
    with pytest.raises(ValueError):
        CTARNNTeacherConfig.tiny().variant("nope")
    with pytest.raises(ValueError):
        CTARNNTeacher(CTARNNTeacherConfig.tiny(fusion="bogus"))


def test_masked_cta_attention_ignores_padding():
    torch.manual_seed(0)
    attn = _MaskedCTAttention(6, 2, 3)
    h = torch.randn(3, 4, 10, 6)
    lengths = torch.tensor([10, 7, 4])
    mask = length_mask(lengths, 10)
    h = torch.where(mask[:, None, :, None], h, torch.zeros(()))
    v1, a1 = attn(h, mask)
    garbage = 100.0 * torch.randn(3, 4, 5, 6)
    h2 = torch.cat([h, garbage], dim=2)
    h2[1, :, 7:10] = 50.0 * torch.randn(4, 3, 6)  # garbage inside the padded part of item 1
    mask2 = torch.cat([mask, torch.zeros(3, 5, dtype=torch.bool)], dim=1)
    v2, a2 = attn(h2, mask2)
    torch.testing.assert_close(v1, v2, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a1, a2[:, :, :10], rtol=1e-5, atol=1e-6)
    assert a2.shape == (3, 4, 15, 2)
    assert (a2[~mask2[:, None, :, None].expand_as(a2)] == 0).all()
    torch.testing.assert_close(a2.sum(dim=(1, 2)), torch.ones(3, 2))


# ------------------------------------------------------------------------------------------------ 5. MTL-CTC


@pytest.mark.parametrize("variant", ["full", "alpha0"])
def test_mtl_ctc_losses(corpus, backbone, variant):
    vocab = CharVocab()
    cfg = MTLCTCConfig.tiny().variant(variant)
    model = MTLCTC(cfg, backbone=backbone)
    b = _batch(corpus, [0, 9, 18, 27], vocab)
    out = model(b)
    assert out["logits"].shape == (4, 4)
    assert out["ctc_log_probs"].shape[:2] == (4, b.mel.shape[-1] // 2) and out["ctc_log_probs"].shape[2] == 32
    terms = model.losses(b, out)
    if variant == "full":
        assert set(terms) == {"ce", "ctc", "total"}
        assert cfg.alpha == pytest.approx(0.1)
    else:
        assert set(terms) == {"ce", "total"}
        assert cfg.alpha == 0.0
    torch.testing.assert_close(terms["total"], sum(v for k, v in terms.items() if k != "total"))
    torch.testing.assert_close(terms["ce"], F.cross_entropy(out["logits"], b.labels))
    terms["total"].backward()
    assert any(p.grad is not None for p in model.backbone_parameters())
    assert model.backbone.encoder.conv1.weight.grad is None  # frozen front end
    model.zero_grad(set_to_none=True)
    texts = model.transcribe(out, vocab)
    assert isinstance(texts, list) and len(texts) == 4 and all(isinstance(t, str) for t in texts)
    if variant == "full":
        with pytest.raises(ValueError):
            model.losses(replace(b, chars=None, char_lengths=None), out)


# ------------------------------------------------------------------------------------------------ 6. GMP-ATL


def test_gmp_atl_stage1_losses(corpus, backbone):
    model = GMPATL(GMPATLConfig.tiny(), backbone=backbone)
    model.set_stage(1)
    b = _batch(corpus, [0, 9, 18, 27])
    out = model(b)
    assert out["logits"].shape == (4, 4) and out["gender_logits"].shape == (4, 2)
    t = model.losses(b, out)
    emo = F.cross_entropy(out["logits"], b.labels)
    gen = F.cross_entropy(out["gender_logits"], b.gender)
    torch.testing.assert_close(t["emotion"], 0.9 * emo)
    torch.testing.assert_close(t["gender"], 0.1 * gen)
    torch.testing.assert_close(t["total"], 0.9 * emo + 0.1 * gen)
    with pytest.raises(ValueError):
        model.set_stage(4)


def test_gmp_atl_stage2_masked_frames_only(corpus, backbone):
    torch.manual_seed(0)
    cfg = GMPATLConfig.tiny()
    model = GMPATL(cfg, backbone=backbone)
    model.set_stage(2)
    model.train()
    idx = np.array([0, 9, 18, 27])
    b = _batch(corpus, idx)
    out = model(b)
    with pytest.raises(ValueError):
        model.losses(b, out)
    mask = out["mask"]
    t_enc = out["frame_logits"][0].shape[1]
    assert mask.shape == (4, t_enc) and mask.any(1).all()
    assert not (mask & ~length_mask(out["lengths"], t_enc)).any()
    g = torch.Generator().manual_seed(1)
    ft = torch.stack([torch.randint(0, k, (4, t_enc), generator=g) for k in cfg.scales], dim=-1)
    terms = model.losses(replace(b, frame_targets=ft), out)
    assert set(terms) == {"gmp0", "gmp1", "gmp2", "total"}
    for s, logits in enumerate(out["frame_logits"]):
        expect = F.cross_entropy(logits[mask], ft[..., s][mask])
        torch.testing.assert_close(terms[f"gmp{s}"], expect)
    torch.testing.assert_close(terms["total"], terms["gmp0"] + terms["gmp1"] + terms["gmp2"])
    # targets on unmasked frames do not count
    ft2 = ft.clone()
    ft2[~mask] = 0
    torch.testing.assert_close(model.losses(replace(b, frame_targets=ft2), out)["total"], terms["total"])
    ft3 = ft.clone()
    ft3[mask] = (ft3[mask] + 1) % torch.tensor(cfg.scales)
    assert not torch.allclose(model.losses(replace(b, frame_targets=ft3), out)["total"], terms["total"])
    # eval: no masking; every valid frame counts
    model.eval()
    with torch.no_grad():
        out_e = model(b)
    assert out_e["mask"] is None
    assert torch.isfinite(model.losses(replace(b, frame_targets=ft), out_e)["total"])


def test_gmp_atl_stage3_ams_vs_ce(corpus, backbone):
    b = _batch(corpus, [0, 9, 18, 27])
    ams = GMPATL(GMPATLConfig.tiny().variant("full"), backbone=backbone)
    ce = GMPATL(GMPATLConfig.tiny().variant("ce"), backbone=backbone)
    assert ams.stage == 3 and ce.stage == 3
    o1, o2 = ams(b), ce(b)
    assert o1["logits"].shape == o2["logits"].shape == (4, 4)
    assert o1["logits"].abs().max() <= ams.config.am_s + 1e-4  # s * cos
    t1, t2 = ams.losses(b, o1), ce.losses(b, o2)
    assert set(t1) == {"am_softmax", "total"} and set(t2) == {"ce", "total"}
    torch.testing.assert_close(t2["ce"], F.cross_entropy(o2["logits"], b.labels))
    # AM-Softmax's margin makes its loss exceed the plain softmax over s*cos
    assert float(t1["total"].detach()) >= float(F.cross_entropy(o1["logits"].detach(), b.labels)) - 1e-6
    for name, (use_gmp, loss) in {"full": (True, "ams"), "ce": (True, "ce"), "no_gmp": (False, "ams"),
                                  "no_gmp_ce": (False, "ce")}.items():
        c = GMPATLConfig.tiny().variant(name)
        assert (c.use_gmp, c.loss) == (use_gmp, loss)
    with pytest.raises(ValueError):
        GMPATLConfig.tiny().variant("nope")


def test_span_mask():
    lengths = torch.tensor([40, 25, 7, 3, 1])
    b, t = 5, 40
    valid = length_mask(lengths, t)
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        m = span_mask(b, t, lengths, 0.08, 5, generator=g)
        assert m.shape == (b, t) and m.dtype == torch.bool
        assert not (m & ~valid).any()
        assert m.any(1).all()
        # every masked run is >= span frames unless cut by the item's end
        for i in range(b):
            row = m[i].tolist() + [False]
            run = 0
            for pos, v in enumerate(row):
                if v:
                    run += 1
                elif run:
                    assert run >= 5 or pos == int(lengths[i])
                    run = 0
    # prob 0: exactly one forced span per item, of the configured length when it fits
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        m = span_mask(b, t, lengths, 0.0, 5, generator=g)
        for i in range(b):
            pos = torch.nonzero(m[i]).flatten()
            start = int(pos[0])
            assert pos.tolist() == list(range(start, start + len(pos)))  # one contiguous span
            assert len(pos) == min(5, int(lengths[i]) - start)


def test_gmp_atl_head_parameters_by_stage(backbone):
    model = GMPATL(GMPATLConfig.tiny(), backbone=backbone)
    ids = {}
    for stage in (1, 2, 3):
        model.set_stage(stage)
        ids[stage] = {id(p) for p in model.head_parameters()}
        assert ids[stage]
    assert not ids[1] & ids[2] and not ids[1] & ids[3] and not ids[2] & ids[3]
    bb = {id(p) for p in model.backbone_parameters()}
    assert bb and not bb & (ids[1] | ids[2] | ids[3])
    model.set_scales((2, 3))
    model.set_stage(2)
    assert len(model.frame_heads) == 2 and model.frame_heads[1][-1].out_features == 3


# ------------------------------------------------------------------------------------------------ 7. k-means


def test_kmeans_recovers_blobs():
    g = torch.Generator().manual_seed(0)
    centers = torch.tensor([[0.0, 0.0], [10.0, 10.0], [-10.0, 10.0]])
    truth = torch.arange(3).repeat_interleave(50)
    x = centers[truth] + 0.5 * torch.randn(150, 2, generator=g)
    perm = torch.randperm(150, generator=g)
    x, truth = x[perm], truth[perm]
    c, a = kmeans(x, 3, seed=0)
    assert c.shape == (3, 2) and a.shape == (150,)
    purity = sum(int(torch.bincount(a[truth == k], minlength=3).max()) for k in range(3)) / 150
    assert purity == 1.0
    assert len({int(a[truth == k][0]) for k in range(3)}) == 3  # one cluster per blob
    # centroids near the true centres
    d = torch.cdist(c, centers).min(1).values
    assert (d < 0.5).all()
    c2, a2 = kmeans(x, 3, seed=0)
    assert torch.equal(c, c2) and torch.equal(a, a2)
    with pytest.raises(ValueError):
        kmeans(x[:2], 3)
    with pytest.raises(ValueError):
        kmeans(torch.zeros(0, 2), 1)


def test_multiscale_kmeans_caps_k():
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    out = multiscale_kmeans(x, (2, 3, 10), iters=5)
    assert [int(c.shape[0]) for c, _ in out] == [2, 3, 5]
    for c, a in out:
        assert a.shape == (5,) and int(a.max()) < c.shape[0]


# ------------------------------------------------------------------------------------------------ 8. training


def test_train_stage_reduces_loss(corpus):
    # MTL-CTC (backbone fine-tuned): the frozen random-tiny encoder gives a frozen-backbone head little class signal
    # (its convolutions are initialised at std 0.02, far below the positional table), so CTA-RNN barely moves here
    vocab = CharVocab()
    model = MTLCTC(MTLCTCConfig.tiny())
    coll = Collator(corpus, vocab)
    train_idx, _ = corpus.split(0)
    cfg = FitConfig(epochs=4, batch_size=8, optimizer="adamw", lr=1e-3, lr_backbone=None, warmup=0.0,
                    schedule="constant", spec_augment=False)
    hist = train_stage(model, coll, train_idx, cfg, torch.device("cpu"), progress=False)
    assert len(hist) == 4 and all(set(h) == {"ce", "ctc", "total"} for h in hist)
    assert hist[0]["total"] > hist[-1]["total"]
    assert hist[0]["ctc"] > hist[-1]["ctc"]
    idx = np.arange(len(corpus))
    logits, extra = predict(model, coll, idx, torch.device("cpu"))
    assert logits.shape == (len(corpus), 4) and np.isfinite(logits).all()
    assert sorted(extra["transcripts"]) == idx.tolist()
    assert all(isinstance(t, str) for t in extra["transcripts"].values())


def test_train_stage_resumes_from_checkpoint(corpus, tmp_path):
    coll = Collator(corpus)
    train_idx, _ = corpus.split(1)
    cfg = FitConfig(epochs=2, batch_size=16, optimizer="adam", lr=1e-2, lr_backbone=0.0, warmup=0.0,
                    spec_augment=False)
    ckpt = tmp_path / "m.pt"
    m1 = CTARNNTeacher(CTARNNTeacherConfig.tiny())
    h1 = train_stage(m1, coll, train_idx, cfg, torch.device("cpu"), ckpt=ckpt, tag="a", progress=False)
    assert ckpt.exists()
    m2 = CTARNNTeacher(CTARNNTeacherConfig.tiny())
    h2 = train_stage(m2, coll, train_idx, cfg, torch.device("cpu"), ckpt=ckpt, tag="a", progress=False)
    assert h2 == h1  # nothing left to run: history restored
    for (n, p), (_, q) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(p, q), n


# ------------------------------------------------------------------------------------------------ 9. fit_fold


RECORD_FIELDS = ("model", "variant", "fold", "uar", "wa", "backbone", "device", "train_seconds", "command", "params")


@pytest.mark.parametrize("model_name", ["mmer", "cma", "cta_rnn", "mtl_ctc", "gmp_atl"])
def test_fit_fold_end_to_end(corpus, model_name):
    fold = 1
    rec, logits = fit_fold(model_name, corpus, fold, preset="tiny", fit={"epochs": 1, "batch_size": 8},
                           device="cpu", progress=False, command="pytest")
    for k in RECORD_FIELDS:
        assert k in rec, k
    assert rec["model"] == model_name and rec["variant"] == "full" and rec["fold"] == fold
    assert rec["backbone"] == "random-tiny" and rec["device"].startswith("cpu")
    assert rec["command"] == "pytest" and rec["params"] > 0 and rec["train_seconds"] >= 0
    assert 0.0 <= rec["uar"] <= 1.0 and 0.0 <= rec["wa"] <= 1.0
    assert rec["test_speakers"] == sorted(corpus.folds[fold])
    assert rec["n_test"] == 16 and rec["n_train"] == 16
    assert logits.shape == (len(corpus), 4) and np.isfinite(logits).all()
    json.dumps(rec)  # the record is JSON-serialisable
    if model_name == "mmer":
        assert "acl" in rec["final_train_loss"]  # the augmented view reached the ACL term
    if model_name == "mtl_ctc":
        assert 0.0 <= rec["test_cer"]
    if model_name in ("mmer", "cma"):
        assert rec["text_encoder"] == "random"


# ------------------------------------------------------------------------------------------------ 10. CLI


def test_cli_fit_replaces_record(pack_path, tmp_path):
    from train.__main__ import main

    results, logits_dir = tmp_path / "R.json", tmp_path / "L"
    argv = ["fit", "--model", "cta_rnn", "--preset", "tiny", "--data", str(pack_path), "--fold", "0", "--epochs",
            "1", "--results", str(results), "--logits", str(logits_dir), "--quiet", "--device", "cpu"]
    assert main(argv) == 0
    recs = json.loads(results.read_text())
    assert isinstance(recs, list) and len(recs) == 1
    assert (recs[0]["model"], recs[0]["variant"], recs[0]["fold"]) == ("cta_rnn", "full", 0)
    f = logits_dir / "cta_rnn-full-fold0.npz"
    z = np.load(f)
    assert z["logits"].shape == (32, 4) and int(z["fold"]) == 0 and len(z["clip_ids"]) == 32
    assert main(argv) == 0
    recs = json.loads(results.read_text())
    assert len(recs) == 1


def test_cli_merge(tmp_path):
    from train.__main__ import main

    work = tmp_path / "work"
    (work / "records").mkdir(parents=True)
    (work / "logits").mkdir()
    clip_ids = np.array([f"c{i}.wav" for i in range(6)])
    rng = np.random.default_rng(0)
    for model, variant in (("cta_rnn", "full"), ("mtl_ctc", "alpha0")):
        for fold in (0, 1):
            rec = {"model": model, "variant": variant, "fold": fold, "backbone": "random-tiny", "uar": 0.5,
                   "wa": 0.5, "command": f"job {model} {fold}"}
            (work / "records" / f"{model}-{variant}-fold{fold}.json").write_text(json.dumps([rec]))
            np.savez_compressed(work / "logits" / f"{model}-{variant}-fold{fold}.npz",
                                logits=rng.standard_normal((6, 4)).astype(np.float16), clip_ids=clip_ids, fold=fold)
    results, out = tmp_path / "teachers.json", tmp_path / "logits"
    # an existing record for the same key is replaced, others kept
    results.write_text(json.dumps([{"model": "cta_rnn", "variant": "full", "fold": 0, "backbone": "random-tiny",
                                    "uar": 0.0, "command": "old"},
                                   {"model": "cma", "variant": "full", "fold": 0, "backbone": "random-tiny",
                                    "uar": 0.1, "command": "keep"}]))
    assert main(["merge", "--work", str(work), "--results", str(results), "--logits", str(out)]) == 0
    recs = json.loads(results.read_text())
    keys = [(r["model"], r["variant"], r["fold"]) for r in recs]
    assert len(keys) == len(set(keys)) == 5
    cta0 = next(r for r in recs if (r["model"], r["variant"], r["fold"]) == ("cta_rnn", "full", 0))
    assert cta0["uar"] == 0.5 and cta0["command"] == "job cta_rnn 0"
    assert sorted(p.name for p in out.glob("*.npz")) == ["cta_rnn-full.npz", "mtl_ctc-alpha0.npz"]
    for name in ("cta_rnn-full.npz", "mtl_ctc-alpha0.npz"):
        z = np.load(out / name)
        assert z["folds"].tolist() == [0, 1]
        assert z["logits"].shape == (2, 6, 4)
        assert z["clip_ids"].tolist() == clip_ids.tolist()
    # --command overrides every record's command
    assert main(["merge", "--work", str(work), "--results", str(results), "--command", "merged"]) == 0
    recs = json.loads(results.read_text())
    assert len(recs) == 5
    assert all(r["command"] == "merged" for r in recs if r["model"] != "cma")


def test_cli_queue_runs_jobs_in_processes_and_skips(pack_path, tmp_path):
    """`queue` runs each (model, variant, fold) in its own process, writes records and logits, honours --skip."""
    import json

    from train.__main__ import main

    work = tmp_path / "work"
    rc = main(["queue", "--pack", str(pack_path), "--jobs", "mtl_ctc", "--folds", "0", "--workers", "2",
               "--work", str(work), "--preset", "tiny", "--fit-json", '{"*": {"epochs": 1}}',
               "--skip", "mtl_ctc-alpha0-fold0"])
    assert rc == 0
    assert sorted(p.name for p in (work / "records").glob("*.json")) == ["mtl_ctc-full-fold0.json"]
    rec = json.loads((work / "records" / "mtl_ctc-full-fold0.json").read_text())[0]
    assert rec["model"] == "mtl_ctc" and rec["epochs"] == 1 and rec["backbone"] == "random-tiny"
    assert (work / "logits" / "mtl_ctc-full-fold0.npz").is_file()


def test_load_corpus_manifest_and_errors(tmp_path):
    import soundfile as sf

    from train.__main__ import load_corpus

    rows = ["path,speaker,label,gender"]
    for s, g in (("a", "male"), ("b", "female"), ("c", "male"), ("d", "female"), ("e", "male")):
        for lab in ("neutral", "angry"):
            sf.write(tmp_path / f"{s}-{lab}.wav", np.zeros(1600, np.float32), 16000)
            rows.append(f"{s}-{lab}.wav,{s},{lab},{g}")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    clips, folds, kind = load_corpus(f"manifest:{tmp_path / 'm.csv'}")
    assert kind == "manifest" and len(clips) == 10 and len(folds) == 5
    assert sorted(s for f in folds for s in f) == ["a", "b", "c", "d", "e"]
    with pytest.raises(SystemExit, match="unknown corpus"):
        load_corpus("timit")
    with pytest.raises(SystemExit, match="needs a path"):
        load_corpus("manifest")


def test_whisper_fp16_weights_file_round_trip(tmp_path):
    """The compact fp16 encoder file (what a GPU machine gets) builds the same backbone as the packaged weights."""
    from train.backbones.speech import build_backbone, out_lengths, save_whisper_fp16

    path = save_whisper_fp16("tiny.en", tmp_path / "tiny.fp16.pt")
    a, b = build_backbone("whisper-tiny.en").eval(), build_backbone("whisper-tiny.en", weights=path).eval()
    mel = torch.rand(1, 80, 120) * 2 - 1.5
    lengths = torch.tensor([120])
    with torch.no_grad():
        ha, la = a(mel, lengths)
        hb, lb = b(mel, lengths)
    assert len(ha) == 5 and torch.equal(la, lb) and la.item() == 60
    assert torch.allclose(ha[-1], hb[-1], atol=5e-2)  # fp16 storage of the weights
    assert torch.equal(out_lengths(a, Batch(mel=mel, mel_lengths=torch.tensor([119]))), torch.tensor([60]))
    with pytest.raises(ValueError, match="holds whisper-tiny.en"):
        build_backbone("whisper-base", weights=path)
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone("wav2vec2")
