"""Benchmark the bundled default model through the SDK itself (what a user gets), on one CPU thread.

    python benchmarks/default_model.py [--backend onnx executorch]

- accuracy: ``Model.classify`` on every 4-class RAVDESS clip of the actors held out from training (clean audio):
  UAR, WA, macro-F1, per-class recall, confusion matrix;
- speed: ``Model.analyze`` real-time factor over a long recording (held-out clips back to back with pauses),
  features + VAD + model included; per-window model latency p50/p95;
- live latency on the same recording fed in 20 ms chunks: first partial after speech onset, final event after speech
  end (speech bounds from the clean clips' energy);
- file sizes and peak RSS.
Writes benchmarks/results/default_model.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import peak_rss_mib, ravdess_held_out, write_result  # noqa: E402


def _clips(info):
    import csv

    root = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ravdess"
    from benchmarks.common import ravdess_held_out

    held = set(ravdess_held_out(info))
    rows = [r for r in csv.DictReader(open(root / "manifest.csv")) if r["speaker"] in held and r["emotion"] in info.labels]
    return root, rows


CONDITIONS = {
    # name: (augmentation function name in train.augment, keyword arguments); seeded per clip
    "clean": None,
    "pink noise 20 dB": ("add_noise", {"snr_db": 20.0, "kind": "pink"}),
    "pink noise 10 dB": ("add_noise", {"snr_db": 10.0, "kind": "pink"}),
    "white noise 0 dB": ("add_noise", {"snr_db": 0.0, "kind": "white"}),
    "clicks 10 dB": ("add_noise", {"snr_db": 10.0, "kind": "clicks"}),
    "mains hum 10 dB": ("add_noise", {"snr_db": 10.0, "kind": "hum"}),
    "reverb RT60 0.6 s": ("reverb", {"rt60": 0.6}),
    "telephone band": ("telephone", {"mu_law": True}),
    "mp3 codec": ("codec", {"name": "mp3", "level": 0.9}),
    "gain -20 dB": ("gain", {"db": -20.0}),
    "gain +10 dB": ("gain", {"db": 10.0}),
}


def _condition(x: np.ndarray, cond, seed: int) -> np.ndarray:
    if cond is None:
        return x
    import train.augment as A

    fn, kw = cond
    if fn == "codec" and "mp3" not in A.available_codecs():
        kw = {**kw, "name": A.available_codecs()[0]}
    return getattr(A, fn)(x, np.random.default_rng(seed), **kw)


def accuracy(model, cond=None, session: bool = False) -> dict:
    """``Model.classify`` on every held-out clip. ``session``: each speaker's clips one after another (a fixed
    shuffled order) through one stream (``classify(..., stream=s)``), so that a test-time adaptive model carries its
    statistics from clip to clip as in a live session; otherwise every clip alone (a fresh stream)."""
    from edgeser.audio import load as load_audio
    from train.metrics import classification_report

    root, rows = _clips(model.info)
    order = list(range(len(rows)))
    if session:
        perm = np.random.default_rng(0).permutation(len(rows))
        order = sorted(perm, key=lambda i: rows[i]["speaker"])
    streams = {}
    y_true, y_pred = [], []
    for i in order:
        r = rows[i]
        st = streams.setdefault(r["speaker"], model.stream(emit_partial=False)) if session else None
        res = model.classify(_condition(load_audio(root / r["path"]), cond, i), 16000, stream=st)
        y_true.append(model.labels.index(r["emotion"]))
        y_pred.append(model.labels.index(res.label))
    return classification_report(y_true, y_pred, model.labels)


def recording(model, seconds=120.0):
    """Held-out clips back to back with 0.8 s pauses; returns audio and true speech spans (s)."""
    from edgeser.audio import load as load_audio

    root, rows = _clips(model.info)
    parts, spans, t = [], [], 0
    gap = np.zeros(int(0.8 * 16000), np.float32)
    i = 0
    while t < seconds * 16000:
        x = load_audio(root / rows[i % len(rows)]["path"])
        e = np.convolve(x ** 2, np.ones(160) / 160, mode="same")
        idx = np.nonzero(e > e.max() * 1e-3)[0]
        spans.append(((t + idx[0]) / 16000, (t + idx[-1]) / 16000))
        parts += [x, gap]
        t += x.size + gap.size
        i += 1
    return np.concatenate(parts), spans


def speed(model, audio) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    events = model.analyze(audio, 16000)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    # model alone, per window
    w = np.random.default_rng(0).standard_normal((1, 80, model.info.window_frames)).astype(np.float32) - 5
    lat = []
    for _ in range(5):
        model.backend.run(w)
    for _ in range(100):
        a = time.perf_counter()
        model.backend.run(w)
        lat.append((time.perf_counter() - a) * 1000)
    # rtf: wall clock; rtf_cpu: process CPU time (one thread: the cost itself, even when other jobs share the machine)
    return {"audio_seconds": audio.size / 16000, "analyze_seconds": wall, "rtf": wall / (audio.size / 16000),
            "rtf_cpu": cpu / (audio.size / 16000), "load_average": os.getloadavg()[0],
            "final_events": sum(e.final for e in events), "window_ms_p50": float(np.percentile(lat, 50)),
            "window_ms_p95": float(np.percentile(lat, 95))}


def live_latency(model, audio, spans) -> dict:
    s = model.stream()
    step = 320
    firsts, finals = {}, {}
    for i in range(0, audio.size, step):
        now = min(i + step, audio.size) / 16000
        for e in s.accept(audio[i : i + step], 16000):
            # match the event to the clip whose speech it overlaps
            k = min(range(len(spans)), key=lambda j: abs(spans[j][0] - e.start))
            if not e.final:
                firsts.setdefault(k, now - spans[k][0])
            else:
                finals[k] = now - spans[k][1]
    s.flush()
    f1, f2 = np.array(list(firsts.values())), np.array(list(finals.values()))
    return {"clips": len(spans), "first_partial_after_onset_s": {"mean": float(f1.mean()), "p95": float(np.percentile(f1, 95)), "max": float(f1.max())},
            "final_after_speech_end_s": {"mean": float(f2.mean()), "p95": float(np.percentile(f2, 95)), "max": float(f2.max())}}


def onnx_only_rss_mib(path) -> float:
    """Peak RSS of a fresh process that only imports edgeser (no torch), loads the default ONNX model and analyses
    ``path`` (what an app using the runtime pays)."""
    import subprocess

    # VmHWM (not ru_maxrss, which Linux carries over from the forking parent across exec)
    code = ("import sys, edgeser\n"
            "edgeser.load().analyze(sys.argv[1])\n"
            "assert 'torch' not in sys.modules\n"
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
            "print(int(hwm) / 1024.0)\n")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    return float(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", nargs="+", default=["onnx", "executorch"])
    ap.add_argument("--seconds", type=float, default=120.0)
    a = ap.parse_args(argv)
    import edgeser
    from edgeser.model import default_model_path

    out = {"threads": 1, "models": {}}
    for b in a.backend:
        m = edgeser.load(backend=b, threads=1)
        audio, spans = recording(m, a.seconds)
        rec = {"file": default_model_path(b).name, "mib": default_model_path(b).stat().st_size / 2**20,
               "accuracy": accuracy(m), "speed": speed(m, audio), "live": live_latency(m, audio, spans)}
        if m.adaptive:  # a live session per speaker: the adaptation statistics carried from clip to clip
            rec["accuracy_session"] = accuracy(m, session=True)
        out["models"][b] = rec
        print(b, f"UAR {rec['accuracy']['uar']:.4f} WA {rec['accuracy']['wa']:.4f} RTF {rec['speed']['rtf']:.4f}",
              f"session UAR {rec.get('accuracy_session', {}).get('uar')}",
              f"final {rec['live']['final_after_speech_end_s']}", flush=True)
    # robustness under recording-condition shifts, with and without adaptation: benchmarks/robustness.py
    out["validation_speakers"] = ravdess_held_out(m.info)
    out["peak_rss_mib"] = peak_rss_mib()
    import tempfile

    import soundfile as sf

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "recording.wav"
        sf.write(wav, audio, 16000)
        out["onnx_only_process_peak_rss_mib"] = onnx_only_rss_mib(wav)
    print(write_result("default_model.json", out, argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
