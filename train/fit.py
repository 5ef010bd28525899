"""Train and evaluate one teacher on one fold: seeded, resumable, CPU or CUDA, progress bars.

``python -m train fit --model cta_rnn --data ravdess --fold 0`` (see :mod:`train.__main__`). One call trains the
model on the fold's training speakers and evaluates the *last* epoch on its held-out speakers (there is no model
selection on the test speakers), then returns a results record (the schema of ``benchmarks/results/teachers.json``)
and the per-clip logits of the trained model on every clip of the corpus (distillation targets).
"""

from __future__ import annotations

import math
import platform
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .data.packed import PackedCorpus
from .metrics import classification_report
from .models.common import Batch, checkpoint, count_parameters

MODELS = ("mmer", "cma", "cta_rnn", "mtl_ctc", "gmp_atl")


def model_classes(name: str):
    if name == "mmer":
        from .models.mmer import MMER, MMERConfig

        return MMER, MMERConfig
    if name == "cma":
        from .models.cma import CMA, CMAConfig

        return CMA, CMAConfig
    if name == "cta_rnn":
        from .models.cta_rnn import CTARNNTeacher, CTARNNTeacherConfig

        return CTARNNTeacher, CTARNNTeacherConfig
    if name == "mtl_ctc":
        from .models.mtl_ctc import MTLCTC, MTLCTCConfig

        return MTLCTC, MTLCTCConfig
    if name == "gmp_atl":
        from .models.gmp_atl import GMPATL, GMPATLConfig

        return GMPATL, GMPATLConfig
    raise ValueError(f"unknown model {name!r}; known: {MODELS}")


@dataclass(frozen=True)
class FitConfig:
    epochs: int = 30
    batch_size: int = 16
    optimizer: str = "adamw"  # "adam" | "adamw"
    lr: float = 1e-3  # head (and backbone when lr_backbone is None)
    lr_backbone: float | None = 5e-5  # None: same as lr; 0: frozen
    weight_decay: float = 0.01
    warmup: float = 0.1  # fraction of steps with linear warm-up, then the schedule
    schedule: str = "cosine"  # "cosine" decay to 0 | "constant"
    spec_augment: bool = True
    copies: int = 0  # augmented copies used in training besides the clean one (0 = as many as the pack has)
    max_frames: int = 1000  # crop longer training clips to 10 s (random offset)
    clip_grad: float = 5.0
    seed: int = 0
    amp: bool = True  # bf16 autocast on CUDA

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------------------------- batches


class Collator:
    """Builds :class:`Batch` es from a packed corpus: pads log-mels with each clip's floor (silence)."""

    def __init__(self, corpus: PackedCorpus, vocab=None, with_aug: bool = False, frame_targets=None):
        self.c = corpus
        self.vocab = vocab
        self.with_aug = with_aug and len(corpus.tts_mels) > 0
        self.frame_targets = frame_targets  # dict clip index -> [T_enc, S] int64
        self.chars = None
        if vocab is not None:
            self.chars = [np.array(vocab.encode(t), np.int64) for t in corpus.texts]

    def _mels(self, mels: list[np.ndarray], max_frames: int | None, rng):
        out, floors = [], []
        for m in mels:
            floors.append(float(m.max()) - 2.0)  # the whole clip's floor (a crop may miss its peak)
            if max_frames and m.shape[1] > max_frames:
                off = int(rng.integers(0, m.shape[1] - max_frames + 1)) if rng is not None else 0
                off -= off % 2  # keep encoder frames aligned with frame targets
                m = m[:, off : off + max_frames]
            out.append(m)
        t = max(m.shape[1] for m in out)
        t += t % 2
        x = np.stack([np.pad(m, ((0, 0), (0, t - m.shape[1])), constant_values=f) for m, f in zip(out, floors)])
        self.last_floors = floors
        return torch.from_numpy(x), torch.tensor([m.shape[1] for m in out])

    def _text(self, tids: np.ndarray):
        if not self.c.text_feats or (tids < 0).any():
            return None, None
        feats = [self.c.text_feats[t] for t in tids]
        ln = max(f.shape[0] for f in feats)
        x = np.stack([np.pad(f, ((0, ln - f.shape[0]), (0, 0))) for f in feats])
        mask = torch.arange(ln)[None] < torch.tensor([f.shape[0] for f in feats])[:, None]
        return torch.from_numpy(x), mask

    def __call__(self, idx: np.ndarray, copy_of: np.ndarray | None = None, rng=None, max_frames=None,
                 spec_augment: bool = False) -> Batch:
        c = self.c
        copy_of = np.zeros(len(idx), np.int64) if copy_of is None else copy_of
        mel, mel_len = self._mels([c.mels[k][i] for k, i in zip(copy_of, idx)], max_frames, rng)
        if spec_augment and rng is not None:
            mel = spec_augment_(mel, mel_len, rng, floors=self.last_floors)
        text, text_mask = self._text(c.text_id[idx])
        chars = char_lengths = None
        if self.chars is not None and (c.text_id[idx] >= 0).all():
            seqs = [self.chars[t] for t in c.text_id[idx]]
            ln = max(len(s) for s in seqs)
            chars = torch.from_numpy(np.stack([np.pad(s, (0, ln - len(s))) for s in seqs]))
            char_lengths = torch.tensor([len(s) for s in seqs])
        b = Batch(mel=mel, mel_lengths=mel_len, labels=torch.from_numpy(c.y[idx]),
                  gender=torch.from_numpy(c.gender[idx]), text=text, text_mask=text_mask, chars=chars,
                  char_lengths=char_lengths, index=torch.from_numpy(np.asarray(idx)))
        if self.frame_targets is not None:
            tg = [self.frame_targets[int(i)] for i in idx]
            t_enc = (mel.shape[-1] - 1) // 2 + 1
            ft = np.full((len(idx), t_enc, tg[0].shape[1]), -100, np.int64)
            for j, g in enumerate(tg):
                n = min(t_enc, g.shape[0])
                ft[j, :n] = g[:n]
            b.frame_targets = torch.from_numpy(ft)
        if self.with_aug and rng is not None:
            b.aug = self.aug_view(idx, rng)
        return b

    def aug_view(self, idx: np.ndarray, rng) -> Batch:
        """MMER's augmented view: the same transcript and emotion, spoken by a TTS voice not in the corpus."""
        c = self.c
        pick = []
        for i in idx:
            cand = np.nonzero((c.tts_text_id == c.text_id[i]) & (c.tts_label == c.y[i]))[0]
            if len(cand) == 0:
                cand = np.nonzero(c.tts_text_id == c.text_id[i])[0]
            pick.append(int(rng.choice(cand)))
        mel, mel_len = self._mels([c.tts_mels[j] for j in pick], None, None)
        text, text_mask = self._text(c.tts_text_id[pick])
        return Batch(mel=mel, mel_lengths=mel_len, labels=torch.from_numpy(c.y[idx]), text=text, text_mask=text_mask)


def spec_augment_(mel: torch.Tensor, lengths: torch.Tensor, rng, n_freq: int = 2, f_max: int = 10, n_time: int = 2,
                  t_frac: float = 0.05, floors=None) -> torch.Tensor:
    """SpecAugment (2 frequency masks of <= 10 bins, 2 time masks of <= 5 % of the clip), filled with the floor."""
    mel = mel.clone()
    for b in range(mel.shape[0]):
        floor = float(mel[b].max()) - 2.0 if floors is None else floors[b]
        for _ in range(n_freq):
            f = int(rng.integers(0, f_max + 1))
            f0 = int(rng.integers(0, mel.shape[1] - f + 1))
            mel[b, f0 : f0 + f] = floor
        n = int(lengths[b])
        for _ in range(n_time):
            t = int(rng.integers(0, max(1, int(t_frac * n)) + 1))
            t0 = int(rng.integers(0, max(1, n - t + 1)))
            mel[b, :, t0 : t0 + t] = floor
    return mel


# ------------------------------------------------------------------------------------------------- training


def _device(name: str | None) -> torch.device:
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _optimizer(model: nn.Module, cfg: FitConfig):
    head = [p for p in model.head_parameters() if p.requires_grad]
    groups = [{"params": head, "lr": cfg.lr}]
    lr_b = cfg.lr if cfg.lr_backbone is None else cfg.lr_backbone
    if lr_b > 0:
        bb = [p for p in model.backbone_parameters() if p.requires_grad]
        if bb:
            groups.append({"params": bb, "lr": lr_b})
    opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return opt_cls(groups, weight_decay=cfg.weight_decay)


def _schedule(step: int, total: int, warmup: float, kind: str = "cosine") -> float:
    w = int(round(warmup * total))
    if w and step < w:
        return (step + 1) / w
    if kind == "constant":
        return 1.0
    p = (step - w) / max(1, total - w)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, p)))


def train_stage(model: nn.Module, coll: Collator, train_idx: np.ndarray, cfg: FitConfig, device: torch.device, *,
                ckpt: Path | None = None, tag: str = "", progress: bool = True, class_balance: bool = True) -> list:
    """Run ``cfg.epochs`` epochs of ``model.losses`` on ``train_idx``; resumes from ``ckpt`` if it exists."""
    from tqdm import tqdm

    c = coll.c
    n_copies = len(c.mels) if cfg.copies == 0 else min(len(c.mels), 1 + cfg.copies)
    pool = np.array([(k, i) for k in range(n_copies) for i in train_idx])
    steps_per_epoch = max(1, math.ceil(len(pool) / cfg.batch_size))
    total = steps_per_epoch * cfg.epochs
    opt = _optimizer(model, cfg)
    base_lrs = [g["lr"] for g in opt.param_groups]
    history, start = [], 0
    if ckpt is not None and ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        if state.get("tag") == tag:
            model.load_state_dict(state["state"])
            opt.load_state_dict(state["optimizer"])
            start, history = int(state["epoch"]), list(state["history"])
    amp = cfg.amp and device.type == "cuda"
    weights = None
    if class_balance:
        labels = c.y[pool[:, 1]]
        w = 1.0 / np.bincount(labels, minlength=len(c.labels))[labels]
        weights = w / w.sum()
    for epoch in range(start, cfg.epochs):
        rng = np.random.default_rng([cfg.seed, epoch])
        torch.manual_seed(cfg.seed * 1000 + epoch)
        order = rng.choice(len(pool), size=len(pool), replace=weights is not None, p=weights)
        model.train()
        sums: dict[str, float] = {}
        bar = tqdm(range(steps_per_epoch), desc=f"{tag} epoch {epoch + 1}/{cfg.epochs}", disable=not progress,
                   leave=False)
        for s in bar:
            sel = pool[order[s * cfg.batch_size : (s + 1) * cfg.batch_size]]
            if len(sel) < 2:
                continue
            batch = coll(sel[:, 1], copy_of=sel[:, 0], rng=rng, max_frames=cfg.max_frames,
                         spec_augment=cfg.spec_augment).to(device)
            f = _schedule(epoch * steps_per_epoch + s, total, cfg.warmup, cfg.schedule)
            for g, lr in zip(opt.param_groups, base_lrs):
                g["lr"] = lr * f
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                out = model(batch)
            terms = model.losses(batch, out)
            opt.zero_grad(set_to_none=True)
            terms["total"].backward()
            if cfg.clip_grad:
                nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], cfg.clip_grad)
            opt.step()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            bar.set_postfix(loss=f"{float(terms['total'].detach()):.3f}")
        history.append({k: v / steps_per_epoch for k, v in sums.items()})
        if ckpt is not None:
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"tag": tag, "epoch": epoch + 1, "history": history, "state": model.state_dict(),
                        "optimizer": opt.state_dict()}, ckpt)
    return history


@torch.no_grad()
def predict(model: nn.Module, coll: Collator, idx: np.ndarray, device: torch.device, batch_size: int = 32,
            amp: bool = True) -> tuple[np.ndarray, dict]:
    """Logits ``[len(idx), C]`` of clean copies (whole clips, sorted by length for little padding)."""
    model.eval()
    lengths = np.array([coll.c.mels[0][i].shape[1] for i in idx])
    order = np.argsort(lengths)
    out = np.zeros((len(idx), len(coll.c.labels)), np.float32)
    extra: dict[str, list] = {}
    for s in range(0, len(idx), batch_size):
        pos = order[s : s + batch_size]
        batch = coll(idx[pos]).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
            o = model(batch)
        out[pos] = o["logits"].float().cpu().numpy()
        if "ctc_log_probs" in o and hasattr(model, "transcribe") and coll.vocab is not None:
            for p, t in zip(pos, model.transcribe(o, coll.vocab)):
                extra.setdefault("transcripts", {})[int(p)] = t
    return out, extra


# ------------------------------------------------------------------------------------------------- GMP-ATL


@torch.no_grad()
def frame_features(model, coll: Collator, idx: np.ndarray, layer: int, device, batch_size: int = 32):
    """Per clip ``[T_enc, D]`` features of backbone hidden state ``layer`` (clean copies)."""
    from .backbones.speech import encode

    model.eval()
    feats = {}
    for s in range(0, len(idx), batch_size):
        sel = idx[s : s + batch_size]
        batch = coll(sel).to(device)
        hidden, lengths = encode(model.backbone, batch)
        h = hidden[layer].float()
        for j, i in enumerate(sel):
            feats[int(i)] = h[j, : int(lengths[j])]
    return feats


def fit_gmp_atl(model, coll: Collator, train_idx, cfg: FitConfig, device, *, stage_epochs=None, ckpt=None,
                progress=True, seed: int = 0) -> dict:
    """Stages 1-3 of GMP-ATL (stages 1-2 only when ``model.config.use_gmp``)."""
    from .kmeans import multiscale_kmeans

    hist = {}
    e1, e2, e3 = stage_epochs or (max(1, cfg.epochs // 3), max(1, cfg.epochs // 3), cfg.epochs)
    if model.config.use_gmp:
        model.set_stage(1)
        hist["stage1"] = train_stage(model, coll, train_idx, replace(cfg, epochs=e1), device,
                                     ckpt=_sub(ckpt, "s1"), tag="gmp_atl stage 1", progress=progress)
        feats = frame_features(model, coll, train_idx, model.config.cluster_layer, device)
        allf = torch.cat([feats[int(i)] for i in train_idx])
        clusterings = multiscale_kmeans(allf, model.config.scales, seed=seed)
        scales = tuple(int(c.shape[0]) for c, _ in clusterings)
        if scales != tuple(model.config.scales):
            model.set_scales(scales)
        targets, pos = {}, 0
        for i in train_idx:
            n = feats[int(i)].shape[0]
            targets[int(i)] = torch.stack([a[pos : pos + n] for _, a in clusterings], dim=1).cpu().numpy()
            pos += n
        hist["kmeans_scales"] = list(scales)
        model.set_stage(2)
        coll2 = Collator(coll.c, coll.vocab, frame_targets=targets)
        hist["stage2"] = train_stage(model, coll2, train_idx, replace(cfg, epochs=e2, spec_augment=False,
                                                                        max_frames=None),
                                     device, ckpt=_sub(ckpt, "s2"), tag="gmp_atl stage 2", progress=progress,
                                     class_balance=False)
    model.set_stage(3)
    hist["stage3"] = train_stage(model, coll, train_idx, replace(cfg, epochs=e3), device, ckpt=_sub(ckpt, "s3"),
                                 tag="gmp_atl stage 3", progress=progress)
    return hist


def _sub(ckpt: Path | None, suffix: str) -> Path | None:
    return None if ckpt is None else ckpt.with_name(f"{ckpt.stem}.{suffix}{ckpt.suffix}")


# ------------------------------------------------------------------------------------------------- one fold


def fit_fold(model_name: str, corpus: PackedCorpus, fold: int, *, variant: str = "full", preset: str = "paper",
             backbone: str | None = None, backbone_weights: str | None = None, fit: dict | None = None,
             device: str | None = None, out_dir: str | Path | None = None, progress: bool = True,
             command: str = "") -> tuple[dict, np.ndarray]:
    """Train ``model_name`` (``variant``) on ``fold``'s training speakers; returns (record, logits of every clip)."""
    from .backbones.speech import build_backbone
    from .text import CharVocab

    cls, cfg_cls = model_classes(model_name)
    mcfg = getattr(cfg_cls, preset)().variant(variant)
    if backbone is not None:
        mcfg = replace(mcfg, backbone=backbone)
    if hasattr(mcfg, "d_text") and corpus.text_feats:
        mcfg = replace(mcfg, d_text=int(corpus.text_feats[0].shape[1]))
    if hasattr(mcfg, "n_classes"):
        mcfg = replace(mcfg, n_classes=len(corpus.labels))
    fcfg = FitConfig(**{**{k: v for k, v in mcfg.fit_defaults().items()}, **(fit or {})})
    torch.manual_seed(fcfg.seed)
    np.random.seed(fcfg.seed)
    dev = _device(device)
    bb = build_backbone(mcfg.backbone, weights=backbone_weights)
    model = cls(mcfg, backbone=bb).to(dev)
    vocab = CharVocab()
    coll = Collator(corpus, vocab, with_aug=getattr(mcfg, "gamma_acl", 0) > 0)
    train_idx, test_idx = corpus.split(fold)
    ckpt = None
    if out_dir is not None:
        ckpt = Path(out_dir) / f"{model_name}-{variant}-fold{fold}.pt"
    t0 = time.perf_counter()
    if model_name == "gmp_atl":
        history = fit_gmp_atl(model, coll, train_idx, fcfg, dev, ckpt=ckpt and ckpt.with_suffix(".train.pt"),
                              progress=progress, seed=fcfg.seed)
    else:
        history = train_stage(model, coll, train_idx, fcfg, dev, ckpt=ckpt and ckpt.with_suffix(".train.pt"),
                              tag=f"{model_name} {variant} fold {fold}", progress=progress)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    train_seconds = time.perf_counter() - t0
    all_idx = np.arange(len(corpus))
    logits, extra = predict(model, coll, all_idx, dev)
    y_true, y_pred = corpus.y[test_idx], logits[test_idx].argmax(1)
    rep = classification_report(y_true, y_pred, corpus.labels)
    record = {
        "model": model_name, "variant": variant, "fold": fold, "uar": rep["uar"], "wa": rep["wa"],
        "macro_f1": rep["macro_f1"], "recall": rep["recall"], "confusion": rep["confusion"],
        "test_speakers": sorted(corpus.folds[fold]), "n_train": int(len(train_idx)), "n_test": int(len(test_idx)),
        "backbone": mcfg.backbone, "text_encoder": corpus.text_encoder if hasattr(mcfg, "d_text") else None,
        "params": count_parameters(model), "trainable_params": count_parameters(model, trainable_only=True),
        "device": _device_name(dev), "train_seconds": round(train_seconds, 1), "epochs": fcfg.epochs,
        "config": mcfg.to_dict(), "fit": fcfg.to_dict(), "data": corpus.name, "command": command,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "machine": platform.node(),
        "final_train_loss": (history[-1] if isinstance(history, list) and history else None),
    }
    if "transcripts" in extra:
        from .text import char_error_rate

        refs = [corpus.texts[corpus.text_id[i]] for i in test_idx]
        hyps = [extra["transcripts"][int(i)] for i in test_idx]
        record["test_cer"] = float(char_error_rate([vocab.normalize(r) for r in refs], hyps))
    if ckpt is not None:
        torch.save(checkpoint(model, model_name, variant=variant, fold=fold, labels=list(corpus.labels)), ckpt)
    return record, logits


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(dev)}"
    return f"cpu:{platform.processor() or platform.machine()}"
