"""GMP-ATL (Pan et al., paper 004): Gender-augmented Multi-scale Pseudo-label Adaptive Transfer Learning.

Three stages (sec. 3, Fig. 1), selected with :attr:`GMPATL.stage`; :func:`train.fit.fit_gmp_atl` runs them in order.

1. *GMP extraction* (sec. 3.1): backbone -> BiLSTM -> mean average pooling (MAP) -> linear projection module
   (LinearP: two linear layers and one ReLU) -> emotion and gender heads, trained with
   ``L = alpha_e * L_emo + (1 - alpha_e) * L_gender`` (eq. 1, alpha_e = 0.9). Then the frames of the
   third-to-last backbone layer are clustered by k-means at three scales (64, 512, 4096 centres):
   the frame-level gender-augmented multi-scale pseudo-labels (GMPs); :func:`train.kmeans.multiscale_kmeans`.
2. *GMP-based retraining* (sec. 3.2): HuBERT-style masking of the frames after the convolutional front end
   (span length 10, start probability 0.08, learned mask embedding), and one LinearP per scale predicting the
   pseudo-labels of the masked frames (cross-entropy).
3. *Fine-tuning* (sec. 3.3): the stage-2 backbone with a fresh BiLSTM -> MAP -> LinearP head, trained with
   AM-Softmax (eq. 2-3; m = 0.2, s = 30) on the utterance labels; the ablation uses cross-entropy.

Variants (Table 3): "full" (GMPs + AM-Softmax), "ce" (GMPs + CE), "no_gmp" (AM-Softmax, stages 1-2 skipped),
"no_gmp_ce" (neither). Backbone: the paper fine-tunes HuBERT-base (``ssl:<dir>`` here); trained here: Whisper base,
whose third-to-last hidden state (layer 4 of 6) is clustered. The BiLSTM and LinearP widths are not given in the
paper: 256 units per direction and 256 are our choice. Optimiser (sec. 4.1.2): Adam, lr 1e-4, batch 64.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
from torch import nn

from ..backbones.speech import build_backbone, encode, frames_of, out_lengths
from ..losses import am_softmax_logits, am_softmax_loss, masked_prediction_loss
from .common import Batch, length_mask, masked_mean, run_lstm

VARIANTS = ("full", "ce", "no_gmp", "no_gmp_ce")


@dataclass(frozen=True)
class GMPATLConfig:
    backbone: str = "whisper-base"
    n_classes: int = 4
    n_genders: int = 2
    alpha_e: float = 0.9  # eq. 1
    d_lstm: int = 256
    d_proj: int = 256
    cluster_layer: int = -3  # third-to-last hidden layer (Table 4's best)
    scales: tuple[int, ...] = (64, 512, 4096)
    mask_prob: float = 0.08  # HuBERT's masking: span starts with this probability ...
    mask_span: int = 10  # ... and covers this many frames
    use_gmp: bool = True
    loss: str = "ams"  # "ams" | "ce" (stage 3)
    am_s: float = 30.0
    am_m: float = 0.2
    freeze_frontend: bool = True

    @classmethod
    def paper(cls, **kw) -> "GMPATLConfig":
        return cls(**kw)

    @classmethod
    def tiny(cls, **kw) -> "GMPATLConfig":
        return cls(**{"backbone": "random-tiny", "d_lstm": 8, "d_proj": 8, "scales": (2, 3, 4), "mask_span": 2,
                      "mask_prob": 0.3, **kw})

    def variant(self, name: str) -> "GMPATLConfig":
        table = {"full": (True, "ams"), "ce": (True, "ce"), "no_gmp": (False, "ams"), "no_gmp_ce": (False, "ce")}
        if name not in table:
            raise ValueError(f"unknown gmp_atl variant {name!r}; known: {VARIANTS}")
        use_gmp, loss = table[name]
        return replace(self, use_gmp=use_gmp, loss=loss)

    def fit_defaults(self) -> dict:
        return {"optimizer": "adam", "lr": 1e-4, "lr_backbone": None, "warmup": 0.0, "batch_size": 64,
                "weight_decay": 0.0}

    def to_dict(self) -> dict:
        return asdict(self)


class LinearP(nn.Sequential):
    """The paper's linear projection module: two linear layers and one ReLU."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int):
        super().__init__(nn.Linear(d_in, d_hidden), nn.ReLU(), nn.Linear(d_hidden, d_out))


class UtteranceHead(nn.Module):
    """BiLSTM -> mean average pooling over valid frames -> LinearP."""

    def __init__(self, d_in: int, d_lstm: int, d_proj: int):
        super().__init__()
        self.lstm = nn.LSTM(d_in, d_lstm, batch_first=True, bidirectional=True)
        self.proj = LinearP(2 * d_lstm, d_proj, d_proj)

    def forward(self, z: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        h = run_lstm(self.lstm, z, lengths)
        return self.proj(masked_mean(h, length_mask(lengths, z.shape[1])))


def span_mask(b: int, t: int, lengths: torch.Tensor, prob: float, span: int, generator=None) -> torch.Tensor:
    """HuBERT/wav2vec2-style span mask ``[b, t]``: each valid frame starts a masked span with probability ``prob``;
    at least one span per item. Never masks padding."""
    dev = lengths.device
    starts = torch.rand(b, t, generator=generator).to(dev) < prob
    valid = length_mask(lengths, t)
    starts &= valid
    none = ~starts.any(1)
    if bool(none.any()):  # force one span at a random valid position
        pos = (torch.rand(b, generator=generator).to(dev) * lengths.clamp(min=1)).long()
        starts[none, pos[none]] = True
    mask = torch.zeros(b, t, dtype=torch.bool, device=dev)
    for k in range(span):
        mask[:, k:] |= starts[:, : t - k] if k else starts
    return mask & valid


class GMPATL(nn.Module):
    name = "gmp_atl"

    def __init__(self, config: GMPATLConfig, backbone: nn.Module | None = None):
        super().__init__()
        self.config = cfg = config
        self.backbone = backbone if backbone is not None else build_backbone(cfg.backbone)
        if cfg.freeze_frontend and hasattr(self.backbone, "freeze_frontend"):
            self.backbone.freeze_frontend()
        d = self.backbone.d_model
        # stage 1: emotion + gender multi-task
        self.head1 = UtteranceHead(d, cfg.d_lstm, cfg.d_proj)
        self.emo1 = nn.Linear(cfg.d_proj, cfg.n_classes)
        self.gender1 = nn.Linear(cfg.d_proj, cfg.n_genders)
        # stage 2: one LinearP per pseudo-label scale
        self.frame_heads = nn.ModuleList(LinearP(d, d, k) for k in cfg.scales)
        # stage 3: fresh utterance head; AM-Softmax class weights (or a linear CE classifier)
        self.head3 = UtteranceHead(d, cfg.d_lstm, cfg.d_proj)
        self.class_weight = nn.Parameter(torch.randn(cfg.n_classes, cfg.d_proj) * 0.01)
        self.class_bias = nn.Parameter(torch.zeros(cfg.n_classes))  # used by the CE classifier only
        self.stage = 3

    def set_stage(self, stage: int) -> None:
        if stage not in (1, 2, 3):
            raise ValueError(f"stage must be 1, 2 or 3, got {stage}")
        self.stage = stage

    def set_scales(self, scales: tuple[int, ...]) -> None:
        """Resize the stage-2 heads when k-means had to use fewer centres than configured (tiny corpora)."""
        d = self.backbone.d_model
        self.frame_heads = nn.ModuleList(LinearP(d, d, k) for k in scales).to(self.class_weight.device)

    def backbone_parameters(self):
        return (p for p in self.backbone.parameters() if p.requires_grad)

    def head_parameters(self):
        keep = {1: ("head1.", "emo1.", "gender1."), 2: ("frame_heads.",),
                3: ("head3.", "class_weight", "class_bias")}[self.stage]
        return (p for n, p in self.named_parameters() if n.startswith(keep) and p.requires_grad)

    def forward(self, batch: Batch) -> dict:
        cfg = self.config
        if self.stage == 2:
            t = frames_of(self.backbone, batch)
            valid = out_lengths(self.backbone, batch).clamp(max=t)
            mask = span_mask(len(batch), t, valid, cfg.mask_prob, cfg.mask_span) if self.training else None
            hidden, lengths = encode(self.backbone, batch, mask_time=mask)
            z = hidden[-1]
            return {"frame_logits": [h(z) for h in self.frame_heads], "mask": mask, "lengths": lengths,
                    "hidden": hidden}
        hidden, lengths = encode(self.backbone, batch)
        z = hidden[-1]
        if self.stage == 1:
            e = self.head1(z, lengths)
            return {"logits": self.emo1(e), "gender_logits": self.gender1(e), "embedding": e, "hidden": hidden,
                    "lengths": lengths}
        e = self.head3(z, lengths)
        if cfg.loss == "ams":
            logits = am_softmax_logits(e, self.class_weight, s=cfg.am_s)
        else:
            logits = nn.functional.linear(e, self.class_weight, self.class_bias)
        return {"logits": logits, "embedding": e, "hidden": hidden, "lengths": lengths}

    def losses(self, batch: Batch, out: dict) -> dict:
        cfg = self.config
        if self.stage == 1:
            emo = cfg.alpha_e * nn.functional.cross_entropy(out["logits"].float(), batch.labels)
            gen = (1 - cfg.alpha_e) * nn.functional.cross_entropy(out["gender_logits"].float(), batch.gender)
            return {"emotion": emo, "gender": gen, "total": emo + gen}
        if self.stage == 2:
            if batch.frame_targets is None:
                raise ValueError("stage 2 needs frame pseudo-labels (batch.frame_targets)")
            mask = out["mask"]
            if mask is None:
                mask = length_mask(out["lengths"], out["frame_logits"][0].shape[1])
            terms = {}
            for s, logits in enumerate(out["frame_logits"]):
                tgt = batch.frame_targets[:, : logits.shape[1], s]
                terms[f"gmp{s}"] = masked_prediction_loss(logits.float(), tgt, mask[:, : logits.shape[1]])
            terms["total"] = sum(terms.values())
            return terms
        if cfg.loss == "ams":
            loss = am_softmax_loss(out["embedding"].float(), self.class_weight.float(), batch.labels,
                                   s=cfg.am_s, m=cfg.am_m)
            return {"am_softmax": loss, "total": loss}
        ce = nn.functional.cross_entropy(out["logits"].float(), batch.labels)
        return {"ce": ce, "total": ce}
