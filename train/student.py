"""Train the on-device model: frozen Whisper encoder -> CTA-RNN head, on RAVDESS, speaker-independent.

    python -m train.student embed --encoder tiny.en --copies 4          # cache encoder states of every window
    python -m train.student fit --encoder tiny.en --fold 0 --out runs/default   # train + validate on held-out actors
    python -m train.student cv --encoder tiny.en                         # all 5 folds -> benchmarks/results

Windows are produced by edgeser's own runtime path (``edgeser.Model.classify`` with a recording backend): VAD on the
(augmented) audio, windows of ``WINDOW_FRAMES`` log-mel frames at the runtime's positions. The model is therefore
trained on exactly the inputs it gets on the device. The encoder is frozen, so its hidden states are computed once
per window (clean copy + augmented copies, seeded) and cached; the head trains on the cache.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from edgeser.audio import load as load_audio
from edgeser.constants import HOP_LENGTH, N_FFT, N_MELS, SAMPLE_RATE
from edgeser.model import Model
from edgeser.runtime.base import Backend
from edgeser.runtime.metadata import ModelInfo

from .augment import Augmenter
from .data.ravdess import LABELS4, load_ravdess, speaker_folds, split
from .metrics import classification_report

WINDOW_FRAMES = 200  # 2 s of log-mel per model input
HOP_FRAMES = 50  # a new window every 0.5 s of speech
FIRST_FRAMES = 50  # first (partial) result 0.5 s after a segment starts
CACHE = Path(os.environ.get("EDGESER_CACHE", Path.home() / ".cache" / "edgeser"))


def stream_info(labels=LABELS4, **extra) -> ModelInfo:
    return ModelInfo(
        labels=tuple(labels), sample_rate=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP_LENGTH, n_mels=N_MELS,
        window_frames=WINDOW_FRAMES, hop_frames=HOP_FRAMES, first_frames=FIRST_FRAMES,
        input_shape=(1, N_MELS, WINDOW_FRAMES), **extra,
    )


class RecordingBackend(Backend):
    """Records every window the runtime would classify (returns flat logits)."""

    name = "recording"

    def __init__(self, info: ModelInfo):
        self.info, self.path, self.windows = info, "<recording>", []

    def run(self, window: np.ndarray) -> np.ndarray:
        self.windows.append(window[0].copy())
        return np.zeros(len(self.info.labels), np.float32)


def runtime_windows(x: np.ndarray) -> np.ndarray:
    """The log-mel windows [n, 80, WINDOW_FRAMES] that ``edgeser.Model.classify`` feeds the model for clip ``x``."""
    rec = RecordingBackend(stream_info())
    Model(rec).classify(x, SAMPLE_RATE)
    if not rec.windows:  # no speech found in the clip: nothing to train on
        return np.zeros((0, N_MELS, WINDOW_FRAMES), np.float32)
    return np.stack(rec.windows)


def build_encoder(name: str):
    import torch

    from .backbones.whisper import whisper_encoder
    from .models.cta_rnn import CTARNN, CTARNNConfig, EncoderCTARNN

    enc, dims = whisper_encoder(name, WINDOW_FRAMES)
    cfg = CTARNNConfig(n_channels=dims.n_layers + 1, d_in=dims.d_model, n_classes=len(LABELS4))
    model = EncoderCTARNN(enc, CTARNN(cfg)).eval()
    for p in model.encoder.parameters():
        p.requires_grad_(False)
    torch.set_grad_enabled(False)
    return model, cfg, dims


def cache_path(encoder: str, copy: int, tap: int | None = None) -> Path:
    suffix = "" if tap is None else f"-tap{tap}"
    return CACHE / "emb" / f"ravdess4-{encoder.replace('/', '_')}-w{WINDOW_FRAMES}" / f"copy{copy}{suffix}.npz"


def session_cache_path(encoder: str, k: int) -> Path:
    return cache_path(encoder, 0).parent / f"session{k}.npz"


def voice_cache_path(encoder: str, k: int) -> Path:
    return cache_path(encoder, 0).parent / f"voice{k}.npz"


def embed(encoder: str, copies: int, seed: int = 0, limit: int | None = None, tap: int | None = None,
          sessions: int = 0, voices: int = 0) -> None:
    """Cache pooled encoder states of every runtime window: copy 0 clean, copies 1.. augmented (seeded); and
    ``sessions`` session copies (:mod:`train.babble`: each speaker's clips all under one drawn condition -- babble,
    cafe or stationary noise at 0-15 dB SNR, sometimes reverberant -- with fresh noise per clip); and ``voices``
    voice copies (:mod:`train.voices`: each speaker's clips all in one drawn pseudo-speaker's voice, clean).

    With ``tap`` = k, also keep hidden state k unpooled (the input of encoder layer k): fine-tuning the layers
    above k then needs no pass through the frozen layers below.
    """
    import zlib

    clips = load_ravdess()[:limit]
    model, cfg, _ = build_encoder(encoder)
    for c in range(copies):
        aug = Augmenter(p=0.9, seed=seed * 1000 + c) if c else None
        _embed_copy(model, clips, cache_path(encoder, c, tap), f"embed {encoder} copy {c}",
                    (lambda x, clip: aug(x)) if aug is not None else None, tap)
    if tap is not None:
        return
    if voices:
        from .voices import change_voice, speaker_voice

        for k in range(voices):
            drawn: dict[str, dict] = {}

            def in_voice(x, clip, k=k, drawn=drawn):
                v = speaker_voice(seed, k, clip.speaker)
                drawn[clip.speaker] = v.to_dict()
                return change_voice(x, v)

            _embed_copy(model, clips, voice_cache_path(encoder, k), f"embed {encoder} voice copy {k}", in_voice,
                        extra=lambda drawn=drawn: {"voices": np.asarray(json.dumps(drawn))})
    if not sessions:
        return
    from .babble import apply_session, session_condition, talker_streams

    streams = []
    for k in range(sessions):
        conds: dict[str, dict] = {}

        def session(x, clip, k=k, conds=conds):
            if not streams:
                streams.extend(talker_streams())
            if clip.speaker not in conds:  # one condition per speaker and session copy, fresh noise per clip
                conds[clip.speaker] = session_condition(np.random.default_rng([seed, k, zlib.crc32(clip.speaker.encode())]))
            return apply_session(x, conds[clip.speaker], np.random.default_rng([seed, k, zlib.crc32(clip.path.encode())]),
                                 streams)

        _embed_copy(model, clips, session_cache_path(encoder, k), f"embed {encoder} session copy {k}", session,
                    extra=lambda conds=conds: {"conditions": np.asarray(json.dumps(conds))})


def _embed_copy(model, clips, out: Path, desc: str, transform=None, tap: int | None = None, extra=None) -> None:
    """Embed every clip (``transform(x, clip)`` applied to its audio first) window by window into ``out`` (skipped if
    it exists): pooled states ``emb``, owning clip index ``clip``, ``paths``; with ``tap`` also hidden state ``tap``
    unpooled; ``extra()``: more arrays to store."""
    import torch
    from tqdm import tqdm

    if out.is_file():
        print(f"cached: {out}")
        return
    embs, taps, owner = [], [], []
    for i, clip in enumerate(tqdm(clips, desc=desc)):
        x = load_audio(clip.path)
        if transform is not None:
            x = transform(x, clip)
        wins = runtime_windows(x)
        with torch.no_grad():
            if tap is None:
                e = model.embed(torch.from_numpy(wins))
            else:
                from .models.cta_rnn import whisper_normalize

                hs = model.encoder(whisper_normalize(torch.from_numpy(wins)), output_hidden_states=True).hidden_states
                e = model.head.pool(torch.stack(list(hs[:tap]), dim=1))
                taps.append(hs[tap].numpy().astype(np.float16))
        embs.append(e.numpy().astype(np.float16))
        owner += [i] * len(wins)
    out.parent.mkdir(parents=True, exist_ok=True)
    more = {"tap": np.concatenate(taps)} if taps else {}
    np.savez(out, emb=np.concatenate(embs), clip=np.asarray(owner, np.int32),
             paths=np.asarray([c_.path for c_ in clips]), **more, **(extra() if extra else {}))
    print(f"wrote {out} ({sum(len(e) for e in embs)} windows)")


def load_cache(encoder: str, copies: int, sessions: int = 0, voices: int = 0):
    """[(windows [W, N, T, D] float16, owning clip [W])] of the ``copies`` copies, then the ``sessions`` session
    copies, then the ``voices`` voice copies."""
    data = []
    for p in ([cache_path(encoder, c) for c in range(copies)] + [session_cache_path(encoder, k) for k in range(sessions)]
              + [voice_cache_path(encoder, k) for k in range(voices)]):
        z = np.load(p)
        data.append((z["emb"], z["clip"]))
    return data


def fold_split(fold: int):
    """(clips, held-out speakers, label index per clip, training mask per clip) of a speaker-independent fold."""
    clips = load_ravdess()
    folds = speaker_folds(clips, n_folds=5, seed=0)
    train_ids = {c.path for c in split(clips, folds, fold)[0]}
    y_clip = np.asarray([LABELS4.index(c.label) for c in clips])
    is_train = np.asarray([c.path in train_ids for c in clips])
    return clips, sorted(folds[fold]), y_clip, is_train


def balanced_pool(owners: list[np.ndarray], y_clip: np.ndarray, is_train: np.ndarray):
    """Every training window (copy, index) of every copy, its label, and class-balancing sampling weights."""
    pool = np.asarray([(c, j) for c, owner in enumerate(owners) for j in np.nonzero(is_train[owner])[0]])
    labels = np.asarray([y_clip[owners[c][j]] for c, j in pool])
    w = 1.0 / np.bincount(labels, minlength=len(LABELS4))[labels]
    return pool, labels, w / w.sum()


TEACHER_LOGITS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "teacher_logits"


def teacher_soft_labels(teachers: list[str], fold: int, clips, temperature: float) -> np.ndarray:
    """Ensemble soft labels ``[len(clips), C]``: mean over ``teachers`` (e.g. ``mmer-full``) of softmax(logits / T)
    of the teacher trained without ``fold``'s speakers (``benchmarks/results/teacher_logits``)."""
    return soft_labels_by_id(teachers, fold, [Path(c.path).name for c in clips], temperature)


def soft_labels_by_id(teachers: list[str], fold: int, clip_ids, temperature: float) -> np.ndarray:
    """:func:`teacher_soft_labels` keyed by clip id (the audio file's name), so that no dataset is needed."""
    probs = []
    names = [str(n) for n in clip_ids]
    for t in teachers:
        path = TEACHER_LOGITS / f"{t}.npz"
        if not path.is_file():
            raise FileNotFoundError(f"no teacher logits {path}; known: {sorted(p.stem for p in TEACHER_LOGITS.glob('*.npz'))}")
        z = np.load(path)
        row = int(np.nonzero(z["folds"] == fold)[0][0])
        pos = {str(n): i for i, n in enumerate(z["clip_ids"])}
        missing = [n for n in names if n not in pos]
        if missing:
            raise ValueError(f"{path} lacks {len(missing)} clip(s), e.g. {missing[:2]}")
        lg = z["logits"][row][[pos[n] for n in names]].astype(np.float64) / temperature
        e = np.exp(lg - lg.max(1, keepdims=True))
        probs.append(e / e.sum(1, keepdims=True))
    return np.mean(probs, axis=0).astype(np.float32)


class AdaptSampler:
    """Training-time twin of the runtime's adaptive normalisation (``CTARNNConfig.adapt``).

    At run time a window is normalised with mu = (prior * ref_mean + sum of the stream's earlier window means) /
    (prior + their number). Here each training window gets such a mu from ``n`` random other windows of the same
    speaker in the same copy (``n`` = 0 a quarter of the time -- the stream's first window, or ``adapt="off"`` --
    else log-uniform in 1..``max_windows``), so the head learns on the inputs it gets: from the prior alone to a
    well-estimated speaker mean. Window means are over the window's (pooled) frames, per channel and dimension.

    ``mix`` (with ``y_clip``, each clip's label index): with this probability the ``n`` windows are drawn with a
    random neutral share (uniform in 0..1; the rest in the speaker's own proportions of the other classes) instead
    of the speaker's training mix. Real sessions are mostly ordinary speech (and ``Stream.calibrate`` pins a baseline
    from it), while RAVDESS gives each speaker 1 neutral clip in 7; a head that only ever saw the training mix's mean
    reads a neutral-heavy session mean -- under noise especially -- as a shifted baseline and stops predicting
    neutral (``benchmarks/session_mix.py``)."""

    def __init__(self, data, clips, is_train: np.ndarray, prior: float, max_windows: int = 96, seed: int = 0,
                 ref_copies: int | None = None, y_clip: np.ndarray | None = None, mix: float = 0.0,
                 neutral: int = 0):
        self.means = [emb.astype(np.float32).mean(axis=2) for emb, _ in data]  # per copy: [windows, N, D]
        spk = np.asarray([c.speaker for c in clips])
        self.groups = []  # per copy: {speaker: window indices}
        for (emb, owner) in data:
            s = spk[owner]
            self.groups.append({k: np.nonzero(s == k)[0] for k in np.unique(s)})
        self.owner_speaker = [spk[owner] for _, owner in data]
        tr = [is_train[owner] for _, owner in data]
        k = len(data) if ref_copies is None else ref_copies  # the prior: training windows of the first k copies
        self.ref_mean = np.concatenate([m[t] for m, t in zip(self.means[:k], tr[:k])]).mean(axis=0).astype(np.float32)
        self.prior, self.max_windows = float(prior), max_windows
        self.rng = np.random.default_rng(seed + 7)
        if not 0.0 <= mix <= 1.0:
            raise ValueError(f"mix must be in [0, 1], got {mix}")
        if mix and y_clip is None:
            raise ValueError("mix needs y_clip (each clip's label index)")
        self.mix = float(mix)
        self.split = []  # per copy: {speaker: (neutral window indices, other window indices)}
        if mix:
            for (_, owner), groups in zip(data, self.groups):
                is_neutral = np.asarray(y_clip)[owner] == neutral
                self.split.append({k: (g[is_neutral[g]], g[~is_neutral[g]]) for k, g in groups.items()})

    def _pick(self, copy: int, speaker: str, n: int) -> np.ndarray:
        """``n`` window indices of ``speaker`` in ``copy``: the training mix, or (``mix``) a random neutral share."""
        pool = self.groups[copy][speaker]
        if self.mix and self.rng.random() < self.mix:
            neu, other = self.split[copy][speaker]
            if len(neu) and len(other):
                k = int(self.rng.binomial(n, self.rng.random()))
                return np.concatenate([self.rng.choice(neu, size=k, replace=len(neu) < k),
                                       self.rng.choice(other, size=n - k, replace=len(other) < n - k)])
        return self.rng.choice(pool, size=min(n, len(pool)), replace=len(pool) < n)

    def mu(self, copy: int, window: int, n: int | None = None) -> np.ndarray:
        if n is None:
            n = 0 if self.rng.random() < 0.25 else int(np.exp(self.rng.uniform(0.0, np.log(self.max_windows))))
        total = self.prior * self.ref_mean
        if n:
            pick = self._pick(copy, self.owner_speaker[copy][window], n)
            total = total + self.means[copy][pick].sum(axis=0)
            n = len(pick)
        return (total / (self.prior + n)).astype(np.float32)

    def speaker_mu(self, copy: int, exclude: np.ndarray, speaker: str) -> np.ndarray:
        """mu after a long session of ``speaker``: every other window of theirs (``exclude``: this clip's)."""
        return self.pool_mu(copy, np.setdiff1d(self.groups[copy][speaker], exclude))

    def pool_mu(self, copy: int, pool: np.ndarray) -> np.ndarray:
        """mu after the windows ``pool`` of ``copy`` (e.g. only a speaker's neutral windows: a calibrated baseline)."""
        total = self.prior * self.ref_mean + self.means[copy][pool].sum(axis=0)
        return (total / (self.prior + len(pool))).astype(np.float32)


def trained_copies(copies: int, sessions: int = 0, voices: int = 0, train_sessions: bool = True,
                   train_voices: bool = True) -> np.ndarray:
    """Indices into :func:`load_cache`'s list (copies, then session copies, then voice copies) of the copies the head
    trains on: all ordinary copies, the session / voice copies unless they are only validated on."""
    return np.asarray(list(range(copies)) + (list(range(copies, copies + sessions)) if train_sessions else [])
                      + (list(range(copies + sessions, copies + sessions + voices)) if train_voices else []), int)


def fit(encoder: str, fold: int, copies: int, epochs: int, out: Path | None, seed: int = 0,
        batch: int = 64, lr: float = 1e-3, weight_decay: float = 0.05, head_args: dict | None = None,
        teachers: list[str] | None = None, kd_weight: float = 0.5, kd_temperature: float = 2.0,
        sessions: int = 0, train_sessions: bool = True, adapt_mix: float = 0.0, voices: int = 0,
        train_voices: bool = True) -> dict:
    """Train the head on the training actors of ``fold``; validate clip-level on its held-out actors.

    ``teachers``: distil from these teachers' per-clip logits (ensemble soft labels at ``kd_temperature``):
    loss = (1 - kd_weight) * CE(label) + kd_weight * KD (Hinton, T^2-scaled), each window taking its clip's target.
    ``head_args={"adapt": true}``: train for test-time adaptive normalisation (:class:`AdaptSampler`); validation
    then reports ``uar`` with the speaker's statistics (a session: all of the speaker's other clips) and ``uar_off``
    with the training mean only. ``sessions``: also train on that many session copies (:func:`embed`); validation
    then also reports, per session copy, the held-out speakers' UAR and recall under their session's condition
    (``sessions_val``); ``train_sessions=False`` only validates on them (the baseline). The adaptation prior
    (``ref_mean``) is always the mean of the ordinary copies' training windows. ``adapt_mix``: the share of
    training windows whose adaptation mean has a random neutral share (:class:`AdaptSampler` ``mix``); adaptive
    heads also report ``uar_neutral_ctx`` / ``recall_neutral_ctx``: each clip against a mean of only the speaker's
    other neutral clips (a session of ordinary speech, or a baseline pinned with ``Stream.calibrate``).
    ``voices``: also train on that many voice copies (pseudo-speakers, :mod:`train.voices`); validation then also
    reports the held-out speakers in each copy's voices (``voices_val``); ``train_voices=False`` only validates on
    them (the baseline).
    """
    import torch
    from tqdm import tqdm

    from .models.cta_rnn import CTARNN, CTARNNConfig

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    clips, test_speakers, y_clip, is_train = fold_split(fold)
    data = load_cache(encoder, copies, sessions, voices)
    d = data[0][0].shape
    cfg = CTARNNConfig(n_channels=d[1], d_in=d[3], n_classes=len(LABELS4), **(head_args or {}))
    head = CTARNN(cfg)
    sampler = None
    if cfg.adapt:
        sampler = AdaptSampler(data, clips, is_train, cfg.adapt_prior, seed=seed, ref_copies=copies, y_clip=y_clip,
                               mix=adapt_mix, neutral=LABELS4.index("neutral"))
        head.ref_mean.copy_(torch.from_numpy(sampler.ref_mean))
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    trained = trained_copies(copies, sessions, voices, train_sessions, train_voices)
    pool, labels, w = balanced_pool([data[i][1] for i in trained], y_clip, is_train)
    pool[:, 0] = trained[pool[:, 0]]  # index into data
    soft = None
    if teachers:
        from .losses import kd_loss

        soft = teacher_soft_labels(teachers, fold, clips, kd_temperature)
        log_soft = torch.from_numpy(np.log(np.clip(soft, 1e-8, 1.0)) * kd_temperature)  # logits whose softmax(/T) = soft
    steps_per_epoch = max(1, int(is_train.sum()) * 2 // batch)  # ~2 windows per training clip per epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.1)
    t0 = time.time()
    head.train()
    for ep in range(epochs):
        tot = 0.0
        for _ in tqdm(range(steps_per_epoch), desc=f"fold {fold} epoch {ep + 1}/{epochs}", leave=False):
            idx = rng.choice(len(pool), size=batch, p=w)
            xb = torch.from_numpy(np.stack([data[c][0][j] for c, j in pool[idx]]).astype(np.float32))
            yb = torch.from_numpy(labels[idx])
            mu = None
            if sampler is not None:
                mu = torch.from_numpy(np.stack([sampler.mu(int(c), int(j)) for c, j in pool[idx]]))
            with torch.enable_grad():
                logits = head(xb, pooled=True, mu=mu)
                loss = torch.nn.functional.cross_entropy(logits, yb, label_smoothing=0.1)
                if soft is not None:
                    tb = log_soft[[int(data[c][1][j]) for c, j in pool[idx]]]
                    loss = (1 - kd_weight) * loss + kd_weight * kd_loss(logits, tb, T=kd_temperature)
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(head.parameters(), 5.0)
                opt.step()
            sched.step()
            tot += float(loss)
        print(f"fold {fold} epoch {ep + 1}: loss {tot / steps_per_epoch:.4f}", flush=True)
    train_seconds = time.time() - t0
    head.eval()
    # clip-level validation on held-out actors, clean audio, exactly like Model.classify (mean window probs)
    test_idx = np.nonzero(~is_train)[0]

    neutral_clip = y_clip == LABELS4.index("neutral")

    def validate(copy: int) -> tuple[dict, dict, dict]:
        emb, owner = data[copy]
        probs, probs_off, probs_neu = {}, {}, {}
        with torch.no_grad():
            for i in test_idx:
                rows = np.nonzero(owner == i)[0]
                win = torch.from_numpy(emb[rows].astype(np.float32))
                mu = None
                if sampler is not None:
                    probs_off[i] = torch.softmax(head(win, pooled=True), -1).mean(0).numpy()
                    m = sampler.speaker_mu(copy, rows, clips[i].speaker)
                    mu = torch.from_numpy(np.repeat(m[None], len(rows), axis=0))
                    neu = np.setdiff1d(sampler.groups[copy][clips[i].speaker], rows)
                    m_neu = sampler.pool_mu(copy, neu[neutral_clip[owner[neu]]])
                    probs_neu[i] = torch.softmax(head(win, pooled=True, mu=torch.from_numpy(
                        np.repeat(m_neu[None], len(rows), axis=0))), -1).mean(0).numpy()
                probs[i] = torch.softmax(head(win, pooled=True, mu=mu), -1).mean(0).numpy()
        y_true = np.asarray([y_clip[i] for i in test_idx])
        rep = classification_report(y_true, np.asarray([int(np.argmax(probs[i])) for i in test_idx]), LABELS4)
        off = neu = None
        if sampler is not None:
            off = classification_report(y_true, np.asarray([int(np.argmax(probs_off[i])) for i in test_idx]), LABELS4)
            neu = classification_report(y_true, np.asarray([int(np.argmax(probs_neu[i])) for i in test_idx]), LABELS4)
        return rep, off, neu

    report, off, neu = validate(0)
    if off is not None:
        report["off"] = {k: off[k] for k in ("uar", "wa", "recall")}
        report["uar_off"] = off["uar"]
        report["uar_neutral_ctx"], report["recall_neutral_ctx"] = neu["uar"], neu["recall"]
    if sessions:
        report["sessions_val"] = []
        for k in range(sessions):
            r, o, nc = validate(copies + k)
            report["sessions_val"].append({"uar": r["uar"], "recall": r["recall"],
                                           **({"uar_off": o["uar"], "recall_off": o["recall"],
                                               "uar_neutral_ctx": nc["uar"], "recall_neutral_ctx": nc["recall"]}
                                              if o else {})})
    if voices:
        report["voices_val"] = []
        for k in range(voices):
            r, o, _ = validate(copies + sessions + k)
            report["voices_val"].append({"uar": r["uar"], "recall": r["recall"],
                                         **({"uar_off": o["uar"], "recall_off": o["recall"]} if o else {})})
    result = {
        "model": "cta_rnn_student", "encoder": f"whisper-{encoder}", "fold": fold,
        "test_speakers": test_speakers, "epochs": epochs, "copies": copies, "sessions": sessions, "voices": voices,
        "train_voices": bool(voices and train_voices),
        "train_sessions": bool(sessions and train_sessions), "seed": seed, "adapt_mix": adapt_mix,
        "train_seconds": round(train_seconds, 1), "device": f"cpu ({platform.processor() or platform.machine()})",
        "head_config": cfg.to_dict(), **report,
    }
    if teachers:
        result["distillation"] = {"teachers": list(teachers), "kd_weight": kd_weight, "temperature": kd_temperature}
    print(json.dumps({k: result[k] for k in ("fold", "uar", "wa")}), flush=True)
    if out is not None:
        import torch

        out.mkdir(parents=True, exist_ok=True)
        torch.save({"config": cfg.to_dict(), "head": head.state_dict(), "encoder": encoder,
                    "labels": list(LABELS4), "window_frames": WINDOW_FRAMES, "hop_frames": HOP_FRAMES,
                    "first_frames": FIRST_FRAMES, "validation": result,
                    "command": " ".join(["python -m train.student"] + sys.argv[1:])},
                   out / "student.pt")
        (out / "validation.json").write_text(json.dumps(result, indent=1))
    return result


def copies_val_mean(recs: list[dict], key: str) -> dict:
    """Mean over every fold's ``key`` validations (``sessions_val`` / ``voices_val``: one per session or voice copy):
    UAR, neutral recall, and those without adaptation and against the ordinary-speech baseline where recorded."""
    vals = [v for r in recs for v in r[key]]
    out = {k: float(np.mean([v[k] for v in vals])) for k in ("uar", "uar_off") if k in vals[0]}
    out["neutral_recall"] = float(np.mean([v["recall"]["neutral"] for v in vals]))
    if "uar_neutral_ctx" in vals[0]:
        out["uar_neutral_ctx"] = float(np.mean([v["uar_neutral_ctx"] for v in vals]))
        out["neutral_recall_neutral_ctx"] = float(np.mean([v["recall_neutral_ctx"]["neutral"] for v in vals]))
    return out


def _kd_args(a) -> dict:
    if not getattr(a, "teachers", None):
        return {}
    return {"teachers": a.teachers.split(","), "kd_weight": a.kd_weight, "kd_temperature": a.kd_temperature}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.student", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("embed", "fit", "cv", "finetune"):
        p = sub.add_parser(name)
        p.add_argument("--encoder", default="tiny.en", help="tiny.en | base | a faster-whisper directory")
        p.add_argument("--copies", type=int, default=4, help="1 clean + (copies-1) augmented copies per clip")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--sessions", type=int, default=0,
                       help="session copies: each speaker's clips under one babble/cafe/noise condition (train.babble)")
        p.add_argument("--validate-sessions-only", action="store_true",
                       help="do not train on the session copies, only validate on them (a baseline)")
        if name == "embed":
            p.add_argument("--limit", type=int, default=None, help="only the first N clips (smoke tests)")
            p.add_argument("--tap", type=int, default=None, help="also cache hidden state k unpooled (fine-tuning)")
        else:
            p.add_argument("--epochs", type=int, default=12 if name == "finetune" else 25)
            p.add_argument("--head-args", default="{}", help='CTARNNConfig overrides as JSON, e.g. {"d_rnn": 32}')
            p.add_argument("--weight-decay", type=float, default=0.05)
            p.add_argument("--teachers", default=None,
                           help="distil from these teachers' logits, e.g. mmer-full,gmp_atl-full (benchmarks/results/teacher_logits)")
            p.add_argument("--kd-weight", type=float, default=0.5)
            p.add_argument("--kd-temperature", type=float, default=2.0)
        if name != "finetune":
            p.add_argument("--voices", type=int, default=0,
                           help="voice copies: each speaker's clips in one drawn pseudo-speaker's voice (train.voices)")
        if name in ("fit", "cv"):
            p.add_argument("--validate-voices-only", action="store_true",
                           help="do not train on the voice copies, only validate on them (a baseline)")
            p.add_argument("--adapt-mix", type=float, default=0.0,
                           help="adaptive heads: share of training windows whose adaptation mean has a random "
                                "neutral share (sessions of mostly ordinary speech); 0 = the speaker's training mix")
        if name in ("fit", "finetune"):
            p.add_argument("--fold", type=int, default=0)
            p.add_argument("--out", type=Path, default=Path("runs/default"))
        if name == "finetune":
            p.add_argument("--init", type=Path, default=None, help="student.pt of `fit` on the same fold (LP-FT)")
            p.add_argument("--tap", type=int, default=3, help="fine-tune the encoder layers from this one up")
        if name == "cv":
            p.add_argument("--results", type=Path, default=Path("benchmarks/results/student_cv.json"))
            p.add_argument("--finetune-tap", type=int, default=None, help="also LP-FT per fold from this layer up")
            p.add_argument("--finetune-epochs", type=int, default=12)
            p.add_argument("--runs", type=Path, default=Path("runs/cv"), help="where the per-fold checkpoints go")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(int(os.environ.get("EDGESER_THREADS", os.cpu_count() or 1)))
    if a.cmd == "embed":
        embed(a.encoder, a.copies, a.seed, a.limit, a.tap, sessions=a.sessions, voices=a.voices)
    elif a.cmd == "finetune":
        embed(a.encoder, a.copies, a.seed, tap=a.tap)
        finetune(a.encoder, a.fold, a.copies, a.epochs, a.out, a.init, a.tap, a.seed)
    elif a.cmd == "fit":
        embed(a.encoder, a.copies, a.seed, sessions=a.sessions, voices=a.voices)
        fit(a.encoder, a.fold, a.copies, a.epochs, a.out, a.seed, weight_decay=a.weight_decay,
            head_args=json.loads(a.head_args), sessions=a.sessions, train_sessions=not a.validate_sessions_only,
            adapt_mix=a.adapt_mix, voices=a.voices, train_voices=not a.validate_voices_only, **_kd_args(a))
    else:
        embed(a.encoder, a.copies, a.seed, sessions=a.sessions, voices=a.voices)
        if a.finetune_tap is not None:
            embed(a.encoder, a.copies, a.seed, tap=a.finetune_tap)
        recs, ft_recs = [], []
        for f in range(5):
            run = a.runs / f"fold{f}"
            recs.append(fit(a.encoder, f, a.copies, a.epochs, run, a.seed, weight_decay=a.weight_decay,
                            head_args=json.loads(a.head_args), sessions=a.sessions,
                            train_sessions=not a.validate_sessions_only, adapt_mix=a.adapt_mix, voices=a.voices,
                            train_voices=not a.validate_voices_only,
                            **_kd_args(a)))
            if a.finetune_tap is not None:
                ft_recs.append(finetune(a.encoder, f, a.copies, a.finetune_epochs, run / "finetune",
                                        run / "student.pt", a.finetune_tap, a.seed))
        summary = {
            "command": "python -m train.student " + " ".join(sys.argv[1:] if argv is None else argv),
            "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpu",
            "date": time.strftime("%Y-%m-%d"),
            "protocol": "RAVDESS 4 classes, speaker-independent 5-fold CV (train.data.ravdess.speaker_folds), "
                        "clip = mean of runtime-window probabilities, clean test audio, eager PyTorch fp32",
            "variants": {},
        }
        for name, rs in (("frozen encoder + CTA-RNN head", recs), ("LP-FT: + top encoder layers fine-tuned", ft_recs)):
            if rs:
                summary["variants"][name] = {"mean_uar": float(np.mean([r["uar"] for r in rs])),
                                             "mean_wa": float(np.mean([r["wa"] for r in rs])), "folds": rs}
                if rs[0].get("uar_off") is not None:
                    summary["variants"][name]["mean_uar_off"] = float(np.mean([r["uar_off"] for r in rs]))
                if rs[0].get("uar_neutral_ctx") is not None:
                    summary["variants"][name]["neutral_ctx_mean"] = {
                        "uar": float(np.mean([r["uar_neutral_ctx"] for r in rs])),
                        "neutral_recall": float(np.mean([r["recall_neutral_ctx"]["neutral"] for r in rs]))}
                for key in ("sessions_val", "voices_val"):
                    if rs[0].get(key):
                        summary["variants"][name][f"{key}_mean"] = copies_val_mean(rs, key)
        a.results.parent.mkdir(parents=True, exist_ok=True)
        a.results.write_text(json.dumps(summary, indent=1))
        for name, v in summary["variants"].items():
            print(f"{name}: mean UAR {v['mean_uar']:.4f}  WA {v['mean_wa']:.4f} -> {a.results}")
    return 0



# ---------------------------------------------------------------------------------------------------------------
# Stage 2: fine-tune the top encoder layers together with the head (LP-FT: the head trained on the frozen encoder
# first, then both at a small learning rate). Hidden state ``tap`` is cached unpooled, so only layers >= tap run.


class TopLayers:
    """Runs encoder layers ``tap..`` (+ the final LayerNorm, as HF applies it to the last hidden state)."""

    def __init__(self, encoder, tap: int):
        self.layers = encoder.layers[tap:]
        self.norm = encoder.layer_norm

    def parameters(self):
        return [p for m in (*self.layers, self.norm) for p in m.parameters()]

    def __call__(self, h):
        outs = [h]
        for i, layer in enumerate(self.layers):
            h = layer(h, None)
            h = h[0] if isinstance(h, tuple) else h
            outs.append(self.norm(h) if i == len(self.layers) - 1 else h)
        return outs  # hidden states tap .. last


def finetune(encoder: str, fold: int, copies: int, epochs: int, out: Path | None, init: Path | None,
             tap: int = 3, seed: int = 0, batch: int = 32, lr_head: float = 3e-4, lr_enc: float = 3e-5) -> dict:
    import torch
    from tqdm import tqdm

    from .models.cta_rnn import CTARNN, CTARNNConfig

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    clips, test_speakers, y_clip, is_train = fold_split(fold)
    data = []
    for c in range(copies):
        z = np.load(cache_path(encoder, c, tap))
        data.append((z["emb"], z["tap"], z["clip"]))
    model, _, dims = build_encoder(encoder)
    cfg = CTARNNConfig(n_channels=dims.n_layers + 1, d_in=dims.d_model, n_classes=len(LABELS4))
    head = CTARNN(cfg)
    if init is not None:
        ck = torch.load(init, map_location="cpu", weights_only=True)
        if ck["validation"]["fold"] != fold or ck["encoder"] != encoder:
            raise ValueError(f"{init}: head trained on fold {ck['validation']['fold']}/{ck['encoder']}, not {fold}/{encoder}")
        head.load_state_dict(ck["head"])
    top = TopLayers(model.encoder, tap)
    enc_params = top.parameters()
    for p in enc_params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW([{"params": head.parameters(), "lr": lr_head},
                             {"params": enc_params, "lr": lr_enc}], weight_decay=1e-2)
    pool, labels, w = balanced_pool([owner for _, _, owner in data], y_clip, is_train)
    steps = max(1, int(is_train.sum()) * 2 // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[lr_head, lr_enc], total_steps=epochs * steps, pct_start=0.1)

    def forward(frozen, tapped, train: bool):
        for m in (head, *top.layers, top.norm):
            m.train(train)
        hs = top(tapped)
        pooled = head.pool(torch.stack(hs, dim=1))
        return head(torch.cat([frozen, pooled], dim=1), pooled=True)

    t0 = time.time()
    with torch.enable_grad():
        for ep in range(epochs):
            tot = 0.0
            for _ in tqdm(range(steps), desc=f"finetune fold {fold} epoch {ep + 1}/{epochs}", leave=False):
                idx = rng.choice(len(pool), size=batch, p=w)
                fz = torch.from_numpy(np.stack([data[c][0][j] for c, j in pool[idx]]).astype(np.float32))
                tp = torch.from_numpy(np.stack([data[c][1][j] for c, j in pool[idx]]).astype(np.float32))
                loss = torch.nn.functional.cross_entropy(forward(fz, tp, True), torch.from_numpy(labels[idx]),
                                                         label_smoothing=0.1)
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(head.parameters(), 5.0)
                torch.nn.utils.clip_grad_norm_(enc_params, 1.0)
                opt.step()
                sched.step()
                tot += float(loss)
            print(f"finetune fold {fold} epoch {ep + 1}: loss {tot / steps:.4f}", flush=True)
    train_seconds = time.time() - t0
    emb, tapped, owner = data[0]
    test_idx = np.nonzero(~is_train)[0]
    y_true, y_pred = [], []
    with torch.no_grad():
        for i in test_idx:
            m = owner == i
            p = torch.softmax(forward(torch.from_numpy(emb[m].astype(np.float32)),
                                      torch.from_numpy(tapped[m].astype(np.float32)), False), -1).mean(0)
            y_true.append(y_clip[i])
            y_pred.append(int(p.argmax()))
    report = classification_report(np.asarray(y_true), np.asarray(y_pred), LABELS4)
    result = {
        "model": "cta_rnn_student", "variant": f"finetune-top{dims.n_layers - tap}", "encoder": f"whisper-{encoder}",
        "fold": fold, "test_speakers": test_speakers, "epochs": epochs, "copies": copies, "seed": seed,
        "train_seconds": round(train_seconds, 1), "device": f"cpu ({platform.processor() or platform.machine()})",
        "head_config": cfg.to_dict(), **report,
    }
    print(json.dumps({k: result[k] for k in ("fold", "variant", "uar", "wa")}), flush=True)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        enc_state = {k: v for k, v in model.encoder.state_dict().items()
                     if k.startswith("layer_norm.") or any(k.startswith(f"layers.{i}.") for i in range(tap, dims.n_layers))}
        torch.save({"config": cfg.to_dict(), "head": head.state_dict(), "encoder": encoder,
                    "encoder_state": enc_state, "labels": list(LABELS4), "window_frames": WINDOW_FRAMES,
                    "hop_frames": HOP_FRAMES, "first_frames": FIRST_FRAMES, "validation": result,
                    "command": " ".join(["python -m train.student"] + sys.argv[1:])},
                   out / "student.pt")
        (out / "validation.json").write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    sys.exit(main())
