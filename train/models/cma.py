"""CMA (Krishna D N, paper 001): large pre-trained audio and text encoders with cross-modal attention, early fusion.

Sec. 2.2-2.5 and 4 in code:

- Audio encoder base: the speech backbone, fine-tuned, with its convolutional front end frozen (the paper:
  wav2vec2-large, 1024-d, feature encoder frozen; trained here: Whisper base, 512-d, its two convolutions frozen).
  ``C`` = its last hidden state ``[B, N, d]``.
- Audio feature encoder (eq. 1-2): 2 x [Conv1d(k=3, s=2, 256 filters) + BatchNorm1d + ReLU] -> ``F^A`` (frame rate
  / 4), then a single BiLSTM (128 per direction, dropout 0.2 on its output) -> ``H^A [B, T, 256]``.
- Text encoder base (eq. 3): frozen token features (the paper fine-tunes BERT-base, 768-d; here MiniLM-L6 features,
  384-d, arrive precomputed in ``batch.text``) projected by a Conv1d(k=1) to 256 -> ``H^T [B, N_tok, 256]``.
- CMA-1: queries ``H^A``, keys/values ``H^T``; CMA-2: queries ``H^T``, keys/values ``H^A``
  (:class:`CrossModalAttention`): a single multi-head attention layer each, 8 heads, layer norm before the scaled
  dot product, a feed-forward layer of the input's width (256), residual connections.
- Statistics pooling (mean and std over valid positions) of CMA-1's and CMA-2's outputs, concatenated (early fusion,
  the ``"embedding"``, 4 x 256) -> linear classifier. Loss: cross-entropy.

Variants (:meth:`CMAConfig.variant`, the ``fusion`` field): ``"full"`` (``fusion="early"``, the paper's model);
``"audio_only"`` (the paper's audio-only baseline, "Wav2vec2.0+CNN+BLSTM": statistics pooling of ``H^A`` ->
classifier, no CMA and no text); ``"text_only"`` (statistics pooling of ``H^T`` -> classifier; the paper fine-tunes
BERT for it, here the text features stay frozen so only the projection and classifier learn; no speech backbone is
built for it unless one is passed).

Padding: every convolution's input is zeroed past each item's length, BatchNorm's batch statistics are taken over
valid frames only (:class:`MaskedBatchNorm1d`; eval uses the running statistics as usual), the BiLSTM is packed,
and attention / pooling use key-padding masks, so an item's output does not depend on how much padding follows
its head input.

Paper hyper-parameters: Adam, lr 1e-5, decayed on plateau of the held-out loss (:meth:`CMAConfig.fit_defaults`).

Not given in the paper, chosen here (also :data:`GUESSED`): the convolutions' padding (1, so T = ceil(ceil(N/2)/2));
the FFN activation (ReLU); dropout 0.1 inside the CMA blocks (only the BiLSTM's 0.2 is given); separate layer
norms for the query and the key/value streams (pre-LN, no final layer norm); the batch size; batch statistics over
valid frames only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.speech import build_backbone, encode
from .common import (
    Batch,
    config_method,
    conv_out_lengths,
    length_mask,
    masked_stats,
    run_lstm,
)

VARIANTS = ("full", "audio_only", "text_only")
FUSIONS = ("early", "audio_only", "text_only")

GUESSED = {
    "conv_padding": "1 (not given; frame rate / 4 as the paper states)",
    "ffn_activation": "ReLU (not given)",
    "cma_dropout": "0.1 inside the CMA blocks (only the BiLSTM's 0.2 is given)",
    "layer_norms": "separate pre-LN for query and key/value; no final layer norm (not given)",
    "batch_norm": "statistics over valid (unpadded) frames only",
    "batch_size": "8 (not given)",
    "text_only": "frozen text features + projection (the paper fine-tunes BERT for its text-only baseline)",
}


@dataclass(frozen=True)
class CMAConfig:
    backbone: str = "whisper-base"
    d_text: int = 384  # MiniLM-L6 token features (stand-in for BERT-base, 768)
    n_classes: int = 4
    fusion: str = "early"  # "early" (the paper's model) | "audio_only" | "text_only"
    freeze_frontend: bool = True  # the paper freezes wav2vec2's CNN feature encoder
    conv_channels: int = 256  # filters of both convolutions
    conv_kernel: int = 3
    conv_stride: int = 2
    n_conv: int = 2
    lstm_hidden: int = 128  # per direction; H^A is 2 x this wide, and H^T is projected to the same width
    lstm_dropout: float = 0.2
    n_heads: int = 8
    ffn_dim: int = 256  # "the forward feed layer inside MHA has a hidden dimension similar to its input"
    dropout: float = 0.1  # inside the CMA blocks: not given

    def __post_init__(self):
        if self.fusion not in FUSIONS:
            raise ValueError(f"unknown cma fusion {self.fusion!r}; known: {FUSIONS}")

    @property
    def d_attn(self) -> int:
        return 2 * self.lstm_hidden

    @classmethod
    def paper(cls, **kw) -> CMAConfig:
        return cls(**kw)

    @classmethod
    def tiny(cls, **kw) -> CMAConfig:
        return cls(**{"backbone": "random-tiny", "d_text": 16, "conv_channels": 16, "lstm_hidden": 8,
                      "n_heads": 2, "ffn_dim": 16, "dropout": 0.0, "lstm_dropout": 0.0, **kw})

    @config_method
    def variant(self, name: str) -> CMAConfig:
        """``"full"`` (early fusion with CMA, the paper's model), ``"audio_only"`` or ``"text_only"``."""
        if name == "full":
            return replace(self, fusion="early")
        if name in ("audio_only", "text_only"):
            return replace(self, fusion=name)
        raise ValueError(f"unknown cma variant {name!r}; known: {VARIANTS}")

    def fit_defaults(self) -> dict:
        """Sec. 4: Adam, initial lr 1e-5 (decayed on plateau of the held-out loss). Batch size not given."""
        return {"optimizer": "adam", "lr": 1e-5, "lr_backbone": None, "warmup": 0.0, "batch_size": 8}

    def to_dict(self) -> dict:
        return asdict(self)


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d over ``[B, C, T]`` whose training statistics come from valid frames only (``mask [B, T]``).

    Same parameters and buffers as ``nn.BatchNorm1d`` (so state dicts match); eval uses the running statistics.
    """

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        if mask is None or not self.training:
            return super().forward(x)
        m = mask.to(x.dtype)[:, None, :]
        n = m.sum().clamp(min=1.0)
        mean = (x * m).sum(dim=(0, 2)) / n
        var = (((x - mean[None, :, None]) ** 2) * m).sum(dim=(0, 2)) / n
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked += 1
                mom = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var * (n / (n - 1.0).clamp(min=1.0))
                self.running_mean.mul_(1.0 - mom).add_(mom * mean.detach().to(self.running_mean.dtype))
                self.running_var.mul_(1.0 - mom).add_(mom * unbiased.detach().to(self.running_var.dtype))
        y = (x - mean[None, :, None]) * torch.rsqrt(var[None, :, None] + self.eps)
        if self.affine:
            y = y * self.weight[None, :, None] + self.bias[None, :, None]
        return y


class AudioFeatureEncoder(nn.Module):
    """Eq. 1-2: ``n_conv`` x [Conv1d(k, s) + BatchNorm + ReLU] then one BiLSTM: ``C [B, N, d]`` -> ``H^A [B, T, 2h]``."""

    def __init__(self, d_in: int, channels: int, kernel: int, stride: int, n_conv: int, hidden: int, dropout: float):
        super().__init__()
        self.kernel, self.stride, self.padding = kernel, stride, kernel // 2
        self.convs = nn.ModuleList(
            nn.Conv1d(d_in if i == 0 else channels, channels, kernel, stride=stride, padding=self.padding)
            for i in range(n_conv)
        )
        self.norms = nn.ModuleList(MaskedBatchNorm1d(channels) for _ in range(n_conv))
        self.lstm = nn.LSTM(channels, hidden, num_layers=1, batch_first=True, bidirectional=True)
        self.drop = nn.Dropout(dropout)

    def forward(self, c: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = c.transpose(1, 2)  # [B, d, N]
        for conv, norm in zip(self.convs, self.norms):
            x = x * length_mask(lengths, x.shape[-1]).to(x.dtype)[:, None, :]  # padding never enters a conv
            x = conv(x)
            lengths = conv_out_lengths(lengths, self.kernel, self.stride, self.padding).clamp(min=1)
            x = F.relu(norm(x, length_mask(lengths, x.shape[-1])))
        h = run_lstm(self.lstm, x.transpose(1, 2), lengths)  # [B, T, 2h], zeros past each length
        return self.drop(h), lengths


class CrossModalAttention(nn.Module):
    """CMA block (Fig. 2): pre-LN multi-head cross attention + residual, pre-LN feed-forward + residual.

    ``x = q + MHA(LN_q(q), LN_kv(kv), LN_kv(kv))``; ``out = x + FFN(LN(x))``.
    """

    def __init__(self, d: int, n_heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.norm_q = nn.LayerNorm(d)
        self.norm_kv = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, n_heads, dropout=dropout, batch_first=True)
        self.norm_ff = nn.LayerNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, ffn_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, q: torch.Tensor, kv: torch.Tensor, kv_valid: torch.Tensor) -> torch.Tensor:
        pad = ~kv_valid.bool()
        pad = pad & ~pad.all(dim=1, keepdim=True)  # an item without valid keys attends to all (finite, not NaN)
        kvn = self.norm_kv(kv)
        a, _ = self.attn(self.norm_q(q), kvn, kvn, key_padding_mask=pad, need_weights=False)
        x = q + self.drop(a)
        return x + self.drop(self.ffn(self.norm_ff(x)))


class CMA(nn.Module):
    name = "cma"

    def __init__(self, config: CMAConfig, backbone: nn.Module | None = None):
        super().__init__()
        self.config = c = config
        uses_audio, uses_text = c.fusion != "text_only", c.fusion != "audio_only"
        if backbone is None and uses_audio:
            backbone = build_backbone(c.backbone)
        self.backbone = backbone
        if backbone is not None and c.freeze_frontend and hasattr(backbone, "freeze_frontend"):
            backbone.freeze_frontend()
        d = c.d_attn
        if uses_audio:
            self.audio_encoder = AudioFeatureEncoder(backbone.d_model, c.conv_channels, c.conv_kernel, c.conv_stride,
                                                     c.n_conv, c.lstm_hidden, c.lstm_dropout)
        if uses_text:
            self.text_proj = nn.Conv1d(c.d_text, d, kernel_size=1)  # eq. 3
        if c.fusion == "early":
            self.cma1 = CrossModalAttention(d, c.n_heads, c.ffn_dim, c.dropout)  # q = H^A, kv = H^T
            self.cma2 = CrossModalAttention(d, c.n_heads, c.ffn_dim, c.dropout)  # q = H^T, kv = H^A
        n_pooled = 2 if c.fusion == "early" else 1
        self.classifier = nn.Linear(n_pooled * 2 * d, c.n_classes)

    def backbone_parameters(self):
        if self.backbone is None:
            return iter(())
        return (p for p in self.backbone.parameters() if p.requires_grad)

    def head_parameters(self):
        return (p for n, p in self.named_parameters() if not n.startswith("backbone.") and p.requires_grad)

    def forward(self, batch: Batch) -> dict:
        c = self.config
        out: dict = {}
        if c.fusion != "text_only":
            hidden, lengths = encode(self.backbone, batch)
            h_a, a_len = self.audio_encoder(hidden[-1], lengths)
            a_valid = length_mask(a_len, h_a.shape[1])
            out["lengths"] = a_len
        if c.fusion != "audio_only":
            if batch.text is None or batch.text_mask is None:
                raise ValueError(f"cma ({c.fusion}) needs text features (batch.text, batch.text_mask)")
            dtype = h_a.dtype if c.fusion == "early" else self.text_proj.weight.dtype
            h_t = self.text_proj(batch.text.to(dtype).transpose(1, 2)).transpose(1, 2)  # H^T [B, N_tok, d]
            t_valid = batch.text_mask.bool()
        if c.fusion == "early":
            o1 = self.cma1(h_a, h_t, t_valid)  # audio network
            o2 = self.cma2(h_t, h_a, a_valid)  # text network
            emb = torch.cat([masked_stats(o1, a_valid), masked_stats(o2, t_valid)], dim=-1)
        elif c.fusion == "audio_only":
            emb = masked_stats(h_a, a_valid)
        else:
            emb = masked_stats(h_t, t_valid)
        out["embedding"] = emb
        out["logits"] = self.classifier(emb)
        return out

    def losses(self, batch: Batch, out: dict) -> dict:
        ce = F.cross_entropy(out["logits"].float(), batch.labels)
        return {"ce": ce, "total": ce}
