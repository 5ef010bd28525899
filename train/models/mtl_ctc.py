"""Cai et al. (paper 003), "Speech Emotion Recognition with Multi-task Learning": a speech backbone fine-tuned
jointly with a character CTC head and a sum-pooled emotion head.

Sec. 3.1 in code: ``z = f_theta(x)`` is the backbone's last hidden layer ``[B, L, d]``;
ASR path (orange): ``y = g_phi(z)`` a fully connected layer to ``V = 32`` characters (26 letters, word separator,
apostrophe, a few punctuation marks and the CTC blank; :class:`train.text.CharVocab`);
SER path (blue): ``c = h_phi(sum_i z_i)`` -- *sum* pooling over time, then a fully connected layer.
Sec. 3.2: ``L = L_CE + alpha * L_CTC`` (eq. 3); alpha = 0.1 is the paper's best, alpha = 0 its single-task ablation.
Greedy CTC decoding of ``y`` gives a transcript by-product (:meth:`MTLCTC.transcribe`).

Backbone: the paper fine-tunes wav2vec2-base (``ssl:<dir>`` here when a user has it); trained here: Whisper base.
Hyper-parameters (Table 1): AdamW, lr 5e-5 (1e-5 when alpha = 0), linear warm-up 0.1, batch 8 -- see
:meth:`MTLCTCConfig.fit_defaults`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
from torch import nn

from ..backbones.speech import build_backbone, encode
from ..losses import ctc_loss
from .common import Batch, length_mask, masked_sum

VARIANTS = ("full", "alpha0")


@dataclass(frozen=True)
class MTLCTCConfig:
    backbone: str = "whisper-base"
    n_classes: int = 4
    vocab_size: int = 32
    alpha: float = 0.1  # weight of the CTC loss (eq. 3)
    freeze_frontend: bool = True  # the CNN feature encoder stays frozen, as in HF wav2vec2 fine-tuning
    dropout: float = 0.1

    @classmethod
    def paper(cls, **kw) -> "MTLCTCConfig":
        return cls(**kw)

    @classmethod
    def tiny(cls, **kw) -> "MTLCTCConfig":
        return cls(**{"backbone": "random-tiny", "dropout": 0.0, **kw})

    def variant(self, name: str) -> "MTLCTCConfig":
        if name == "full":
            return replace(self, alpha=0.1)
        if name == "alpha0":
            return replace(self, alpha=0.0)
        raise ValueError(f"unknown mtl_ctc variant {name!r}; known: {VARIANTS}")

    def fit_defaults(self) -> dict:
        return {"optimizer": "adamw", "lr": 5e-5 if self.alpha > 0 else 1e-5, "lr_backbone": None,
                "warmup": 0.1, "batch_size": 8}

    def to_dict(self) -> dict:
        return asdict(self)


class MTLCTC(nn.Module):
    name = "mtl_ctc"

    def __init__(self, config: MTLCTCConfig, backbone: nn.Module | None = None):
        super().__init__()
        self.config = config
        self.backbone = backbone if backbone is not None else build_backbone(config.backbone)
        if config.freeze_frontend and hasattr(self.backbone, "freeze_frontend"):
            self.backbone.freeze_frontend()
        d = self.backbone.d_model
        self.drop = nn.Dropout(config.dropout)
        self.ctc_head = nn.Linear(d, config.vocab_size)  # g_phi
        self.emotion_head = nn.Linear(d, config.n_classes)  # h_phi

    def backbone_parameters(self):
        return (p for p in self.backbone.parameters() if p.requires_grad)

    def head_parameters(self):
        return (p for n, p in self.named_parameters() if not n.startswith("backbone.") and p.requires_grad)

    def forward(self, batch: Batch) -> dict:
        hidden, lengths = encode(self.backbone, batch)
        z = self.drop(hidden[-1])  # [B, L, d]
        mask = length_mask(lengths, z.shape[1])
        pooled = masked_sum(z, mask)  # sum_i z_i
        return {
            "logits": self.emotion_head(pooled),
            "embedding": pooled,
            "ctc_log_probs": torch.log_softmax(self.ctc_head(z).float(), dim=-1),
            "lengths": lengths,
        }

    def losses(self, batch: Batch, out: dict) -> dict:
        ce = nn.functional.cross_entropy(out["logits"].float(), batch.labels)
        terms = {"ce": ce}
        total = ce
        if self.config.alpha > 0:
            if batch.chars is None:
                raise ValueError("mtl_ctc with alpha > 0 needs transcripts (batch.chars)")
            ctc = self.config.alpha * ctc_loss(out["ctc_log_probs"], batch.chars, out["lengths"], batch.char_lengths)
            terms["ctc"] = ctc
            total = total + ctc
        terms["total"] = total
        return terms

    @torch.no_grad()
    def transcribe(self, out: dict, vocab) -> list[str]:
        """Greedy CTC transcripts of a forward's output (the ASR by-product)."""
        return vocab.greedy_decode(out["ctc_log_probs"].float().cpu(), out["lengths"].cpu())
