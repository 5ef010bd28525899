"""Export of a tiny random model: ONNX and .pte, fp32 and int8, verified against eager; mismatches fail loudly."""

import numpy as np
import pytest
import torch

from edgeser.runtime import open_backend
from export.core import ExportMismatch, export_onnx, export_pte, verify
from train.models.cta_rnn import CTARNN, CTARNNConfig, EncoderCTARNN


W = 40  # a short window keeps the unrolled GRU (and the export) small


def tiny_encoder(seed=0, window=W):
    """A randomly initialised 2-layer, d=16 Whisper encoder for ``window``-frame inputs (3 hidden states)."""
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    torch.manual_seed(seed)
    cfg = WhisperConfig(num_mel_bins=80, d_model=16, encoder_layers=2, encoder_attention_heads=2,
                        encoder_ffn_dim=32, max_source_positions=window // 2, decoder_layers=1,
                        decoder_attention_heads=2, decoder_ffn_dim=32)
    cfg._attn_implementation = "eager"
    return WhisperEncoder(cfg).eval()


def _tiny_model(seed=0):
    enc = tiny_encoder(seed)
    head = CTARNN(CTARNNConfig(n_channels=3, d_in=16, d_rnn=8, n_heads=2, d_head=4, dropout=0.0, time_pool=2))
    return EncoderCTARNN(enc, head).eval()


@pytest.fixture(scope="module")
def setup():
    from tests.conftest import FakeBackend

    info = FakeBackend(window_frames=W, hop_frames=10, first_frames=10).info
    rng = np.random.default_rng(0)
    windows = (rng.standard_normal((6, 80, W)) - 5).astype(np.float32)
    return _tiny_model(), info, windows


@pytest.mark.parametrize("fmt", ["onnx", "pte"])
@pytest.mark.parametrize("quantize", [None, "int8"])
def test_export_roundtrip(setup, tmp_path, fmt, quantize):
    from dataclasses import replace

    model, info, windows = setup
    # calibration travels too: the temperature and the pooling of windows (both formats carry either pooling)
    info = replace(info, temperature=0.6, aggregate="mean_logits" if quantize else "mean")
    fn = export_onnx if fmt == "onnx" else export_pte
    path = fn(model, (torch.from_numpy(windows[:1]),), tmp_path / f"m.{fmt}", info, quantize=quantize)
    backend = open_backend(path)
    assert backend.info == info  # metadata travels inside the file
    atol = 1e-4 if quantize is None else 0.2
    rep = verify(model, path, windows, atol=atol, min_label_agreement=1.0 if quantize is None else 0.8)
    assert rep["windows"] == 6 and rep["max_abs_diff"] <= atol


def test_mismatch_fails_loudly(setup, tmp_path):
    model, info, windows = setup
    path = export_onnx(model, (torch.from_numpy(windows[:1]),), tmp_path / "m.onnx", info)
    other = _tiny_model(seed=1)
    with pytest.raises(ExportMismatch):
        verify(other, path, windows, atol=1e-4)
