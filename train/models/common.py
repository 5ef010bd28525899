"""What every teacher shares: the batch it is fed, pooling helpers, and the checkpoint format.

A teacher is an ``nn.Module`` with

- ``config``: a frozen dataclass (``paper()`` preset at the paper's sizes, ``tiny()`` for tests);
- ``forward(batch) -> dict`` with at least ``"logits"`` ``[B, n_classes]`` (and ``"embedding"``, the utterance vector
  the classifier reads);
- ``losses(batch, out) -> dict[str, Tensor]``: each term of the paper's objective, already weighted, plus ``"total"``.

Checkpoints are ``{"model": name, "config": asdict(config), "state": state_dict, ...}`` loaded with
``weights_only=True``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields, replace

import torch
from torch import nn


class config_method:
    """A config method usable on the class (acting on the default config) or on an instance:
    ``MMERConfig.variant("no_ctc")`` and ``cfg.variant("no_ctc")`` both work."""

    def __init__(self, fn):
        self.fn = fn
        functools.update_wrapper(self, fn)

    def __get__(self, obj, cls):
        return functools.partial(self.fn, obj if obj is not None else cls())


@dataclass
class Batch:
    """One padded batch. Optional fields are ``None`` when the corpus or the model does not use them."""

    mel: torch.Tensor  # [B, 80, T] Whisper-normalised log-mel, padded with the log-mel of silence
    mel_lengths: torch.Tensor  # [B] valid mel frames
    labels: torch.Tensor | None = None  # [B] class index (order = the corpus' declared label tuple)
    gender: torch.Tensor | None = None  # [B] 0 male, 1 female
    text: torch.Tensor | None = None  # [B, L, Dt] frozen text-encoder token features
    text_mask: torch.Tensor | None = None  # [B, L] bool, True on tokens
    chars: torch.Tensor | None = None  # [B, S] character ids (train.text.CharVocab), 0-padded
    char_lengths: torch.Tensor | None = None  # [B]
    wave: torch.Tensor | None = None  # [B, S] 16 kHz waveform (SSL backbones)
    wave_lengths: torch.Tensor | None = None
    aug: "Batch | None" = None  # MMER's augmented view (TTS re-synthesis of the transcript, another voice)
    frame_targets: torch.Tensor | None = None  # [B, T_enc, n_scales] GMP-ATL pseudo-labels, -100 = none
    index: torch.Tensor | None = None  # [B] clip indices into the corpus

    def to(self, device) -> "Batch":
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = v.to(device) if isinstance(v, (torch.Tensor, Batch)) else v
        return replace(self, **out)

    def __len__(self) -> int:
        return int(self.mel.shape[0])


def length_mask(lengths: torch.Tensor, t: int) -> torch.Tensor:
    """``[B, t]`` bool, True on valid frames."""
    return torch.arange(t, device=lengths.device)[None, :] < lengths[:, None]


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over dim 1 of ``x [B, T, D]`` where ``mask [B, T]``."""
    m = mask.to(x.dtype)[..., None]
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)


def masked_sum(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask.to(x.dtype)[..., None]).sum(1)


def masked_max(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over dim 1 of ``x [B, T, D]`` where ``mask [B, T]`` (MMER's max pooling over time)."""
    return x.masked_fill(~mask[..., None], torch.finfo(x.dtype).min).amax(1)


def masked_stats(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Statistics pooling (mean and standard deviation over time, concatenated): ``[B, 2D]``."""
    mu = masked_mean(x, mask)
    var = masked_mean((x - mu[:, None]) ** 2, mask)
    return torch.cat([mu, torch.sqrt(var + eps)], dim=-1)


def run_lstm(lstm: nn.LSTM | nn.GRU, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Run a batch-first (Bi)LSTM/GRU on padded ``x`` honouring ``lengths`` (padding never leaks into the state)."""
    # RNNs run in float32 even under autocast (cuDNN's reduced-precision RNN paths differ between versions)
    with torch.autocast(device_type=x.device.type, enabled=False):
        packed = nn.utils.rnn.pack_padded_sequence(x.float(), lengths.clamp(min=1).cpu(), batch_first=True,
                                                   enforce_sorted=False)
        out, _ = lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return out


def conv_out_lengths(lengths: torch.Tensor, kernel: int, stride: int, padding: int) -> torch.Tensor:
    return torch.div(lengths + 2 * padding - kernel, stride, rounding_mode="floor") + 1


def checkpoint(model: nn.Module, name: str, **extra) -> dict:
    from dataclasses import asdict

    return {"model": name, "config": asdict(model.config), "state": model.state_dict(), **extra}


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
