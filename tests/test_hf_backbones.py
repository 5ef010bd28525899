"""train.backbones.hf on tiny random checkpoints written to tmp_path, plus the packaged all-MiniLM-L6-v2."""

from __future__ import annotations

import json

import pytest
import torch

from train.backbones.hf import (
    SSLSpeechBackbone,
    TextBackbone,
    load_speech_ssl,
    load_text_encoder,
    minilm_path,
)

# wav2vec2's real CNN geometry (total stride 320 -> 50 frames/s) with 8 channels per conv layer
CONV = {"conv_dim": (8,) * 7, "conv_kernel": (10, 3, 3, 3, 3, 2, 2), "conv_stride": (5, 2, 2, 2, 2, 2, 2)}
TINY = {
    "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
    "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 2, "layerdrop": 0.0, **CONV,
}


def _hf_out_len(n: int) -> int:
    for k, s in zip(CONV["conv_kernel"], CONV["conv_stride"], strict=True):
        n = (n - k) // s + 1
    return n


@pytest.fixture(scope="module")
def w2v_dir(tmp_path_factory):
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("w2v")
    Wav2Vec2Model(Wav2Vec2Config(**TINY, mask_time_prob=0.05)).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def hubert_dir(tmp_path_factory):
    from transformers import HubertConfig, HubertModel

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("hubert")
    cfg = HubertConfig(**TINY, feat_extract_norm="layer", do_stable_layer_norm=True, mask_time_prob=0.05)
    HubertModel(cfg).save_pretrained(d)
    (d / "preprocessor_config.json").write_text(json.dumps({"do_normalize": True, "sampling_rate": 16000}))
    return d


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    from transformers import BertConfig, BertModel, BertTokenizerFast

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("bert")
    words = ["hello", "world", "i", "am", "happy", "sad", "you", "are", "##s", "."]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(d / "vocab.txt")).save_pretrained(d)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    BertModel(cfg).save_pretrained(d)
    return d


def test_wav2vec2_shapes_lengths_and_hidden_states(w2v_dir):
    bb = load_speech_ssl(w2v_dir)
    assert isinstance(bb, SSLSpeechBackbone)
    assert bb.input_kind == "wave" and bb.d_model == 32 and bb.n_layers == 2 and bb.frame_rate == 50
    assert bb.info.name == f"ssl:{w2v_dir}" and bb.info.input_kind == "wave"
    assert bb.normalize is False  # no preprocessor_config.json
    bb.eval()
    wave = torch.randn(2, 16000)
    lengths = torch.tensor([16000, 8000])
    with torch.no_grad():
        hidden, out_len = bb(wave, lengths)
    assert len(hidden) == bb.n_layers + 1
    t = _hf_out_len(16000)
    assert t == 49
    assert all(h.shape == (2, t, 32) for h in hidden)
    assert out_len.tolist() == [49, _hf_out_len(8000)]
    assert bb.out_lengths(lengths).tolist() == out_len.tolist()
    # samples past wave_lengths are ignored (zeroed before the CNN)
    noisy = wave.clone()
    noisy[1, 8000:] = 100.0
    with torch.no_grad():
        hidden2, _ = bb(noisy, lengths)
    assert torch.allclose(hidden[-1], hidden2[-1], atol=1e-5)


def test_mask_time_changes_output(w2v_dir):
    bb = load_speech_ssl(w2v_dir).eval()
    wave = torch.randn(1, 8000)
    lengths = torch.tensor([8000])
    t = _hf_out_len(8000)
    mask = torch.zeros(1, t, dtype=torch.bool)
    mask[0, 5:10] = True
    with torch.no_grad():
        plain, _ = bb(wave, lengths)
        masked, _ = bb(wave, lengths, mask_time=mask)
        unmasked, _ = bb(wave, lengths, mask_time=torch.zeros_like(mask))
    assert not torch.allclose(plain[-1], masked[-1])
    assert torch.allclose(plain[-1], unmasked[-1], atol=1e-6)
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        bb(wave, lengths, mask_time=torch.zeros(1, t + 1, dtype=torch.bool))


def test_mask_time_needs_a_mask_embedding(tmp_path):
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    Wav2Vec2Model(Wav2Vec2Config(**TINY, mask_time_prob=0.0)).save_pretrained(tmp_path)
    bb = load_speech_ssl(tmp_path).eval()
    with pytest.raises(ValueError, match="config_overrides"):
        bb(torch.randn(1, 4000), torch.tensor([4000]), mask_time=torch.ones(1, _hf_out_len(4000), dtype=torch.bool))


def test_hubert_normalize_padding_and_freeze(hubert_dir):
    bb = load_speech_ssl(hubert_dir, config_overrides={"mask_time_prob": 0.0})
    assert bb.normalize is True  # from preprocessor_config.json
    assert bb.model.config.mask_time_prob == 0.0
    bb.eval()
    short = torch.randn(1, 6000)
    with torch.no_grad():
        alone, n_alone = bb(short, torch.tensor([6000]))
        scaled, _ = bb(short * 5.0, torch.tensor([6000]))  # per-utterance normalisation removes the gain
        padded = torch.cat([short, torch.zeros(1, 4000)], 1)
        batch, n_batch = bb(torch.cat([padded, torch.randn(1, 10000)]), torch.tensor([6000, 10000]))
    assert torch.allclose(alone[-1], scaled[-1], atol=1e-4)
    assert n_batch[0] == n_alone[0]
    n = int(n_alone[0])
    # layer-norm feature encoder + attention mask: a padded item's valid frames equal its unpadded run
    assert torch.allclose(alone[-1][0, :n], batch[-1][0, :n], atol=1e-4)
    bb.freeze_feature_encoder()
    assert not any(p.requires_grad for p in bb.model.feature_extractor.parameters())
    assert any(p.requires_grad for p in bb.model.encoder.parameters())


def test_hubert_gradients_flow(hubert_dir):
    bb = load_speech_ssl(hubert_dir).train()
    bb.freeze_frontend()
    wave = torch.randn(2, 5000)
    hidden, _ = bb(wave, torch.tensor([5000, 3000]))
    hidden[-1].sum().backward()
    assert bb.model.encoder.layers[0].attention.q_proj.weight.grad is not None


def test_too_short_clip_is_rejected(w2v_dir):
    bb = load_speech_ssl(w2v_dir)
    with pytest.raises(ValueError, match="receptive field"):
        bb(torch.randn(2, 4000), torch.tensor([4000, 100]))


def test_missing_or_incomplete_dirs(tmp_path, bert_dir, w2v_dir):
    with pytest.raises(FileNotFoundError, match="no model hub download"):
        load_speech_ssl(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_speech_ssl(tmp_path)
    (tmp_path / "config.json").write_text((w2v_dir / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_speech_ssl(tmp_path)
    with pytest.raises(FileNotFoundError, match="no model hub download"):
        load_text_encoder(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="tokenizer"):
        load_text_encoder(w2v_dir)
    with pytest.raises(ValueError, match="load_text_encoder"):
        load_speech_ssl(bert_dir)


def test_tiny_bert_text_encoder(bert_dir):
    tb = load_text_encoder(bert_dir)
    assert isinstance(tb, TextBackbone)
    assert tb.d_model == 32 and tb.n_layers == 2 and tb.max_length == 64
    tb.eval()
    with torch.no_grad():
        hidden, mask = tb.encode(["hello world", "i am happy you are sad"], device="cpu")
    # [CLS] hello world [SEP] / [CLS] i am happy you are sad [SEP]
    assert hidden.shape == (2, 8, 32) and mask.dtype == torch.bool
    assert mask.sum(1).tolist() == [4, 8]
    enc = tb.tokenize(["hello world"])
    with torch.no_grad():
        direct = tb(enc["input_ids"], enc["attention_mask"])
    assert torch.allclose(direct[0], hidden[0, :4], atol=1e-5)
    with pytest.raises(TypeError, match="list of strings"):
        tb.encode("hello world")


def test_minilm_package_encodes_sentences():
    path = minilm_path()
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()
    tb = load_text_encoder(path).eval()
    assert tb.d_model == 384 and tb.n_layers == 6
    sentences = ["A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell sharply today."]
    with torch.no_grad():
        hidden, mask = tb.encode(sentences[:2])
        assert hidden.shape[0] == 2 and hidden.shape[2] == 384 and hidden.shape[1] == mask.shape[1]
        h3, m3 = tb.encode(sentences)
    emb = torch.nn.functional.normalize(TextBackbone.mean_pool(h3, m3), dim=-1)
    # pretrained weights: the two guitar sentences are much closer than either is to the market one
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.3


def test_wavlm_loads_and_masks(tmp_path):
    from transformers import WavLMConfig, WavLMModel

    torch.manual_seed(0)
    WavLMModel(WavLMConfig(**TINY, mask_time_prob=0.05)).save_pretrained(tmp_path)
    bb = load_speech_ssl(tmp_path).eval()
    wave, lengths = torch.randn(2, 8000), torch.tensor([8000, 5000])
    mask = torch.zeros(2, _hf_out_len(8000), dtype=torch.bool)
    mask[:, 3:6] = True
    with torch.no_grad():
        hidden, out_len = bb(wave, lengths)
        masked, _ = bb(wave, lengths, mask_time=mask)
    assert len(hidden) == 3 and hidden[-1].shape == (2, _hf_out_len(8000), 32)
    assert out_len.tolist() == [_hf_out_len(8000), _hf_out_len(5000)]
    assert not torch.allclose(hidden[-1], masked[-1])
