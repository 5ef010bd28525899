"""Distil the streaming causal encoder (train/models/causal.py) from cached Whisper-base hidden states, on RAVDESS.

    EDGESER_THREADS=1 python -m train.distill_causal --epochs 20 --out runs/causal

Targets: ``~/.cache/edgeser/emb/ravdess4-base-w200/copy0.npz`` (``python -m train.student embed --encoder base
--copies 1``): for every runtime window (2 s = 200 log-mel frames) of every clean RAVDESS clip, the 7 Whisper-base
hidden states (embedding output + 6 layers), average-pooled by 2 over time: 50 frames of 40 ms x 512.

Inputs: the same windows' raw log10-mel, recomputed here (``edgeser.features.log_mel`` of the clip, the frames the
runtime feeds). The runtime's window *positions* may have changed since the cache was written (the last window of a
segment depends on the VAD / stream code), so every window is re-located: Whisper-base's stem (hidden state 0 is
``GELU(conv2(GELU(conv1(x)))) + positions``, a local function of the window) is run over the clip, and the window
end whose stem output equals the cached hidden state 0 (to fp16 precision) is taken. Windows with no exact match
are dropped (reported). Inputs and targets are therefore aligned frame for frame.

Loss (per window, the student run from a fresh state over the 200 frames, i.e. exactly as streamed):
- distillation (DistilHuBERT-style): for each target layer, a linear head maps the student's last block output
  (20 ms frames, average-pooled by 2 -> 40 ms, the targets' rate) to the 512-d target, standardised per dimension
  over the training windows; L1 + (1 - cosine). The student sees only the past plus the current 200 ms chunk while
  the teacher saw the whole 2 s window: that gap is expected and measured (held-out cosine per layer).
- CE (class-weighted, label smoothing 0.1) on the streaming head's logits after the window's last chunk, plus
  optional KD from committed teacher logits (``--teachers``, benchmarks/results/teacher_logits).

Validation (fold ``--fold``'s held-out actors, speaker-independent, clean audio):
- ``uar`` / ``wa``: the ``train.student fit`` protocol -- the current runtime's windows of each clip
  (``train.student.runtime_windows``), each classified from a fresh state, mean of window probabilities per clip.
- ``stream``: each whole clip streamed from a fresh state, the logits after its last chunk (the causal model's
  native answer: "the utterance so far").
- ``distill_cosine``: mean cosine between predicted and (standardised) target frames per target layer.
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

from .student import WINDOW_FRAMES, cache_path, fold_split

SILENCE = -10.0  # log10(LOG_FLOOR): what the features give for digital silence
TOL = 0.05  # max |stem - cached hidden state 0| (fp16 targets) for a window to count as aligned


def inputs_path(encoder: str = "base") -> Path:
    return cache_path(encoder, 0).with_name("causal-inputs.npz")


def _stem_pooled(enc, mel_padded, starts):
    """Whisper stem (hidden state 0) of the windows starting at ``starts`` of mel_padded [80, N], pooled by 2."""
    import torch

    from .models.cta_rnn import whisper_normalize

    wins = np.stack([mel_padded[:, s : s + WINDOW_FRAMES] for s in starts])
    x = whisper_normalize(torch.from_numpy(wins))
    with torch.no_grad():
        h = torch.nn.functional.gelu(enc.conv1(x))
        h = torch.nn.functional.gelu(enc.conv2(h)).transpose(1, 2) + enc.embed_positions.weight[: h.shape[2] // 2]
    b, t, d = h.shape
    return h.reshape(b, t // 2, 2, d).mean(2).numpy()


def build_inputs(encoder: str = "base", refresh: bool = False) -> dict:
    """Per-clip log-mel and, per cached window, its (re-located) end frame. Cached next to the targets."""
    out = inputs_path(encoder)
    if out.is_file() and not refresh:
        z = np.load(out)
        return {k: z[k] for k in z.files}
    from tqdm import tqdm

    from edgeser.audio import load as load_audio
    from edgeser.features import log_mel

    from .data.ravdess import load_ravdess
    from .student import build_encoder, runtime_windows

    clips = load_ravdess()
    z = np.load(cache_path(encoder, 0))
    if [str(p) for p in z["paths"]] != [c.path for c in clips]:
        raise ValueError(f"{cache_path(encoder, 0)} was written for another clip list")
    owner = z["clip"]
    ref0 = z["emb"][:, 0].astype(np.float32)  # [N, 50, 512]
    model, _, _ = build_encoder(encoder)
    enc = model.encoder
    mels, offsets, win_end, rt_end, rt_owner, err = [], [0], np.full(len(owner), -1), [], [], np.zeros(len(owner))
    for i, clip in enumerate(tqdm(clips, desc="log-mel + window alignment")):
        x = load_audio(clip.path)
        mel = log_mel(x)
        n = mel.shape[1]
        mels.append(mel)
        offsets.append(offsets[-1] + n)
        padded = np.concatenate([np.full((mel.shape[0], WINDOW_FRAMES), SILENCE, np.float32), mel], axis=1)
        # the current runtime's windows (for the validation protocol); locate each by exact equality
        rts = runtime_windows(x)
        for w in rts:
            ends = [e for e in range(1, n + 1) if np.array_equal(padded[:, e : e + WINDOW_FRAMES], w)]
            if not ends:
                raise RuntimeError(f"{clip.path}: a runtime window is not a slice of log_mel (front end changed?)")
            rt_end.append(ends[0])
            rt_owner.append(i)
        # the cached windows: try the runtime's ends first, then every other end, nearest the clip's end first
        idx = np.nonzero(owner == i)[0]
        tried = sorted(set(rt_end[-len(rts):]))
        first = _stem_pooled(enc, padded, tried)
        rest = [e for e in range(n, 0, -1) if e not in tried]
        for j in idx:
            d = np.abs(first - ref0[j][None]).reshape(len(tried), -1).max(1)
            k = int(np.argmin(d))
            best, end = float(d[k]), tried[k]
            for s in range(0, len(rest) if best > TOL else 0, 32):
                cand = rest[s : s + 32]
                d = np.abs(_stem_pooled(enc, padded, cand) - ref0[j][None]).reshape(len(cand), -1).max(1)
                k = int(np.argmin(d))
                if d[k] < best:
                    best, end = float(d[k]), cand[k]
                if best <= TOL:
                    break
            err[j] = best
            if best <= TOL:
                win_end[j] = end
    res = {"mel": np.concatenate(mels, axis=1), "offset": np.asarray(offsets, np.int64), "win_clip": owner,
           "win_end": win_end, "win_err": err.astype(np.float32), "rt_clip": np.asarray(rt_owner, np.int32),
           "rt_end": np.asarray(rt_end, np.int64)}
    np.savez(out, **res)
    print(f"wrote {out}: {int((win_end > 0).sum())}/{len(win_end)} cached windows aligned, "
          f"{len(rt_end)} runtime windows", flush=True)
    return res


def clip_mel(inp: dict, i: int) -> np.ndarray:
    return inp["mel"][:, inp["offset"][i] : inp["offset"][i + 1]]


def window(inp: dict, clip: int, end: int) -> np.ndarray:
    mel = clip_mel(inp, clip)
    a = end - WINDOW_FRAMES
    if a >= 0:
        return mel[:, a:end]
    return np.concatenate([np.full((mel.shape[0], -a), SILENCE, np.float32), mel[:, :end]], axis=1)


def load_targets(encoder: str, layers: tuple[int, ...]) -> np.ndarray:
    z = np.load(cache_path(encoder, 0))
    return np.ascontiguousarray(z["emb"][:, list(layers)])  # float16 [N, k, 50, 512]


def evaluate(model, heads, inp, targets, stats, fold_info, layers, from_layer, delay):
    """Held-out metrics: window protocol, stream protocol, per-layer distillation cosine."""
    import torch

    from .data.ravdess import LABELS4
    from .metrics import classification_report
    from .models.causal import pad_to_chunks

    _, test_speakers, y_clip, is_train = fold_split(fold_info)
    test = np.nonzero(~is_train)[0]
    model.eval()
    heads.eval()
    out = {}
    with torch.no_grad():
        # window protocol
        probs = {}
        for i in test:
            ends = inp["rt_end"][inp["rt_clip"] == i]
            w = torch.from_numpy(np.stack([window(inp, i, e) for e in ends]))
            _, lg = model.forward_full(w)
            probs[i] = torch.softmax(lg[:, -1], -1).mean(0).numpy()
        y_true = np.asarray([y_clip[i] for i in test])
        rep = classification_report(y_true, np.asarray([int(np.argmax(probs[i])) for i in test]), LABELS4)
        out.update(rep)
        # stream protocol: the whole clip from a fresh state, logits after the last chunk
        pred = []
        for i in test:
            m = pad_to_chunks(torch.from_numpy(clip_mel(inp, i))[None], model.cfg.chunk_frames)
            _, lg = model.forward_full(m)
            pred.append(int(lg[0, -1].argmax()))
        out["stream"] = {k: v for k, v in classification_report(y_true, np.asarray(pred), LABELS4).items()
                         if k in ("uar", "wa", "macro_f1", "recall", "confusion")}
        # distillation quality on the held-out windows that have aligned targets
        sel = np.nonzero((inp["win_end"] > 0) & ~is_train[inp["win_clip"]])[0]
        cos = np.zeros(len(layers))
        for s in range(0, len(sel), 64):
            b = sel[s : s + 64]
            pred_t, tgt, _ = _predict(model, heads, inp, targets, stats, b, from_layer, delay)
            cos += torch.nn.functional.cosine_similarity(pred_t, tgt, dim=-1).mean(dim=(0, 2)).numpy() * len(b)
        out["distill_cosine"] = {f"layer{layer}": float(c / max(len(sel), 1)) for layer, c in zip(layers, cos)}
    out["test_speakers"] = test_speakers
    return out


def _predict(model, heads, inp, targets, stats, idx, from_layer, delay, mel=None):
    """(predicted [B, k, T', 512], standardised target [B, k, T', 512], chunk logits) for cached windows ``idx``."""
    import torch

    if mel is None:
        mel = torch.from_numpy(np.stack([window(inp, inp["win_clip"][j], inp["win_end"][j]) for j in idx]))
    _, lg, hs = model.forward_full(mel, return_layers=True)
    h = hs[from_layer]
    b, t, d = h.shape
    h = h.reshape(b, t // 2, 2, d).mean(2)  # 20 ms -> 40 ms frames (the targets' pooling)
    pred = torch.stack([head(h) for head in heads], dim=1)  # [B, k, 50, 512]
    tgt = (torch.from_numpy(targets[idx].astype(np.float32)) - stats[0]) / stats[1]
    n = pred.shape[2]
    return pred[:, :, delay:], tgt[:, :, : n - delay], lg


def train(a) -> dict:
    import torch
    import torch.nn.functional as F

    from .data.ravdess import LABELS4
    from .models.causal import CausalEncoder, CausalEncoderConfig

    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    layers = tuple(int(x) for x in a.layers.split(","))
    inp = build_inputs(a.encoder)
    targets = load_targets(a.encoder, layers)
    clips, _, y_clip, is_train = fold_split(a.fold)
    ok = inp["win_end"] > 0
    tr = np.nonzero(ok & is_train[inp["win_clip"]])[0]
    print(f"aligned windows: {int(ok.sum())}/{len(ok)}; training windows (fold {a.fold}): {len(tr)}", flush=True)
    t32 = targets[tr].astype(np.float32)
    mu = torch.from_numpy(t32.mean(axis=(0, 2), keepdims=True)[0])  # [k, 1, 512]
    sd = torch.from_numpy(t32.std(axis=(0, 2), keepdims=True)[0] + 1e-3)
    del t32
    stats = (mu, sd)
    cfg = CausalEncoderConfig.default(**json.loads(a.config))
    model = CausalEncoder(cfg)
    from_layer = cfg.n_layers - 1 if a.from_layer is None else a.from_layer
    heads = torch.nn.ModuleList(torch.nn.Linear(cfg.d_model, targets.shape[-1]) for _ in layers)
    params = list(model.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=a.weight_decay)
    steps_per_epoch = max(1, len(tr) // a.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=a.epochs * steps_per_epoch,
                                                pct_start=0.1)
    y_win = torch.from_numpy(y_clip[inp["win_clip"]])
    counts = np.bincount(y_clip[inp["win_clip"][tr]], minlength=len(LABELS4))
    class_w = torch.from_numpy((counts.sum() / (len(LABELS4) * counts)).astype(np.float32))
    log_soft = None
    if a.teachers:
        from .losses import kd_loss
        from .student import teacher_soft_labels

        soft = teacher_soft_labels(a.teachers.split(","), a.fold, clips, a.kd_temperature)
        log_soft = torch.from_numpy(np.log(np.clip(soft, 1e-8, 1.0)) * a.kd_temperature)
    train_mel = np.stack([window(inp, inp["win_clip"][j], inp["win_end"][j]) for j in tr])  # [n, 80, 200]
    t0 = time.time()
    history, stopped = [], None
    for ep in range(a.epochs):
        model.train()
        heads.train()
        perm = rng.permutation(len(tr))
        tot = {"distill": 0.0, "ce": 0.0}
        for s in range(steps_per_epoch):
            b = perm[s * a.batch : (s + 1) * a.batch]
            idx = tr[b]
            mel = torch.from_numpy(train_mel[b].copy())
            if a.augment:  # level change (+-0.25 log10 = +-2.5 dB) and one frequency mask, input side only
                mel += torch.from_numpy(rng.uniform(-0.25, 0.25, (len(b), 1, 1)).astype(np.float32))
                for r in range(len(b)):
                    if rng.random() < 0.5:
                        f0, fw = rng.integers(0, 72), rng.integers(1, 9)
                        mel[r, f0 : f0 + fw] = mel[r].min()
            with torch.enable_grad():
                pred, tgt, lg = _predict(model, heads, inp, targets, stats, idx, from_layer, a.delay, mel=mel)
                l_d = (pred - tgt).abs().mean() + (1 - F.cosine_similarity(pred, tgt, dim=-1)).mean()
                logits = lg[:, -1]
                l_c = F.cross_entropy(logits, y_win[idx], weight=class_w, label_smoothing=0.1)
                if log_soft is not None:
                    l_c = (1 - a.kd_weight) * l_c + a.kd_weight * kd_loss(logits, log_soft[inp["win_clip"][idx]],
                                                                             T=a.kd_temperature)
                loss = a.distill_weight * l_d + a.ce_weight * l_c
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 5.0)
                opt.step()
            sched.step()
            tot["distill"] += float(l_d.detach())
            tot["ce"] += float(l_c.detach())
            if a.max_minutes and time.time() - t0 > a.max_minutes * 60:
                stopped = f"time limit {a.max_minutes} min reached in epoch {ep + 1}, step {s + 1}/{steps_per_epoch}"
                break
        rec = {"epoch": ep + 1, **{k: round(v / (s + 1), 4) for k, v in tot.items()},
               "seconds": round(time.time() - t0, 1)}
        history.append(rec)
        print(json.dumps(rec), flush=True)
        if stopped:
            print(stopped, flush=True)
            break
    train_seconds = time.time() - t0
    val = evaluate(model, heads, inp, targets, stats, a.fold, layers, from_layer, a.delay)
    result = {
        "model": "causal_conformer_student", "teacher": f"whisper-{a.encoder} hidden states {list(layers)}",
        "fold": a.fold, "epochs": a.epochs, "epochs_run": len(history), "stopped_early": stopped, "seed": a.seed,
        "train_seconds": round(train_seconds, 1), "threads": torch.get_num_threads(),
        "device": f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
        "params": sum(p.numel() for p in model.parameters()), "config": cfg.to_dict(),
        "aligned_windows": int(ok.sum()), "training_windows": len(tr),
        "loss": {"distill_weight": a.distill_weight, "ce_weight": a.ce_weight, "from_layer": from_layer,
                 "delay_frames_40ms": a.delay, "teachers": a.teachers, "kd_weight": a.kd_weight if a.teachers else 0},
        "protocol": "uar/wa: runtime windows of each held-out clip, each from a fresh state, mean window probs; "
                    "stream: whole clip streamed from a fresh state, logits after the last chunk",
        "history": history, **val,
        "command": "python -m train.distill_causal " + " ".join(sys.argv[1:]),
    }
    print(json.dumps({"fold": a.fold, "uar": val["uar"], "wa": val["wa"], "stream_uar": val["stream"]["uar"],
                      "distill_cosine": val["distill_cosine"], "train_seconds": round(train_seconds, 1)}), flush=True)
    if a.out is not None:
        a.out.mkdir(parents=True, exist_ok=True)
        torch.save({"config": cfg.to_dict(), "model": model.state_dict(), "heads": heads.state_dict(),
                    "target_layers": list(layers), "target_stats": [mu, sd], "labels": list(LABELS4),
                    "validation": result, "command": result["command"]}, a.out / "causal.pt")
        (a.out / "validation.json").write_text(json.dumps(result, indent=1))
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.distill_causal", description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path("runs/causal"))
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--encoder", default="base", help="teacher whose cached hidden states are the targets")
    ap.add_argument("--layers", default="3,4", help="teacher hidden states to predict (0 = embedding output)")
    ap.add_argument("--from-layer", type=int, default=None, help="student block that predicts them (default: last)")
    ap.add_argument("--delay", type=int, default=0, help="predict target frame t from student frame t + delay (40 ms)")
    ap.add_argument("--config", default="{}", help='CausalEncoderConfig overrides as JSON, e.g. {"d_model": 192}')
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--distill-weight", type=float, default=1.0)
    ap.add_argument("--ce-weight", type=float, default=0.5)
    ap.add_argument("--teachers", default=None, help="KD from these teachers' logits, e.g. mmer-full")
    ap.add_argument("--kd-weight", type=float, default=0.5)
    ap.add_argument("--kd-temperature", type=float, default=2.0)
    ap.add_argument("--no-augment", dest="augment", action="store_false")
    ap.add_argument("--max-minutes", type=float, default=18.0, help="stop training after this long (0: no limit)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--prepare-only", action="store_true", help="only build the aligned inputs cache")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(int(os.environ.get("EDGESER_THREADS", "1")))
    if a.prepare_only:
        build_inputs(a.encoder)
        return 0
    train(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
