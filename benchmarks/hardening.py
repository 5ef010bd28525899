"""Long and heavy runs of the bundled default model, measured, with nothing lost.

    python benchmarks/hardening.py [--hours 1] [--soak-hours 2] [--threads 4] [--thread-minutes 10]

- long: a generated recording of ``--hours`` (espeak-ng sentences between gaps of digital silence or low noise),
  written as a 16 kHz FLAC in a temporary directory and analysed by ``Model.analyze`` streamed from disk, in a fresh
  process: RSS after loading the model, peak RSS (VmHWM), wall time, events. The same for a 1-minute recording, to
  show that the peak does not grow with the length.
- soak: ``--soak-hours`` of generated audio pushed through one ``Stream`` as fast as it goes, in chunks of random
  size (1 ms to 3 s): RSS sampled every 5 minutes of audio, the stream's buffer sizes, events in (sentences put in)
  and out (partial/final events, sentences found, missed, false segments), and the event invariants (segments
  numbered 0, 1, 2, ... with exactly one final event each, nothing after a final, no overlap).
- threads: ``--threads`` streams (different audio, different chunking) run in parallel threads, then one at a time:
  the events must be identical.

Writes benchmarks/results/hardening.json. ``tests/test_longrun.py`` runs short versions of the soak and the threads.
"""

from __future__ import annotations

import argparse
import json
from array import array
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import write_result  # noqa: E402

SR = 16000
SENTENCES = [
    "The quick brown fox jumps over the lazy dog, and then it runs far away.",
    "I cannot believe you did that again after everything we talked about.",
    "Please put the boxes in the kitchen before the guests arrive tonight.",
    "We won the match, and everybody in the team is absolutely delighted.",
    "Nobody called me back, so I waited by the phone the whole afternoon.",
    "Turn left at the second light and the station is right in front of you.",
    "The meeting has been moved to Thursday morning at half past nine.",
    "Why is the door open? I told you to lock it when you leave the house.",
]
VOICES = [("en-us", 160), ("en-gb", 150), ("en-us+f3", 175), ("en-gb-x-rp+m3", 140), ("en-029", 165),
          ("en-gb-scotland+f2", 155)]
GAP_KINDS = ("digital silence", "white noise -60 dBFS", "white noise -45 dBFS", "brown noise -50 dBFS",
             "50 Hz hum -50 dBFS")


# --------------------------------------------------------------------------------------------------------------------
# generated audio


def speech_bank(workdir, n: int = 12) -> list[tuple[np.ndarray, int, int]]:
    """``n`` espeak-ng sentences (voices and speaking rates vary) as (16 kHz float32, speech onset, offset in
    samples), the bounds from the clip's energy (-30 dB re its peak)."""
    from edgeser.audio import load

    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install -y espeak-ng)")
    out = []
    for i in range(n):
        voice, rate = VOICES[i % len(VOICES)]
        p = Path(workdir) / f"s{i}.wav"
        subprocess.run([exe, "-v", voice, "-s", str(rate), "-w", str(p), SENTENCES[i % len(SENTENCES)]],
                       check=True, capture_output=True, timeout=60)
        x = load(p)
        e = np.convolve(x.astype(np.float64) ** 2, np.ones(160) / 160, mode="same")
        idx = np.nonzero(e > e.max() * 1e-3)[0]
        out.append((x, int(idx[0]), int(idx[-1])))
    return out


class Synth:
    """A deterministic generated recording: clips of ``bank`` (random gain -12..0 dB) between gaps of 0.6-4 s of
    digital silence or low noise. ``pieces()`` yields it piece by piece (bounded memory) and fills ``spans`` with the
    (onset, offset) sample of every sentence put in."""

    def __init__(self, bank, seconds: float, seed: int = 0):
        self.bank, self.total, self.seed = bank, int(seconds * SR), seed
        self._on, self._off = array("q"), array("q")  # compact: a soak's own bookkeeping must not grow its RSS

    @property
    def spans(self) -> list[tuple[int, int]]:
        return list(zip(self._on, self._off))

    def _gap(self, rng, n: int) -> np.ndarray:
        kind = GAP_KINDS[int(rng.integers(len(GAP_KINDS)))]
        if kind == "digital silence":
            return np.zeros(n, np.float32)
        if kind.startswith("white"):
            db = -60.0 if "-60" in kind else -45.0
            return (rng.standard_normal(n) * 10 ** (db / 20)).astype(np.float32)
        if kind.startswith("brown"):
            b = np.cumsum(rng.standard_normal(n))
            b -= np.linspace(b[0], b[-1], n)  # no drift
            return (b / (np.abs(b).max() + 1e-9) * 10 ** (-50 / 20)).astype(np.float32)
        t = np.arange(n) / SR
        return (np.sin(2 * np.pi * 50 * t + rng.uniform(0, 6.3)) * 10 ** (-50 / 20)).astype(np.float32)

    def pieces(self):
        rng = np.random.default_rng(self.seed)
        self._on, self._off = array("q"), array("q")
        t = 0
        while t < self.total:
            n = min(int(rng.uniform(0.6, 4.0) * SR), self.total - t)
            yield self._gap(rng, n)
            t += n
            if t >= self.total:
                break
            x, on, off = self.bank[int(rng.integers(len(self.bank)))]
            x = x[: self.total - t] * np.float32(10 ** (rng.uniform(-12, 0) / 20))
            if off < x.size:
                self._on.append(t + on)
                self._off.append(t + off)
            yield x.astype(np.float32)
            t += x.size

    def chunks(self, seed: int, min_ms: float = 1.0, max_ms: float = 3000.0):
        """The recording re-cut into chunks of random size, log-uniform between ``min_ms`` and ``max_ms``."""
        rng = np.random.default_rng(seed)
        lo, hi = np.log(min_ms * SR / 1000), np.log(max_ms * SR / 1000)
        buf, have = [], 0
        want = int(np.exp(rng.uniform(lo, hi)))
        for p in self.pieces():
            buf.append(p)
            have += p.size
            while have >= want:
                cat = np.concatenate(buf)
                yield cat[:want]
                rest = cat[want:]
                buf, have = [rest], rest.size
                want = max(1, int(np.exp(rng.uniform(lo, hi))))
        if have:
            yield np.concatenate(buf)


# --------------------------------------------------------------------------------------------------------------------
# checks


def check_events(events) -> dict:
    """Event invariants of one stream: segments numbered 0, 1, 2, ... in order, partials only for the open segment,
    exactly one final per segment and nothing after it, finals in time order without overlap. Raises
    AssertionError on the first violation; returns counts."""
    finals, partials = 0, 0
    last_final_end = -1.0
    last_partial_end = None
    for e in events:
        assert e.segment == finals, f"event for segment {e.segment} while segment {finals} is open: {e}"
        assert e.start <= e.end, e
        if e.final:
            assert e.start >= last_final_end, f"segment {e.segment} overlaps the previous one"
            last_final_end = e.end
            finals += 1
            last_partial_end = None
        else:
            assert last_partial_end is None or e.end > last_partial_end, "partial events out of order"
            last_partial_end = e.end
            partials += 1
    return {"final": finals, "partial": partials}


def match(finals, spans) -> dict:
    """Sentences put in vs final events out: found (overlapped by a final event), missed, and false segments (final
    events overlapping no sentence). ``finals``: (start, end) seconds of the final events."""
    starts = np.array([s for s, _ in spans], dtype=np.int64)
    ends = np.array([e for _, e in spans], dtype=np.int64)
    hit = np.zeros(len(spans), bool)
    false = 0
    for start, end in finals:
        a, b = int(start * SR), int(end * SR)
        over = (starts < b) & (ends > a)
        hit |= over
        false += not over.any()
    return {"sentences_in": len(spans), "final_events_out": len(finals), "sentences_found": int(hit.sum()),
            "sentences_missed": int((~hit).sum()), "false_segments": int(false)}


def stream_buffers(s) -> dict:
    """Sizes of what a Stream holds (samples or frames); all must stay bounded however long it runs."""
    seg = s._seg
    return {"logmel_frames_kept": int(s._frames.shape[1]), "feature_samples_buffered": int(s._mel._buf.size),
            "vad_samples_buffered": int(seg.vad._framer.pending)}


def rss_mib(key: str = "VmRSS") -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1024.0
    return float("nan")


# --------------------------------------------------------------------------------------------------------------------
# the three runs


ANALYZE_CODE = r"""
import json, sys, time
def kib(key):
    return int([l for l in open('/proc/self/status') if l.startswith(key)][0].split()[1])
import edgeser
m = edgeser.load()
after_load = kib('VmRSS')
t0 = time.perf_counter()
ev = m.analyze(sys.argv[1])
wall = time.perf_counter() - t0
assert 'torch' not in sys.modules
print(json.dumps({"rss_after_load_mib": after_load / 1024, "peak_rss_mib": kib('VmHWM') / 1024,
                  "rss_after_mib": kib('VmRSS') / 1024, "wall_s": wall,
                  "events": [[e.start, e.end, e.label, e.final, e.segment] for e in ev]}))
"""


def long_recording(bank, hours: float, workdir: Path, seed: int = 1) -> dict:
    """Write ``hours`` of generated audio as a 16 kHz FLAC and analyse it from disk in a fresh process."""
    import soundfile as sf

    from edgeser.types import EmotionEvent

    syn = Synth(bank, hours * 3600, seed=seed)
    path = workdir / f"recording_{hours:g}h.flac"
    t0 = time.perf_counter()
    with sf.SoundFile(str(path), "w", SR, 1, format="FLAC", subtype="PCM_16") as f:
        for p in syn.pieces():
            f.write(p)
    gen_s = time.perf_counter() - t0
    out = subprocess.run([sys.executable, "-c", ANALYZE_CODE, str(path)], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    events = [EmotionEvent(s, e, lab, 1.0, {}, fin, seg) for s, e, lab, fin, seg in r.pop("events")]
    inv = check_events(events)
    seconds = syn.total / SR
    return {"audio_seconds": seconds, "file": "16 kHz mono FLAC (PCM_16)", "file_mib": path.stat().st_size / 2**20,
            "decoded_float32_mib": syn.total * 4 / 2**20, "generate_s": gen_s, **r, "rtf": r["wall_s"] / seconds,
            "events": inv, **match([(e.start, e.end) for e in events if e.final], syn.spans)}


def soak(model, bank, hours: float, seed: int = 2, sample_every_s: float = 300.0, progress=None) -> dict:
    """``hours`` of generated audio through one Stream in chunks of random size, faster than real time."""
    syn = Synth(bank, hours * 3600, seed=seed)
    s = model.stream()
    rss = [{"audio_s": 0.0, "rss_mib": rss_mib()}]
    maxbuf = {k: 0 for k in stream_buffers(s)}
    # partials and finals are checked on the fly; only the finals' (start, end) are kept, compactly
    finals = array("d")
    counts = {"final": 0, "partial": 0}
    open_seg, last_partial = 0, None
    chunk_sizes = array("i")
    t0 = time.perf_counter()
    next_sample = sample_every_s

    def take(evs):
        nonlocal open_seg, last_partial
        for e in evs:
            assert e.segment == open_seg, f"event for segment {e.segment} while segment {open_seg} is open"
            if e.final:
                assert not finals or e.start >= finals[-1], "overlapping segments"
                finals.extend((e.start, e.end))
                counts["final"] += 1
                open_seg += 1
                last_partial = None
            else:
                assert last_partial is None or e.end > last_partial, "partial events out of order"
                last_partial = e.end
                counts["partial"] += 1

    n = 0
    for c in syn.chunks(seed + 1000):
        take(s.accept(c, SR))
        n += c.size
        chunk_sizes.append(c.size)
        for k, v in stream_buffers(s).items():
            maxbuf[k] = max(maxbuf[k], v)
        if n / SR >= next_sample:
            rss.append({"audio_s": round(n / SR, 1), "rss_mib": rss_mib()})
            next_sample += sample_every_s
            if progress:
                progress(f"soak {n / SR / 3600:.2f} h, RSS {rss[-1]['rss_mib']:.1f} MiB, {counts}")
    take(s.flush())
    wall = time.perf_counter() - t0
    rss.append({"audio_s": round(n / SR, 1), "rss_mib": rss_mib()})
    samples = [r["rss_mib"] for r in rss[1:]]
    cs = np.array(chunk_sizes)
    return {"audio_seconds": n / SR, "wall_s": wall, "rtf": wall / (n / SR), "chunks": len(cs),
            "chunk_ms": {"min": float(cs.min() / 16), "median": float(np.median(cs) / 16), "max": float(cs.max() / 16)},
            "rss_before_mib": rss[0]["rss_mib"], "rss_first_mib": samples[0], "rss_last_mib": samples[-1],
            "rss_max_mib": max(samples), "rss_samples": rss, "stream_buffers_max": maxbuf,
            "events": counts, "segments_numbered_in_order": True, "one_final_per_segment": True,
            **match(list(zip(finals[::2], finals[1::2])), syn.spans)}


def run_stream(model, syn: Synth, chunk_seed: int) -> list:
    s = model.stream()
    ev = []
    for c in syn.chunks(chunk_seed, 5.0, 500.0):
        ev += s.accept(c, SR)
    return ev + s.flush()


def parallel_streams(model, bank, n: int, minutes: float, seed: int = 3) -> dict:
    """``n`` streams over different recordings: in ``n`` threads at once, then one at a time; same events?"""
    syns = [Synth(bank, minutes * 60, seed=seed + i) for i in range(n)]
    t0 = time.perf_counter()
    seq = [run_stream(model, syn, 100 + i) for i, syn in enumerate(syns)]
    seq_s = time.perf_counter() - t0
    par: list = [None] * n
    errors = []
    barrier = threading.Barrier(n)

    def work(i):
        try:
            barrier.wait()
            par[i] = run_stream(model, syns[i], 100 + i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    par_s = time.perf_counter() - t0
    if errors:
        raise errors[0]
    same = [[e.to_dict() for e in a] == [e.to_dict() for e in b] for a, b in zip(seq, par)]
    for ev in seq:
        check_events(ev)
    return {"streams": n, "audio_seconds_each": minutes * 60, "one_at_a_time_s": seq_s, "parallel_s": par_s,
            "events_per_stream": [len(e) for e in seq],
            "final_events_per_stream": [sum(x.final for x in e) for e in seq],
            "identical": all(same)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hours", type=float, default=1.0, help="length of the recording analysed from disk")
    ap.add_argument("--soak-hours", type=float, default=2.0, help="audio pushed through one stream")
    ap.add_argument("--threads", type=int, default=4, help="streams run in parallel threads")
    ap.add_argument("--thread-minutes", type=float, default=10.0, help="audio per parallel stream")
    ap.add_argument("--out", default="hardening.json")
    a = ap.parse_args(argv)
    import edgeser

    def log(msg):
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    out: dict = {"model": edgeser.load().path.split("/")[-1], "threads_per_model": 1}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bank = speech_bank(work)
        out["speech_bank"] = {"clips": len(bank), "seconds": sum(x.size for x, _, _ in bank) / SR,
                              "voices": [f"{v} {r} wpm" for v, r in VOICES], "gaps": list(GAP_KINDS)}
        log("long recordings")
        out["long"] = {"baseline_1min": long_recording(bank, 1 / 60, work), "full": long_recording(bank, a.hours, work)}
        for p in work.glob("*.flac"):
            p.unlink()
        log(f"long: {json.dumps({k: v for k, v in out['long']['full'].items() if not isinstance(v, dict)})}")
    model = edgeser.load()
    log("soak")
    out["soak"] = soak(model, bank, a.soak_hours, progress=log)
    log(f"soak: {json.dumps({k: v for k, v in out['soak'].items() if k != 'rss_samples'})}")
    log("parallel streams")
    out["parallel"] = parallel_streams(model, bank, a.threads, a.thread_minutes)
    log(f"parallel: {out['parallel']}")
    print(write_result(a.out, out, argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
