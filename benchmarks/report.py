"""Render benchmarks/README.md from the committed result files (numbers are never typed in by hand).

    python benchmarks/report.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RES = HERE / "results"


def _load(name):
    p = RES / name
    return json.loads(p.read_text()) if p.is_file() else None


def _prov(d) -> str:
    m = d.get("machine", {})
    mach = m if isinstance(m, str) else f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores"
    return f"_`{d.get('command', '?')}` — {mach} — {d.get('date', '?')}_"


def _pct(x) -> str:
    return f"{100 * x:.1f}"


def default_model(d) -> list[str]:
    out = ["## The bundled default model (through the SDK, one CPU thread)", "", _prov(d), ""]
    out += ["Validation speakers (never trained on): " + ", ".join(d["validation_speakers"]), ""]
    out += ["| backend | file MiB | UAR % | WA % | macro-F1 % | recall N/H/A/S % | analyze() RTF | window p50 / p95 ms | "
            "first partial after onset s (mean / p95 / max) | final after speech end s (mean / p95 / max) |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for b, r in d["models"].items():
        a, s, lv = r["accuracy"], r["speed"], r["live"]
        rec = "/".join(_pct(a["recall"][k]) for k in a["labels"])
        fp, fe = lv["first_partial_after_onset_s"], lv["final_after_speech_end_s"]
        out.append(f"| {b} | {r['mib']:.2f} | {_pct(a['uar'])} | {_pct(a['wa'])} | {_pct(a['macro_f1'])} | {rec} | "
                   f"{s['rtf']:.4f} | {s['window_ms_p50']:.1f} / {s['window_ms_p95']:.1f} | "
                   f"{fp['mean']:.2f} / {fp['p95']:.2f} / {fp['max']:.2f} | {fe['mean']:.2f} / {fe['p95']:.2f} / {fe['max']:.2f} |")
    rss = d.get("onnx_only_process_peak_rss_mib")
    rss_txt = f" A fresh process that only runs the ONNX model (no torch) over that recording: {rss:.0f} MiB." if rss else ""
    out += ["", f"Peak RSS of the benchmark process (torch, both backends loaded): {d['peak_rss_mib']:.0f} MiB.{rss_txt} RTF = processing time / audio "
            f"duration over {next(iter(d['models'].values()))['speed']['audio_seconds']:.0f} s of held-out speech "
            "with pauses, features + VAD + model included. Live latencies are in audio time (20 ms chunks), from the clip's "
            "energy onset/offset (-30 dB re its peak; breaths count as speech) to the event.", ""]
    if d.get("conditions"):
        out += ["Held-out speakers under recording-condition shifts (ONNX model; `benchmarks/default_model.py` "
                "CONDITIONS, generated with `train/augment.py`, seeded per clip):", "",
                "| condition | UAR % | WA % | recall N/H/A/S % |", "|---|---|---|---|"]
        for name, r in d["conditions"].items():
            rec = "/".join(_pct(v) for v in r["recall"].values())
            out.append(f"| {name} | {_pct(r['uar'])} | {_pct(r['wa'])} | {rec} |")
        out.append("")
    for b, r in d["models"].items():
        a = r["accuracy"]
        out += [f"Confusion matrix ({b}; rows = truth, columns = prediction, order {', '.join(a['labels'])}):", "", "```"]
        out += ["  ".join(f"{v:4d}" for v in row) for row in a["confusion"]] + ["```", ""]
    return out


def student_cv(d) -> list[str]:
    out = ["## The default recipe, speaker-independent 5-fold cross-validation", "", _prov(d), "", d.get("protocol", ""), ""]
    out += ["| variant | fold | test actors | UAR % | WA % | recall N/H/A/S % | train s | device |",
            "|---|---|---|---|---|---|---|---|"]
    for name, v in d["variants"].items():
        for r in v["folds"]:
            rec = "/".join(_pct(r["recall"][k]) for k in r["labels"])
            out.append(f"| {name} | {r['fold']} | {', '.join(s.replace('Actor_', '') for s in r['test_speakers'])} | "
                       f"{_pct(r['uar'])} | {_pct(r['wa'])} | {rec} | {r['train_seconds']:.0f} | {r['device']} |")
        out.append(f"| **{name}** | **mean** | | **{_pct(v['mean_uar'])}** | **{_pct(v['mean_wa'])}** | | | |")
    return out + [""]


def ablations(files) -> list[str]:
    out = ["## Recipe ablations (same folds, same protocol; one result file each)", "",
           "| result file | command | variant | head | UAR % per fold | mean UAR % | mean WA % |", "|---|---|---|---|---|---|---|"]
    for name, d in files:
        for vname, v in d["variants"].items():
            cfg = v["folds"][0]["head_config"]
            head = f"d_rnn {cfg['d_rnn']}, {cfg['n_heads']}x{cfg['d_head']}, dropout {cfg['dropout']}" + (
                ", time-norm" if cfg.get("time_norm") else "")
            folds = " / ".join(_pct(r["uar"]) for r in v["folds"])
            out.append(f"| `{name}` | `{d['command']}` | {vname} | {head} | {folds} | {_pct(v['mean_uar'])} | {_pct(v['mean_wa'])} |")
    notes = [f"- `{name}`: {d['note']}" for name, d in files if d.get("note")]
    return out + ([""] + notes if notes else []) + [""]


def encoders(d) -> list[str]:
    out = ["## Encoder choice: Whisper tiny.en vs base (frozen), 5-fold CV, clean clips", "", _prov(d), ""]
    out += ["| encoder | layers x d | params (M) | eager ms / 2 s window (1 thread) | linear probe UAR % | CTA-RNN head UAR % |",
            "|---|---|---|---|---|---|"]
    for k, r in d["encoders"].items():
        head = _pct(r["head_mean_uar"]) if "head_mean_uar" in r else "—"
        out.append(f"| {k} | {r['layers']} x {r['d_model']} | {r['encoder_params'] / 1e6:.1f} | "
                   f"{r['window_ms_eager_1thread']:.1f} | {_pct(r['probe_mean_uar'])} | {head} |")
    return out + [""]


def vad(d) -> list[str]:
    out = ["## Speech segmentation: Silero VAD vs an energy detector", "", _prov(d), ""]
    out += ["Mean over the noise kinds at each SNR (`results/vad.json` has every condition).", "",
            "| VAD | SNR dB | frame F1 % | missed | false segments | split | end latency s (mean / max) |",
            "|---|---|---|---|---|---|---|"]
    for name, summ in d["summary"].items():
        for snr in ("20", "10", "5", "0"):
            r = summ.get(snr)
            if r:
                out.append(f"| {name} | {snr} | {_pct(r['frame_f1_mean'])} | {r['missed']} | {r['false_alarm_segments']} | "
                           f"{r['split']} | {r['end_latency_s_mean']:.2f} / {r['end_latency_s_max']:.2f} |")
        if "rtf_1_thread" in summ:
            out.append(f"| {name} | cost | RTF {summ['rtf_1_thread']:.5f} on 1 thread | | | | |")
    return out + [""]


def teachers(recs) -> list[str]:
    """The five teachers on the RAVDESS protocol: per fold, mean, and the papers' own (IEMOCAP) numbers beside."""
    import statistics

    papers = _load_file(HERE / "papers.json") or {"records": {}, "note": ""}
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in recs:
        groups.setdefault((r["model"], r["variant"]), []).append(r)
    order = ["mmer", "cma", "cta_rnn", "mtl_ctc", "gmp_atl"]
    first = recs[0]
    out = ["## Teachers: the five papers, full size, RAVDESS 4 classes, speaker-independent 5-fold CV", "",
           f"_{first['data_command']}; then {first['batch']}; one record per (model, variant, fold) in "
           f"`results/teachers.json` with its own `command` — {first['machine']} — {first['date']}_", "",
           "Protocol: RAVDESS actors 01-20, neutral/happy/angry/sad (560 clips), 5 folds of 2 male + 2 female actors "
           "(the same folds as the student), trained on 16 actors, evaluated at the last epoch on the 4 unseen actors "
           "(no model selection on them). Backbones: the papers use wav2vec2 / HuBERT / RoBERTa / BERT / a WeNet "
           "Conformer, none of which can be had offline here; every teacher here uses the packaged **Whisper base** "
           "encoder (fine-tuned, or frozen for CTA-RNN) and the packaged **all-MiniLM-L6-v2** text encoder (frozen) "
           "where a paper has a text branch. RAVDESS has two sentences only, so text carries no emotion here.", "",
           "| model | variant | backbone | params (M) | UAR % per fold | mean UAR % (sd) | mean WA % | train s / fold | "
           "epochs | device | paper's own number (IEMOCAP, not comparable) |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in order:
        variants = sorted((v for (mm, v) in groups if mm == m), key=lambda v: (v != "full", v))
        for v in variants:
            rs = sorted(groups[(m, v)], key=lambda r: r["fold"])
            uars = [r["uar"] for r in rs]
            sd = statistics.pstdev(uars) if len(uars) > 1 else 0.0
            paper = papers["records"].get(f"{m}:{v}")
            ptxt = f"{paper['metric']} {paper['value']:.1f} ({paper['protocol']})" if paper else "—"
            bold = "**" if v == "full" else ""
            out.append(f"| {bold}{m}{bold} | {v} | {rs[0]['backbone']} | {rs[0]['params'] / 1e6:.1f} | "
                       f"{' / '.join(_pct(u) for u in uars)} | {bold}{_pct(statistics.fmean(uars))}{bold} ({_pct(sd)}) | "
                       f"{_pct(statistics.fmean(r['wa'] for r in rs))} | "
                       f"{statistics.fmean(r['train_seconds'] for r in rs):.0f} | {rs[0]['epochs']} | "
                       f"{rs[0]['device'].replace('cuda:', '')} | {ptxt} |")
    out += ["", papers.get("note", ""), ""]
    cer = [r for r in recs if r["model"] == "mtl_ctc" and r["variant"] == "full" and "test_cer" in r]
    if cer:
        out += [f"ASR by-product of mtl_ctc (greedy CTC, unseen actors): mean character error rate "
                f"{_pct(statistics.fmean(r['test_cer'] for r in cer))} % (two sentences only: an easy ASR task).", ""]
    return out


def _load_file(p: Path):
    return json.loads(p.read_text()) if p.is_file() else None


def main() -> int:
    lines = ["# Benchmarks", "", "Generated by `python benchmarks/report.py` from `benchmarks/results/*.json`; every "
             "result file records the command that produced it, the machine and the date.", ""]
    for name, fn in (("default_model.json", default_model), ("student_cv.json", student_cv)):
        d = _load(name)
        if d is not None:
            lines += fn(d)
    cv_files = [(p.name, json.loads(p.read_text())) for p in sorted(RES.glob("student_cv*.json"))]
    if cv_files:
        lines += ablations(cv_files)
    t = _load("teachers.json")
    if t:
        lines += teachers(t)
    for name, fn in (("encoders.json", encoders), ("vad.json", vad)):
        d = _load(name)
        if d is not None:
            lines += fn(d)
    (HERE / "README.md").write_text("\n".join(lines) + "\n")
    print(HERE / "README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
