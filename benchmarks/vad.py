"""Benchmark of the VADs in edgeser.vad (Silero vs Energy) on generated audio with known truth.

Data: espeak-ng sentences (several voices and speaking rates) placed at known, random positions (1-4 s gaps) in
``--tracks`` tracks of ``--duration`` s, mixed with non-speech noise at SNR 20, 10, 5 and 0 dB (plus a clean
reference). Noises, all generated with a fixed seed:

* ``white``: stationary white noise;
* ``pink``: stationary 1/f noise;
* ``modulated``: pink noise whose level wanders +-10 dB (smooth random envelope, ~0.1-1 Hz), non-stationary;
* ``bursts``: a pink background 10 dB below the total, plus band-pass noise bursts (0.2-1.5 s, random 300-3000 Hz
  band, like a passing car or running water) and knocks (20 ms decaying tones), non-stationary and impulsive.

No noise contains speech. SNR = mean power of the clean track over its speech frames / mean power of the noise
over the whole track. Truth: a 512-sample frame (the VAD frame) is speech where the clean track's energy is above a
floor 40 dB under the speech's active level; a sentence's span is its first to last sample within 40 dB of its
loudest 10 ms.

Metrics per (VAD, noise, SNR): frame precision/recall/F1 of the raw decisions (probability >= 0.5) and of the
frames inside the segments of :class:`edgeser.vad.Segmenter` (default parameters), sentences found / missed / split,
false-alarm segments, mean signed and absolute start/end boundary errors (segment minus truth), the end-event latency
(stream position when the ``end`` event comes out, minus the true end of speech, streaming in 512-sample chunks)
and the cost (real-time factor = processing time / audio time, one thread).

Run: ``.venv/bin/python benchmarks/vad.py`` (about a minute on 2 cores); writes ``benchmarks/results/vad.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeser.audio import load  # noqa: E402
from edgeser.vad import EnergyVad, Segmenter, SileroVad  # noqa: E402

SR = 16000
FRAME = 512
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "I really did not expect to see you here today.",
    "Could you please close the window before you leave?",
    "We have been waiting for more than an hour, and nobody has called.",
    "That is the best news I have heard all week!",
    "Turn left at the next corner and keep going until you reach the bridge.",
    "Why would anyone leave the door open in this weather?",
    "She sells sea shells by the sea shore.",
    "Honestly, I think we should try again tomorrow morning.",
    "The meeting has been moved to Thursday afternoon.",
    "Please stop doing that right now.",
    "My phone battery died in the middle of the call.",
]
VOICES = ["en-us", "en-gb+f3", "en-gb-scotland", "en-us+m3"]
RATES = [130, 170, 210]
NOISES = ["white", "pink", "modulated", "bursts"]
SNRS = [20, 10, 5, 0]
SPEECH_LEVEL_DB = -26.0  # active speech level of the clean tracks, dBFS
TRUTH_FLOOR_DB = 40.0  # frames more than this under the active level are not speech


def python_cmd() -> str:
    exe = Path(sys.executable)
    try:
        return str(exe.absolute().relative_to(ROOT))
    except ValueError:
        return exe.name


def machine_info() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import onnxruntime

    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnxruntime": onnxruntime.__version__,
        "espeak_ng": subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout.strip(),
    }


def frame_db(x: np.ndarray, n: int) -> np.ndarray:
    m = len(x) // n
    return 10 * np.log10((x[: m * n].astype(np.float64).reshape(m, n) ** 2).mean(axis=1) + 1e-20)


def synth(text: str, voice: str, rate: int, tmp: Path) -> np.ndarray:
    path = tmp / f"s{abs(hash((text, voice, rate)))}.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "-w", str(path), text], check=True, capture_output=True)
    x = load(path)
    e = frame_db(x, 160)
    idx = np.nonzero(e > e.max() - 40.0)[0]
    return x[idx[0] * 160 : (idx[-1] + 1) * 160]


def make_tracks(n_tracks: int, duration: float, rng, tmp: Path):
    """Clean speech tracks with the sample spans of their sentences (and the voice/rate of each)."""
    tracks = []
    k = 0
    for t in range(n_tracks):
        n = int(duration * SR)
        x = np.zeros(n, dtype=np.float64)
        spans = []
        pos = int(rng.uniform(1.0, 3.0) * SR)
        while True:
            text = SENTENCES[k % len(SENTENCES)]
            voice = VOICES[(k + t) % len(VOICES)]
            rate = RATES[(k // len(VOICES) + t) % len(RATES)]
            s = synth(text, voice, rate, tmp)
            if pos + len(s) > n - int(1.0 * SR):
                break
            x[pos : pos + len(s)] = s
            spans.append({"start": pos, "end": pos + len(s), "voice": voice, "rate": rate, "text": text})
            pos += len(s) + int(rng.uniform(1.0, 4.0) * SR)
            k += 1
        # scale to the active speech level, measured over the frames within 40 dB of the loudest 512-frame
        e = frame_db(x, FRAME)
        active = e > e.max() - TRUTH_FLOOR_DB
        level = 10 * np.log10(np.mean((x[: len(e) * FRAME].reshape(-1, FRAME) ** 2)[active]))
        x *= 10 ** ((SPEECH_LEVEL_DB - level) / 20)
        e = frame_db(x, FRAME)
        truth = e > SPEECH_LEVEL_DB - TRUTH_FLOOR_DB
        tracks.append({"clean": x, "spans": spans, "truth": truth})
    return tracks


def pink(n: int, rng) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SR)
    spec[1:] /= np.sqrt(f[1:])
    spec[0] = 0
    y = np.fft.irfft(spec, n)
    return y / y.std()


def smooth_envelope_db(n: int, rng, depth_db: float = 10.0) -> np.ndarray:
    """A smooth random level curve in [-depth, +depth] dB, changing over ~1-10 s."""
    knots = rng.uniform(-depth_db, depth_db, size=int(n / SR / 1.5) + 3)
    t = np.linspace(0, len(knots) - 1, n)
    return np.interp(t, np.arange(len(knots)), knots)


def bandpass_noise(n: int, lo: float, hi: float, rng) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SR)
    spec[(f < lo) | (f > hi)] = 0
    y = np.fft.irfft(spec, n)
    return y / (y.std() + 1e-12)


def make_noise(kind: str, n: int, rng) -> np.ndarray:
    if kind == "white":
        return rng.standard_normal(n)
    if kind == "pink":
        return pink(n, rng)
    if kind == "modulated":
        return pink(n, rng) * 10 ** (smooth_envelope_db(n, rng) / 20)
    if kind == "bursts":
        y = pink(n, rng) * 10 ** (-10 / 20)
        pos = int(rng.uniform(0.5, 3) * SR)
        while pos < n:
            length = int(rng.uniform(0.2, 1.5) * SR)
            lo = rng.uniform(300, 1500)
            b = bandpass_noise(length, lo, lo + rng.uniform(500, 1500), rng)
            ramp = np.minimum(1, np.minimum(np.arange(length), np.arange(length)[::-1]) / (0.05 * SR))
            end = min(n, pos + length)
            y[pos:end] += 2.0 * (b * ramp)[: end - pos]
            pos = end + int(rng.uniform(1, 5) * SR)
        for _ in range(int(n / SR / 3)):  # knocks
            p = rng.integers(0, n - 400)
            t = np.arange(320) / SR
            y[p : p + 320] += 8.0 * np.sin(2 * np.pi * rng.uniform(150, 600) * t) * np.exp(-t / 0.005)
        return y
    raise ValueError(kind)


class Replay:
    """A VAD stand-in that replays precomputed probabilities (to run the Segmenter without recomputing)."""

    frame_samples = FRAME

    def __init__(self, probs: np.ndarray):
        self.probs = probs
        self.reset()

    def reset(self):
        self._n = 0
        self._i = 0

    def accept(self, x):
        self._n += len(x)
        j = self._n // FRAME
        out = self.probs[self._i : j]
        self._i = j
        return out


def segments_streamed(probs: np.ndarray, n: int):
    """Run the default Segmenter over ``probs`` streaming 512-sample chunks: [(start, end, end_reported_at)]."""
    seg = Segmenter(Replay(probs))
    out, start = [], None
    chunk = np.zeros(FRAME, dtype=np.float32)
    for pos in range(FRAME, n + 1, FRAME):
        for ev in seg.accept(chunk):
            if ev.kind == "start":
                start = ev.sample
            else:
                out.append((start, ev.sample, pos))
    for ev in seg.flush():
        if ev.kind == "start":
            start = ev.sample
        else:
            out.append((start, ev.sample, n))
    return out


def prf(pred: np.ndarray, truth: np.ndarray) -> dict:
    tp = int(np.sum(pred & truth))
    fp = int(np.sum(pred & ~truth))
    fn = int(np.sum(~pred & truth))
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(2 * p * r / (p + r) if p + r else 0.0, 4)}


def evaluate(probs_per_track, tracks) -> dict:
    preds, truths, seg_preds = [], [], []
    starts, ends, lats = [], [], []
    found = missed = split = false_alarms = n_segments = 0
    for probs, tr in zip(probs_per_track, tracks):
        n = len(tr["clean"])
        truth = tr["truth"][: len(probs)]
        preds.append(probs[: len(truth)] >= 0.5)
        truths.append(truth)
        segs = segments_streamed(probs, n)
        n_segments += len(segs)
        inside = np.zeros(len(truth), dtype=bool)
        for s, e, _ in segs:
            inside[s // FRAME : -(-e // FRAME)] = True
        seg_preds.append(inside)
        used = set()
        for sp in tr["spans"]:
            hit = [k for k, (s, e, _) in enumerate(segs) if s < sp["end"] and e > sp["start"]]
            if not hit:
                missed += 1
                continue
            found += 1
            split += len(hit) > 1
            used.update(hit)
            starts.append((segs[hit[0]][0] - sp["start"]) / SR)
            ends.append((segs[hit[-1]][1] - sp["end"]) / SR)
            lats.append((segs[hit[-1]][2] - sp["end"]) / SR)
        false_alarms += len(segs) - len(used)
    pred, truth, seg_pred = np.concatenate(preds), np.concatenate(truths), np.concatenate(seg_preds)

    def stat(v):
        return None if not v else round(float(np.mean(v)), 4)

    return {
        "frames": prf(pred, truth),
        "segment_frames": prf(seg_pred, truth),
        "sentences": found + missed,
        "found": found,
        "missed": missed,
        "split": split,
        "segments": n_segments,
        "false_alarm_segments": false_alarms,
        "start_error_s_mean": stat(starts),
        "start_error_s_mean_abs": stat(list(np.abs(starts))),
        "end_error_s_mean": stat(ends),
        "end_error_s_mean_abs": stat(list(np.abs(ends))),
        "end_latency_s_mean": stat(lats),
        "end_latency_s_max": None if not lats else round(float(np.max(lats)), 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tracks", type=int, default=4)
    ap.add_argument("--duration", type=float, default=45.0, help="seconds per track")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "vad.json"))
    args = ap.parse_args()
    if shutil.which("espeak-ng") is None:
        sys.exit("espeak-ng is required (apt-get install -y espeak-ng)")

    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        tracks = make_tracks(args.tracks, args.duration, rng, Path(tmp))
    vads = {"silero": SileroVad(threads=1), "energy": EnergyVad()}
    total_audio = sum(len(t["clean"]) for t in tracks) / SR
    records = []
    cost = {name: [0.0, 0.0] for name in vads}
    conditions = [("none", None)] + [(k, s) for k in NOISES for s in SNRS]
    for kind, snr in conditions:
        mixes = []
        for t, tr in enumerate(tracks):
            x = tr["clean"]
            if snr is not None:
                noise = make_noise(kind, len(x), np.random.default_rng([args.seed, t, NOISES.index(kind)]))
                speech_power = np.mean((x[: len(tr["truth"]) * FRAME].reshape(-1, FRAME) ** 2)[tr["truth"]])
                noise *= np.sqrt(speech_power / np.mean(noise**2) / 10 ** (snr / 10))
                x = x + noise
            mixes.append(np.clip(x, -1, 1).astype(np.float32))
        for name, vad in vads.items():
            probs = []
            for x in mixes:
                vad.reset()
                t0 = time.perf_counter()
                probs.append(vad.accept(x))
                cost[name][0] += time.perf_counter() - t0
                cost[name][1] += len(x) / SR
            rec = {"vad": name, "noise": kind, "snr_db": snr}
            rec.update(evaluate(probs, tracks))
            records.append(rec)
            print(f"{name:7s} {kind:9s} snr={snr!s:>4}  F1 frames {rec['frames']['f1']:.3f}  "
                  f"segments {rec['segment_frames']['f1']:.3f}  found {rec['found']}/{rec['sentences']} "
                  f"split {rec['split']} FA {rec['false_alarm_segments']}  end lat {rec['end_latency_s_mean']}",
                  flush=True)

    summary = {}
    for name in vads:
        s = {}
        for snr in SNRS:
            rs = [r for r in records if r["vad"] == name and r["snr_db"] == snr]
            s[str(snr)] = {
                "frame_f1_mean": round(float(np.mean([r["frames"]["f1"] for r in rs])), 4),
                "segment_frame_f1_mean": round(float(np.mean([r["segment_frames"]["f1"] for r in rs])), 4),
                "missed": int(sum(r["missed"] for r in rs)),
                "false_alarm_segments": int(sum(r["false_alarm_segments"] for r in rs)),
                "split": int(sum(r["split"] for r in rs)),
                "end_latency_s_mean": round(float(np.mean([r["end_latency_s_mean"] for r in rs])), 4),
                "end_latency_s_max": round(float(np.max([r["end_latency_s_max"] for r in rs])), 4),
            }
        clean = next(r for r in records if r["vad"] == name and r["snr_db"] is None)
        s["clean"] = {"frame_f1": clean["frames"]["f1"], "segment_frame_f1": clean["segment_frames"]["f1"]}
        secs, audio = cost[name]
        s["rtf_1_thread"] = round(secs / audio, 5)
        s["ms_per_32ms_frame"] = round(1000 * secs / (audio * SR / FRAME), 4)
        summary[name] = s

    result = {
        "command": " ".join(shlex.quote(a) for a in [python_cmd(), "benchmarks/vad.py", *sys.argv[1:]]),
        "machine": machine_info(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": {
            "tracks": args.tracks,
            "track_duration_s": args.duration,
            "audio_s_per_condition": total_audio,
            "sentences": sum(len(t["spans"]) for t in tracks),
            "seed": args.seed,
            "voices": VOICES,
            "rates_wpm": RATES,
            "noises": NOISES,
            "snr_db": SNRS,
            "speech_level_dbfs": SPEECH_LEVEL_DB,
            "truth_floor_db_below_speech_level": TRUTH_FLOOR_DB,
            "frame_decision_threshold": 0.5,
            "segmenter": "edgeser.vad.Segmenter defaults",
            "onnxruntime_threads": 1,
        },
        "summary": summary,
        "records": records,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
