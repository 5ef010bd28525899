"""Does test-time adaptation depend on the emotion mix of a session? On the bundled model's held-out RAVDESS actors.

    python benchmarks/session_mix.py [--model PATH] [--calm 0 1 3] [--conditions NAME ...]

The adaptive model normalises each window against the running mean of the speaker's speech so far. The robustness
benchmark's sessions hold a speaker's 4-class clips only (4 neutral, 8 happy, 8 angry, 8 sad: the mix the head was
trained with), whereas a real conversation is mostly ordinary speech with an emotional moment now and then. Here
``K`` of the speaker's own RAVDESS *calm* clips (not a test class, cycled) come before every test clip, so that
K = 3 makes a session three quarters ordinary speech; the calm clips are classified too (their statistics enter the
stream) but not scored. Modes, as in ``benchmarks/robustness.py`` (same conditions, seeds, clip order and scoring):

- ``running-clips``: one adapting stream per speaker, every clip through ``Model.classify(clip, stream=s)``;
- ``running``: one adapting stream over the whole session back to back (0.5 s silence after each clip); a test clip
  takes the final events that cover it.

Writes benchmarks/results/session_mix.json (UAR, per-class recall and confusion per condition, mode and K).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import robustness as R  # noqa: E402
from benchmarks.common import file_sha256, write_result  # noqa: E402

MIX_MODES = ("running-clips", "running")
DEFAULT_CONDITIONS = ("clean", "babble 5 dB", "gain +20 dB (clipped)", "telephone band")


def interleave(tests: list, calm: list, k: int) -> tuple[list, list[bool]]:
    """``k`` calm items (cycled) before each test item; returns the sequence and which of it is a test item."""
    if k and not calm:
        raise ValueError("calm clips are needed to interleave")
    seq, scored, j = [], [], 0
    for t in tests:
        for _ in range(k):
            seq.append(calm[j % len(calm)])
            scored.append(False)
            j += 1
        seq.append(t)
        scored.append(True)
    return seq, scored


def evaluate(model, utts, calm, spec, k: int, pool=None) -> dict:
    """Both modes on the test clips of ``utts`` with ``k`` calm clips before each (per speaker, the robustness
    benchmark's fixed shuffled order)."""
    labels = list(model.labels)
    support = R.adaptation_support(model)
    by_spk: dict[str, list] = {}
    for u in utts:
        by_spk.setdefault(u.speaker, []).append(u)
    acc = {m: ([], []) for m in MIX_MODES}
    for spk in sorted(by_spk):
        seq, scored = interleave(R._shuffled(by_spk[spk], spk), calm.get(spk, []), k)
        units = [R._unit(u, spec, pool) for u in seq]
        truth = [labels.index(u.label) for u, s in zip(seq, scored) if s]
        for m in MIX_MODES:
            if m == "running-clips":
                preds = [p for (p, _, _), s in zip(R.classify_clips(model, units), scored) if s]
            else:
                out = R.run_session(model, units, "running", support)
                preds = [p for p, s in zip(out["preds"], scored) if s]
            acc[m][0].extend(truth)
            acc[m][1].extend(preds)
    return {m: R.metrics(t, p, labels) for m, (t, p) in acc.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="exported .onnx/.pte (default: the bundled model)")
    ap.add_argument("--calm", nargs="+", type=int, default=[0, 1, 3], help="calm clips before each test clip")
    ap.add_argument("--conditions", nargs="+", default=list(DEFAULT_CONDITIONS))
    ap.add_argument("--ravdess", default=None, help="corpus folder with manifest.csv (default: train.data.ravdess)")
    ap.add_argument("--out", default=None, help="folder for the JSON (default benchmarks/results)")
    a = ap.parse_args(argv)

    import edgeser
    from train.data.ravdess import ravdess_root

    t0 = time.perf_counter()
    model = edgeser.load(a.model, threads=1)
    if not R.adaptation_support(model)["model_adaptive"]:
        raise SystemExit(f"{model.path}: the model has no test-time adaptation; nothing to measure")
    root = ravdess_root(a.ravdess)
    rows = R._read_manifest(root)
    specs = {s["name"]: s for s in R.condition_specs()}
    if any(k < 0 for k in a.calm):
        raise SystemExit(f"--calm: clip counts must be >= 0, got {a.calm}")
    unknown = set(a.conditions) - set(specs)
    if unknown:
        raise SystemExit(f"unknown condition(s) {sorted(unknown)}; known: {list(specs)}")
    test_spk = R._test_speakers(model, None, rows)
    labels = list(model.labels)
    utts = R.load_utts(root, [r for r in rows if r["speaker"] in test_spk and r["emotion"] in labels])
    calm: dict[str, list] = {}
    for u in R.load_utts(root, [r for r in rows if r["speaker"] in test_spk and r["emotion"] == "calm"]):
        calm.setdefault(u.speaker, []).append(u)
    need_pool = any(specs[c].get("kind") in ("babble", "cafe") for c in a.conditions)
    pool = R.babble_pool(root, rows, set(test_spk)) if need_pool else None
    res: dict = {}
    for c in a.conditions:
        for k in a.calm:
            t = time.perf_counter()
            r = evaluate(model, utts, calm, specs[c], k, pool)
            res.setdefault(c, {})[str(k)] = r
            print(f"{c:<24} K={k} " + " ".join(f"{m} UAR {r[m]['uar']:.3f} N {r[m]['recall'][labels[0]]:.2f}"
                                                for m in MIX_MODES) + f" ({time.perf_counter() - t:.0f} s)",
                  flush=True)
    payload = {"model": str(model.path), "sha256": file_sha256(model.path), "test_speakers": test_spk,
               "labels": labels, "threads": 1,
               "calm_between": a.calm, "clips_scored": len(utts),
               "calm_clips": {s: len(v) for s, v in calm.items()},
               "protocol": "per speaker, K of their RAVDESS calm clips (cycled, not scored) before each test clip, in "
                           "benchmarks/robustness.py's order; conditions, seeds and scoring as there",
               "conditions": res, "wall_seconds": round(time.perf_counter() - t0, 1)}
    print(write_result("session_mix.json", payload, argv, a.out, script="benchmarks/session_mix.py"))
    return 0


def render_markdown(d: dict, previous: dict | None = None) -> str:
    """Markdown section for benchmarks/README.md (numbers read from the file). ``previous``: the same benchmark run
    on another model (the previous default); its cells follow each cell where the condition, mode and K match."""
    labels = d["labels"]
    neutral = "neutral" if "neutral" in labels else labels[0]
    ks = [str(k) for k in d["calm_between"]]

    def cell(r):
        return f"{100 * r['uar']:.1f} / {100 * r['recall'][neutral]:.1f}"

    out = ["## Adaptation and the emotion mix of a session", "",
           f"_`{d.get('command', '?')}` — {d.get('machine', {}).get('cpu', '?')} — {d.get('date', '?')}_", "",
           f"Speakers {', '.join(d['test_speakers'])} (never trained on), {d['clips_scored']} test clips per cell; "
           f"K calm clips of the same speaker before each test clip (K = 3: a session that is three quarters ordinary "
           f"speech). UAR % / {neutral} recall %."]
    if previous:
        out[-1] += (f" In brackets: the same run on the previous default (`{previous.get('model', '?')}` of "
                    f"{previous.get('date', '?')}, trained with speaker means over the training mix of emotions only).")
    out += ["", "| condition | mode | " + " | ".join(f"K = {k}" for k in ks) + " |", "|---|---|" + "---|" * len(ks)]
    before = (previous or {}).get("conditions") or {}
    for c, per_k in d["conditions"].items():
        for m in MIX_MODES:
            cells = []
            for k in ks:
                was = ((before.get(c) or {}).get(k) or {}).get(m)
                cells.append(cell(per_k[k][m]) + (f" ({cell(was)})" if was else ""))
            out.append(f"| {c} | {m} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
