"""CTA-RNN (Chen & Zhang, paper 002): channel- and temporal-wise attention RNN over ASR-encoder layer embeddings.

Sec. 3 of the paper, in code:
- The embeddings of the N encoder blocks, ``E`` in R^{N x m x d_e}, go through N *independent* RNNs
  (:class:`GroupedGRU`; paper: 2-layer BiGRU, 256 units, dropout 0.3) -> ``H`` in R^{N x m x d_h}.
- Two anchors: the channel-wise mean ``H~_c`` (m x d_h) and the temporal mean ``H~_t`` (N x d_h).
- Per head j (paper: 8 heads x 64): alpha_t,j = softmax(W^Q_t,j (W^K_t,j H~_t^T) / sqrt(d_a))  (eq. 1, over the N
  channels) and alpha_c,j likewise over the m frames (eq. 2); A_j = alpha_c,j^T alpha_t,j (eq. 3, m x N);
  v_j = sum over (m, N) of (W^V_j H^T) (.) A_j (eq. 4, in R^{d_a}); v = concat_j v_j -> classifier.

The RNNs are written out (not ``nn.GRU``) so that the N channels x 2 directions run as one batched matmul per step and
the graph exports to ONNX and ExecuTorch/XNNPACK as plain matmuls.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch
from torch import nn

from edgeser.constants import LEVEL_PEAK


@dataclass(frozen=True)
class CTARNNConfig:
    n_channels: int = 5  # N: encoder blocks used (embedding output + each layer)
    d_in: int = 384  # d_e
    # defaults = the on-device student (chosen by 5-fold CV, benchmarks/results/student_cv*.json); paper(): the paper
    d_rnn: int = 32  # hidden units per direction
    rnn_layers: int = 1
    bidirectional: bool = True
    n_heads: int = 4  # n_alpha
    d_head: int = 16  # d_alpha
    n_classes: int = 4
    dropout: float = 0.5
    time_pool: int = 2  # average-pool encoder frames by this factor before the RNNs
    time_norm: bool = False  # normalise each feature over the window's frames (per channel) before the RNNs
    # test-time adaptive normalisation (issue "beyond the training corpus"): the head sees the encoder features minus
    # a running speaker/session mean mu = (prior * ref_mean + sum of past window means) / (prior + past windows),
    # the sums decaying by ``adapt_decay`` per window; ref_mean = the training windows' mean (a buffer).
    adapt: bool = False
    adapt_prior: float = 8.0  # weight of ref_mean, in windows (the warm-up: 8 windows = 4 s of speech)
    adapt_decay: float = 0.995  # per window (0.5 s): the statistics' memory is ~1 / (1 - decay) windows (100 s)
    # front end: move each window's log-mel peak to LEVEL_PEAK before Whisper's normalisation, so that the gain of
    # the recording (microphone distance, input level) cancels out of everything the encoder sees
    level_norm: bool = False
    # "rnn": per-channel BiGRUs + channel/temporal attention (the paper's head); "stats": each channel's mean and
    # standard deviation over the window's frames + multi-head attention over channels + an MLP (d_hidden units)
    pooling: str = "rnn"
    d_hidden: int = 128
    n_aux: int = 0  # auxiliary regression outputs trained beside the classes (arousal, valence); not exported

    @classmethod
    def paper(cls, n_channels: int = 12, d_in: int = 512, n_classes: int = 4) -> "CTARNNConfig":
        return cls(n_channels=n_channels, d_in=d_in, d_rnn=256, rnn_layers=2, n_heads=8, d_head=64,
                   n_classes=n_classes, dropout=0.3, time_pool=1)

    @classmethod
    def tiny(cls, n_channels: int = 3, d_in: int = 16, n_classes: int = 4) -> "CTARNNConfig":
        return cls(n_channels=n_channels, d_in=d_in, d_rnn=8, rnn_layers=1, n_heads=2, d_head=4,
                   n_classes=n_classes, dropout=0.0, time_pool=1)

    def to_dict(self) -> dict:
        return asdict(self)


class GroupedGRU(nn.Module):
    """G independent single-layer GRUs (G = channels x directions) over [G, B, T, D] inputs, batched per step.

    Gate equations as ``torch.nn.GRU`` (r, z, n order; n = tanh(W_in x + b_in + r * (W_hn h + b_hn))).
    Reverse-direction groups are run on time-flipped inputs by the caller.
    """

    def __init__(self, groups: int, d_in: int, d_hidden: int):
        super().__init__()
        self.groups, self.d_hidden = groups, d_hidden
        k = 1.0 / math.sqrt(d_hidden)
        self.w_ih = nn.Parameter(torch.empty(groups, d_in, 3 * d_hidden).uniform_(-k, k))
        self.w_hh = nn.Parameter(torch.empty(groups, d_hidden, 3 * d_hidden).uniform_(-k, k))
        self.b_ih = nn.Parameter(torch.empty(groups, 1, 3 * d_hidden).uniform_(-k, k))
        self.b_hh = nn.Parameter(torch.empty(groups, 1, 3 * d_hidden).uniform_(-k, k))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [G, B, T, D] -> [G, B, T, H]
        g, b, t, _ = x.shape
        hd = self.d_hidden
        xi = torch.matmul(x.reshape(g, b * t, -1), self.w_ih).reshape(g, b, t, 3 * hd) + self.b_ih.unsqueeze(2)
        h = x.new_zeros(g, b, hd)
        outs = []
        for step in range(t):
            gi = xi[:, :, step]
            gh = torch.matmul(h, self.w_hh) + self.b_hh
            r = torch.sigmoid(gi[..., :hd] + gh[..., :hd])
            z = torch.sigmoid(gi[..., hd : 2 * hd] + gh[..., hd : 2 * hd])
            n = torch.tanh(gi[..., 2 * hd :] + r * gh[..., 2 * hd :])
            h = (1.0 - z) * n + z * h
            outs.append(h)
        return torch.stack(outs, dim=2)


class ChannelRNNs(nn.Module):
    """N independent (bi)GRU stacks, one per encoder channel: [B, N, T, D] -> [B, N, T, d_h]."""

    def __init__(self, n: int, d_in: int, d_rnn: int, layers: int, bidirectional: bool, dropout: float):
        super().__init__()
        self.n, self.dirs = n, 2 if bidirectional else 1
        self.layers = nn.ModuleList(
            GroupedGRU(n * self.dirs, d_in if i == 0 else d_rnn * self.dirs, d_rnn) for i in range(layers)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        x = e.transpose(0, 1)  # [N, B, T, D]
        for i, gru in enumerate(self.layers):
            if i:
                x = self.drop(x)
            if self.dirs == 2:
                inp = torch.cat([x, x.flip(2)], dim=0)  # [2N, B, T, D]
                y = gru(inp)
                x = torch.cat([y[: self.n], y[self.n :].flip(2)], dim=-1)  # [N, B, T, 2H]
            else:
                x = gru(x)
        return x.transpose(0, 1)  # [B, N, T, d_h]


class ChannelTemporalAttention(nn.Module):
    """Eqs. (1)-(4): multi-head attention over channels and time applied to the full H, output [B, heads*d_head]."""

    def __init__(self, d_h: int, n_heads: int, d_head: int):
        super().__init__()
        self.n_heads, self.d_head = n_heads, d_head
        self.k_t = nn.Linear(d_h, n_heads * d_head, bias=False)  # W^K_t
        self.q_t = nn.Parameter(torch.randn(n_heads, d_head) / math.sqrt(d_head))  # W^Q_t
        self.k_c = nn.Linear(d_h, n_heads * d_head, bias=False)  # W^K_c
        self.q_c = nn.Parameter(torch.randn(n_heads, d_head) / math.sqrt(d_head))  # W^Q_c
        self.v = nn.Linear(d_h, n_heads * d_head, bias=False)  # W^V

    def forward(self, h: torch.Tensor):  # h: [B, N, m, d_h]
        b, n, m, _ = h.shape
        nh, da = self.n_heads, self.d_head
        h_t = h.mean(dim=2)  # temporal mean: anchor over channels  [B, N, d_h]
        h_c = h.mean(dim=1)  # channel mean: anchor over time       [B, m, d_h]
        kt = self.k_t(h_t).reshape(b, n, nh, da)
        kc = self.k_c(h_c).reshape(b, m, nh, da)
        a_t = torch.softmax((kt * self.q_t).sum(-1) / math.sqrt(da), dim=1)  # [B, N, heads]  eq. 1
        a_c = torch.softmax((kc * self.q_c).sum(-1) / math.sqrt(da), dim=1)  # [B, m, heads]  eq. 2
        a = a_c.unsqueeze(1) * a_t.unsqueeze(2)  # A_j = alpha_c^T alpha_t      [B, N, m, heads]  eq. 3
        val = self.v(h).reshape(b, n, m, nh, da)  # W^V H^T
        out = (val * a.unsqueeze(-1)).sum(dim=(1, 2))  # eq. 4: [B, heads, d_head]
        return out.reshape(b, nh * da), a


class CTARNN(nn.Module):
    """Head: per-channel LayerNorm -> time pooling -> N independent BiGRUs -> channel/temporal attention -> linear."""

    def __init__(self, cfg: CTARNNConfig):
        super().__init__()
        self.cfg = cfg
        d_h = cfg.d_rnn * (2 if cfg.bidirectional else 1)
        self.drop = nn.Dropout(cfg.dropout)
        if cfg.pooling not in ("rnn", "stats"):
            raise ValueError(f"pooling must be 'rnn' or 'stats', got {cfg.pooling!r}")
        if cfg.pooling == "rnn":
            self.norm = nn.LayerNorm(cfg.d_in)
            self.rnns = ChannelRNNs(cfg.n_channels, cfg.d_in, cfg.d_rnn, cfg.rnn_layers, cfg.bidirectional,
                                    cfg.dropout)
            self.attn = ChannelTemporalAttention(d_h, cfg.n_heads, cfg.d_head)
            self.out = nn.Linear(cfg.n_heads * cfg.d_head, cfg.n_classes)
            d_vec = cfg.n_heads * cfg.d_head
        else:
            self.stat_norm = nn.LayerNorm(2 * cfg.d_in)
            self.k_c = nn.Linear(2 * cfg.d_in, cfg.n_heads * cfg.d_head)
            self.q_c = nn.Parameter(torch.randn(cfg.n_heads, cfg.d_head) / math.sqrt(cfg.d_head))
            self.v = nn.Linear(2 * cfg.d_in, cfg.n_heads * cfg.d_head)
            self.hidden = nn.Linear(cfg.n_heads * cfg.d_head, cfg.d_hidden)
            self.out = nn.Linear(cfg.d_hidden, cfg.n_classes)
            d_vec = cfg.d_hidden
        if cfg.n_aux:
            self.aux = nn.Linear(d_vec, cfg.n_aux)
        if cfg.adapt:
            self.register_buffer("ref_mean", torch.zeros(cfg.n_channels, cfg.d_in))

    def pool(self, e: torch.Tensor) -> torch.Tensor:
        """[B, N, T, D] -> [B, N, T // p, D] (average over ``time_pool`` frames)."""
        p = self.cfg.time_pool
        if p == 1:
            return e
        b, n, t, d = e.shape
        return e[:, :, : t - t % p].reshape(b, n, t // p, p, d).mean(dim=3)

    def forward(self, e: torch.Tensor, pooled: bool = False, mu: torch.Tensor | None = None,
                with_aux: bool = False):
        """``e`` [B, N, T, D]; ``mu`` [B, N, D]: the adaptation mean to subtract (adaptive heads; default: ref_mean).
        ``with_aux``: return ``(logits, aux)`` (the auxiliary regression outputs, heads with ``n_aux``)."""
        if not pooled:
            e = self.pool(e)
        if self.cfg.pooling == "stats":
            return self.from_stats(e.mean(dim=2), torch.sqrt(e.var(dim=2, unbiased=False) + 1e-5), mu, with_aux)
        if self.cfg.adapt:
            e = e - (self.ref_mean.unsqueeze(0) if mu is None else mu).unsqueeze(2)
        if self.cfg.time_norm:  # per-window mean/variance normalisation over time (speaker/channel offsets)
            e = (e - e.mean(dim=2, keepdim=True)) / torch.sqrt(e.var(dim=2, keepdim=True, unbiased=False) + 1e-5)
        h = self.rnns(self.norm(e))
        v, _ = self.attn(h)
        logits = self.out(self.drop(v))
        return (logits, self.aux(v)) if with_aux else logits

    def from_stats(self, mean: torch.Tensor, std: torch.Tensor, mu: torch.Tensor | None = None,
                   with_aux: bool = False):
        """The "stats" head on each channel's mean and std over the window's frames (``mean``, ``std``: [B, N, D]);
        adaptation shifts the means only (subtracting mu from every frame leaves the std unchanged)."""
        if self.cfg.adapt:
            mean = mean - (self.ref_mean.unsqueeze(0) if mu is None else mu)
        s = self.stat_norm(torch.cat([mean, std], dim=-1))  # [B, N, 2D]
        b, n, _ = s.shape
        nh, da = self.cfg.n_heads, self.cfg.d_head
        a = torch.softmax((self.k_c(s).reshape(b, n, nh, da) * self.q_c).sum(-1) / math.sqrt(da), dim=1)  # [B, N, H]
        v = (self.v(s).reshape(b, n, nh, da) * a.unsqueeze(-1)).sum(dim=1).reshape(b, nh * da)
        h = self.drop(torch.nn.functional.gelu(self.hidden(self.drop(v))))
        logits = self.out(h)
        return (logits, self.aux(h)) if with_aux else logits


def whisper_normalize(logmel: torch.Tensor, dynamic_range: float = 8.0, level_norm: bool = False) -> torch.Tensor:
    """Whisper's per-input normalisation of log10-mel [B, 80, T] (same as edgeser.features.whisper_normalize); with
    ``level_norm`` the input's peak is first moved to LEVEL_PEAK, which makes the result independent of gain."""
    peak = logmel.amax(dim=(1, 2), keepdim=True)
    x = torch.maximum(logmel, peak - dynamic_range)
    if level_norm:
        x = x - peak + LEVEL_PEAK
    return (x + 4.0) / 4.0


class EncoderCTARNN(nn.Module):
    """The on-device model: raw log10-mel window [B, 80, W] -> normalise -> Whisper encoder (all hidden states)
    -> CTA-RNN head -> logits [B, classes]. A pure function of its input (no state)."""

    def __init__(self, encoder: nn.Module, head: CTARNN, layers: tuple[int, ...] | None = None):
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.layers = layers

    def embed(self, logmel: torch.Tensor) -> torch.Tensor:
        """Pooled, stacked encoder hidden states [B, N, T', D] (what the head sees; cached for head training)."""
        hs = self.encoder(whisper_normalize(logmel, level_norm=self.head.cfg.level_norm),
                          output_hidden_states=True).hidden_states
        if self.layers is not None:
            hs = [hs[i] for i in self.layers]
        return self.head.pool(torch.stack(list(hs), dim=1))

    def forward(self, logmel: torch.Tensor, norm_sum: torch.Tensor | None = None,
                norm_count: torch.Tensor | None = None):
        """Stateless heads: ``logmel -> logits``. Adaptive heads (``cfg.adapt``): ``(logmel, norm_sum [1, N, D],
        norm_count [1, 1]) -> (logits, norm_sum_out, norm_count_out)``, a pure function: the window is normalised
        with the statistics of the windows before it, then its own mean is added to the (decayed) statistics."""
        e = self.embed(logmel)
        c = self.head.cfg
        if not c.adapt:
            return self.head(e, pooled=True)
        if norm_sum is None:
            norm_sum = e.new_zeros(e.shape[0], e.shape[1], e.shape[3])
            norm_count = e.new_zeros(e.shape[0], 1)
        mu = (c.adapt_prior * self.head.ref_mean.unsqueeze(0) + norm_sum) / (c.adapt_prior + norm_count).unsqueeze(-1)
        logits = self.head(e, pooled=True, mu=mu)
        return logits, c.adapt_decay * norm_sum + e.mean(dim=2), c.adapt_decay * norm_count + 1.0


# ---------------------------------------------------------------------------------------------------------------------
# The full-size teacher (paper sec. 3-4): a frozen ASR encoder, every block's embeddings, and the paper's baselines.
# ---------------------------------------------------------------------------------------------------------------------

TEACHER_VARIANTS = ("full", "wf", "ef", "lf")


@dataclass(frozen=True)
class CTARNNTeacherConfig:
    """``fusion``: "cta" (CTA-RNN, the paper's method), "wf" (WF-RNN: learned weighted average of the blocks), "ef"
    (EF-RNN: blocks stacked along the feature axis), "lf" (LF-RNN: one RNN-MHSA per block, vectors concatenated).

    The encoder is frozen (sec. 3.1: "we fix the weights of a pre-trained ASR encoder"). ``layers``: which hidden
    states feed the head (indices into embedding output + blocks; default: every block's output, as E^(1..N)).
    Sec. 4.2.1: 2-layer BiGRU, 256 units, dropout 0.3; 8 heads x 64; Adam 1e-3, batch 32, 50 epochs.
    """

    backbone: str = "whisper-base"
    n_classes: int = 4
    fusion: str = "cta"
    layers: tuple[int, ...] | None = None  # None: blocks 1..N (not the convolutional embedding output)
    d_rnn: int = 256
    rnn_layers: int = 2
    n_heads: int = 8
    d_head: int = 64
    dropout: float = 0.3

    @classmethod
    def paper(cls, **kw) -> "CTARNNTeacherConfig":
        return cls(**kw)

    @classmethod
    def tiny(cls, **kw) -> "CTARNNTeacherConfig":
        return cls(**{"backbone": "random-tiny", "d_rnn": 8, "rnn_layers": 1, "n_heads": 2, "d_head": 4,
                      "dropout": 0.0, **kw})

    def variant(self, name: str) -> "CTARNNTeacherConfig":
        fusion = {"full": "cta", "wf": "wf", "ef": "ef", "lf": "lf"}.get(name)
        if fusion is None:
            raise ValueError(f"unknown cta_rnn variant {name!r}; known: {TEACHER_VARIANTS}")
        return replace(self, fusion=fusion)

    def fit_defaults(self) -> dict:
        return {"optimizer": "adam", "lr": 1e-3, "lr_backbone": 0.0, "warmup": 0.0, "batch_size": 32,
                "weight_decay": 0.0}

    def to_dict(self) -> dict:
        return asdict(self)


class _MaskedCTAttention(ChannelTemporalAttention):
    """Eqs. (1)-(4) over variable-length utterances: padded frames get no temporal attention and no anchor weight."""

    def forward(self, h: torch.Tensor, mask: torch.Tensor):  # h: [B, N, m, d_h], mask: [B, m]
        b, n, m, _ = h.shape
        nh, da = self.n_heads, self.d_head
        w = mask.to(h.dtype)
        h_t = (h * w[:, None, :, None]).sum(2) / w.sum(1).clamp(min=1)[:, None, None]  # [B, N, d_h]
        h_c = h.mean(dim=1)  # [B, m, d_h]
        kt = self.k_t(h_t).reshape(b, n, nh, da)
        kc = self.k_c(h_c).reshape(b, m, nh, da)
        a_t = torch.softmax((kt * self.q_t).sum(-1) / math.sqrt(da), dim=1)
        s_c = ((kc * self.q_c).sum(-1) / math.sqrt(da)).masked_fill(~mask[..., None], float("-inf"))
        a_c = torch.softmax(s_c, dim=1)
        a = a_c.unsqueeze(1) * a_t.unsqueeze(2)
        val = self.v(h).reshape(b, n, m, nh, da)
        return (val * a.unsqueeze(-1)).sum(dim=(1, 2)).reshape(b, nh * da), a


class _RNNStack(nn.Module):
    """One 2-layer BiGRU (cuDNN) honouring lengths."""

    def __init__(self, d_in: int, d_rnn: int, layers: int, dropout: float):
        super().__init__()
        self.gru = nn.GRU(d_in, d_rnn, num_layers=layers, batch_first=True, bidirectional=True,
                          dropout=dropout if layers > 1 else 0.0)

    def forward(self, x, lengths):
        from .common import run_lstm

        return run_lstm(self.gru, x, lengths)


class CTARNNTeacher(nn.Module):
    """Frozen encoder -> N block embeddings -> CTA-RNN (or a WF/EF/LF-RNN baseline) -> logits."""

    name = "cta_rnn"

    def __init__(self, config: CTARNNTeacherConfig, backbone: nn.Module | None = None):
        super().__init__()
        from ..backbones.speech import build_backbone

        self.config = cfg = config
        self.backbone = backbone if backbone is not None else build_backbone(cfg.backbone)
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.layers = tuple(cfg.layers) if cfg.layers is not None else tuple(range(1, self.backbone.n_layers + 1))
        n, d_in, d_h = len(self.layers), self.backbone.d_model, 2 * cfg.d_rnn
        self.norm = nn.LayerNorm(d_in)
        if cfg.fusion == "cta":
            self.rnns = nn.ModuleList(_RNNStack(d_in, cfg.d_rnn, cfg.rnn_layers, cfg.dropout) for _ in range(n))
            self.attn = _MaskedCTAttention(d_h, cfg.n_heads, cfg.d_head)
            d_out = cfg.n_heads * cfg.d_head
        elif cfg.fusion in ("wf", "ef"):
            if cfg.fusion == "wf":
                self.layer_weights = nn.Parameter(torch.zeros(n))  # the trainable fully connected fusion layer
            self.rnns = nn.ModuleList([_RNNStack(d_in * (n if cfg.fusion == "ef" else 1), cfg.d_rnn,
                                                 cfg.rnn_layers, cfg.dropout)])
            self.attn = _MaskedCTAttention(d_h, cfg.n_heads, cfg.d_head)  # N = 1: plain temporal MHSA pooling
            d_out = cfg.n_heads * cfg.d_head
        elif cfg.fusion == "lf":
            self.rnns = nn.ModuleList(_RNNStack(d_in, cfg.d_rnn, cfg.rnn_layers, cfg.dropout) for _ in range(n))
            self.attns = nn.ModuleList(_MaskedCTAttention(d_h, cfg.n_heads, cfg.d_head) for _ in range(n))
            d_out = n * cfg.n_heads * cfg.d_head
        else:
            raise ValueError(f"unknown fusion {cfg.fusion!r}")
        self.drop = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(d_out, cfg.n_classes)

    def backbone_parameters(self):
        return iter(())

    def head_parameters(self):
        return (p for n, p in self.named_parameters() if not n.startswith("backbone.") and p.requires_grad)

    def train(self, mode: bool = True):
        super().train(mode)
        self.backbone.eval()  # frozen feature extractor: no dropout, ever
        return self

    def forward(self, batch) -> dict:
        from ..backbones.speech import encode
        from .common import length_mask

        with torch.no_grad():
            hidden, lengths = encode(self.backbone, batch)
        e = [self.norm(hidden[i].float()) for i in self.layers]  # N x [B, m, d]
        mask = length_mask(lengths, e[0].shape[1])
        fusion = self.config.fusion
        if fusion == "cta":
            h = torch.stack([rnn(x, lengths) for rnn, x in zip(self.rnns, e)], dim=1)  # [B, N, m, d_h]
            v, _ = self.attn(h, mask)
        elif fusion == "wf":
            w = torch.softmax(self.layer_weights, 0)
            x = sum(wi * xi for wi, xi in zip(w, e))
            v, _ = self.attn(self.rnns[0](x, lengths)[:, None], mask)
        elif fusion == "ef":
            v, _ = self.attn(self.rnns[0](torch.cat(e, dim=-1), lengths)[:, None], mask)
        else:
            v = torch.cat([a(rnn(x, lengths)[:, None], mask)[0] for rnn, a, x in zip(self.rnns, self.attns, e)], -1)
        return {"logits": self.out(self.drop(v)), "embedding": v}

    def losses(self, batch, out: dict) -> dict:
        ce = nn.functional.cross_entropy(out["logits"].float(), batch.labels)
        return {"ce": ce, "total": ce}
