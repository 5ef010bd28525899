"""A corpus packed for teacher training: trimmed Whisper log-mels, labels, speakers, transcripts and text features.

Why: a GPU machine gets 64 MiB of files and no dataset; the teachers need utterance-level features, not audio.
:func:`pack` runs the SDK's own audio path on every clip (``edgeser.audio.load`` -> ``edgeser.vad`` trimming ->
``edgeser.features.log_mel`` -> Whisper normalisation) and stores the normalised log-mel as uint8: Whisper's
normalised log-mel of a clip spans exactly 2.0 (8 decades of power, /4) below its peak, so 255 steps over that
range lose at most 0.16 dB. Optional extra copies pass the waveform through :class:`train.augment.Augmenter` first.

Text: each distinct transcript is encoded once by a frozen text encoder (MiniLM here) and stored as token features.
MMER's augmented view: each transcript re-synthesised by TTS voices that are not in the corpus, with the prosody of
each emotion (:mod:`train.data.synth`); the text of the view is the transcript (no back-translation offline).

Everything lands in one ``.npz`` (no pickles) that :func:`load_pack` reads back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

RANGE = 2.0  # width of a Whisper-normalised log-mel (max - floor)
PAD_S = 0.25  # silence kept around the detected speech


def quantize(mel: np.ndarray) -> tuple[np.ndarray, float]:
    top = float(mel.max())
    q = np.clip(np.round((mel - (top - RANGE)) / RANGE * 255.0), 0, 255).astype(np.uint8)
    return q, top


def dequantize(q: np.ndarray, top: float) -> np.ndarray:
    return (q.astype(np.float32) / 255.0 * RANGE + (top - RANGE)).astype(np.float32)


def clip_logmel(x: np.ndarray, trim: bool = True) -> np.ndarray:
    """Normalised Whisper log-mel ``[80, T]`` of a 16 kHz clip, trimmed to its speech (+/- 0.25 s) by the SDK's VAD."""
    from edgeser.constants import SAMPLE_RATE
    from edgeser.features import log_mel, whisper_normalize
    from edgeser.vad import speech_segments

    if trim:
        segs = speech_segments(x)
        if segs:
            pad = int(PAD_S * SAMPLE_RATE)
            x = x[max(0, segs[0][0] - pad) : min(len(x), segs[-1][1] + pad)]
    if len(x) < 800:
        x = np.pad(x, (0, 800 - len(x)))
    return whisper_normalize(log_mel(x)).astype(np.float32)


@dataclass
class PackedCorpus:
    name: str
    labels: tuple[str, ...]
    clip_ids: list[str]
    speakers: list[str]
    y: np.ndarray  # [N] label index
    gender: np.ndarray  # [N] 0 male 1 female
    text_id: np.ndarray  # [N] index into texts (-1: none)
    texts: list[str]
    mels: list[list[np.ndarray]]  # copies x clips, each [80, T] float32 (copy 0 = clean)
    text_feats: list[np.ndarray] = field(default_factory=list)  # per text [L, Dt] float32
    text_encoder: str = ""
    tts_mels: list[np.ndarray] = field(default_factory=list)  # MMER's augmented views
    tts_text_id: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    tts_label: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    tts_voice: list[str] = field(default_factory=list)
    folds: list[list[str]] = field(default_factory=list)  # speaker ids per fold (the corpus' protocol)
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.clip_ids)

    def split(self, fold: int) -> tuple[np.ndarray, np.ndarray]:
        """(train indices, test indices) of ``fold``: no speaker in both."""
        if not 0 <= fold < len(self.folds):
            raise ValueError(f"fold must be in [0, {len(self.folds)}), got {fold}")
        test = set(self.folds[fold])
        is_test = np.array([s in test for s in self.speakers])
        return np.nonzero(~is_test)[0], np.nonzero(is_test)[0]


def _concat(mels: list[np.ndarray]):
    lengths = np.array([m.shape[1] for m in mels], np.int64)
    q, tops = zip(*(quantize(m) for m in mels)) if mels else ((), ())
    data = np.concatenate(list(q), axis=1) if mels else np.zeros((80, 0), np.uint8)
    return data, lengths, np.array(tops, np.float32)


def _split(data, lengths, tops) -> list[np.ndarray]:
    out, pos = [], 0
    for n, top in zip(lengths, tops):
        out.append(dequantize(data[:, pos : pos + n], float(top)))
        pos += int(n)
    return out


def save_pack(c: PackedCorpus, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for k, copy in enumerate(c.mels):
        arrays[f"mel{k}"], arrays[f"len{k}"], arrays[f"top{k}"] = _concat(copy)
    if c.tts_mels:
        arrays["tts_mel"], arrays["tts_len"], arrays["tts_top"] = _concat(c.tts_mels)
    for i, f in enumerate(c.text_feats):
        arrays[f"text{i}"] = f.astype(np.float16)
    header = {"name": c.name, "labels": list(c.labels), "clip_ids": c.clip_ids, "speakers": c.speakers,
              "texts": c.texts, "text_encoder": c.text_encoder, "copies": len(c.mels), "folds": c.folds,
              "tts_voice": c.tts_voice, "n_text_feats": len(c.text_feats), "meta": c.meta}
    np.savez_compressed(path, header=np.frombuffer(json.dumps(header).encode(), np.uint8), y=c.y, gender=c.gender,
                        text_id=c.text_id, tts_text_id=c.tts_text_id, tts_label=c.tts_label, **arrays)
    return path


def load_pack(path: str | Path) -> PackedCorpus:
    z = np.load(path)
    h = json.loads(bytes(z["header"]).decode())
    mels = [_split(z[f"mel{k}"], z[f"len{k}"], z[f"top{k}"]) for k in range(h["copies"])]
    tts = _split(z["tts_mel"], z["tts_len"], z["tts_top"]) if "tts_mel" in z else []
    return PackedCorpus(
        name=h["name"], labels=tuple(h["labels"]), clip_ids=h["clip_ids"], speakers=h["speakers"], y=z["y"],
        gender=z["gender"], text_id=z["text_id"], texts=h["texts"], mels=mels,
        text_feats=[z[f"text{i}"].astype(np.float32) for i in range(h["n_text_feats"])],
        text_encoder=h["text_encoder"], tts_mels=tts, tts_text_id=z["tts_text_id"], tts_label=z["tts_label"],
        tts_voice=h["tts_voice"], folds=h["folds"], meta=h["meta"],
    )


RAVDESS_STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}


def pack(clips, labels, folds, name: str, *, copies: int = 1, seed: int = 0, text_encoder=None,
         tts_voices: tuple[str, ...] = (), progress: bool = False) -> PackedCorpus:
    """Pack ``clips`` (:class:`train.data.Clip`; transcript from ``meta["transcript"]``, or RAVDESS' statement code).

    ``copies``: 1 = clean only; each extra copy is augmented (seeded per clip and copy).
    ``text_encoder``: ``None`` (no text features) or an object with ``encode(list[str]) -> list[[L, D] arrays]``
    and a ``name``. ``tts_voices``: synthesise MMER's augmented views with these voices.
    """
    from edgeser.audio import load

    from ..augment import Augmenter

    transcripts = []
    for c in clips:
        t = c.meta.get("transcript") or RAVDESS_STATEMENTS.get(str(c.meta.get("statement", "")), "")
        transcripts.append(t)
    texts = sorted({t for t in transcripts if t})
    text_id = np.array([texts.index(t) if t else -1 for t in transcripts], np.int64)
    mels: list[list[np.ndarray]] = [[] for _ in range(copies)]
    it = clips
    if progress:
        from tqdm import tqdm

        it = tqdm(clips, desc=f"pack {name}")
    aug = Augmenter(p=1.0, seed=seed)
    for i, c in enumerate(it):
        x = load(c.path)
        mels[0].append(clip_logmel(x))
        for k in range(1, copies):
            rng = np.random.default_rng([seed, i, k])
            mels[k].append(clip_logmel(aug(x, rng)))
    out = PackedCorpus(
        name=name, labels=tuple(labels), clip_ids=[Path(c.path).name for c in clips],
        speakers=[c.speaker for c in clips], y=np.array([labels.index(c.label) for c in clips], np.int64),
        gender=np.array([0 if c.gender == "male" else 1 for c in clips], np.int64), text_id=text_id, texts=texts,
        mels=mels, folds=[list(f) for f in folds],
    )
    if text_encoder is not None and texts:
        out.text_feats = [np.asarray(f, np.float32) for f in text_encoder.encode(texts)]
        out.text_encoder = text_encoder.name
    if tts_voices and texts:
        from .synth import prosody, tts

        tm, tt, tl, tv = [], [], [], []
        for ti, text in enumerate(texts):
            for li, lab in enumerate(labels):
                for vi, voice in enumerate(tts_voices):
                    p = prosody(lab, np.random.default_rng([seed, ti, li, vi]))
                    tm.append(clip_logmel(tts(text, voice=voice, **p)))
                    tt.append(ti)
                    tl.append(li)
                    tv.append(voice)
        out.tts_mels, out.tts_text_id, out.tts_label, out.tts_voice = tm, np.array(tt), np.array(tl), tv
    return out
