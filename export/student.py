"""Rebuild the student from its checkpoint, and the checks an export must pass on real audio."""

from __future__ import annotations

import numpy as np

from edgeser.audio import load as load_audio
from edgeser.constants import SAMPLE_RATE
from edgeser.model import Model
from edgeser.runtime import open_backend
from edgeser.runtime.base import Backend
from edgeser.runtime.metadata import ModelInfo

LICENCE = "CC BY-NC-SA 4.0 (trained on RAVDESS; the model inherits its non-commercial, share-alike terms)"


def build_from_checkpoint(ck: dict, *, name: str, version: str, quantization: str):
    from train.backbones.whisper import whisper_encoder
    from train.models.cta_rnn import CTARNN, CTARNNConfig, EncoderCTARNN
    from train.student import stream_info

    cfg = CTARNNConfig(**ck["config"])
    # a head on the first k hidden states needs only the encoder's first k - 1 layers
    enc, _ = whisper_encoder(ck["encoder"], ck["window_frames"], n_layers=cfg.n_channels - 1)
    if ck.get("encoder_state"):  # fine-tuned top layers (LP-FT); the rest stays the packaged pretrained weights
        missing = set(ck["encoder_state"]) - set(enc.state_dict())
        if missing:
            raise ValueError(f"checkpoint encoder_state has unknown keys: {sorted(missing)[:5]}")
        enc.load_state_dict(ck["encoder_state"], strict=False)
    head = CTARNN(cfg)
    head.load_state_dict(ck["head"])
    model = EncoderCTARNN(enc, head).eval()
    val = ck["validation"]
    extra = {}
    if cfg.adapt:
        n, d = cfg.n_channels, cfg.d_in
        extra = {
            "state": (
                {"name": "norm_sum", "output": "norm_sum_out", "shape": [1, n, d], "dtype": "float32", "init": 0.0,
                 "scope": "stream"},
                {"name": "norm_count", "output": "norm_count_out", "shape": [1, 1], "dtype": "float32", "init": 0.0,
                 "scope": "stream"},
            ),
            "adaptation": {
                "kind": "running speaker/session mean of the encoder features (per layer and dimension), subtracted "
                        "before the head; the training mean is the prior",
                "default": "running", "prior_windows": cfg.adapt_prior, "decay_per_window": cfg.adapt_decay,
            },
        }
    info = stream_info(**extra,
        labels=tuple(ck["labels"]), name=name, version=version, quantization=quantization,
        backbone=(("level-normalised log-mel -> " if cfg.level_norm else "")
                  + f"whisper-{ck['encoder']} encoder ({cfg.n_channels} hidden states"
                  f"{', top layers fine-tuned' if ck.get('encoder_state') else ', frozen'}) + "
                  + ("statistics-pooling channel-attention head" if cfg.pooling == "stats" else "CTA-RNN head")),
        training={
            **(ck.get("training") or {"data": "RAVDESS speech, actors 01-20 minus the held-out validation actors, "
                                              "4 classes", "licence": LICENCE}),
            "validation": {k: val[k] for k in ("uar", "wa", "macro_f1", "recall", "confusion", "test_speakers", "n",
                                               "per_corpus") if k in val},
            "command": ck.get("command", ""),
        },
    )
    assert info.window_frames == ck["window_frames"] and info.hop_frames == ck["hop_frames"]
    return model, info


def verification_windows(clips) -> np.ndarray:
    from train.student import runtime_windows

    return np.concatenate([runtime_windows(load_audio(c.path)) for c in clips]).astype(np.float32)


class TorchBackend(Backend):
    """Eager PyTorch behind the runtime's Backend interface (the reference for export checks)."""

    name = "torch"

    def __init__(self, model, info: ModelInfo):
        self.model, self.info, self.path = model, info, "<eager>"

    def run(self, window: np.ndarray) -> np.ndarray:
        return self.step(window, self.info.initial_state())[0]

    def step(self, window: np.ndarray, state: tuple):
        import torch

        with torch.no_grad():
            out = self.model(torch.from_numpy(np.ascontiguousarray(window)),
                             *(torch.from_numpy(np.asarray(a, np.float32)) for a in state))
        if not state:
            return out.numpy().reshape(-1), ()
        return out[0].numpy().reshape(-1), tuple(o.numpy() for o in out[1:])


def _margin(scores: dict) -> float:
    """Top-1 minus top-2 probability."""
    a, b = sorted(scores.values(), reverse=True)[:2]
    return float(a - b)


def _check_tie_margin(tie_margin: float) -> None:
    if not 0.0 <= tie_margin < 1.0:
        raise ValueError(f"tie_margin must be in [0, 1), got {tie_margin}")


def _tie_flip(ref, got, tie_margin: float) -> bool:
    """A label change tolerated as a near tie: eager's two best classes are within ``tie_margin`` and the export
    picked eager's runner-up."""
    runner_up = sorted(ref.scores, key=ref.scores.get, reverse=True)[1]
    return _margin(ref.scores) < tie_margin and got.label == runner_up


def stream_check(model, info: ModelInfo, path, clips, seconds: float = 60.0, tie_margin: float = 0.0) -> dict:
    """A continuous stream (clips back to back, with pauses, ``seconds`` long) through the exported file and
    through eager PyTorch: every final event must have the same segment bounds and label; report the largest
    score difference. Raises ExportMismatch otherwise.

    ``tie_margin`` > 0 (quantized exports): a segment whose eager top-two probabilities are closer than this may
    come out as eager's runner-up (reported in ``near_tie_flips``); any other difference still fails."""
    from .core import ExportMismatch

    _check_tie_margin(tie_margin)
    parts, total = [], 0
    i = 0
    while total < seconds * SAMPLE_RATE:
        x = load_audio(clips[i % len(clips)].path)
        parts += [x, np.zeros(int(0.6 * SAMPLE_RATE), np.float32)]
        total += x.size + int(0.6 * SAMPLE_RATE)
        i += 1
    audio = np.concatenate(parts)[: int(seconds * SAMPLE_RATE)]
    ref = Model(TorchBackend(model, info)).analyze(audio, SAMPLE_RATE)
    got = Model(open_backend(path)).analyze(audio, SAMPLE_RATE)
    if [(e.start, e.end) for e in ref] != [(e.start, e.end) for e in got]:
        raise ExportMismatch(f"{path}: stream segments differ from eager")
    flips = [(r, g) for r, g in zip(ref, got) if r.label != g.label]
    ties = [{"start": r.start, "eager": r.label, "export": g.label, "eager_margin": round(_margin(r.scores), 4)}
            for r, g in flips if _tie_flip(r, g, tie_margin)]
    diff = max((abs(r.scores[k] - g.scores[k]) for r, g in zip(ref, got) for k in r.scores), default=0.0)
    res = {"seconds": seconds, "segments": len(ref), "label_agreement": 1 - len(flips) / max(len(ref), 1),
           "max_score_diff": float(diff), "tie_margin": tie_margin, "near_tie_flips": ties}
    if len(ties) < len(flips):
        raise ExportMismatch(f"{path}: stream labels differ from eager: {res}")
    return res


def clip_check(model, info: ModelInfo, path, clips, tie_margin: float = 0.0) -> dict:
    """Every clip through ``Model.classify`` (what a user gets) with the exported file and with eager PyTorch: the
    labels must be identical (up to near ties, as in :func:`stream_check`); report the largest score difference.
    Raises ExportMismatch otherwise."""
    from .core import ExportMismatch

    _check_tie_margin(tie_margin)
    ref_m, got_m = Model(TorchBackend(model, info)), Model(open_backend(path))
    diff, differ, ties = 0.0, [], []
    for c in clips:
        x = load_audio(c.path)
        r, g = ref_m.classify(x, SAMPLE_RATE), got_m.classify(x, SAMPLE_RATE)
        diff = max(diff, max(abs(r.scores[k] - g.scores[k]) for k in r.scores))
        if r.label != g.label:
            if _tie_flip(r, g, tie_margin):
                ties.append({"clip": str(c.path), "eager": r.label, "export": g.label,
                             "eager_margin": round(_margin(r.scores), 4)})
            else:
                differ.append((c.path, r.label, g.label))
    res = {"clips": len(clips), "identical_labels": len(clips) - len(differ) - len(ties), "max_score_diff": float(diff),
           "tie_margin": tie_margin, "near_tie_flips": ties}
    if differ:
        raise ExportMismatch(f"{path}: clip labels differ from eager on {len(differ)} clip(s): {differ[:3]} ({res})")
    return res
