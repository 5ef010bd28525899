"""Training-side pieces of the default model: runtime windows, fine-tuned top layers, checkpoint -> export model."""

import numpy as np
import pytest
import torch

from train.models.cta_rnn import CTARNN, CTARNNConfig, EncoderCTARNN
from train.student import RecordingBackend, TopLayers, runtime_windows, stream_info


def _tiny_encoder(layers=3, frames=200):
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    torch.manual_seed(0)
    cfg = WhisperConfig(num_mel_bins=80, d_model=16, encoder_layers=layers, encoder_attention_heads=2,
                        encoder_ffn_dim=32, max_source_positions=frames // 2, decoder_layers=1,
                        decoder_attention_heads=2, decoder_ffn_dim=32)
    cfg._attn_implementation = "eager"
    return WhisperEncoder(cfg).eval()


def test_training_windows_are_the_runtime_windows(speech_in_silence):
    """The windows training sees are exactly those Model.classify feeds the model."""
    from edgeser.model import Model
    from tests.conftest import FakeBackend

    audio = speech_in_silence[0]
    wins = runtime_windows(audio)
    fake = FakeBackend()
    Model(fake).classify(audio, 16000)
    assert wins.shape == (fake.calls, 80, 200) and wins.dtype == np.float32
    rec = RecordingBackend(stream_info())
    Model(rec).classify(audio, 16000)
    np.testing.assert_array_equal(np.stack(rec.windows), wins)


def test_top_layers_reproduce_the_encoder():
    enc = _tiny_encoder()
    x = torch.randn(2, 80, 200)
    with torch.no_grad():
        hs = enc(x, output_hidden_states=True).hidden_states
        for tap in (1, 2, 3):
            outs = TopLayers(enc, tap)(hs[tap])
            assert len(outs) == len(hs) - tap
            for a, b in zip(outs, hs[tap:]):
                torch.testing.assert_close(a, b)


def test_checkpoint_roundtrip_with_finetuned_layers(tmp_path):
    """build_from_checkpoint puts fine-tuned encoder layers and the head back exactly (packaged tiny.en weights)."""
    from export.student import build_from_checkpoint
    from train.backbones.whisper import whisper_encoder

    enc, dims = whisper_encoder("tiny.en", 200)
    cfg = CTARNNConfig(n_channels=dims.n_layers + 1, d_in=dims.d_model)
    head = CTARNN(cfg)
    with torch.no_grad():
        enc.layers[3].fc1.weight.mul_(1.5)  # a "fine-tuned" top layer
    enc_state = {k: v.clone() for k, v in enc.state_dict().items() if k.startswith("layers.3.") or k.startswith("layer_norm.")}
    ck = {"config": cfg.to_dict(), "head": head.state_dict(), "encoder": "tiny.en", "encoder_state": enc_state,
          "labels": ["neutral", "happy", "angry", "sad"], "window_frames": 200, "hop_frames": 50, "first_frames": 50,
          "validation": {"uar": 0.5, "wa": 0.5, "macro_f1": 0.5, "recall": {}, "confusion": [], "test_speakers": ["A"],
                         "n": 1, "fold": 0}}
    torch.save(ck, tmp_path / "s.pt")
    ck = torch.load(tmp_path / "s.pt", weights_only=True)
    model, info = build_from_checkpoint(ck, name="t", version="0", quantization="none")
    ref = EncoderCTARNN(enc, head).eval()
    x = torch.randn(1, 80, 200) - 5
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x))
    assert info.labels == ("neutral", "happy", "angry", "sad") and "fine-tuned" in info.backbone


def test_teacher_soft_labels_from_committed_logits(ravdess_corpus):
    """The committed per-clip teacher logits cover every RAVDESS clip and give one distribution per clip and fold."""
    from train.data import load_ravdess
    from train.student import teacher_soft_labels

    clips = load_ravdess(root=ravdess_corpus)
    one = teacher_soft_labels(["mmer-full"], 0, clips, temperature=1.0)
    ens = teacher_soft_labels(["mmer-full", "gmp_atl-full"], 0, clips, temperature=2.0)
    assert one.shape == ens.shape == (len(clips), 4)
    np.testing.assert_allclose(one.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(ens.sum(1), 1.0, atol=1e-5)
    # a higher temperature flattens the targets
    assert ens.max(1).mean() < one.max(1).mean()
    # the teacher of fold 0 is right on most of fold 0's training clips (it trained on them)
    labels = np.array([["neutral", "happy", "angry", "sad"].index(c.label) for c in clips])
    assert (one.argmax(1) == labels).mean() > 0.7


def test_teacher_soft_labels_unknown_teacher():
    from train.data.ravdess import Clip
    from train.student import teacher_soft_labels

    clips = [Clip(f"/x/Actor_01/03-01-0{i}-01-01-01-01.flac", "Actor_01", "neutral", "male") for i in (1, 3, 5)]
    with pytest.raises(FileNotFoundError, match="no teacher logits"):  # no corpus needed: the logits file is missing
        teacher_soft_labels(["nope-full"], 0, clips, 2.0)
