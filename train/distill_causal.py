"""Distil the streaming causal encoder (train/models/causal.py) from Whisper-base hidden states, on RAVDESS.

    EDGESER_THREADS=1 python -m train.distill_causal --epochs 20 --out runs/causal                 # CPU, cached targets
    python -m train.distill_causal --pack-gpu .gpu                                                  # files for a GPU
    python3 -m train.distill_causal --inputs .gpu/causal-inputs.npz \\
        --teacher-weights .gpu/whisper-base-l4.fp16.npz --device cuda --fold 0 --out runs/causal_f0   # GPU, no dataset
    bash scripts/gpu_causal.sh 0,1,2,3,4 400                                                        # 5 folds on one GPU

Targets: for every runtime window (2 s = 200 log-mel frames) of every clean RAVDESS clip, Whisper-base hidden states
(``--layers``, default 3 and 4; 0 = embedding output), average-pooled by 2 over time: 50 frames of 40 ms x 512.
Two sources with the same semantics (same windows, same normalisation, same pooling):

- cached (default, CPU): ``~/.cache/edgeser/emb/ravdess4-base-w200/copy0.npz`` (``python -m train.student embed
  --encoder base --copies 1``, all 7 hidden states, fp16).
- computed on the fly (``--teacher-weights``): the first 4 layers of Whisper-base (all that hidden states 0..4 need)
  from a lossless fp16 file (:func:`save_teacher`), run in plain torch (:func:`whisper_hidden`, the math of
  transformers' ``WhisperEncoder``). Same targets as the cache to fp16 precision from float inputs; this is what a
  GPU machine without the cache uses, and it makes ``--jitter`` possible (windows the cache does not have).

Inputs: the same windows' raw log10-mel, recomputed here (``edgeser.features.log_mel`` of the clip, the frames the
runtime feeds). The runtime's window *positions* may have changed since the cache was written (the last window of a
segment depends on the VAD / stream code), so every window is re-located: Whisper-base's stem (hidden state 0 is
``GELU(conv2(GELU(conv1(x)))) + positions``, a local function of the window) is run over the clip, and the window
end whose stem output equals the cached hidden state 0 (to fp16 precision) is taken. Windows with no exact match
are dropped (reported). Inputs and targets are therefore aligned frame for frame.

Portable inputs (``--pack-gpu DIR`` -> ``DIR/causal-inputs.npz`` + ``DIR/whisper-base-l4.fp16.npz``): everything
training and validation need without the dataset, the cache, scipy or transformers (torch + numpy only): clip
log-mels, window positions, labels, speakers, folds, clip ids (for ``--teachers``). The log-mel is stored as uint8 per
frame over ``[max(frame) - 8, max(frame)]`` (+ the frame maximum in float32): values below ``max(frame) - 8`` cannot
reach either model (Whisper clamps a window at its peak - 8, the student a chunk at its running peak - 8, and both
peaks are >= the frame's maximum), so the clamp is exact and the rounding error is <= 8 / 510 log10 (0.16 dB);
lzma over the frequency-differenced bytes. The teacher's fp16 weights are stored as two byte planes (high plane
lzma'd): bit-exact fp16, 22 MiB instead of 26 MiB.

Loss (per window, the student run from a fresh state over the 200 frames, i.e. exactly as streamed):
- distillation (DistilHuBERT-style): for each target layer, a linear head maps the student's ``--from-layer`` block
  output (20 ms frames, average-pooled by 2 -> 40 ms, the targets' rate) to the 512-d target, standardised per
  dimension over the training windows; L1 + (1 - cosine). The student sees only the past plus the current 200 ms
  chunk while the teacher saw the whole 2 s window: that gap is expected and measured (held-out cosine per layer).
- CE (class-weighted, label smoothing 0.1) on the streaming head's logits after the window's last chunk, plus
  optional KD from committed teacher logits (``--teachers``, benchmarks/results/teacher_logits).
- augmentation: student-side level change (+-0.25 log10) and one frequency mask (the teacher's target stays the
  clean window's); ``--jitter J`` (needs ``--teacher-weights``) moves each training window's end by up to +-J frames
  (within the clip) and computes the teacher's target for that window.

Schedule: OneCycle over ``--epochs``; with ``--budget-minutes B`` the schedule advances by steps or by elapsed time,
whichever is further, and training ends when it is complete -- a run on a shared GPU finishes its schedule (the LR
annealed) inside B minutes whatever its speed. ``--max-minutes`` is a hard stop (CPU runs).

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
import lzma
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

WINDOW_FRAMES = 200  # = train.student.WINDOW_FRAMES (not imported: train.student needs scipy, the GPU machine not)
POOL = 2  # targets and student frames are average-pooled by 2 (20 -> 40 ms)
SILENCE = -10.0  # log10(LOG_FLOOR): what the features give for digital silence
TOL = 0.05  # max |stem - cached hidden state 0| (fp16 targets) for a window to count as aligned
DYNAMIC_RANGE = 8.0  # Whisper's (and the student's) clamp: nothing below peak - 8 reaches either model
INPUTS_FORMAT = "edgeser-causal-inputs/1"
TEACHER_FORMAT = "edgeser-whisper-fp16-planes/1"
TEACHER_LOGITS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "teacher_logits"


def cache_path(encoder: str, copy: int = 0) -> Path:
    from .student import WINDOW_FRAMES as W
    from .student import cache_path as student_cache_path

    assert W == WINDOW_FRAMES, (W, WINDOW_FRAMES)
    return student_cache_path(encoder, copy)


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


def ravdess_clip_info() -> dict:
    """Per clip (manifest order, as in the cache): label index, held-out fold (``speaker_folds(seed=0)``, what
    ``train.student.fold_split`` uses), speaker, clip id (file name, the key of the teacher logits), label names."""
    from .data.ravdess import LABELS4, load_ravdess, speaker_folds

    clips = load_ravdess()
    fold_of = {s: k for k, f in enumerate(speaker_folds(clips, n_folds=5, seed=0)) for s in f}
    return {"y": np.asarray([LABELS4.index(c.label) for c in clips], np.int64),
            "fold": np.asarray([fold_of[c.speaker] for c in clips], np.int64),
            "speaker": np.asarray([c.speaker for c in clips]), "clip_id": np.asarray([Path(c.path).name for c in clips]),
            "labels": np.asarray(LABELS4)}


def split_fold(info: dict, fold: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(held-out speakers, label index per clip, training mask per clip) of fold ``fold``."""
    folds = sorted({int(k) for k in info["fold"]})
    if fold not in folds:
        raise ValueError(f"fold {fold} not in the data's folds {folds}")
    is_train = info["fold"] != fold
    return sorted({str(s) for s in info["speaker"][~is_train]}), np.asarray(info["y"], np.int64), is_train


# -- portable inputs (GPU machine) --------------------------------------------------------------------------------


def quantize_mel(mel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Raw log10-mel [80, T] -> (uint8 [80, T] over [max(frame) - 8, max(frame)], frame maxima float32 [T]).

    Exact clamp (see the module docstring), rounding error <= 8 / 510."""
    top = mel.max(axis=0).astype(np.float32)
    floor = top - DYNAMIC_RANGE
    q = np.round((np.maximum(mel, floor[None]) - floor[None]) * (255.0 / DYNAMIC_RANGE))
    return np.clip(q, 0, 255).astype(np.uint8), top


def dequantize_mel(q: np.ndarray, top: np.ndarray) -> np.ndarray:
    return ((top - DYNAMIC_RANGE)[None] + q.astype(np.float32) * np.float32(DYNAMIC_RANGE / 255.0)).astype(np.float32)


def _pack_bytes(q: np.ndarray) -> np.ndarray:
    d = np.diff(q.astype(np.int16), axis=0, prepend=0).astype(np.uint8)  # frequency-differenced (mod 256)
    return np.frombuffer(lzma.compress(d.tobytes(), preset=6), np.uint8)


def _unpack_bytes(blob: np.ndarray, shape) -> np.ndarray:
    d = np.frombuffer(lzma.decompress(blob.tobytes()), np.uint8).reshape(shape)
    return np.cumsum(d, axis=0, dtype=np.uint8)  # wraps mod 256: undoes the differencing


def write_portable_inputs(path, inp: dict, info: dict, meta: dict | None = None) -> Path:
    """``inp`` (:func:`build_inputs`) + ``info`` (:func:`ravdess_clip_info`) -> one compact .npz (no pickles)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    q, top = quantize_mel(inp["mel"])
    head = {"format": INPUTS_FORMAT, "window_frames": WINDOW_FRAMES, "mel_shape": list(q.shape),
            "mel": "uint8 per frame over [top - 8, top] (top = frame max, float32), frequency-differenced, lzma",
            **(meta or {})}
    arrays = {"header": np.frombuffer(json.dumps(head).encode(), np.uint8), "mel_q": _pack_bytes(q), "mel_top": top,
              "offset": np.asarray(inp["offset"], np.int64), "y": np.asarray(info["y"], np.int8),
              "fold": np.asarray(info["fold"], np.int8), "speaker": np.asarray(info["speaker"]).astype(str),
              "clip_id": np.asarray(info["clip_id"]).astype(str), "labels": np.asarray(info["labels"]).astype(str)}
    arrays.update({k: np.asarray(inp[k], np.int32) for k in ("win_clip", "win_end", "rt_clip", "rt_end")})
    np.savez_compressed(path, **arrays)
    return path


def load_portable_inputs(path) -> tuple[dict, dict, dict]:
    """(inputs as :func:`build_inputs` returns them, clip info as :func:`ravdess_clip_info`, header)."""
    z = np.load(path, allow_pickle=False)
    head = json.loads(z["header"].tobytes().decode())
    if head.get("format") != INPUTS_FORMAT or head.get("window_frames") != WINDOW_FRAMES:
        raise ValueError(f"{path}: not {INPUTS_FORMAT} with {WINDOW_FRAMES}-frame windows ({head})")
    mel = dequantize_mel(_unpack_bytes(z["mel_q"], head["mel_shape"]), z["mel_top"])
    inp = {"mel": mel, **{k: z[k].astype(np.int64) for k in ("offset", "win_clip", "win_end", "rt_clip", "rt_end")}}
    info = {"y": z["y"].astype(np.int64), "fold": z["fold"].astype(np.int64), "speaker": z["speaker"],
            "clip_id": z["clip_id"], "labels": z["labels"]}
    return inp, info, head


def teacher_state(encoder: str = "base", n_layers: int = 4) -> tuple[dict, dict]:
    """(fp32 state dict of Whisper ``encoder``'s conv stem, positions for one window and first ``n_layers`` layers,
    geometry) from the packaged weights (CTranslate2, fp16: the fp16 file below is lossless)."""
    from .backbones.whisper import whisper_encoder

    enc, dims = whisper_encoder(encoder, WINDOW_FRAMES, n_layers=n_layers)
    state = {k: v for k, v in enc.state_dict().items() if not k.startswith("layer_norm.")}
    return state, {"name": f"whisper-{encoder}", "d_model": dims.d_model, "n_heads": dims.n_heads, "n_layers": n_layers,
                   "window_frames": WINDOW_FRAMES}


def save_teacher(path, state: dict, geometry: dict) -> Path:
    """fp16 weights as two byte planes (high plane lzma'd, the low plane is noise): bit-exact fp16, ~15% smaller."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = sorted(state)
    flat = np.concatenate([state[k].detach().to(torch.float16).cpu().numpy().reshape(-1) for k in names])
    words = flat.view(np.uint16)
    index = {"format": TEACHER_FORMAT, "geometry": geometry,
             "tensors": [[k, list(state[k].shape)] for k in names]}
    np.savez(path, index=np.frombuffer(json.dumps(index).encode(), np.uint8),
             hi=np.frombuffer(lzma.compress((words >> 8).astype(np.uint8).tobytes(), preset=6), np.uint8),
             lo=(words & 0xFF).astype(np.uint8))
    return path


def load_teacher(path, device="cpu") -> tuple[dict, dict]:
    """(float32 weights on ``device``, geometry) of a :func:`save_teacher` file."""
    import torch

    z = np.load(path, allow_pickle=False)
    index = json.loads(z["index"].tobytes().decode())
    if index.get("format") != TEACHER_FORMAT:
        raise ValueError(f"{path}: not a {TEACHER_FORMAT} file")
    hi = np.frombuffer(lzma.decompress(z["hi"].tobytes()), np.uint8).astype(np.uint16)
    flat = ((hi << 8) | z["lo"].astype(np.uint16)).view(np.float16)
    w, at = {}, 0
    for name, shape in index["tensors"]:
        n = int(np.prod(shape))
        w[name] = torch.from_numpy(flat[at : at + n].astype(np.float32).reshape(shape)).to(device)
        at += n
    if at != flat.size:
        raise ValueError(f"{path}: {flat.size} weights, the index describes {at}")
    return w, index["geometry"]


def whisper_hidden(w: dict, geo: dict, mel, upto: int) -> list:
    """Hidden states 0..``upto`` of Whisper's encoder for raw log10-mel windows [B, 80, T] (T <= window_frames):
    Whisper's normalisation, the conv stem + positions (state 0), then pre-LN layers (state i = output of layer
    i - 1, no final layer norm) -- transformers' ``WhisperEncoder`` math, in plain torch."""
    import torch
    import torch.nn.functional as F

    if upto > geo["n_layers"]:
        raise ValueError(f"hidden state {upto} needs {upto} layers; the teacher file has {geo['n_layers']}")
    peak = mel.amax(dim=(1, 2), keepdim=True)
    x = (torch.maximum(mel, peak - DYNAMIC_RANGE) + 4.0) / 4.0
    h = F.gelu(F.conv1d(x, w["conv1.weight"], w["conv1.bias"], padding=1))
    h = F.gelu(F.conv1d(h, w["conv2.weight"], w["conv2.bias"], stride=2, padding=1)).transpose(1, 2)
    b, t, d = h.shape
    nh = geo["n_heads"]
    h = h + w["embed_positions.weight"][:t]
    hs = [h]
    for i in range(upto):
        p = f"layers.{i}."
        x = F.layer_norm(h, (d,), w[p + "self_attn_layer_norm.weight"], w[p + "self_attn_layer_norm.bias"], 1e-5)
        q = F.linear(x, w[p + "self_attn.q_proj.weight"], w[p + "self_attn.q_proj.bias"])
        k = F.linear(x, w[p + "self_attn.k_proj.weight"])
        v = F.linear(x, w[p + "self_attn.v_proj.weight"], w[p + "self_attn.v_proj.bias"])
        q, k, v = (u.reshape(b, t, nh, d // nh).transpose(1, 2) for u in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, d)
        h = h + F.linear(a, w[p + "self_attn.out_proj.weight"], w[p + "self_attn.out_proj.bias"])
        x = F.layer_norm(h, (d,), w[p + "final_layer_norm.weight"], w[p + "final_layer_norm.bias"], 1e-5)
        h = h + F.linear(F.gelu(F.linear(x, w[p + "fc1.weight"], w[p + "fc1.bias"])), w[p + "fc2.weight"],
                         w[p + "fc2.bias"])
        hs.append(h)
    return hs


def teacher_targets(w: dict, geo: dict, mel, layers: tuple[int, ...]):
    """Pooled targets [B, len(layers), T // 2 // POOL, d] of raw log-mel windows [B, 80, T] (the cache's layout)."""
    import torch

    hs = whisper_hidden(w, geo, mel, max(layers))
    e = torch.stack([hs[i] for i in layers], dim=1)
    b, k, t, d = e.shape
    return e[:, :, : t - t % POOL].reshape(b, k, t // POOL, POOL, d).mean(dim=3)


def pack_gpu(out_dir, encoder: str = "base", n_layers: int = 4, check_windows: int = 256) -> dict:
    """Write ``out_dir/causal-inputs.npz`` and ``out_dir/whisper-<encoder>-l<n>.fp16.npz`` from the CPU caches, then
    check them: targets computed from the packed files vs the cached targets. Returns sizes and the check."""
    import torch

    out_dir = Path(out_dir)
    inp = build_inputs(encoder)
    info = ravdess_clip_info()
    z = np.load(cache_path(encoder, 0), mmap_mode="r")
    if [Path(str(p)).name for p in z["paths"]] != [str(c) for c in info["clip_id"]]:
        raise ValueError("the cache and the manifest list different clips")
    inputs = write_portable_inputs(out_dir / "causal-inputs.npz", inp, info,
                                   {"encoder": encoder, "source": str(inputs_path(encoder)),
                                    "aligned_windows": int((inp["win_end"] > 0).sum())})
    state, geo = teacher_state(encoder, n_layers)
    teacher = save_teacher(out_dir / f"whisper-{encoder}-l{n_layers}.fp16.npz", state, geo)
    # check: what the GPU run will compute vs the cache, on a sample of aligned windows
    p_inp, _, _ = load_portable_inputs(inputs)
    w, geo = load_teacher(teacher)
    ok = np.nonzero(inp["win_end"] > 0)[0]
    sel = np.sort(np.random.default_rng(0).choice(ok, min(check_windows, len(ok)), replace=False))
    layers = tuple(range(1, n_layers + 1))
    ref = z["emb"][sel][:, list(layers)].astype(np.float32)
    got = {}
    with torch.no_grad():
        for name, src in (("float_inputs", inp), ("packed_inputs", p_inp)):
            got[name] = np.concatenate([teacher_targets(w, geo, torch.from_numpy(np.stack(
                [window(src, src["win_clip"][j], src["win_end"][j]) for j in sel[s : s + 32]])), layers).numpy()
                for s in range(0, len(sel), 32)])
    check = {"windows": len(sel), "layers": list(layers)}
    for name, p in got.items():
        cos = (p * ref).sum(-1) / (np.linalg.norm(p, axis=-1) * np.linalg.norm(ref, axis=-1) + 1e-12)
        check[name] = {"rel_l2": float(np.linalg.norm(p - ref) / np.linalg.norm(ref)),
                       "frame_cos_median": float(np.median(cos)), "frame_cos_p01": float(np.quantile(cos, 0.01)),
                       "frame_cos_min": float(cos.min())}
    mel_err = float(np.abs(p_inp["mel"] - np.maximum(inp["mel"], inp["mel"].max(0)[None] - DYNAMIC_RANGE)).max())
    sizes = {p.name: p.stat().st_size for p in (inputs, teacher)}
    rep = {"files": sizes, "total_mib": round(sum(sizes.values()) / 2**20, 2), "mel_max_abs_err_log10": mel_err,
           "targets_vs_cache": check}
    (out_dir / "pack.json").write_text(json.dumps(rep, indent=1))
    return rep


# -- training -----------------------------------------------------------------------------------------------------


class WindowBank:
    """Every clip's log-mel on one device, each clip preceded by ``WINDOW_FRAMES`` frames of digital silence, so the
    window ending at frame ``e`` of clip ``i`` (what :func:`window` returns) is one gather, for a whole batch."""

    def __init__(self, inp: dict, device):
        import torch

        mel, off = inp["mel"], np.asarray(inp["offset"], np.int64)
        n, w = len(off) - 1, WINDOW_FRAMES
        self.lengths = np.diff(off)
        self.base = off[:-1] + w * np.arange(n)  # where clip i's silence starts in the padded layout
        buf = np.full((mel.shape[0], mel.shape[1] + w * n), SILENCE, np.float32)
        for i in range(n):
            buf[:, self.base[i] + w : self.base[i] + w + self.lengths[i]] = mel[:, off[i] : off[i + 1]]
        self.mel = torch.from_numpy(buf).to(device)
        self._base = torch.from_numpy(self.base).to(device)
        self._ar = torch.arange(w, device=device)
        self.device = device

    def windows(self, clips, ends):
        """[B, 80, WINDOW_FRAMES]: the windows ending at frames ``ends`` of clips ``clips`` (numpy int arrays)."""
        import torch

        start = self._base[torch.from_numpy(np.asarray(clips, np.int64)).to(self.device)]
        start = start + torch.from_numpy(np.asarray(ends, np.int64)).to(self.device)
        return self.mel[:, start[:, None] + self._ar[None]].permute(1, 0, 2).contiguous()

    def clip(self, i: int):
        """[1, 80, n] log-mel of clip ``i``."""
        a = int(self.base[i]) + WINDOW_FRAMES
        return self.mel[None, :, a : a + int(self.lengths[i])]


def _student(model, heads, mel, from_layer):
    """(predicted targets [B, k, T', 512], logits after every chunk) for raw log-mel windows."""
    import torch

    _, lg, hs = model.forward_full(mel, return_layers=True)
    h = hs[from_layer]
    b, t, d = h.shape
    h = h.reshape(b, t // POOL, POOL, d).mean(2)  # 20 ms -> 40 ms frames (the targets' pooling)
    return torch.stack([head(h) for head in heads], dim=1), lg


def _aligned(pred, tgt, delay):
    n = pred.shape[2]
    return pred[:, :, delay:], tgt[:, :, : n - delay]


def _augment(mel, rng):
    """Student-side only: level change (+-0.25 log10 = +-2.5 dB) and, with p 0.5, one frequency band (1-8 bins)
    set to the window's minimum."""
    import torch

    b = mel.shape[0]
    dev = mel.device
    mel = mel + torch.from_numpy(rng.uniform(-0.25, 0.25, (b, 1, 1)).astype(np.float32)).to(dev)
    on, f0, fw = rng.random(b) < 0.5, rng.integers(0, 72, b), rng.integers(1, 9, b)
    f = torch.arange(mel.shape[1], device=dev)[None, :, None]
    lo = torch.from_numpy(np.where(on, f0, 10**6)[:, None, None]).to(dev)
    band = (f >= lo) & (f < lo + torch.from_numpy(fw[:, None, None]).to(dev))
    return torch.where(band, mel.amin(dim=(1, 2), keepdim=True), mel)


def soft_labels(teachers: list[str], fold: int, clip_ids, temperature: float) -> np.ndarray:
    """Ensemble soft labels ``[n_clips, C]`` from committed teacher logits, keyed by clip id (no dataset needed)."""
    from .student import soft_labels_by_id

    return soft_labels_by_id(teachers, fold, clip_ids, temperature)


def evaluate(model, heads, bank, inp, targets, stats, fold_info, layers, from_layer, delay, labels) -> dict:
    """Held-out metrics: window protocol, stream protocol, per-layer distillation cosine. ``fold_info``:
    (held-out speakers, label per clip, training mask per clip)."""
    import torch

    from .metrics import classification_report
    from .models.causal import pad_to_chunks

    test_speakers, y_clip, is_train = fold_info
    test = np.nonzero(~is_train)[0]
    model.eval()
    heads.eval()
    out = {}
    with torch.no_grad():
        # window protocol: every runtime window of each held-out clip from a fresh state, mean of probabilities
        sel = np.nonzero(~is_train[inp["rt_clip"]])[0]
        probs = []
        for s in range(0, len(sel), 128):
            j = sel[s : s + 128]
            _, lg = model.forward_full(bank.windows(inp["rt_clip"][j], inp["rt_end"][j]))
            probs.append(torch.softmax(lg[:, -1], -1).cpu().numpy())
        probs = np.concatenate(probs) if probs else np.zeros((0, len(labels)))
        owner = inp["rt_clip"][sel]
        pred = np.asarray([int(np.argmax(probs[owner == i].mean(0))) for i in test])
        y_true = y_clip[test]
        out.update(classification_report(y_true, pred, labels))
        # stream protocol: the whole clip from a fresh state, logits after the last chunk
        pred = []
        for i in test:
            _, lg = model.forward_full(pad_to_chunks(bank.clip(i), model.cfg.chunk_frames))
            pred.append(int(lg[0, -1].argmax()))
        out["stream"] = {k: v for k, v in classification_report(y_true, np.asarray(pred), labels).items()
                         if k in ("uar", "wa", "macro_f1", "recall", "confusion")}
        # distillation quality on the held-out windows that have aligned targets
        sel = np.nonzero((inp["win_end"] > 0) & ~is_train[inp["win_clip"]])[0]
        cos = np.zeros(len(layers))
        for s in range(0, len(sel), 64):
            b = sel[s : s + 64]
            p, _ = _student(model, heads, bank.windows(inp["win_clip"][b], inp["win_end"][b]), from_layer)
            tgt = (targets[torch.from_numpy(b).to(targets.device)].float() - stats[0]) / stats[1]
            p, tgt = _aligned(p, tgt, delay)
            cos += torch.nn.functional.cosine_similarity(p, tgt, dim=-1).mean(dim=(0, 2)).cpu().numpy() * len(b)
        out["distill_cosine"] = {f"layer{layer}": float(c / max(len(sel), 1)) for layer, c in zip(layers, cos)}
    out["test_speakers"] = test_speakers
    return out


def _device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def train(a) -> dict:
    import torch
    import torch.nn.functional as F

    from .models.causal import CausalEncoder, CausalEncoderConfig

    device = torch.device(a.device)
    if device.type == "cuda":  # full fp32 (the teacher's targets as on the CPU; nothing here is compute-bound)
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    layers = tuple(int(x) for x in a.layers.split(","))
    if a.inputs is not None:
        if a.teacher_weights is None:
            raise SystemExit("--inputs (portable inputs) has no cached targets: give --teacher-weights")
        inp, info, _ = load_portable_inputs(a.inputs)
    else:
        inp, info = build_inputs(a.encoder), ravdess_clip_info()
    if a.jitter and a.teacher_weights is None:
        raise SystemExit("--jitter needs --teacher-weights (the cache has no targets for moved windows)")
    labels = [str(x) for x in info["labels"]]
    fold_info = split_fold(info, a.fold)
    _, y_clip, is_train = fold_info
    bank = WindowBank(inp, device)
    ok = inp["win_end"] > 0
    tr = np.nonzero(ok & is_train[inp["win_clip"]])[0]
    print(f"aligned windows: {int(ok.sum())}/{len(ok)}; training windows (fold {a.fold}): {len(tr)}; "
          f"device {_device_name(device)}", flush=True)
    t_start = time.time()
    teacher = None
    if a.teacher_weights is not None:
        teacher = load_teacher(a.teacher_weights, device)
        need = np.nonzero(ok)[0]
        targets = None
        with torch.no_grad():
            for s in range(0, len(need), 64):
                j = need[s : s + 64]
                t = teacher_targets(*teacher, bank.windows(inp["win_clip"][j], inp["win_end"][j]), layers).half()
                if targets is None:
                    targets = torch.zeros((len(ok), *t.shape[1:]), dtype=torch.float16, device=device)
                targets[torch.from_numpy(j).to(device)] = t
        print(f"teacher targets of {len(need)} windows computed in {time.time() - t_start:.1f} s", flush=True)
    else:
        targets = torch.from_numpy(load_targets(a.encoder, layers)).to(device)
    t32 = targets[torch.from_numpy(tr).to(device)].float()
    mu = t32.mean(dim=(0, 2), keepdim=True)[0]  # [k, 1, 512]
    sd = t32.std(dim=(0, 2), keepdim=True, unbiased=False)[0] + 1e-3
    del t32
    stats = (mu, sd)
    cfg = CausalEncoderConfig.default(**json.loads(a.config))
    model = CausalEncoder(cfg).to(device)
    from_layer = cfg.n_layers - 1 if a.from_layer is None else a.from_layer
    heads = torch.nn.ModuleList(torch.nn.Linear(cfg.d_model, targets.shape[-1]) for _ in layers).to(device)
    params = list(model.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=a.weight_decay)
    steps_per_epoch = max(1, len(tr) // a.batch)
    total = a.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=total, pct_start=0.1)
    y_win = torch.from_numpy(y_clip[inp["win_clip"]]).to(device)
    counts = np.maximum(np.bincount(y_clip[inp["win_clip"][tr]], minlength=len(labels)), 1)
    class_w = torch.from_numpy((counts.sum() / (len(labels) * counts)).astype(np.float32)).to(device)
    log_soft = None
    if a.teachers:
        from .losses import kd_loss

        soft = soft_labels(a.teachers.split(","), a.fold, info["clip_id"], a.kd_temperature)
        log_soft = torch.from_numpy(np.log(np.clip(soft, 1e-8, 1.0)) * a.kd_temperature).to(device)
    t0 = time.time()
    history, stopped, step, pos = [], None, 0, 0
    budget = a.budget_minutes * 60.0
    for ep in range(a.epochs):
        model.train()
        heads.train()
        perm = rng.permutation(len(tr))
        tot = {"distill": 0.0, "ce": 0.0}
        done = False
        for s in range(steps_per_epoch):
            idx = tr[perm[s * a.batch : (s + 1) * a.batch]]
            clips, ends = inp["win_clip"][idx], inp["win_end"][idx]
            if a.jitter:
                ends = np.clip(ends + rng.integers(-a.jitter, a.jitter + 1, len(idx)), 1, bank.lengths[clips])
            mel = bank.windows(clips, ends)
            if a.jitter:
                with torch.no_grad():
                    raw = teacher_targets(*teacher, mel, layers)
            else:
                raw = targets[torch.from_numpy(idx).to(device)].float()
            tgt = (raw - mu) / sd
            if a.augment:
                mel = _augment(mel, rng)
            pred, lg = _student(model, heads, mel, from_layer)
            pred, tgt = _aligned(pred, tgt, a.delay)
            l_d = (pred - tgt).abs().mean() + (1 - F.cosine_similarity(pred, tgt, dim=-1)).mean()
            logits = lg[:, -1]
            ti = torch.from_numpy(idx).to(device)
            l_c = F.cross_entropy(logits, y_win[ti], weight=class_w, label_smoothing=0.1)
            if log_soft is not None:
                l_c = (1 - a.kd_weight) * l_c + a.kd_weight * kd_loss(
                    logits, log_soft[torch.from_numpy(clips).to(device)], T=a.kd_temperature)
            loss = a.distill_weight * l_d + a.ce_weight * l_c
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            step += 1
            # the schedule follows steps, or elapsed time against --budget-minutes, whichever is further
            target = step if budget <= 0 else max(step, int(np.ceil((time.time() - t0) / budget * total)))
            while pos < min(target, total):
                sched.step()
                pos += 1
            tot["distill"] += l_d.detach()  # summed on the device: no host sync per step
            tot["ce"] += l_c.detach()
            if budget > 0 and target >= total:
                stopped, done = f"schedule complete at step {step} (time budget {a.budget_minutes} min)", True
            elif a.max_minutes and time.time() - t0 > a.max_minutes * 60:
                stopped = f"time limit {a.max_minutes} min reached in epoch {ep + 1}, step {s + 1}/{steps_per_epoch}"
                done = True
            if done:
                break
        rec = {"epoch": ep + 1, **{k: round(float(v) / (s + 1), 4) for k, v in tot.items()},
               "seconds": round(time.time() - t0, 1)}
        history.append(rec)
        if (ep + 1) % a.log_every == 0 or done or ep + 1 == a.epochs:
            print(json.dumps(rec), flush=True)
        if done:
            print(stopped, flush=True)
            break
    train_seconds = time.time() - t0
    if a.save_dtype == "float16":  # evaluate exactly what is saved
        with torch.no_grad():
            for p in params:
                p.copy_(p.half().float())
    val = evaluate(model, heads, bank, inp, targets, stats, fold_info, layers, from_layer, a.delay, labels)
    result = {
        "model": "causal_conformer_student", "teacher": f"whisper-{a.encoder} hidden states {list(layers)}",
        "fold": a.fold, "epochs": a.epochs, "epochs_run": len(history), "steps": step, "stopped_early": stopped,
        "seed": a.seed, "train_seconds": round(train_seconds, 1), "threads": torch.get_num_threads(),
        "device": _device_name(device), "params": sum(p.numel() for p in model.parameters()), "config": cfg.to_dict(),
        "aligned_windows": int(ok.sum()), "training_windows": len(tr),
        "targets": "computed from --teacher-weights" if teacher else "cached",
        "inputs": str(a.inputs) if a.inputs else "cached (RAVDESS)",
        "loss": {"distill_weight": a.distill_weight, "ce_weight": a.ce_weight, "from_layer": from_layer,
                 "delay_frames_40ms": a.delay, "teachers": a.teachers, "kd_weight": a.kd_weight if a.teachers else 0},
        "augment": {"student_level_and_freq_mask": a.augment, "jitter_frames": a.jitter},
        "optim": {"batch": a.batch, "lr": a.lr, "weight_decay": a.weight_decay, "budget_minutes": a.budget_minutes,
                  "schedule": "OneCycle (pct_start 0.1) over epochs x steps, advanced by time when budgeted"},
        "save_dtype": a.save_dtype,
        "protocol": "uar/wa: runtime windows of each held-out clip, each from a fresh state, mean window probs; "
                    "stream: whole clip streamed from a fresh state, logits after the last chunk",
        "history": history, **val,
        "command": "python -m train.distill_causal " + " ".join(a.argv),
    }
    summary = {"fold": a.fold, "uar": val["uar"], "wa": val["wa"], "recall": val["recall"],
               "stream_uar": val["stream"]["uar"], "stream_wa": val["stream"]["wa"],
               "stream_recall": val["stream"]["recall"], "distill_cosine": val["distill_cosine"],
               "train_seconds": round(train_seconds, 1), "steps": step, "epochs_run": len(history),
               "stopped": stopped, "device": result["device"], "params": result["params"], "config": cfg.to_dict(),
               "command": result["command"]}
    print(json.dumps({k: summary[k] for k in ("fold", "uar", "wa", "stream_uar", "distill_cosine", "train_seconds")}),
          flush=True)
    if a.out is not None:
        a.out.mkdir(parents=True, exist_ok=True)
        dt = torch.float16 if a.save_dtype == "float16" else torch.float32

        def cast(sd_):
            return {k: v.detach().to("cpu", dt) if v.is_floating_point() else v.cpu() for k, v in sd_.items()}

        torch.save({"config": cfg.to_dict(), "model": cast(model.state_dict()), "heads": cast(heads.state_dict()),
                    "target_layers": list(layers), "target_stats": [mu.cpu(), sd.cpu()], "labels": labels,
                    "validation": result, "command": result["command"]}, a.out / "causal.pt")
        (a.out / "validation.json").write_text(json.dumps(result, indent=1))
    if a.record is not None:
        a.record.parent.mkdir(parents=True, exist_ok=True)
        a.record.write_text(json.dumps(summary, indent=1))
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.distill_causal", description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path("runs/causal"))
    ap.add_argument("--record", type=Path, default=None, help="also write a short JSON summary here")
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--encoder", default="base", help="teacher whose hidden states are the targets")
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
    ap.add_argument("--jitter", type=int, default=0,
                    help="move each training window's end by up to +-J frames (needs --teacher-weights)")
    ap.add_argument("--max-minutes", type=float, default=18.0, help="stop training after this long (0: no limit)")
    ap.add_argument("--budget-minutes", type=float, default=0.0,
                    help="run the LR schedule by elapsed time too: training ends within this many minutes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    ap.add_argument("--inputs", type=Path, default=None,
                    help="portable inputs (--pack-gpu) instead of RAVDESS + the cache")
    ap.add_argument("--teacher-weights", type=Path, default=None,
                    help="compute the targets with this teacher file (--pack-gpu) instead of reading the cache")
    ap.add_argument("--save-dtype", choices=("float32", "float16"), default="float32",
                    help="checkpoint weights (float16: half the size; the model is evaluated as saved)")
    ap.add_argument("--log-every", type=int, default=1, help="print the loss every N epochs")
    ap.add_argument("--prepare-only", action="store_true", help="only build the aligned inputs cache")
    ap.add_argument("--pack-gpu", type=Path, default=None, metavar="DIR",
                    help="write DIR/causal-inputs.npz + DIR/whisper-<encoder>-l4.fp16.npz for a GPU machine, check them")
    a = ap.parse_args(argv)
    a.argv = list(sys.argv[1:] if argv is None else argv)
    import torch

    torch.set_num_threads(int(os.environ.get("EDGESER_THREADS", "1")))
    if a.prepare_only:
        build_inputs(a.encoder)
        return 0
    if a.pack_gpu is not None:
        print(json.dumps(pack_gpu(a.pack_gpu, a.encoder), indent=1))
        return 0
    train(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
