"""Speech backbones for the teachers: one interface over Whisper encoders (trained here) and SSL models (local dirs).

Every teacher asks its backbone for ``(hidden_states, lengths)``: a tuple of ``[B, T, D]`` tensors (the embedding
output, then each layer's output; the last one after the encoder's final layer norm, as transformers returns it)
and the number of valid frames per item (50 frames/s for both families).

Which backbone is available where (see ../shared/notes/pretrained.md):

- ``whisper-base`` / ``whisper-tiny.en``: the packaged faster-whisper (CTranslate2) weights, converted to
  transformers' ``WhisperEncoder`` by :mod:`train.backbones.whisper`. Input: the Whisper log-mel of
  :mod:`edgeser.features` (``[B, 80, T]``, 100 frames/s). These are what the teachers are trained with here: the
  papers' wav2vec2 / HuBERT / RoBERTa checkpoints are not available offline.
- ``ssl:<dir>``: a local wav2vec2 / HuBERT / WavLM checkpoint directory (:mod:`train.backbones.hf`). Input: the
  16 kHz waveform.
- ``random-tiny``: a randomly initialised 2-layer Whisper-shaped encoder (d=32) for CPU tests.

Whisper's transformer layers are run one by one here (instead of ``WhisperEncoder.forward``) so that any clip length
up to 30 s works (the positional table is sliced), and so that HuBERT-style masking can replace frames after the
convolutional front end with a learned mask embedding (GMP-ATL stage 2). Padding frames are the log-mel of digital
silence, which is what Whisper saw during its own training (it was fed zero-padded 30 s windows, unmasked).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

FRAME_RATE = 50  # encoder frames per second (Whisper: 100 mel frames/s, conv stride 2; wav2vec2: 20 ms hop)


@dataclass(frozen=True)
class BackboneInfo:
    name: str  # what results name: "whisper-base", "whisper-tiny.en", "ssl:<dir>", "random-tiny"
    input_kind: str  # "mel" | "wave"
    d_model: int
    n_layers: int


def whisper_out_lengths(mel_lengths: torch.Tensor) -> torch.Tensor:
    """Encoder frames for ``mel_lengths`` log-mel frames (conv k3 s1 p1, then conv k3 s2 p1)."""
    return torch.div(mel_lengths - 1, 2, rounding_mode="floor") + 1


class WhisperBackbone(nn.Module):
    """A transformers ``WhisperEncoder`` run layer by layer, for any length <= 30 s, with optional frame masking."""

    input_kind = "mel"

    def __init__(self, encoder: nn.Module, name: str):
        super().__init__()
        self.encoder = encoder
        cfg = encoder.config
        self.info = BackboneInfo(name=name, input_kind="mel", d_model=cfg.d_model, n_layers=cfg.encoder_layers)
        self.mask_emb = nn.Parameter(torch.zeros(cfg.d_model))  # used only when frames are masked

    @property
    def d_model(self) -> int:
        return self.info.d_model

    @property
    def n_layers(self) -> int:
        return self.info.n_layers

    def freeze_frontend(self) -> None:
        """Freeze the two convolutions (the analogue of freezing wav2vec2's CNN feature encoder)."""
        for conv in (self.encoder.conv1, self.encoder.conv2):
            for p in conv.parameters():
                p.requires_grad_(False)

    def forward(self, mel: torch.Tensor, mel_lengths: torch.Tensor, mask_time: torch.Tensor | None = None):
        enc = self.encoder
        x = nn.functional.gelu(enc.conv1(mel))
        x = nn.functional.gelu(enc.conv2(x)).transpose(1, 2)  # [B, T, D]
        t = x.shape[1]
        n_pos = enc.embed_positions.weight.shape[0]
        if t > n_pos:
            raise ValueError(f"{mel.shape[-1]} mel frames exceed the encoder's {2 * n_pos} (30 s): crop the input")
        if mask_time is not None:
            x = torch.where(mask_time[..., None], self.mask_emb.to(x.dtype), x)
        x = x + enc.embed_positions.weight[:t].to(x.dtype)
        hidden = [x]
        for layer in enc.layers:
            out = layer(x, None)
            x = out[0] if isinstance(out, tuple) else out
            hidden.append(x)
        hidden[-1] = enc.layer_norm(x)
        return tuple(hidden), whisper_out_lengths(mel_lengths).clamp(max=t)


def _whisper_config(d_model: int, n_layers: int, n_heads: int, ffn: int, n_mels: int = 80, dropout: float = 0.0):
    from transformers import WhisperConfig

    cfg = WhisperConfig(
        num_mel_bins=n_mels, d_model=d_model, encoder_layers=n_layers, encoder_attention_heads=n_heads,
        encoder_ffn_dim=ffn, max_source_positions=1500, decoder_layers=1, decoder_attention_heads=n_heads,
        decoder_ffn_dim=ffn, dropout=dropout, attention_dropout=0.0, activation_dropout=0.0,
    )
    cfg._attn_implementation = "sdpa"
    return cfg


def whisper_state_from_ct2(name: str) -> tuple[dict, dict]:
    """(HF ``WhisperEncoder`` state dict at full 30 s positions, dims) from the packaged CTranslate2 weights."""
    from .whisper import dims_of, read_ct2, resolve_weights, whisper_encoder

    w = read_ct2(resolve_weights(name))
    dims = dims_of(w)
    enc, _ = whisper_encoder(name, n_frames=2 * dims.n_positions)
    geometry = {"d_model": dims.d_model, "n_layers": dims.n_layers, "n_heads": dims.n_heads, "ffn": dims.ffn_dim,
                "n_mels": int(w["encoder/conv1/weight"].shape[1])}
    return enc.state_dict(), geometry


def save_whisper_fp16(name: str, path: str | Path) -> Path:
    """Write the encoder as a compact fp16 torch file (``{"name", "geometry", "state"}``) for a GPU machine."""
    state, geometry = whisper_state_from_ct2(name)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"name": f"whisper-{name}", "geometry": geometry,
                "state": {k: v.half() for k, v in state.items()}}, path)
    return path


def build_backbone(spec: str, *, weights: str | Path | None = None, dropout: float = 0.0) -> nn.Module:
    """A speech backbone by name: ``whisper-base`` | ``whisper-tiny.en`` | ``ssl:<dir>`` | ``random-tiny``.

    ``weights``: a file written by :func:`save_whisper_fp16` to use instead of the packaged CTranslate2 weights
    (how the GPU machine, which has no such packages, gets them).
    """
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    if spec.startswith("ssl:"):
        from .hf import load_speech_ssl

        return load_speech_ssl(spec[4:])
    if spec == "random-tiny":
        torch.manual_seed(0)
        enc = WhisperEncoder(_whisper_config(32, 2, 2, 64, dropout=dropout))
        return WhisperBackbone(enc, "random-tiny")
    if not spec.startswith("whisper-"):
        raise ValueError(f"unknown backbone {spec!r}: use whisper-base, whisper-tiny.en, ssl:<dir> or random-tiny")
    if weights is not None:
        blob = torch.load(weights, map_location="cpu", weights_only=True)
        if blob["name"] != spec:
            raise ValueError(f"{weights} holds {blob['name']}, not {spec}")
        geometry, state = blob["geometry"], {k: v.float() for k, v in blob["state"].items()}
    else:
        state, geometry = whisper_state_from_ct2(spec[len("whisper-"):])
    enc = WhisperEncoder(_whisper_config(**geometry, dropout=dropout))
    enc.load_state_dict(state)
    return WhisperBackbone(enc, spec)


def encode(backbone: nn.Module, batch, mask_time: torch.Tensor | None = None):
    """Run ``backbone`` on a :class:`train.models.common.Batch`: mel for Whisper, waveform for SSL models."""
    if getattr(backbone, "input_kind", "mel") == "wave":
        if batch.wave is None:
            raise ValueError(f"backbone {backbone.info.name} needs waveforms; this batch carries only log-mel")
        return backbone(batch.wave, batch.wave_lengths, mask_time=mask_time)
    return backbone(batch.mel, batch.mel_lengths, mask_time=mask_time)


def out_lengths(backbone: nn.Module, batch) -> torch.Tensor:
    """Valid encoder frames per item of ``batch`` (known before a forward, for building frame masks)."""
    if getattr(backbone, "input_kind", "mel") == "wave":
        return backbone.out_lengths(batch.wave_lengths)
    return whisper_out_lengths(batch.mel_lengths)


def frames_of(backbone: nn.Module, batch) -> int:
    """Number of encoder frames the backbone produces for the padded ``batch``."""
    if getattr(backbone, "input_kind", "mel") == "wave":
        return int(backbone.out_lengths(torch.tensor([batch.wave.shape[-1]]))[0])
    return int(whisper_out_lengths(torch.tensor(batch.mel.shape[-1])))
