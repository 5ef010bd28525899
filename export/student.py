"""Rebuild the student from its checkpoint, and the checks an export must pass on real audio."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeser.audio import load as load_audio
from edgeser.constants import SAMPLE_RATE
from edgeser.model import Model
from edgeser.runtime import open_backend
from edgeser.runtime.base import Backend
from edgeser.runtime.metadata import ModelInfo

LICENCE = "CC BY-NC-SA 4.0 (trained on RAVDESS; the model inherits its non-commercial, share-alike terms)"


#: What a student head checkpoint holds (``train.student fit``'s student.pt, the bundled edgeser-default.pt).
CHECKPOINT_KEYS = ("config", "head", "encoder", "labels", "window_frames", "hop_frames")


def check_checkpoint(ck, source: str = "checkpoint") -> None:
    """Raise ExportError unless ``ck`` is a student head checkpoint (a dict with :data:`CHECKPOINT_KEYS`)."""
    from edgeser.errors import ExportError

    if not isinstance(ck, dict):
        raise ExportError(f"{source}: not an edgeser student checkpoint (a {type(ck).__name__}, expected a dict with "
                          f"{', '.join(CHECKPOINT_KEYS)})")
    missing = [k for k in CHECKPOINT_KEYS if k not in ck]
    if missing:
        has = ", ".join(map(str, list(ck)[:8])) or "nothing"
        raise ExportError(f"{source}: not an edgeser student checkpoint (train.student fit's student.pt or "
                          f"edgeser-default.pt): it lacks {', '.join(missing)} (it has {has})")


def build_from_checkpoint(ck: dict, *, name: str, version: str, quantization: str):
    from train.backbones.whisper import whisper_encoder
    from train.models.cta_rnn import CTARNN, CTARNNConfig, EncoderCTARNN
    from train.student import stream_info

    cfg = CTARNNConfig(**ck["config"])
    enc, dims = whisper_encoder(ck["encoder"], ck["window_frames"])
    if cfg.d_in != dims.d_model or not 1 <= cfg.n_channels <= dims.n_layers + 1:
        raise ValueError(f"the head expects {cfg.n_channels} hidden states of width {cfg.d_in}; encoder "
                         f"{ck['encoder']!r} gives {dims.n_layers + 1} of width {dims.d_model}")
    if cfg.n_channels < dims.n_layers + 1:  # a head on the first k hidden states needs the first k - 1 layers only
        enc, _ = whisper_encoder(ck["encoder"], ck["window_frames"], n_layers=cfg.n_channels - 1)
    if ck.get("encoder_state"):  # fine-tuned top layers (LP-FT); the rest stays the packaged pretrained weights
        missing = set(ck["encoder_state"]) - set(enc.state_dict())
        if missing:
            raise ValueError(f"checkpoint encoder_state has unknown keys: {sorted(missing)[:5]}")
        enc.load_state_dict(ck["encoder_state"], strict=False)
    head = CTARNN(cfg)
    head.load_state_dict(ck["head"])
    model = EncoderCTARNN(enc, head).eval()
    val = ck.get("validation") or {}  # figures of the held-out validation, where the checkpoint carries them
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
    if (info.window_frames, info.hop_frames) != (ck["window_frames"], ck["hop_frames"]):
        raise ValueError(f"the checkpoint's windows ({ck['window_frames']} frames, hop {ck['hop_frames']}) are not the "
                         f"runtime's ({info.window_frames}, hop {info.hop_frames})")
    return model, info


@dataclass(frozen=True)
class VerifyClip:
    """An audio file the export is checked on (``path``) and where it came from (``source``: for the report)."""

    path: Path
    source: str = ""


#: Audio file suffixes taken from a --verify-dir folder (those libsndfile reads).
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au"})


def folder_clips(folder, n: int, seed: int = 0) -> list[VerifyClip]:
    """``n`` audio files drawn (seeded) from ``folder`` (recursive; all of them if it holds fewer). Raises
    ExportError if the folder is missing or holds no audio file."""
    from edgeser.errors import ExportError

    folder = Path(folder)
    if not folder.is_dir():
        raise ExportError(f"--verify-dir {folder}: not a folder")
    found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not found:
        raise ExportError(f"--verify-dir {folder}: no audio files ({', '.join(sorted(AUDIO_SUFFIXES))}) in it")
    pick = np.random.default_rng(seed).choice(len(found), size=min(n, len(found)), replace=False)
    return [VerifyClip(found[i], str(found[i])) for i in sorted(pick)]


def generated_clips(n: int, folder, seed: int = 0) -> list[VerifyClip]:
    """``n`` sentences spoken by espeak-ng (train.data.synth: each label's sentences and prosody, 8 voices in turn),
    written as WAVs into ``folder``. Raises ExportError if espeak-ng is missing or fails."""
    import soundfile as sf

    from edgeser.errors import ExportError
    from train.data.synth import DEFAULT_ESPEAK_VOICES, SENTENCES, prosody, tts

    rng = np.random.default_rng(seed)
    labels = list(SENTENCES)
    clips = []
    for i in range(n):
        label = labels[i % len(labels)]
        text = SENTENCES[label][(i // len(labels)) % len(SENTENCES[label])]
        voice = DEFAULT_ESPEAK_VOICES[i % len(DEFAULT_ESPEAK_VOICES)]
        try:
            x = tts(text, voice, **prosody(label, rng))
        except RuntimeError as exc:  # espeak-ng missing or failing
            raise ExportError(f"cannot generate verification speech ({' '.join(str(exc).split())}); give clips with "
                              f"--verify-dir FOLDER, or skip the clip checks with --verify-clips 0") from exc
        path = Path(folder) / f"generated_{i:02d}.wav"
        sf.write(path, x, SAMPLE_RATE, subtype="PCM_16")
        clips.append(VerifyClip(path, f"espeak-ng {voice}, {label} prosody: {text}"))
    return clips


def verification_windows(clips) -> np.ndarray:
    """The runtime's windows of every clip, concatenated; clips in which the VAD finds no speech give none. Raises
    ExportError if a clip is unreadable or none of them has speech."""
    from edgeser.errors import AudioError, ExportError
    from train.student import runtime_windows

    out = []
    for c in clips:
        try:
            x = load_audio(c.path)
        except AudioError as exc:
            raise ExportError(f"verification clip {c.path}: {' '.join(str(exc).split())}") from exc
        try:
            out.append(runtime_windows(x))
        except ValueError:  # np.stack of no windows: no speech in this clip
            continue
    if not out:
        raise ExportError(f"no speech found in the {len(clips)} verification clip(s): give others with --verify-dir")
    return np.concatenate(out).astype(np.float32)


def probe_windows(n: int = 8, seed: int = 0) -> np.ndarray:
    """``n`` log-mel windows [n, 80, WINDOW_FRAMES] of seeded synthetic sound through the runtime's own front end
    (a voiced buzz with vibrato and a formant-like sweep, over noise at several levels, plus one of silence): input
    for the eager-vs-exported check that needs no recording at all."""
    from edgeser.features import log_mel
    from train.student import WINDOW_FRAMES

    rng = np.random.default_rng(seed)
    hop = 160  # samples per log-mel frame at 16 kHz
    length = WINDOW_FRAMES * hop
    t = np.arange(length) / SAMPLE_RATE
    out = []
    for i in range(n):
        if i == n - 1:
            x = np.zeros(length)
        else:
            f0 = rng.uniform(90, 260) * (1 + 0.05 * np.sin(2 * np.pi * rng.uniform(3, 7) * t))
            phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
            x = sum(np.sin(k * phase) / k * (1 + np.cos(2 * np.pi * (k * f0 - rng.uniform(400, 2500)) / 3000))
                    for k in range(1, 20))
            x = 0.1 * x / (np.abs(x).max() + 1e-9) + rng.uniform(1e-4, 3e-2) * rng.standard_normal(length)
        out.append(log_mel(x.astype(np.float32))[:, :WINDOW_FRAMES])
    return np.stack(out).astype(np.float32)


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
