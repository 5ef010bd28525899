"""Golden test vectors for porting edgeser's streaming pipeline to a mobile app (Kotlin, Swift, C++):

    python apps/mobile/golden.py CLIP.wav --out golden/

writes, from the reference implementation (edgeser, streamed in 30 ms chunks as a microphone would deliver them):

    audio_16k.f32            the clip as mono float32 16 kHz samples (little-endian): feed these to your port
    mel_filters_80x201.f32   the mel filterbank [80][201] (ship it as an asset instead of re-deriving it)
    logmel_80xT.f32          log10 mel power [80][T] of the whole clip (T = samples // 160): your features
    vad_probs.f32            Silero VAD speech probability of each 512-sample frame
    golden.json              labels, model info (T, how windows pool: "aggregate"), each window classified
                             (segment, end frame, logits, probabilities), and the events (partial and final)

A port is right when its log-mel frames match logmel_80xT.f32 (|diff| < 1e-3), its window schedule gives the same
end frames (a segment's first window ends 0.5 s after its start, or half a window after it when the segment was opened
by an emotion change, see apps/mobile/README.md), and its per-segment pooling of the windows gives the final events'
scores (metadata ``aggregate``: ``"mean_logits"`` = softmax of the mean window logits / T, the bundled model's;
``"mean"`` = the mean of the window probabilities) (|diff| < 1e-3, the
.pte and the ONNX model are quantized differently: compare labels, and scores within ~0.05).
All arrays are row-major float32 little-endian; ``numpy.fromfile(path, "<f4").reshape(80, -1)`` reads the 2-D ones.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CHUNK = 480  # 30 ms at 16 kHz


def window_schedule(events, n_frames: int, info, min_tail_frames: int = 10) -> list[dict]:
    """The windows the stream classified, rebuilt from its events (one partial event per window while a segment is
    open; the final event's window if it ends ``min_tail_frames`` or more after the previous window)."""
    hop = info.hop_length
    out, last = [], {}
    for e in events:
        if not e.final:
            end = int(round(e.end * info.sample_rate)) // hop
            out.append({"segment": e.segment, "end_frame": end, "kind": "partial"})
            last[e.segment] = end
        else:
            end = min(int(round(e.end * info.sample_rate)) // hop, n_frames)
            prev = last.get(e.segment)
            if prev is None or end - prev >= min_tail_frames:
                out.append({"segment": e.segment, "end_frame": max(end, 1), "kind": "tail"})
    return out


def pooled_scores(windows: list[dict], labels, info) -> np.ndarray:
    """A segment's scores from its windows (``golden.json`` entries with ``logits`` and ``probs``), as the model's
    metadata ``aggregate`` says: softmax(mean logits / T) for ``"mean_logits"``, the last window's probabilities for
    ``"last"``, else the mean of the window probabilities."""
    from edgeser.stream import pool_scores

    if info.aggregate == "last":
        return np.asarray([windows[-1]["probs"][k] for k in labels])
    probs = np.asarray([[w["probs"][k] for k in labels] for w in windows])
    logits = np.asarray([[w["logits"][k] for k in labels] for w in windows])
    return pool_scores(info, probs.sum(0), logits.sum(0), len(windows))


def make(clip: Path, out: Path) -> dict:
    import edgeser
    from edgeser.audio import load
    from edgeser.features import log_mel, mel_filters
    from edgeser.stream import SILENCE_LOGMEL, softmax
    from edgeser.vad import SileroVad

    model = edgeser.load()
    info = model.info
    x = load(clip)
    mel = log_mel(x)
    n = mel.shape[1]
    stream = model.stream()
    events = []
    for i in range(0, x.size, CHUNK):
        events += stream.accept(x[i:i + CHUNK], info.sample_rate)
    events += stream.flush()

    w = info.window_frames
    padded = np.concatenate([np.full((info.n_mels, w), SILENCE_LOGMEL, np.float32), mel], axis=1)
    windows = window_schedule(events, n, info)
    # windows in the order the runtime runs them; a stateful model (test-time adaptation) carries its state from
    # window to window ("stream" scope: for the whole stream; "segment": restarted at each segment's first window)
    state, scopes, init = list(info.initial_state()), info.state_scopes(), info.initial_state()
    seen = set()
    for win in windows:
        e = win["end_frame"]
        if win["segment"] not in seen:
            seen.add(win["segment"])
            state = [i if sc == "segment" else s for s, sc, i in zip(state, scopes, init)]
        if state:
            win["state_in"] = {st["name"]: np.asarray(a).reshape(-1)[:4].round(6).tolist() + ["..."]
                               if np.asarray(a).size > 4 else np.asarray(a).reshape(-1).round(6).tolist()
                               for st, a in zip(info.state, state)}
        logits, state = model.backend.step(np.ascontiguousarray(padded[None, :, e:e + w]), tuple(state))
        state = list(state)
        z = np.asarray(logits, np.float64).reshape(-1)
        win["logits"] = dict(zip(model.labels, z.round(6).tolist()))
        win["probs"] = dict(zip(model.labels, softmax(z, info.temperature).round(6).tolist()))

    # self-check: each final event's scores are its segment's windows pooled as the metadata says
    worst = 0.0
    for e in (e for e in events if e.final):
        seg = [win for win in windows if win["segment"] == e.segment]
        worst = max(worst, float(np.abs(pooled_scores(seg, model.labels, info)
                                        - np.array([e.scores[k] for k in model.labels])).max()))

    out.mkdir(parents=True, exist_ok=True)
    x.astype("<f4").tofile(out / "audio_16k.f32")
    np.asarray(mel_filters(), dtype="<f4").tofile(out / "mel_filters_80x201.f32")
    mel.astype("<f4").tofile(out / "logmel_80xT.f32")
    SileroVad().accept(x).astype("<f4").tofile(out / "vad_probs.f32")
    doc = {
        "clip": str(clip), "samples": int(x.size), "frames": int(n), "labels": list(model.labels),
        "model": {"name": info.name, "version": info.version, "window_frames": w, "hop_frames": info.hop_frames,
                  "first_frames": info.first_frames, "temperature": info.temperature, "aggregate": info.aggregate},
        "silence_logmel": SILENCE_LOGMEL, "chunk_samples": CHUNK,
        "windows": windows,
        "events": [e.to_dict() for e in events],
        "schedule_check_max_diff": worst,
    }
    (out / "golden.json").write_text(json.dumps(doc, indent=1) + "\n")
    return doc


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python apps/mobile/golden.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("clip", type=Path, help="an audio file with speech")
    ap.add_argument("--out", type=Path, required=True, help="folder for the test vectors")
    args = ap.parse_args(argv)
    from edgeser.errors import EdgeserError

    try:
        doc = make(args.clip, args.out)
    except EdgeserError as exc:
        print(f"golden: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    finals = [e for e in doc["events"] if e["final"]]
    print(f"{args.out}: {doc['frames']} frames, {len(doc['windows'])} windows, {len(finals)} segments "
          f"(schedule check: max |mean of windows - final scores| = {doc['schedule_check_max_diff']:.2e})")
    return 0 if doc["schedule_check_max_diff"] < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
