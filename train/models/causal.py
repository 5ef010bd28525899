"""A truly streaming (chunked, causal) Conformer encoder with a streaming classification head.

Everything the model has seen is summarised in a fixed-size state that the caller holds, so the cost of one step
does not depend on how long the stream has run:

    logits, *state = step(mel_chunk, *state)      # mel_chunk [B, 80, chunk_frames] raw log10-mel

Layout (``CausalEncoderConfig.default()``: d 144, 4 blocks, 4 heads, chunks of 20 log-mel frames = 200 ms):

- **Streaming input normalisation.** The input is the raw log10-mel of ``edgeser.features.log_mel`` (what the
  runtime computes). Whisper clamps each window to ``max - 8`` and maps ``x -> (x + 4) / 4``; the window maximum
  is not available causally, so a *running peak* ``m`` is carried in the state: per chunk
  ``m = max(max(chunk), m - peak_decay)`` (``peak_decay`` log10 units per chunk lets it follow a quieter room after
  a loud event; 0.02 per 200 ms = 1 dB/s), and every frame of the chunk becomes ``(max(x, m - 8) + 4) / 4``.
  The initial peak is ``log10(1e-10) = -10``, the feature floor (digital silence), so the first chunk's own
  maximum always wins.
- **Causal subsampling** (as Whisper's stem, made causal): conv1d k3 (80 -> d) + GELU, conv1d k3 stride 2 + GELU:
  20 log-mel frames -> 10 encoder frames (20 ms each). Left context cached: 2 normalised mel frames, 1 conv frame.
- **Conformer blocks** (macaron FFN/2, MHSA, conv module, FFN/2, LayerNorm). Attention of a frame in chunk n sees
  the whole chunk n (so the latency is one chunk) and the ``left_context`` encoder frames before the chunk, nothing
  else; keys/values of those frames are cached per layer (fixed size ``left_context``). Positions are a learned
  per-head relative bias over the (bounded) distance query - key, so there is no absolute position anywhere: the
  model is the same function at frame 10 and at frame 10^6. The conv module's depthwise conv (kernel 15) is causal
  (left-padded) and caches its ``kernel - 1`` previous inputs; LayerNorm replaces Conformer's BatchNorm (per frame,
  no statistics over time).
- **Streaming head.** Per frame a value ``v_t = GELU(W_v h_t)`` and a score ``a_t = w_a . h_t``; the state keeps the
  running softmax pool (running max score, sum of weights, weighted sum of values, rescaled like a streaming
  log-sum-exp), so ``logits = W_o LN(sum_t e^{a_t} v_t / sum_t e^{a_t})`` is attention pooling over *every* frame
  of the utterance so far, at constant cost. ``pool_decay`` < 1 forgets old chunks geometrically (1.0: the whole
  utterance; the caller resets the state at utterance boundaries).

``forward_full(mel)`` runs a whole utterance at once with the same math: dense attention with a block mask that
implements the same chunk + left-context window, zero left padding for the convs. It equals running
``forward_chunk`` chunk after chunk (tests/test_causal.py) -- that is the definition of "streaming output equals
whole-utterance output" here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

NEG = -1e9  # additive mask value: exp underflows to exactly 0 in float32
SILENCE_LOGMEL = -10.0  # log10(LOG_FLOOR): the feature floor, the initial running peak
DYNAMIC_RANGE = 8.0


@dataclass(frozen=True)
class CausalEncoderConfig:
    n_mels: int = 80
    d_model: int = 144
    n_layers: int = 4
    n_heads: int = 4
    ffn_mult: int = 4
    conv_kernel: int = 15
    chunk_frames: int = 20  # log-mel frames per step (200 ms); even (stride-2 subsampling)
    left_context: int = 64  # encoder frames of cached attention context (1.28 s)
    n_classes: int = 4
    d_pool: int = 128
    dropout: float = 0.1
    peak_decay: float = 0.02  # log10 units per chunk the running peak may fall (0.02 / 200 ms = 1 dB/s)
    pool_decay: float = 1.0  # per-chunk forgetting of the pooled head (1.0 = mean over the whole utterance)

    def __post_init__(self):
        if self.chunk_frames % 2 or self.chunk_frames <= 0:
            raise ValueError(f"chunk_frames must be a positive even number, got {self.chunk_frames}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if self.left_context < 1 or self.conv_kernel < 2:
            raise ValueError("left_context must be >= 1 and conv_kernel >= 2")

    @property
    def chunk_out(self) -> int:
        """Encoder frames per chunk."""
        return self.chunk_frames // 2

    @classmethod
    def default(cls, **kw) -> CausalEncoderConfig:
        return cls(**kw)

    @classmethod
    def tiny(cls, **kw) -> CausalEncoderConfig:
        base = {"d_model": 16, "n_layers": 2, "n_heads": 2, "ffn_mult": 2, "conv_kernel": 5, "chunk_frames": 8,
                "left_context": 12, "d_pool": 8, "dropout": 0.0}
        base.update(kw)
        return cls(**base)

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------------------------------


class FeedForward(nn.Module):
    def __init__(self, d: int, mult: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, d * mult)
        self.fc2 = nn.Linear(d * mult, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(F.silu(self.fc1(self.norm(x))))))


class ChunkAttention(nn.Module):
    """MHSA over [left context | current chunk] with a learned relative-position bias per head."""

    def __init__(self, cfg: CausalEncoderConfig):
        super().__init__()
        d, h = cfg.d_model, cfg.n_heads
        self.h, self.dh, self.C, self.L = h, d // h, cfg.chunk_out, cfg.left_context
        self.norm = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.drop = nn.Dropout(cfg.dropout)
        # distance q - k ranges over [-(C-1), L + C - 1] -> index distance + C - 1 in [0, L + 2C - 2]
        self.rel_bias = nn.Parameter(torch.zeros(h, self.L + 2 * self.C - 1))
        i = torch.arange(self.C)[:, None]
        j = torch.arange(self.L + self.C)[None, :]
        self.register_buffer("chunk_index", (self.L + i - j) + self.C - 1, persistent=False)  # [C, L + C]
        # ``chunk_bias()`` frozen into a constant for export (export.causal.pte_ready); never in the state dict
        self.register_buffer("frozen_bias", None, persistent=False)

    def chunk_bias(self) -> torch.Tensor:
        """[h, C, L + C] relative-position bias of a chunk step (the frozen constant if export froze it)."""
        return self.rel_bias[:, self.chunk_index] if self.frozen_bias is None else self.frozen_bias

    def _heads(self, x):  # [B, T, d] -> [B, h, T, dh]
        b, t, _ = x.shape
        return x.reshape(b, t, self.h, self.dh).transpose(1, 2)

    def _attend(self, q, k, v, bias):  # bias: [B or 1, h, Tq, Tk] additive
        s = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(self.dh)) + bias
        p = self.drop(torch.softmax(s, dim=-1))
        o = torch.matmul(p, v)  # [B, h, Tq, dh]
        b, _, t, _ = o.shape
        return self.out(o.transpose(1, 2).reshape(b, t, self.h * self.dh))

    def forward_chunk(self, x, kv, valid):
        """x [B, C, d]; kv [B, 2, L, d] cached keys/values (pre head split); valid [B, L] (1 = a real frame)."""
        q, k, v = self.qkv(self.norm(x)).chunk(3, dim=-1)
        k_all = torch.cat([kv[:, 0], k], dim=1)  # [B, L + C, d]
        v_all = torch.cat([kv[:, 1], v], dim=1)
        new_kv = torch.stack([k_all[:, -self.L :], v_all[:, -self.L :]], dim=1)
        mask = F.pad(valid, (0, self.C), value=1.0)  # [B, L + C]: the chunk's own frames are always real
        bias = self.chunk_bias().unsqueeze(0) + ((1.0 - mask) * NEG)[:, None, None, :]
        y = self._attend(self._heads(q), self._heads(k_all), self._heads(v_all), bias)
        return y, new_kv

    def forward_full(self, x):
        """x [B, T, d], T a multiple of C: frame i (chunk i // C) sees frames j with chunk(j) <= chunk(i) and
        j >= chunk(i) * C - L."""
        t = x.shape[1]
        q, k, v = self.qkv(self.norm(x)).chunk(3, dim=-1)
        i = torch.arange(t, device=x.device)[:, None]
        j = torch.arange(t, device=x.device)[None, :]
        start = (i // self.C) * self.C
        allowed = (j < start + self.C) & (j >= start - self.L)
        idx = (i - j + self.C - 1).clamp(0, self.L + 2 * self.C - 2)
        bias = self.rel_bias[:, idx] + torch.where(allowed, 0.0, NEG).to(x.dtype)
        return self._attend(self._heads(q), self._heads(k), self._heads(v), bias.unsqueeze(0))


class CausalConvModule(nn.Module):
    """Conformer conv module, causal: LN -> pointwise (2d) -> GLU -> depthwise conv (left-padded) -> LN -> SiLU -> pw."""

    def __init__(self, cfg: CausalEncoderConfig):
        super().__init__()
        d, self.k = cfg.d_model, cfg.conv_kernel
        self.norm = nn.LayerNorm(d)
        self.pw1 = nn.Linear(d, 2 * d)
        self.dw = nn.Conv1d(d, d, self.k, groups=d)
        self.norm2 = nn.LayerNorm(d)
        self.pw2 = nn.Linear(d, d)
        self.drop = nn.Dropout(cfg.dropout)

    def _post(self, y):  # [B, d, T] -> [B, T, d]
        return self.drop(self.pw2(F.silu(self.norm2(y.transpose(1, 2)))))

    def forward_chunk(self, x, cache):  # x [B, C, d], cache [B, d, k - 1]
        u = F.glu(self.pw1(self.norm(x)), dim=-1).transpose(1, 2)  # [B, d, C]
        u = torch.cat([cache, u], dim=2)
        return self._post(self.dw(u)), u[:, :, -(self.k - 1) :]

    def forward_full(self, x):
        u = F.glu(self.pw1(self.norm(x)), dim=-1).transpose(1, 2)
        return self._post(self.dw(F.pad(u, (self.k - 1, 0))))


class ConformerBlock(nn.Module):
    def __init__(self, cfg: CausalEncoderConfig):
        super().__init__()
        self.ff1 = FeedForward(cfg.d_model, cfg.ffn_mult, cfg.dropout)
        self.attn = ChunkAttention(cfg)
        self.conv = CausalConvModule(cfg)
        self.ff2 = FeedForward(cfg.d_model, cfg.ffn_mult, cfg.dropout)
        self.norm = nn.LayerNorm(cfg.d_model)

    def forward_chunk(self, x, kv, valid, conv):
        x = x + 0.5 * self.ff1(x)
        a, kv = self.attn.forward_chunk(x, kv, valid)
        x = x + a
        c, conv = self.conv.forward_chunk(x, conv)
        x = x + c
        return self.norm(x + 0.5 * self.ff2(x)), kv, conv

    def forward_full(self, x):
        x = x + 0.5 * self.ff1(x)
        x = x + self.attn.forward_full(x)
        x = x + self.conv.forward_full(x)
        return self.norm(x + 0.5 * self.ff2(x))


# ---------------------------------------------------------------------------------------------------------------------

STATE_NAMES = ("peak", "stem_mel", "stem_conv", "kv", "kv_valid", "conv", "pool_max", "pool_weight", "pool_sum")


class CausalEncoder(nn.Module):
    """Chunked causal Conformer + streaming attention-pooling head. See the module docstring."""

    def __init__(self, cfg: CausalEncoderConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.conv1 = nn.Conv1d(cfg.n_mels, d, 3)
        self.conv2 = nn.Conv1d(d, d, 3, stride=2)
        self.blocks = nn.ModuleList(ConformerBlock(cfg) for _ in range(cfg.n_layers))
        self.pool_value = nn.Linear(d, cfg.d_pool)
        self.pool_score = nn.Linear(d, 1)
        self.cls_norm = nn.LayerNorm(cfg.d_pool)
        self.cls_drop = nn.Dropout(cfg.dropout)
        self.classifier = nn.Linear(cfg.d_pool, cfg.n_classes)

    # -- state ---------------------------------------------------------------------------------------------------
    def state_names(self) -> tuple[str, ...]:
        return STATE_NAMES

    def state_shapes(self, batch: int = 1) -> tuple[tuple[int, ...], ...]:
        c = self.cfg
        d = c.d_model
        return ((batch, 1), (batch, c.n_mels, 2), (batch, d, 1), (batch, c.n_layers, 2, c.left_context, d),
                (batch, c.left_context), (batch, c.n_layers, d, c.conv_kernel - 1), (batch, 1), (batch, 1),
                (batch, c.d_pool))

    def initial_state(self, batch: int = 1) -> tuple[torch.Tensor, ...]:
        st = [torch.zeros(s) for s in self.state_shapes(batch)]
        st[0].fill_(SILENCE_LOGMEL)  # running peak
        st[6].fill_(NEG)  # running max pooling score (exp(NEG - anything) = 0)
        return tuple(st)

    # -- pieces shared by both paths -----------------------------------------------------------------------------
    def _normalize(self, mel, peak):  # mel [B, 80, T], peak [B, 1]
        return (torch.maximum(mel, (peak - DYNAMIC_RANGE)[:, :, None]) + 4.0) / 4.0

    def _pool_terms(self, h):  # h [B, T, d] -> scores [B, T], values [B, T, d_pool]
        return self.pool_score(h).squeeze(-1), F.gelu(self.pool_value(h))

    def _pool_update(self, pmax, pw, psum, a, v):
        """Streaming softmax pooling: fold scores a [B, T] / values v [B, T, P] into (max, weight, sum)."""
        m = torch.maximum(pmax, a.amax(dim=1, keepdim=True))  # [B, 1]
        scale = torch.exp(pmax - m) * self.cfg.pool_decay
        e = torch.exp(a - m)  # [B, T]
        pw = pw * scale + e.sum(dim=1, keepdim=True)
        psum = psum * scale + torch.matmul(e.unsqueeze(1), v).squeeze(1)
        return m, pw, psum

    def logits_from_pool(self, pw, psum):
        return self.classifier(self.cls_drop(self.cls_norm(psum / pw)))

    # -- streaming -------------------------------------------------------------------------------------------------
    def forward_chunk(self, mel_chunk: torch.Tensor, state: tuple[torch.Tensor, ...]):
        """One step: mel_chunk [B, 80, chunk_frames] raw log10-mel -> (frames [B, chunk_frames // 2, d], new_state)."""
        peak, stem_mel, stem_conv, kv, valid, conv, pmax, pw, psum = state
        c = self.cfg
        peak = torch.maximum(mel_chunk.amax(dim=(1, 2))[:, None], peak - c.peak_decay)
        x = torch.cat([stem_mel, self._normalize(mel_chunk, peak)], dim=2)  # [B, 80, 2 + F]
        new_stem_mel = x[:, :, -2:]
        y = F.gelu(self.conv1(x))  # [B, d, F]
        y = torch.cat([stem_conv, y], dim=2)  # [B, d, 1 + F]
        new_stem_conv = y[:, :, -1:]
        h = F.gelu(self.conv2(y)).transpose(1, 2)  # [B, C, d]
        kvs, convs = [], []
        for i, blk in enumerate(self.blocks):
            h, kv_i, conv_i = blk.forward_chunk(h, kv[:, i], valid, conv[:, i])
            kvs.append(kv_i)
            convs.append(conv_i)
        new_valid = F.pad(valid, (0, c.chunk_out), value=1.0)[:, -c.left_context :]
        a, v = self._pool_terms(h)
        pmax, pw, psum = self._pool_update(pmax, pw, psum, a, v)
        new = (peak, new_stem_mel, new_stem_conv, torch.stack(kvs, dim=1), new_valid, torch.stack(convs, dim=1),
               pmax, pw, psum)
        return h, new

    def step(self, mel_chunk: torch.Tensor, *state: torch.Tensor):
        """The exported function: (mel_chunk, *state) -> (logits [B, n_classes], *new_state)."""
        _, new = self.forward_chunk(mel_chunk, tuple(state))
        return (self.logits_from_pool(new[7], new[8]), *new)

    def run_chunks(self, mel: torch.Tensor, state=None):
        """forward_chunk over consecutive chunks of mel [B, 80, T] (T a multiple of chunk_frames)."""
        c = self.cfg
        if mel.shape[2] % c.chunk_frames:
            raise ValueError(f"{mel.shape[2]} frames is not a multiple of chunk_frames {c.chunk_frames}")
        state = self.initial_state(mel.shape[0]) if state is None else state
        outs, logits = [], []
        for s in range(0, mel.shape[2], c.chunk_frames):
            h, state = self.forward_chunk(mel[:, :, s : s + c.chunk_frames], state)
            outs.append(h)
            logits.append(self.logits_from_pool(state[7], state[8]))
        return torch.cat(outs, dim=1), torch.stack(logits, dim=1), state

    # -- whole utterance ---------------------------------------------------------------------------------------
    def forward_full(self, mel: torch.Tensor, return_layers: bool = False):
        """Whole utterance mel [B, 80, T] (T a multiple of chunk_frames) at once, same math as the chunks.

        Returns (frames [B, T // 2, d], logits after every chunk [B, T // chunk_frames, n_classes]) and, with
        ``return_layers``, the output of every block as a third element (list of [B, T // 2, d]).
        """
        c = self.cfg
        b, _, t = mel.shape
        if t % c.chunk_frames or t == 0:
            raise ValueError(f"{t} frames is not a positive multiple of chunk_frames {c.chunk_frames}")
        n = t // c.chunk_frames
        # running peak per chunk (sequential over chunks only: n scalars per utterance)
        cmax = mel.reshape(b, c.n_mels, n, c.chunk_frames).amax(dim=(1, 3))  # [B, n]
        peak = torch.full((b,), SILENCE_LOGMEL, dtype=mel.dtype, device=mel.device)
        peaks = []
        for k in range(n):
            peak = torch.maximum(cmax[:, k], peak - c.peak_decay)
            peaks.append(peak)
        floor = (torch.stack(peaks, dim=1) - DYNAMIC_RANGE).repeat_interleave(c.chunk_frames, dim=1)  # [B, T]
        x = (torch.maximum(mel, floor[:, None, :]) + 4.0) / 4.0
        y = F.gelu(self.conv1(F.pad(x, (2, 0))))
        h = F.gelu(self.conv2(F.pad(y, (1, 0)))).transpose(1, 2)  # [B, T // 2, d]
        layers = []
        for blk in self.blocks:
            h = blk.forward_full(h)
            layers.append(h)
        a, v = self._pool_terms(h)
        pmax = torch.full((b, 1), NEG, dtype=h.dtype, device=h.device)
        pw = torch.zeros(b, 1, dtype=h.dtype, device=h.device)
        psum = torch.zeros(b, c.d_pool, dtype=h.dtype, device=h.device)
        logits = []
        for k in range(n):
            s = slice(k * c.chunk_out, (k + 1) * c.chunk_out)
            pmax, pw, psum = self._pool_update(pmax, pw, psum, a[:, s], v[:, s])
            logits.append(self.logits_from_pool(pw, psum))
        out = (h, torch.stack(logits, dim=1))
        return (*out, layers) if return_layers else out


class CausalStep(nn.Module):
    """``CausalEncoder.step`` as a module's forward (what export traces)."""

    def __init__(self, model: CausalEncoder):
        super().__init__()
        self.model = model

    def forward(self, mel_chunk, *state):
        return self.model.step(mel_chunk, *state)


def pad_to_chunks(mel: torch.Tensor, chunk_frames: int, value: float = SILENCE_LOGMEL) -> torch.Tensor:
    """Right-pad mel [B, 80, T] with digital silence to a multiple of ``chunk_frames``."""
    r = (-mel.shape[2]) % chunk_frames
    return F.pad(mel, (0, r), value=value) if r else mel
