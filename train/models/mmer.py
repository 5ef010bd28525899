"""MMER (Ghosh et al., Interspeech 2023, paper 000): multimodal multi-task speech emotion recognition.

Sec. 3.2 (Multimodal Dynamic Fusion Network) in code:

- ``A``: the speech encoder's last hidden state ``[B, J, d_model]`` (the paper: wav2vec2-base, fine-tuned; trained here:
  Whisper base, :mod:`train.backbones.speech`). ``T``: frozen text-encoder token features ``[B, M, d_text]``
  (the paper: RoBERTa-base; here: MiniLM-L6, 384-d, precomputed into ``batch.text`` / ``batch.text_mask``).
- Both are projected to a common ``d`` by a linear layer each. The paper needs none (both of its encoders are
  768-d, so ``d = 768``); ours differ (512 and 384), so :attr:`MMER.audio_proj` / :attr:`MMER.text_proj` are an
  addition, and ``A`` / ``T`` below denote the projected sequences.
- Multimodal Interaction Module: three Cross-Modal Encoder blocks (:class:`CrossModalEncoder`; a generic post-LN
  transformer layer whose h-head attention takes its queries from one modality and keys/values from the other,
  eq. 1): block B ``P = CME(q=A, kv=T)``; block C ``R = CME(q=T, kv=P)`` (speech-aware word representations);
  block D ``Q = CME(q=T, kv=A)`` (word-aware speech representations).
- Acoustic gate E (eq. 2): ``g = sigmoid(W_g [R; Q] + b_g)``, ``Q = g * Q``; then ``M = l([Q; R])`` (2d -> d).

Sec. 3.3 (multi-task learning):

- CE (eq. 3): ``logits = W_p [mp(A); mp(M)] + b_p`` with ``mp`` masked max pooling over time (frames for ``A``,
  tokens for ``M``). ``[mp(A); mp(M)]`` is the ``"embedding"``.
- CTC (eq. 4): a linear layer on the *unpooled* encoder output (before the projection to ``d``, i.e. on the
  speech encoder's own hidden state, as the paper's ``W_c`` acts on wav2vec2's ``A``) to ``V = 32`` characters
  (:class:`train.text.CharVocab`; upper-case, no punctuation), against ``batch.chars``.
- SCL (Algorithm 1; Khosla et al.): supervised contrastive loss on the utterance vector ``mp(M)`` with the emotion
  labels (:func:`train.losses.supcon_loss`, which L2-normalises).
- ACL (Algorithm 1): the same network is run on the augmented view ``batch.aug`` and
  :func:`train.losses.instance_contrastive_loss` (``einsum(R, R_aug^T) / tau`` + cross-entropy against ``arange``)
  ties each ``mp(M)`` to its augmented ``mp(M_aug)``. The paper's view is a back-translated transcript re-synthesised
  by a zero-shot speaker-conditioned TTS in another speaker's voice. Here the view is a TTS re-synthesis of the
  transcript by another voice, carrying its own mel and text features; no machine-translation model exists offline,
  so **the augmented view's text is the original transcript unless a text augmenter is supplied upstream** (by
  whatever builds ``batch.aug``). Without ``batch.aug`` the ACL term is absent.
- ``L = L_CE + alpha L_CTC + beta L_SCL + gamma L_ACL`` with alpha = beta = gamma = 0.1 (the paper's grid-searched
  values). Ablations (Table 1) are config variants: :meth:`MMERConfig.variant` ``"full" | "no_ctc" | "no_scl" |
  "no_acl"`` set one weight to 0; a zero-weighted term is not computed and is absent from :meth:`MMER.losses`.

Paper hyper-parameters: d = 768, batch 4 with gradient accumulation 4, 100 epochs, constant lr 1e-5
(:meth:`MMERConfig.fit_defaults`); ~228 M parameters in all (wav2vec2-base + RoBERTa-base + the fusion network).

Not given in the paper, chosen here (also listed in :data:`GUESSED`): the number of attention heads h (8); the
CME feed-forward width (4d = 3072, the ratio of the generic transformer the paper cites and of BERT/RoBERTa-base);
the FFN activation (ReLU, as in that transformer); dropout 0.1 in the CME blocks; the contrastive temperature tau
(0.1); which pooling gives the contrastive "representation of M" (the same max pooling ``mp(M)`` as eq. 3); the
optimiser (AdamW); freezing the speech encoder's convolutional front end (the usual wav2vec2 fine-tuning recipe).
Eq. 3's text calls ``mp`` both max pooling and "attention pooling"; max pooling is used.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.speech import build_backbone, encode
from .common import Batch, config_method, length_mask, masked_max

VARIANTS = ("full", "no_ctc", "no_scl", "no_acl")

GUESSED = {
    "n_heads": "8 (h is not given)",
    "ffn_dim": "4 * d = 3072 (not given; the cited transformer's / RoBERTa-base's ratio)",
    "ffn_activation": "ReLU (not given)",
    "dropout": "0.1 in the CME blocks (not given)",
    "tau": "0.1 for SCL and ACL (not given)",
    "contrastive_pooling": "max pooling of M over tokens, as in eq. 3 (not given)",
    "projections": "linear A -> d and T -> d (the paper has none: both its encoders are 768-d)",
    "ctc_input": "the speech encoder's own hidden state, before the projection to d",
    "optimizer": "AdamW (only lr 1e-5 constant is given)",
    "freeze_frontend": "the speech encoder's convolutional front end is frozen (not stated)",
}


@dataclass(frozen=True)
class MMERConfig:
    backbone: str = "whisper-base"
    d_text: int = 384  # MiniLM-L6 token features (stand-in for RoBERTa-base, 768)
    n_classes: int = 4
    vocab_size: int = 32  # train.text.CharVocab, blank = 0
    d: int = 768  # common width of the fusion network (paper: 768 = both encoders' width)
    n_heads: int = 8  # h: not given in the paper
    ffn_dim: int = 3072  # CME feed-forward width: not given; 4d
    dropout: float = 0.1
    alpha_ctc: float = 0.1  # alpha: CTC weight
    beta_scl: float = 0.1  # beta: supervised contrastive weight
    gamma_acl: float = 0.1  # gamma: augmented contrastive weight
    tau: float = 0.1  # contrastive temperature: not given in the paper
    freeze_frontend: bool = True

    @classmethod
    def paper(cls, **kw) -> MMERConfig:
        return cls(**kw)

    @classmethod
    def tiny(cls, **kw) -> MMERConfig:
        return cls(**{"backbone": "random-tiny", "d_text": 16, "d": 16, "n_heads": 2, "ffn_dim": 32,
                      "dropout": 0.0, **kw})

    @config_method
    def variant(self, name: str) -> MMERConfig:
        """The paper's model (``"full"``) or one of its ablations (Table 1): ``"no_ctc" | "no_scl" | "no_acl"``."""
        paper = {f.name: f.default for f in fields(MMERConfig) if f.name in ("alpha_ctc", "beta_scl", "gamma_acl")}
        if name == "full":
            return replace(self, **paper)
        zero = {"no_ctc": "alpha_ctc", "no_scl": "beta_scl", "no_acl": "gamma_acl"}.get(name)
        if zero is None:
            raise ValueError(f"unknown mmer variant {name!r}; known: {VARIANTS}")
        return replace(self, **{**paper, zero: 0.0})

    def fit_defaults(self) -> dict:
        """Sec. 4: batch 4 with gradient accumulation 4 (= one batch of 16 here), 100 epochs, lr 1e-5 kept constant."""
        return {"optimizer": "adamw", "lr": 1e-5, "lr_backbone": None, "warmup": 0.0, "batch_size": 4, "epochs": 100,
                "schedule": "constant"}

    def to_dict(self) -> dict:
        return asdict(self)


def _key_padding(valid: torch.Tensor) -> torch.Tensor:
    """``key_padding_mask`` (True = ignore) from a ``[B, S]`` valid mask; an item with no valid key attends to all
    (its output is meaningless but finite, instead of NaN)."""
    pad = ~valid.bool()
    return pad & ~pad.all(dim=1, keepdim=True)


class CrossModalEncoder(nn.Module):
    """One CME block: a post-LN transformer layer with cross-modal h-head attention (eq. 1).

    ``x = LN(q + MHA(q, kv, kv))``; ``out = LN(x + FFN(x))``.
    """

    def __init__(self, d: int, n_heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, n_heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, ffn_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, d))
        self.norm2 = nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)

    def forward(self, q: torch.Tensor, kv: torch.Tensor, kv_valid: torch.Tensor) -> torch.Tensor:
        a, _ = self.attn(q, kv, kv, key_padding_mask=_key_padding(kv_valid), need_weights=False)
        x = self.norm1(q + self.drop(a))
        return self.norm2(x + self.drop(self.ffn(x)))


class MMER(nn.Module):
    name = "mmer"

    def __init__(self, config: MMERConfig, backbone: nn.Module | None = None):
        super().__init__()
        self.config = c = config
        self.backbone = backbone if backbone is not None else build_backbone(config.backbone)
        if c.freeze_frontend and hasattr(self.backbone, "freeze_frontend"):
            self.backbone.freeze_frontend()
        d_audio = self.backbone.d_model
        self.audio_proj = nn.Linear(d_audio, c.d)
        self.text_proj = nn.Linear(c.d_text, c.d)
        self.cme_b = CrossModalEncoder(c.d, c.n_heads, c.ffn_dim, c.dropout)  # q = A, kv = T -> P
        self.cme_c = CrossModalEncoder(c.d, c.n_heads, c.ffn_dim, c.dropout)  # q = T, kv = P -> R
        self.cme_d = CrossModalEncoder(c.d, c.n_heads, c.ffn_dim, c.dropout)  # q = T, kv = A -> Q
        self.gate = nn.Linear(2 * c.d, c.d)  # W_g, B_g (eq. 2)
        self.fuse = nn.Linear(2 * c.d, c.d)  # l(.): [Q; R] -> d
        self.classifier = nn.Linear(2 * c.d, c.n_classes)  # W_p, B_p (eq. 3)
        self.ctc_head = nn.Linear(d_audio, c.vocab_size)  # W_c, B_c (eq. 4)

    def backbone_parameters(self):
        return (p for p in self.backbone.parameters() if p.requires_grad)

    def head_parameters(self):
        return (p for n, p in self.named_parameters() if not n.startswith("backbone.") and p.requires_grad)

    def fusion(self, batch: Batch) -> dict:
        """The Multimodal Dynamic Fusion Network on one view: pooled vectors, CTC log-probs, lengths."""
        if batch.text is None or batch.text_mask is None:
            raise ValueError("mmer needs text features (batch.text, batch.text_mask)")
        hidden, lengths = encode(self.backbone, batch)
        h = hidden[-1]  # [B, J, d_model]
        a_valid = length_mask(lengths, h.shape[1])
        t_valid = batch.text_mask.bool()
        a = self.audio_proj(h)  # A [B, J, d]
        t = self.text_proj(batch.text.to(a.dtype))  # T [B, M, d]
        p = self.cme_b(a, t, t_valid)
        r = self.cme_c(t, p, a_valid)  # speech-aware word representations
        q = self.cme_d(t, a, a_valid)  # word-aware speech representations
        q = torch.sigmoid(self.gate(torch.cat([r, q], dim=-1))) * q  # acoustic gate
        m = self.fuse(torch.cat([q, r], dim=-1))  # M [B, M, d]
        za, zm = masked_max(a, a_valid), masked_max(m, t_valid)
        return {"za": za, "z": zm, "hidden": h, "lengths": lengths}

    def forward(self, batch: Batch) -> dict:
        f = self.fusion(batch)
        emb = torch.cat([f["za"], f["z"]], dim=-1)
        out = {
            "logits": self.classifier(emb),
            "embedding": emb,
            "z": f["z"],
            "ctc_log_probs": torch.log_softmax(self.ctc_head(f["hidden"]).float(), dim=-1),
            "lengths": f["lengths"],
        }
        if batch.aug is not None and self.config.gamma_acl > 0:
            out["z_aug"] = self.fusion(batch.aug)["z"]
        return out

    def losses(self, batch: Batch, out: dict) -> dict:
        from ..losses import ctc_loss, instance_contrastive_loss, supcon_loss

        c = self.config
        ce = F.cross_entropy(out["logits"].float(), batch.labels)
        terms = {"ce": ce}
        if c.alpha_ctc > 0:
            if batch.chars is None or batch.char_lengths is None:
                raise ValueError("mmer with alpha_ctc > 0 needs transcripts (batch.chars, batch.char_lengths)")
            terms["ctc"] = c.alpha_ctc * ctc_loss(out["ctc_log_probs"], batch.chars, out["lengths"],
                                                  batch.char_lengths)
        if c.beta_scl > 0:
            terms["scl"] = c.beta_scl * supcon_loss(out["z"], batch.labels, tau=c.tau)
        if c.gamma_acl > 0 and "z_aug" in out:
            terms["acl"] = c.gamma_acl * instance_contrastive_loss(out["z"], out["z_aug"], tau=c.tau)
        terms["total"] = sum(terms.values())
        return terms
