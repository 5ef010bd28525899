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
    """A result file, or None if absent (or half-written by a job that is still running)."""
    p = RES / name
    try:
        return json.loads(p.read_text()) if p.is_file() else None
    except ValueError:
        print(f"report.py: {p} is not complete JSON (being written?); skipped", file=sys.stderr)
        return None


def _prov(d) -> str:
    m = d.get("machine", {})
    mach = m if isinstance(m, str) else f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores"
    return f"_`{d.get('command', '?')}` — {mach} — {d.get('date', '?')}_"


def _pct(x) -> str:
    return f"{100 * x:.1f}"


def default_model(d, name="default_model.json") -> list[str]:
    out = ["## The bundled default model (through the SDK, one CPU thread)", "", _prov(d), ""]
    out += ["Validation speakers (never trained on): " + ", ".join(d["validation_speakers"]), ""]
    out += ["| backend | file MiB | UAR % | WA % | macro-F1 % | recall N/H/A/S % | session UAR % | session recall N/H/A/S % "
            "| analyze() RTF CPU / wall | window p50 / p95 ms | "
            "first partial after onset s (mean / p95 / max) | final after speech end s (mean / p95 / max) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for b, r in d["models"].items():
        a, s, lv = r["accuracy"], r["speed"], r["live"]
        rec = "/".join(_pct(a["recall"][k]) for k in a["labels"])
        sa = r.get("accuracy_session")
        srec = "/".join(_pct(sa["recall"][k]) for k in sa["labels"]) if sa else "—"
        fp, fe = lv["first_partial_after_onset_s"], lv["final_after_speech_end_s"]
        rtf = f"{s['rtf_cpu']:.4f} / {s['rtf']:.4f}" if "rtf_cpu" in s else f"— / {s['rtf']:.4f}"
        out.append(f"| {b} | {r['mib']:.2f} | {_pct(a['uar'])} | {_pct(a['wa'])} | {_pct(a['macro_f1'])} | {rec} | "
                   f"{_pct(sa['uar']) if sa else '—'} | {srec} | "
                   f"{rtf} | {s['window_ms_p50']:.1f} / {s['window_ms_p95']:.1f} | "
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


def student_cv(d, name="student_cv.json") -> list[str]:
    title = {"student_cv_adapt_mix.json": "The shipped recipe (test-time adaptive normalisation, trained under noisy "
                                          "sessions and sessions of varied emotion mix)",
             "student_cv_adapt_sess.json": "Test-time adaptive normalisation trained under noisy sessions, the "
                                           "speakers' training mix only (the previous default's recipe)",
             "student_cv_adapt.json": "Test-time adaptive normalisation without noisy-session training (an earlier "
                                      "default's recipe)"}.get(name, "The recipe without test-time adaptation")
    proto = d.get("protocol", "")
    if "adapt" in name:
        proto += ("; test-time adaptation: UAR with the speaker's statistics from all of their other held-out clips "
                  "(a long session), uar_off with the training mean only")
    out = [f"## {title}, speaker-independent 5-fold cross-validation", "", _prov(d), "", proto, ""]
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
           "| result file | command | variant | head | UAR % per fold | mean UAR % | mean WA % | noisy sessions UAR % / "
           "neutral recall % | ordinary-speech baseline UAR % / neutral recall % (clean; noisy sessions) | "
           "in other voices UAR % / neutral recall % |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for name, d in files:
        for vname, v in d["variants"].items():
            cfg = v["folds"][0]["head_config"]
            head = f"d_rnn {cfg['d_rnn']}, {cfg['n_heads']}x{cfg['d_head']}, dropout {cfg['dropout']}" + (
                ", time-norm" if cfg.get("time_norm") else "")
            folds = " / ".join(_pct(r["uar"]) for r in v["folds"])
            sv = v.get("sessions_val_mean")
            noisy = f"{_pct(sv['uar'])} / {_pct(sv['neutral_recall'])}" if sv else "–"
            nc = v.get("neutral_ctx_mean")
            ordinary = f"{_pct(nc['uar'])} / {_pct(nc['neutral_recall'])}" if nc else "–"
            if nc and sv and "uar_neutral_ctx" in sv:
                ordinary += f"; {_pct(sv['uar_neutral_ctx'])} / {_pct(sv['neutral_recall_neutral_ctx'])}"
            vv = v.get("voices_val_mean")
            voices = f"{_pct(vv['uar'])} / {_pct(vv['neutral_recall'])}" if vv else "–"
            out.append(f"| `{name}` | `{d['command']}` | {vname} | {head} | {folds} | {_pct(v['mean_uar'])} | "
                       f"{_pct(v['mean_wa'])} | {noisy} | {ordinary} | {voices} |")
    notes = [f"- `{name}`: {d['note']}" for name, d in files if d.get("note")]
    if any(v.get("neutral_ctx_mean") for _, d in files for v in d["variants"].values()):
        notes.append("- Ordinary-speech baseline: each held-out clip classified against a mean of only the "
                     "speaker's *other neutral* clips (a session that is mostly ordinary speech, or a baseline pinned "
                     "with `Stream.calibrate`), clean and in the noisy session copies; recorded by `train.student` "
                     "since `--adapt-mix` (older result files lack it).")
    if any(v.get("voices_val_mean") for _, d in files for v in d["variants"].values()):
        notes.append("- In other voices: the held-out speakers' clips in the voice copies' pseudo-speakers "
                     "(`--voices`, `train/voices.py`: formants, pitch and pitch range of each speaker changed with "
                     "Praat's \"Change gender\", one drawn voice per speaker and copy), with the speaker's statistics; "
                     "`--validate-voices-only` measures a recipe that never trained on them.")
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


def _n(x, spec: str = ".1f", dash: str = "—") -> str:
    return dash if x is None else format(x, spec)


def _params(r) -> str:
    txt = f"{r['params'] / 1e6:.1f}"
    return txt + (f" + {r['text_encoder_params'] / 1e6:.1f} text" if r.get("text_encoder_params") else "")


def _folds(r) -> str:
    f = r.get("folds") or []
    return "all 5" if f == list(range(5)) else (", ".join(map(str, f)) or "—")


# student rows of results/compare.json by recipe (rows written before rows named their recipe: from their kind)
RECIPE_NAMES = {"windowed": "student (windowed)", "adapt": "student (adaptive) — session",
                "sess": "student (adaptive, noisy-session training: the previous default's recipe) — session",
                "mix": "student (adaptive, noisy-session and emotion-mix training: the bundled default's recipe) — "
                       "session",
                "causal": "student (causal)"}
_KIND_RECIPE = {"student": "windowed", "adaptive": "adapt", "causal": "causal"}


def _recipe(r) -> str:
    return r.get("recipe") or _KIND_RECIPE.get(r["kind"], r["kind"])


def _row_name(r) -> str:
    return f"teacher {r['model']}" if r["kind"] == "teacher" else RECIPE_NAMES.get(_recipe(r), r["kind"])


def _per_clip_uar(r) -> str:
    """The per-clip UAR of a row whose headline is another protocol (the adaptive student's sessions), else —."""
    pc = r.get("per_clip") if r.get("headline") == "session" else None
    return _pct(pc["uar"]) if pc else "—"


def compare(d) -> list[str]:
    """Every teacher and every student in one table (benchmarks/compare.py -> results/compare.json)."""
    clock = d.get("clock", "cpu")
    cuda = (d.get("inputs") or {}).get("teacher_timing_cuda")
    gpu = next((r["gpu"]["device"] for r in d["rows"] if r.get("gpu")), None)
    gpu_head = f"teacher GPU ms p50 fp32 / bf16 ({gpu})" if gpu else "teacher GPU ms (no GPU timing file)"
    refreshed = d.get("teachers_refreshed")
    out = ["## Teachers vs students: accuracy, size, speed, memory (same folds)", "", _prov(d), ""]
    if refreshed:
        out += [f"_Teacher rows re-read by `{refreshed['command']}` — {refreshed['date']}_", ""]
    for recipe, k in (d.get("kept") or {}).items():
        out += [f"_{RECIPE_NAMES.get(recipe, recipe)} rows "
                f"kept from the earlier run `{k.get('command', '?')}` — {k.get('date', '?')} (not re-measured)_", ""]
    out += [d.get("protocol", ""), "",
           f"| model | variant / backbone | format | UAR % | WA % | per-clip UAR % (session rows) | folds | params M | "
           f"file MiB | RTF (1 thread) | per-clip ms p50 / p95 | per-chunk ms p50 / p95 | peak RSS MiB | "
           f"final after speech end s (mean / p95) | trained on | {gpu_head} |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    notes = []
    for r in d["rows"]:
        name = _row_name(r)
        name = f"**{name}**" if r["kind"] != "teacher" or r.get("variant") == "full" else name
        fmt = f"{r['format']} {r['quantization']}"
        what = r["variant"] if r["kind"] == "teacher" else r.get("backbone", "")
        if r.get("uar") is None:
            out.append(f"| {name} | {what} | {fmt} | — | — | — | — | {_params(r)} | | | | | | | "
                       f"{r.get('trained_on') or ''} | {r.get('note', '')} |")
            continue
        clip = r["clip_ms"][clock]
        chunk = (r.get("chunk_ms") or {}).get(clock)
        fin = r.get("final_after_speech_end_s") or {}
        g = r.get("gpu")
        gtxt = f"{g['fp32_ms']['p50']:.1f} / {_n((g.get('bf16_ms') or {}).get('p50'))}" if g else "—"
        mark = " (!)" if r.get("export_check_failed") else ""
        out.append(f"| {name} | {what} | {fmt}{mark} | {_pct(r['uar'])} | {_pct(r['wa'])} | {_per_clip_uar(r)} | "
                   f"{_folds(r)} | {_params(r)} | {r['file_mib']:.1f} | {r['rtf'][clock]:.4f} | "
                   f"{clip['p50']:.0f} / {clip['p95']:.0f} | "
                   + (f"{chunk['p50']:.1f} / {chunk['p95']:.1f} | " if chunk else "— | ")
                   + f"{r['peak_rss_mib']:.0f} | {_n(fin.get('mean'), '.2f')} / {_n(fin.get('p95'), '.2f')} | "
                   f"{r.get('trained_on') or '—'} | {gtxt} |")
        if r.get("note"):
            notes.append(f"- (!) {name} {fmt}: {r['note']}: " + "; ".join(
                f"fold {k}: {v}" for k, v in r["export_check_failed"].items()) if mark else f"- {name} {fmt}: {r['note']}")
    teacher = next((r for r in d["rows"] if r["kind"] == "teacher"), None)
    student = next((r for r in d["rows"] if r["kind"] == "student" and r.get("uar") is not None), None)
    adaptive = next((r for r in d["rows"] if r["kind"] == "adaptive" and r.get("uar") is not None), None)
    causal = next((r for r in d["rows"] if r["kind"] == "causal" and r.get("uar") is not None), None)
    tokens = max((r.get("text_tokens") or 0 for r in d["rows"]), default=0)
    out += ["", f"Costs are process CPU time on one thread (`{clock}`; wall time, inflated by other jobs on this shared "
            "machine, is in `results/compare.json` too). Per clip: features + VAD + model"
            + (f" (+ the text encoder over a {tokens}-token transcript for the text teachers; the ASR that would "
               "produce it is not counted)" if tokens else "") + "."]
    loads = [(what, x["load_average"]) for what, x in (("compare.py", d), ("teacher_timing.py --device cpu",
             (d.get("inputs") or {}).get("teacher_timing_cpu") or {})) if x.get("load_average")]
    if loads:
        out[-1] += (" The 2 cores are shared with other jobs and even CPU time grows with their load (cache, memory "
                    "bandwidth, sibling hyper-threads): 1-min load average at start / end of "
                    + "; ".join(f"`{w}` {la['start'][0]:.1f} / {la['end'][0]:.1f}" for w, la in loads) + ".")
    if teacher:
        out.append(f"- Teachers: UAR/WA from `results/teachers.json` (trained and evaluated on "
                   f"{teacher['trained_on']}); cost from `results/teacher_timing_cpu.json` (eager PyTorch fp32, random "
                   f"weights at full size, batch 1, one {teacher['clip_ms']['clip_seconds']:.1f} s clip) plus the "
                   "edgeser front end on the same length; RTF = per-clip p50 / clip length; file = fp32 state dict (+ text encoder); peak RSS = a fresh "
                   f"process building and running that teacher (torch + transformers); final after speech end = "
                   f"{teacher['final_how']}. GPU: "
                   + (f"`{cuda['command']}` ({gpu}), model only, batch 1." if cuda and gpu else
                      "no `results/teacher_timing_cuda.json` yet (`python benchmarks/teacher_timing.py --device cuda` "
                      "on a GPU machine)."))
    if student:
        out.append(f"- Windowed students: each fold's export through the SDK (`edgeser.load(path).classify`); RTF = "
                   f"`analyze()` over {student['rtf_audio_seconds']:.0f} s of held-out speech with pauses; per chunk = "
                   f"{student['chunk_ms']['what']}; peak RSS = VmHWM of a fresh process that loads the file and "
                   "analyses that recording (for `.pte` files the ExecuTorch Python bindings import torch, which an "
                   f"app on a phone does not carry); final after speech end: {student['final_how']}; speed, memory and "
                   f"live latency on fold {student['speed_fold']}'s files.")
    if adaptive:
        out.append("- Adaptive student (test-time adaptive normalisation: the speaker/session mean of the encoder "
                   "features subtracted before the head): **UAR / WA are per session** — "
                   + adaptive.get("protocol", "") + ". Costs and latencies measured as for the windowed students "
                   "(`analyze()` and the live stream adapt as they go).")
    if causal:
        out.append(f"- Causal student: {causal['protocol']}; per chunk = {causal['chunk_ms']['what']}; final after "
                   f"speech end: {causal['final_how']}. Cross-check UAR per fold (`stream_fresh_state_uar`): "
                   + "; ".join(f"{r['format']} {r['quantization']} "
                               + " / ".join(_pct(v) for _, v in sorted(r["stream_fresh_state_uar"].items()))
                               + f" (mean {_pct(sum(r['stream_fresh_state_uar'].values()) / len(r['stream_fresh_state_uar']))})"
                               for r in d["rows"] if r["kind"] == "causal" and r.get("stream_fresh_state_uar"))
                   + ".")
    out += notes
    if d.get("missing"):
        out += ["", "Missing (reported, not skipped silently):", ""] + [f"- {m}" for m in d["missing"]]
    out += ["", "Accuracy vs per-clip CPU latency (marker area ~ file size):", "",
            "![accuracy vs latency](results/compare_tradeoff.png)", "",
            "Fold-summed confusion matrices (the best teacher and every student):", "",
            "![confusion matrices](results/compare_confusion.png)", ""]
    return out


def _pick(rows, fmt="onnx", q="int8"):
    """The row in ``fmt`` / ``q`` with a result (else any with a result)."""
    have = [r for r in rows if r.get("uar") is not None]
    return next((r for r in have if r["format"] == fmt and r["quantization"] == q), have[0] if have else None)


def compare_summary(d) -> list[str]:
    """The short version for the top-level README: the best teacher and the int8 ONNX file of each student."""
    clock = d.get("clock", "cpu")
    rows = d["rows"]
    teachers = [r for r in rows if r["kind"] == "teacher" and r.get("variant") == "full" and r.get("uar") is not None]
    picks = []
    if teachers:
        best = max(teachers, key=lambda r: r["uar"])
        picks.append((f"best teacher ({best['model']})", best, best["uar"]))
    for recipe, label in (("windowed", "windowed student"), ("adapt", "adaptive student"),
                          ("sess", "adaptive student + noisy-session training (the previous default's recipe)"),
                          ("mix", "adaptive student + noisy-session and emotion-mix training (the default's recipe)"),
                          ("causal", "causal student")):
        r = _pick([x for x in rows if x["kind"] != "teacher" and _recipe(x) == recipe])
        if r is None:
            continue
        if r.get("headline") == "session":
            picks.append((f"{label}, session", r, r["uar"]))
            if r.get("per_clip"):
                picks.append((f"{label}, per clip", r, r["per_clip"]["uar"]))
        else:
            picks.append((label, r, r["uar"]))
    out = ["Teachers vs on-device students (same speaker-independent folds; costs on one CPU thread; from "
           "`benchmarks/compare.py`, every row in [`benchmarks/README.md`](benchmarks/README.md)):", "",
           "| model | format | UAR % | folds | file MiB | RTF | final after speech end s (mean) |",
           "|---|---|---|---|---|---|---|"]
    for label, r, uar in picks:
        fin = (r.get("final_after_speech_end_s") or {}).get("mean")
        mark = " (!)" if r.get("export_check_failed") else ""
        out.append(f"| {label} | {r['format']} {r['quantization']}{mark} | {_pct(uar)} | {_folds(r)} | "
                   f"{r['file_mib']:.1f} | {r['rtf'][clock]:.4f} | {_n(fin, '.2f')} |")
    if any(r.get("export_check_failed") for _, r, _ in picks):
        out += ["", "(!) a fold's file failed the exporter's check against eager PyTorch and was evaluated anyway "
                "(details in [`benchmarks/README.md`](benchmarks/README.md))."]
    if any(r.get("headline") == "session" for _, r, _ in picks):
        out += ["", "Session = each held-out speaker's clips one after another through one stream (the adaptation "
                "statistics carried from clip to clip); per clip = every clip alone."]
    kept = {r: k for r, k in (d.get("kept") or {}).items() if any(_recipe(x) == r for _, x, _ in picks)}
    if kept:
        dates = sorted({str(k.get("date", "?"))[:10] for k in kept.values()})
        out += ["", f"Rows of {', '.join(RECIPE_NAMES.get(r, r).split(' — ')[0] for r in kept)} were measured in "
                f"earlier runs ({', '.join(dates)}; this run {str(d.get('date', '?'))[:10]}): compare costs (RTF) "
                "within one run, the machine's speed varies between days."]
    return out + [""]


def hardening(d) -> list[str]:
    """Long and heavy runs (benchmarks/hardening.py): what was tried, memory before/after, events in/out."""
    out = ["## Hardening: a long recording, a soak, parallel streams (default model, ONNX, 1 thread)", "", _prov(d), ""]
    if d.get("note"):
        out += [f"_{d['note']}_", ""]
    b = d.get("speech_bank", {})
    out += [f"Audio: generated from {b.get('clips', '?')} espeak-ng sentences ({', '.join(b.get('voices', []))}) with "
            f"gaps of 0.6-4 s ({', '.join(b.get('gaps', []))}); events in = sentences put in; a sentence is found "
            "when a final event overlaps it; a false segment is a final event overlapping no sentence.", "",
            "| run | input | audio | wall s (RTF) | memory MiB | events in -> out | checks |", "|---|---|---|---|---|---|---|"]

    def ev(r):
        return (f"{r['sentences_in']} sentences -> {r['final_events_out']} final events; found {r['sentences_found']}, "
                f"missed {r['sentences_missed']}, false {r['false_segments']}")

    for name, r in (("1 min (baseline)", d["long"]["baseline_1min"]), ("long recording", d["long"]["full"])):
        out.append(f"| {name} | `Model.analyze(path)`: 16 kHz FLAC ({r['file_mib']:.1f} MiB; {r['decoded_float32_mib']:.0f} "
                   f"MiB as float32) streamed from disk, fresh process | {r['audio_seconds'] / 3600:.2f} h | "
                   f"{r['wall_s']:.1f} ({r['rtf']:.4f}) | after load {r['rss_after_load_mib']:.0f}, peak (VmHWM) "
                   f"{r['peak_rss_mib']:.0f}, after {r['rss_after_mib']:.0f} | {ev(r)} | segments numbered in order, "
                   f"one final each |")
    s = d["soak"]
    c, bufs = s["chunk_ms"], s["stream_buffers_max"]
    out.append(f"| soak | one `Stream`, {s['chunks']} chunks of {c['min']:.0f} ms - {c['max'] / 1000:.1f} s (median "
               f"{c['median']:.0f} ms), as fast as it goes | {s['audio_seconds'] / 3600:.2f} h | {s['wall_s']:.0f} "
               f"({s['rtf']:.4f}) | before {s['rss_before_mib']:.0f}; sampled every 5 min: first {s['rss_first_mib']:.1f}, "
               f"last {s['rss_last_mib']:.1f}, max {s['rss_max_mib']:.1f} | {ev(s)}; {s['events']['partial']} partial "
               f"events | segments in order, one final each, no overlap; stream buffers at most "
               f"{bufs['logmel_frames_kept']} log-mel frames, {bufs['feature_samples_buffered']} + "
               f"{bufs['vad_samples_buffered']} samples |")
    p = d["parallel"]
    out.append(f"| parallel streams | {p['streams']} streams (different audio and chunking) in {p['streams']} threads "
               f"over one model, then one at a time | {p['streams']} x {p['audio_seconds_each'] / 60:g} min | "
               f"{p['parallel_s']:.0f} in parallel, {p['one_at_a_time_s']:.0f} one at a time | | "
               f"{sum(p['final_events_per_stream'])} final events | identical events: {'yes' if p['identical'] else 'NO'} |")
    return out + ["", "Bad input, faults and privacy are tested, not measured: `tests/test_hardening.py` (every kind of "
                  "input through every entry point, bad files, hypothesis fuzzing), `tests/test_faults.py` (devices, "
                  "callbacks, stop/restart, model files, no unpickling), `tests/test_longrun.py` (short soak and "
                  "parallel streams), `tests/test_privacy.py`.", ""]


SESSION_MIX_PREVIOUS = "session_mix_sess_recipe.json"  # session_mix.py run on the previous default (runs/cv_adapt_sess)
CALIBRATION_FILES = (
    ("calibration.json", "Calibrated confidence: the student without test-time adaptation",
     "non-adaptive student", "python benchmarks/calibration.py --runs runs/cv_small"),
    ("calibration_adapt.json", "Calibrated confidence: the adaptive student (session protocol)",
     "adaptive student, session protocol", "python benchmarks/calibration.py (adaptive student, session protocol)"),
    ("calibration_adapt_sess.json",
     "Calibrated confidence: the previous default's recipe (adaptive, trained under noisy sessions; session protocol)",
     "previous default's recipe, session protocol",
     "python benchmarks/calibration.py --runs runs/cv_adapt_sess --session"),
    ("calibration_adapt_mix.json",
     "Calibrated confidence: the shipped recipe (adaptive, trained under noisy sessions and varied emotion mixes; "
     "session protocol)",
     "shipped recipe, session protocol", "python benchmarks/calibration.py --runs runs/cv_adapt_mix --session"),
)


def _absent(name: str, what: str) -> list[str]:
    return [f"_No `results/{name}` yet: {what} (skipped)._", ""]


def _render(module: str, results: dict, **kw) -> list[str]:
    """``benchmarks.<module>.render_markdown(results)`` as lines; a note instead if it cannot render this file."""
    import importlib

    if str(HERE.parent) not in sys.path:  # run as a script: the repository root, so that `benchmarks.*` imports
        sys.path.insert(0, str(HERE.parent))
    try:
        text = importlib.import_module(f"benchmarks.{module}").render_markdown(results, **kw)
    except Exception as exc:  # noqa: BLE001  (a file being rewritten, or of an older layout: say so, render the rest)
        return [f"_`results/{module}` could not be rendered ({type(exc).__name__}: {exc}); re-run "
                "`python benchmarks/report.py` when it is complete._", ""]
    return text.rstrip("\n").split("\n") + [""]


def robustness_section(d, off=None) -> list[str]:
    """The robustness section (``benchmarks/robustness.py``'s own renderer) of benchmarks/README.md; ``off``: the
    control run without emotion-change cuts (robustness_no_change_split.json), compared for the session modes."""
    if d is None:
        return ["## Robustness", ""] + _absent("robustness.json", "`python benchmarks/robustness.py`")
    lines = _render("robustness", d)
    lines = lines if lines[0].startswith("## ") else ["## Robustness", ""] + lines
    if off is not None:
        from benchmarks.robustness import render_change_split

        lines += render_change_split(d, off).rstrip("\n").split("\n") + [""]
    return lines


ROBUSTNESS_PREVIOUS = "robustness_sess_recipe.json"  # robustness.py run on the previous default (runs/cv_adapt_sess)


def robustness_vs_previous(d, prev) -> list[str]:
    """The bundled model's robustness run against the same run on the previous default, per adaptation mode (the
    summaries of both files, never typed): clean, mean over the shifts, worst condition, lowest neutral recall, TTS."""
    if not d or not prev:
        return []
    out = ["### The bundled model vs the previous default (trained without emotion-mix adaptation)", "",
           f"_`{ROBUSTNESS_PREVIOUS}`: `{prev.get('command', '?')}` — {prev.get('date', '?')}; same clips, conditions "
           "and seeds. Each cell: bundled / previous._", "",
           "| model | mode | clean UAR % | mean shift UAR % | worst condition UAR % | lowest neutral recall % | "
           "espeak-ng TTS UAR % / neutral recall % |", "|---|---|---|---|---|---|---|"]
    for name, mr in (d.get("models") or {}).items():
        mp = (prev.get("models") or {}).get(name) or {}
        labels = mr.get("labels") or ["neutral"]
        neutral = "neutral" if "neutral" in labels else labels[0]
        for mode, a in (mr.get("summary") or {}).items():
            b = (mp.get("summary") or {}).get(mode)
            if not (b and "worst" in a and "worst" in b):
                continue
            ta, tb = (mr.get("tts") or {}).get(mode), (mp.get("tts") or {}).get(mode)
            tts = (f"{_pct(ta['uar'])} / {_pct(ta['recall'][neutral])} vs {_pct(tb['uar'])} / "
                   f"{_pct(tb['recall'][neutral])}" if ta and tb else "—")
            out.append(f"| `{name}` | {mode} | {_pct(a['clean_uar'])} / {_pct(b['clean_uar'])} | "
                       f"{_pct(a['mean_shift_uar'])} / {_pct(b['mean_shift_uar'])} | "
                       f"{a['worst']['condition']} {_pct(a['worst']['uar'])} / {b['worst']['condition']} "
                       f"{_pct(b['worst']['uar'])} | {_pct(a['neutral_recall_min']['value'])} / "
                       f"{_pct(b['neutral_recall_min']['value'])} | {tts} |")
    return out + [""] if len(out) > 5 else []


ROBUSTNESS_CLEAN_FOLDS = "robustness_clean_folds.json"  # robustness.py --conditions clean on every fold's model
ROBUSTNESS_HARD_FOLDS = "robustness_hard_folds.json"  # ... the bundled model's hardest conditions on every fold's model
# (adapting mode, its non-adapting control): the same clips and segmentation, only the adaptation differs
ADAPT_PAIRS = (("clip", "off"), ("running-clips", "off"), ("running", "off-session"), ("calibrated", "off-session"))


def _pooled(runs: list[dict], condition: str, mode: str):
    """UAR and neutral recall of ``mode`` under ``condition`` over every fold's clips (summed confusion matrices)."""
    import numpy as np

    mats = [np.asarray(r["conditions"][condition][mode]["confusion"], dtype=float) for r in runs
            if mode in (r.get("conditions") or {}).get(condition, {})]
    if not mats or len(mats) != len(runs):
        return None
    m = sum(mats)
    n = len(m)  # rows: true labels; columns: predictions (+ "no event" / abstained columns beyond the labels)
    rec = [m[i, i] / m[i].sum() for i in range(n) if m[i].sum()]
    return {"uar": float(np.mean(rec)), "neutral": float(m[0, 0] / m[0].sum()), "clips": int(m.sum())}


def _fold_runs(d) -> list[dict]:
    return sorted(d["models"].values(), key=lambda r: (r.get("fold") is None, r.get("fold")))


def _conditions(runs: list[dict]) -> list[str]:
    return [c for c in (runs[0].get("conditions") or {}) if all(c in (r.get("conditions") or {}) for r in runs)]


def adaptation_every_fold(d, title: str, purpose: str) -> list[str]:
    """Per condition of a ``robustness.py --model <every fold's file> --folds 0 1 2 3 4`` run: each fold's model on
    its own held-out actors per adaptation mode, the pooled row over all folds, and what each adapting mode gains or
    costs against its non-adapting control."""
    if not d or not d.get("models"):
        return []
    from benchmarks.robustness import MODES

    runs = _fold_runs(d)
    out = [f"### {title}", "", _prov(d), "",
           "Each fold's model (the shipped recipe, exported like the bundled one: int8, windows pooled by their mean "
           "logits, its own temperature; folds 1-4 by `python benchmarks/export_folds.py --runs runs/cv_adapt_mix "
           "--calibration calibration_adapt_mix.json --out runs/folds_mean_logits --folds 1 2 3 4`, fold 0 is the "
           f"bundled file) on its own held-out actors: {purpose} One fold's 112 clips move a UAR in steps of about "
           "1-3 points, so the pooled row (all folds' confusion matrices summed) is the figure to read.", ""]
    failed = any(not (r.get("export_check") or {}).get("passed", True) for r in runs)
    for cond in _conditions(runs):
        modes = [m for m in MODES if all(m in r["conditions"][cond] for r in runs)]
        out += [f"**{cond}**", "", "| fold | test actors | " + " | ".join(f"{m} UAR %" for m in modes) + " |",
                "|---|---|" + "---|" * len(modes)]
        for r in runs:
            cl = r["conditions"][cond]
            mark = "" if (r.get("export_check") or {}).get("passed", True) else " (!)"
            out.append(f"| {r.get('fold', '?')} (`{Path(r['path']).name}`{mark}) | "
                       f"{', '.join(s.replace('Actor_', '') for s in r.get('test_speakers', []))} | "
                       + " | ".join(_pct(cl[m]["uar"]) for m in modes) + " |")
        pooled = {m: _pooled(runs, cond, m) for m in modes}
        out.append(f"| **pooled** | {sum(len(r.get('test_speakers', [])) for r in runs)} actors | "
                   + " | ".join(f"**{_pct(pooled[m]['uar'])}** (neutral {_pct(pooled[m]['neutral'])})"
                                for m in modes) + " |")
        out.append("")
        for a, b in ADAPT_PAIRS:
            if a in modes and b in modes:
                per = [100 * (r["conditions"][cond][a]["uar"] - r["conditions"][cond][b]["uar"]) for r in runs]
                out.append(f"- `{a}` vs `{b}`: {100 * (pooled[a]['uar'] - pooled[b]['uar']):+.1f} points pooled "
                           f"(per fold {', '.join(f'{x:+.1f}' for x in per)}).")
        out.append("")
    if failed:
        out += ["(!) no passed export report next to this file: the exporter's check against eager PyTorch failed "
                "(measured anyway, as in the comparison table).", ""]
    return out


def adaptation_clean_folds(d) -> list[str]:
    return adaptation_every_fold(d, "Adaptation on clean speech, every fold",
                                 "clean clips only -- whether test-time adaptation costs anything on speech that needs "
                                 "none.")


def adaptation_hard_folds(d) -> list[str]:
    return adaptation_every_fold(d, "Adaptation under the hardest conditions, every fold",
                                 "the conditions where the bundled model did worst on fold 0 -- whether adaptation "
                                 "improves them for other speakers too.")


def adaptation_fold_summary(d, name: str) -> list[str]:
    """README lines, one per condition: the pooled UAR of each adapting mode against its control."""
    if not d or not d.get("models"):
        return []
    runs = _fold_runs(d)
    n = sum(len(r.get("test_speakers", [])) for r in runs)
    out = []
    for cond in _conditions(runs):
        parts = []
        for a, b in ADAPT_PAIRS:
            pa, pb = _pooled(runs, cond, a), _pooled(runs, cond, b)
            if pa and pb:
                parts.append(f"`{a}` {_pct(pa['uar'])} % (neutral {pa['neutral']:.2f}) vs `{b}` {_pct(pb['uar'])} % "
                             f"(neutral {pb['neutral']:.2f})")
        if parts:
            out.append(f"- Adaptation, {cond} (every fold's model on its own held-out actors, {n} actors pooled, "
                       f"`{name}`): " + "; ".join(parts) + ".")
    return out


def adaptation_clean_summary(d) -> list[str]:
    return adaptation_fold_summary(d, ROBUSTNESS_CLEAN_FOLDS)


ROBUSTNESS_TTS_FOLDS = "robustness_tts_folds.json"  # robustness.py --conditions clean (+ TTS sets) on every fold's model
#: the same for the pseudo-speaker recipe's folds (train.student cv --voices 4; not shipped)
ROBUSTNESS_TTS_FOLDS_VOICES = "robustness_tts_folds_voices.json"


def _tts_sets(runs: list[dict]) -> list[tuple[str, str]]:
    from benchmarks.robustness import TTS_SETS

    return [(k, t["title"]) for k, t in TTS_SETS.items() if all(k in r for r in runs)]


def _neutral(run: dict) -> str:
    labels = run.get("labels") or ["neutral"]
    return "neutral" if "neutral" in labels else labels[0]


def _mean_over_models(runs: list[dict], key: str, mode: str) -> tuple[float, float]:
    """(UAR, neutral recall) of ``mode`` on set ``key``, averaged over the models (the same clips each time)."""
    import statistics

    return (statistics.fmean(r[key][mode]["uar"] for r in runs),
            statistics.fmean(r[key][mode]["recall"][_neutral(r)] for r in runs))


def other_voices_folds(d, title: str = "Other voices through every fold's model", note: str = "") -> list[str]:
    """The TTS voices (never trained on by any fold) through every fold's model: per set and model, UAR and neutral
    recall per adaptation mode, and the mean over the models (the same clips each time: the spread is the models').
    ``title``: the section's heading; ``note``: a sentence saying which recipe's models these are."""
    if not d or not d.get("models"):
        return []
    from benchmarks.robustness import MODES

    runs = _fold_runs(d)
    sets = _tts_sets(runs)
    if not sets:
        return []
    out = [f"### {title}", "", _prov(d), "", *([note, ""] if note else []),
           "The same generated clips through each fold's model (see the every-fold tables above for the files): "
           "espeak-ng is formant synthesis (robotic), Kokoro-82M neural TTS (natural-sounding; Japanese speakers' "
           "voice styles reading English). Emotion is rendered by prosody only (rate, pitch, loudness), the same "
           "profile for both engines. Each cell: UAR % / neutral recall %.", ""]
    for key, title in sets:
        modes = [m for m in MODES if all(m in r[key] for r in runs)]
        out += [f"**{title}** ({runs[0][key][modes[0]]['n']} clips)", "",
                "| model | " + " | ".join(modes) + " |", "|---|" + "---|" * len(modes)]
        for r in runs:
            out.append(f"| fold {r.get('fold', '?')} (`{Path(r['path']).name}`) | "
                       + " | ".join(f"{_pct(r[key][m]['uar'])} / {_pct(r[key][m]['recall'][_neutral(r)])}"
                                    for m in modes) + " |")
        means = [_mean_over_models(runs, key, m) for m in modes]
        out.append("| **mean** | " + " | ".join(f"**{_pct(u)}** / {_pct(n)}" for u, n in means) + " |")
        out.append("")
    return out


def other_voices_summary(d) -> list[str]:
    """README line: the mean over every fold's model of UAR and neutral recall per TTS set (off vs running)."""
    if not d or not d.get("models"):
        return []
    runs = _fold_runs(d)
    parts = []
    for key, title in _tts_sets(runs):
        means = {m: _mean_over_models(runs, key, m) for m in ("off", "running", "calibrated")
                 if all(m in r[key] for r in runs)}
        cells = [f"`{m}` {_pct(u)} % (neutral {n:.2f})" for m, (u, n) in means.items()]
        parts.append(f"{title}: " + ", ".join(cells))
    if not parts:
        return []
    return [f"- Other voices (generated, never trained on; mean over the {len(runs)} folds' models, "
            f"`{ROBUSTNESS_TTS_FOLDS}`): " + "; ".join(parts) + "."]


def calibration_sections(files) -> list[str]:
    """One section per calibration result present (``benchmarks/calibration.py``'s renderer), each with its own
    heading; ``files`` = [(name, heading, short, command, results or None)]."""
    out = []
    for name, heading, _, command, d in files:
        if d is None:
            out += [f"## {heading}", ""] + _absent(name, f"`{command}`")
            continue
        lines = _render("calibration", d)
        if lines and lines[0].startswith("## "):
            lines[0] = f"## {heading}"
        else:
            lines = [f"## {heading}", ""] + lines
        png = d.get("reliability_png")
        if png and png != "reliability.png":
            lines = [ln.replace("results/reliability.png)", f"results/{png})") for ln in lines]
        out += lines
    return out


def robustness_summary(d, off=None) -> list[str]:
    """One line per model and adaptation mode for the README: clean vs mean shift UAR, worst condition, lowest neutral
    recall; with ``off`` (the control run without emotion-change cuts) one line per session mode comparing them."""
    if not d:
        return ["- Robustness: no `benchmarks/results/robustness.json` yet."]
    out = []
    for name, mr in (d.get("models") or {}).items():
        for mode, s in (mr.get("summary") or {}).items():
            if "mean_shift_uar" not in s:
                continue
            nr = s.get("neutral_recall_min") or {}
            conds = nr.get("conditions") or [nr.get("condition", "?")]
            more = f" and {len(conds) - 2} more" if len(conds) > 2 else ""
            out.append(f"- Robustness (`{name}`, adaptation `{mode}`): clean UAR {_pct(s['clean_uar'])} % vs "
                       f"{_pct(s['mean_shift_uar'])} % mean over {s.get('n_shift_conditions', '?')} shifted recording "
                       f"conditions; worst {s['worst']['condition']} {_pct(s['worst']['uar'])} %; lowest neutral "
                       f"recall {_pct(nr.get('value', 0.0))} % ({', '.join(conds[:2])}{more}).")
    from benchmarks.robustness import SESSION_MODES, same_model

    off = off or {}
    for name, mr in (d.get("models") or {}).items():
        mo_rec = (off.get("models") or {}).get(name) or {}
        if not same_model(mr, mo_rec):
            out.append(f"- Sessions (`{name}`): the control run without emotion-change cuts "
                       f"(`robustness_no_change_split.json`) measured another model file; not compared.")
            continue
        mo = mo_rec.get("summary") or {}
        for mode in SESSION_MODES:
            a, b = (mr.get("summary") or {}).get(mode), mo.get(mode)
            if not (a and b and "worst" in a and "worst" in b):
                continue
            out.append(f"- Sessions (`{name}`, `{mode}`) cut at emotion changes vs segments of the VAD alone "
                       f"(`robustness_no_change_split.json`): worst {a['worst']['condition']} {_pct(a['worst']['uar'])} "
                       f"% vs {b['worst']['condition']} {_pct(b['worst']['uar'])} %; lowest neutral recall "
                       f"{_pct(a['neutral_recall_min']['value'])} % vs {_pct(b['neutral_recall_min']['value'])} %.")
    return out or ["- Robustness: `benchmarks/results/robustness.json` has no summary yet (a run in progress?)."]


def calibration_summary(files) -> list[str]:
    out = []
    for name, _, short, _, d in files:
        if not d:
            continue
        try:
            p = d["pooled"]
            tgt = d.get("ece_target")
            met = "" if tgt is None else f" (target {tgt}: {'met' if p['after']['ece'] <= tgt else 'not met'})"
            pool = {"mean_logits": ", windows pooled by their mean logits"}.get(d.get("aggregate", "mean"), "")
            out.append(f"- Calibration ({short}, {p['clips']} clips of {p['speakers']} held-out speakers pooled): ECE "
                       f"{p['before']['ece']:.4f} before, {p['after']['ece']:.4f} after temperature scaling{pool}{met}.")
        except (KeyError, TypeError):
            out.append(f"- Calibration ({short}): `benchmarks/results/{name}` is incomplete.")
    return out or ["- Calibration: no `benchmarks/results/calibration*.json` yet."]


def _calibration_files():
    return [(n, h, s, c, _load(n)) for n, h, s, c in CALIBRATION_FILES]


def _load_file(p: Path):
    return json.loads(p.read_text()) if p.is_file() else None


README_START, README_END = "<!-- results:start (python benchmarks/report.py) -->", "<!-- results:end -->"


def readme_summary() -> list[str]:
    """The short tables the top-level README shows (bundled model; teachers' means), from the same result files."""
    import statistics

    out = [README_START, "", "_Generated by `python benchmarks/report.py` from `benchmarks/results/`; details and "
           "commands in [`benchmarks/README.md`](benchmarks/README.md)._", ""]
    d = _load("default_model.json")
    if d:
        out += [f"Bundled model on RAVDESS actors never trained on ({', '.join(d['validation_speakers'])}), one CPU "
                f"thread, {d['date']}:", "",
                "| backend | file MiB | UAR % per clip | UAR % per session | WA % per clip | analyze() RTF (CPU time) | "
                "model ms / 2 s window (p50, wall) |",
                "|---|---|---|---|---|---|---|"]
        for b, r in d["models"].items():
            sess = r.get("accuracy_session")
            out.append(f"| {b} | {r['mib']:.1f} | {_pct(r['accuracy']['uar'])} | {_pct(sess['uar']) if sess else '—'} | "
                       f"{_pct(r['accuracy']['wa'])} | {r['speed'].get('rtf_cpu', r['speed']['rtf']):.4f} | "
                       f"{r['speed']['window_ms_p50']:.1f} |")
        out += ["", "Per clip: every clip alone (`edgeser.classify`); per session: each speaker's clips one after another "
                "through one stream, so the test-time adaptation carries the speaker's statistics (a live session).", ""]
    cv = _load("student_cv.json")
    cv_adapt = _load("student_cv_adapt.json")
    cv_sess = _load("student_cv_adapt_sess.json")
    cv_mix = _load("student_cv_adapt_mix.json")
    t = _load("teachers.json")
    if cv or t:
        out += ["Speaker-independent 5-fold cross-validation on RAVDESS (4 classes, same folds):", "",
                "| model | backbone | mean UAR % | mean WA % | trained on |", "|---|---|---|---|---|"]
        for label, data in (("student, shipped recipe (test-time adaptation + noisy-session and emotion-mix "
                             "training, session)", cv_mix),
                            ("student, previous default's recipe (test-time adaptation + noisy-session training, "
                             "session)", cv_sess),
                            ("student, test-time adaptation without noisy-session training (session)", cv_adapt),
                            ("student without adaptation", cv)):
            for name, v in (data or {}).get("variants", {}).items():
                out.append(f"| {label}: {name} | whisper-tiny.en | {_pct(v['mean_uar'])} | "
                           f"{_pct(v['mean_wa'])} | {v['folds'][0]['device']} |")
        if t:
            groups: dict[str, list[dict]] = {}
            for r in t:
                if r["variant"] == "full":
                    groups.setdefault(r["model"], []).append(r)
            for m, rs in groups.items():
                out.append(f"| teacher {m} | {rs[0]['backbone']} | {_pct(statistics.fmean(r['uar'] for r in rs))} | "
                           f"{_pct(statistics.fmean(r['wa'] for r in rs))} | {rs[0]['device'].replace('cuda:', '')} |")
        out.append("")
    c = _load("compare.json")
    if c:
        out += compare_summary(c)
    out += robustness_summary(_load("robustness.json"), _load("robustness_no_change_split.json"))
    out += adaptation_clean_summary(_load(ROBUSTNESS_CLEAN_FOLDS))
    out += adaptation_fold_summary(_load(ROBUSTNESS_HARD_FOLDS), ROBUSTNESS_HARD_FOLDS)
    out += other_voices_summary(_load(ROBUSTNESS_TTS_FOLDS))
    out += calibration_summary(_calibration_files()) + [""]
    return out + [README_END]


def update_readme(path: Path) -> bool:
    """Replace the block between the markers in ``path`` (the top-level README) with :func:`readme_summary`."""
    if not path.is_file():
        return False
    text = path.read_text()
    if README_START not in text or README_END not in text:
        return False
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    path.write_text(head + "\n".join(readme_summary()) + tail)
    return True


def main() -> int:
    lines = ["# Benchmarks", "", "Generated by `python benchmarks/report.py` from `benchmarks/results/*.json`; every "
             "result file records the command that produced it, the machine and the date.", ""]
    for name, fn in (("default_model.json", default_model), ("student_cv_adapt_mix.json", student_cv),
                     ("student_cv_adapt_sess.json", student_cv),
                     ("student_cv_adapt.json", student_cv), ("student_cv.json", student_cv)):
        d = _load(name)
        if d is not None:
            lines += fn(d, name)
    cv_files = [(p.name, json.loads(p.read_text())) for p in sorted(RES.glob("student_cv*.json"))]
    if cv_files:
        lines += ablations(cv_files)
    t = _load("teachers.json")
    if t:
        lines += teachers(t)
    d = _load("compare.json")
    if d is not None:
        lines += compare(d)
    for name, fn in (("encoders.json", encoders), ("vad.json", vad)):
        d = _load(name)
        if d is not None:
            lines += fn(d)
    d = _load("hardening.json")
    if d is not None:
        lines += hardening(d)
    lines += robustness_section(_load("robustness.json"), _load("robustness_no_change_split.json"))
    lines += robustness_vs_previous(_load("robustness.json"), _load(ROBUSTNESS_PREVIOUS))
    lines += adaptation_clean_folds(_load(ROBUSTNESS_CLEAN_FOLDS))
    lines += adaptation_hard_folds(_load(ROBUSTNESS_HARD_FOLDS))
    lines += other_voices_folds(_load(ROBUSTNESS_TTS_FOLDS))
    lines += other_voices_folds(
        _load(ROBUSTNESS_TTS_FOLDS_VOICES), "Other voices: the pseudo-speaker recipe's models (not shipped)",
        "Each fold's model of `python -m train.student cv ... --voices 4` (the shipped recipe plus 4 voice copies of "
        "the corpus, `train/voices.py`; `student_cv_adapt_mix_voices.json`), exported as the bundled model is with "
        "the temperatures of `calibration_adapt_mix_voices.json` (`benchmarks/export_folds.py --runs "
        "runs/cv_adapt_mix_voices --calibration calibration_adapt_mix_voices.json --out runs/folds_voices`). Compare "
        "with the shipped recipe's table above: the same clips.")
    d = _load("shortcuts.json")
    if d is not None:
        from benchmarks.shortcuts import render_markdown as shortcuts_md

        lines += shortcuts_md(d).splitlines() + [""]
    d = _load("session_mix.json")
    if d is not None:
        from benchmarks.session_mix import render_markdown as session_mix_md

        lines += session_mix_md(d, _load(SESSION_MIX_PREVIOUS)).splitlines() + [""]
    lines += calibration_sections(_calibration_files())
    (HERE / "README.md").write_text("\n".join(lines) + "\n")
    print(HERE / "README.md")
    if update_readme(HERE.parent / "README.md"):
        print(HERE.parent / "README.md", "(results block)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
