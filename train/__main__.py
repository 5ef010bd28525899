"""``python -m train``: pack a corpus, train/evaluate teachers, run a batch of folds on one GPU, merge results.

    python -m train pack  --data ravdess --copies 2 --out .gpu/ravdess.npz
    python -m train fit   --model cta_rnn --data ravdess --fold 0            # one fold, one variant
    python -m train cv    --model mtl_ctc --data ravdess --variant alpha0    # every fold
    python -m train queue --pack .gpu/ravdess.npz --jobs all --workers 6 --work /tmp/t   # many jobs on one GPU
    python -m train merge --work /tmp/t --results benchmarks/results/teachers.json --logits benchmarks/results/teacher_logits

``--data`` is ``ravdess`` (packed on first use into ~/.cache/edgeser/packs) or a ``.npz`` made by ``pack``.
Records go to ``--results`` (a JSON list; a record with the same model, variant, fold and backbone is replaced).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .fit import MODELS

CACHE = Path(os.environ.get("EDGESER_CACHE", Path.home() / ".cache" / "edgeser")) / "packs"

#: Which variants each model runs: "full" is the paper's method; the others are its key ablation.
VARIANTS = {
    "mmer": ("full", "no_ctc", "no_scl", "no_acl"),
    "cma": ("full", "audio_only"),
    "cta_rnn": ("full", "wf", "ef", "lf"),
    "mtl_ctc": ("full", "alpha0"),
    "gmp_atl": ("full", "ce", "no_gmp", "no_gmp_ce"),
}
TTS_VOICES = ("en-us+m3", "en-us+f2", "en+m7", "en+f4")


def _text_encoder():
    from .backbones.hf import load_text_encoder, minilm_path

    enc = load_text_encoder(minilm_path())

    class _Wrap:
        name = "all-MiniLM-L6-v2 (frozen; stands in for RoBERTa/BERT)"

        @staticmethod
        def encode(texts):
            import torch

            with torch.no_grad():
                hidden, mask = enc.encode(texts, "cpu")
            return [hidden[i, : int(mask[i].sum())].numpy() for i in range(len(texts))]

    return _Wrap()


def load_corpus(data: str):
    """``(clips, folds, name)`` for ``ravdess`` | ``iemocap[:root]`` | ``msp_improv[:root]`` | ``cremad[:root]`` |
    ``manifest:<csv>``, each with its standard protocol (:func:`train.data.folds_for`)."""
    from . import data as D

    kind, _, root = data.partition(":")
    root = root or None
    loaders = {"ravdess": D.load_ravdess, "iemocap": D.load_iemocap, "msp_improv": D.load_msp_improv,
               "cremad": D.load_cremad, "manifest": D.load_manifest}
    if kind not in loaders:
        raise SystemExit(f"unknown corpus {kind!r}; use one of {sorted(loaders)} (optionally kind:/path)")
    if kind == "manifest" and root is None:
        raise SystemExit("manifest needs a path: --data manifest:/path/to/manifest.csv")
    clips = loaders[kind](root) if root or kind != "ravdess" else loaders[kind]()
    return clips, D.folds_for(kind, clips), kind


def build_pack(data: str, copies: int, out: Path, seed: int = 0, limit: int | None = None, text: bool = True,
               tts: bool = True, asr: str | None = None):
    from .data import LABELS4
    from .data.packed import pack, save_pack

    clips, folds, kind = load_corpus(data)
    if limit:
        clips = [c for c in clips if c.speaker in {s for f in folds for s in f[:1]}][:limit]
    if asr:  # clips without a gold transcript get an offline ASR one (cached)
        from .data.transcribe import Transcriber, fill_transcripts

        clips = fill_transcripts(clips, Transcriber(asr), progress=True)
    corpus = pack(clips, LABELS4, folds, f"{kind}-4class", copies=copies, seed=seed,
                  text_encoder=_text_encoder() if text else None, tts_voices=TTS_VOICES if tts else (),
                  progress=True)
    corpus.meta = {"source": data, "copies": copies, "folds": f"standard protocol of {kind} (train.data.folds_for)"}
    if kind == "ravdess":
        corpus.meta["source"] = "RAVDESS speech, actors 01-20 (CC BY-NC-SA 4.0)"
    return save_pack(corpus, out)


def resolve_data(data: str):
    from .data.packed import load_pack

    if data.endswith(".npz"):
        return load_pack(data)
    path = CACHE / f"{data.replace(':', '_').replace('/', '_')}-c2.npz"
    if not path.exists():
        build_pack(data, 2, path)
    return load_pack(path)


def _fit_overrides(a) -> dict:
    out = {}
    for k in ("epochs", "batch_size", "lr", "lr_backbone", "seed"):
        v = getattr(a, k, None)
        if v is not None:
            out[k] = v
    if getattr(a, "fit_json", None):
        out.update(json.loads(a.fit_json))
    return out


def _save_record(results: Path, rec: dict) -> None:
    recs = json.loads(results.read_text()) if results.exists() else []
    key = (rec["model"], rec["variant"], rec["fold"], rec["backbone"])
    recs = [r for r in recs if (r["model"], r["variant"], r["fold"], r["backbone"]) != key] + [rec]
    recs.sort(key=lambda r: (r["model"], r["variant"], r["backbone"], r["fold"]))
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(recs, indent=1) + "\n")


def cmd_fit(a, folds=None) -> int:
    from .fit import fit_fold

    corpus = resolve_data(a.data)
    folds = [a.fold] if folds is None else folds
    command = "python -m train " + " ".join(shlex.quote(x) for x in sys.argv[1:])
    for fold in folds:
        rec, logits = fit_fold(a.model, corpus, fold, variant=a.variant, preset=a.preset, backbone=a.backbone,
                               backbone_weights=a.backbone_weights, fit=_fit_overrides(a), device=a.device,
                               out_dir=a.out, progress=not a.quiet, command=command)
        print(json.dumps({k: rec[k] for k in ("model", "variant", "fold", "uar", "wa", "macro_f1", "backbone",
                                              "device", "train_seconds")}))
        if a.results:
            _save_record(Path(a.results), rec)
        if a.logits:
            d = Path(a.logits)
            d.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(d / f"{a.model}-{a.variant}-fold{fold}.npz", logits=logits.astype(np.float16),
                                clip_ids=np.array(corpus.clip_ids), fold=fold)
    return 0


def _jobs(spec: str, folds: list[int]) -> list[tuple[str, str, int]]:
    """``all`` | ``full`` | comma list of ``model`` or ``model:variant``."""
    out = []
    for item in spec.split(","):
        if item in ("all", "full"):
            for m in MODELS:
                for v in VARIANTS[m] if item == "all" else ("full",):
                    out += [(m, v, f) for f in folds]
        else:
            m, _, v = item.partition(":")
            for vv in ([v] if v else VARIANTS[m]):
                out += [(m, vv, f) for f in folds]
    return out


def cmd_queue(a) -> int:
    """Run jobs as ``workers`` parallel processes (one GPU holds many small trainings at once)."""
    folds = [int(f) for f in a.folds.split(",")]
    jobs = _jobs(a.jobs, folds)
    work = Path(a.work)
    (work / "records").mkdir(parents=True, exist_ok=True)
    (work / "logs").mkdir(parents=True, exist_ok=True)
    # expensive models first so the tail of the queue is short
    cost = {"mmer": 0, "cma": 1, "mtl_ctc": 2, "cta_rnn": 3, "gmp_atl": 4}
    # the papers' methods first; then the ablations fold by fold, so that a cut-off run leaves whole folds
    jobs.sort(key=lambda j: (j[1] != "full", j[2] if j[1] != "full" else 0, cost[j[0]], j[2]))
    skip = set(a.skip.split(",")) if a.skip else set()
    jobs = [j for j in jobs if f"{j[0]}-{j[1]}-fold{j[2]}" not in skip]
    pending, running, t0 = list(jobs), [], time.time()
    deadline = t0 + a.budget if a.budget else None
    while pending or running:
        while pending and len(running) < a.workers and (deadline is None or time.time() < deadline):
            m, v, f = pending.pop(0)
            name = f"{m}-{v}-fold{f}"
            if (work / "records" / f"{name}.json").exists():
                continue
            cmd = [sys.executable, "-m", "train", "fit", "--model", m, "--variant", v, "--fold", str(f),
                   "--data", a.pack, "--results", str(work / "records" / f"{name}.json"),
                   "--logits", str(work / "logits"), "--quiet"]
            if a.preset != "paper":
                cmd += ["--preset", a.preset]
            if a.backbone_weights:
                cmd += ["--backbone-weights", a.backbone_weights]
            if a.backbone:
                cmd += ["--backbone", a.backbone]
            if a.fit_json:
                spec = json.loads(a.fit_json)
                if any(k in MODELS or k == "*" for k in spec):  # per-model overrides: {"*": {...}, "mmer": {...}}
                    spec = {**spec.get("*", {}), **spec.get(m, {})}
                cmd += ["--fit-json", json.dumps(spec)]
            log = open(work / "logs" / f"{name}.log", "w")
            running.append((name, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log, time.time()))
        if deadline is not None and time.time() > deadline and pending:
            print(f"budget reached: {len(pending)} job(s) not started", flush=True)
            pending.clear()
        time.sleep(1.0)
        if a.kill_after and time.time() - t0 > a.kill_after:
            for name, p, log, ts in running:
                p.kill()
                print(f"killed {name} after {time.time() - ts:.0f}s (--kill-after {a.kill_after:.0f}s)", flush=True)
        for item in list(running):
            name, p, log, ts = item
            if p.poll() is not None:
                log.close()
                running.remove(item)
                print(f"[{time.time() - t0:6.0f}s] {name}: exit {p.returncode} in {time.time() - ts:.0f}s", flush=True)
    return 0


def cmd_merge(a) -> int:
    """Merge per-job record files into ``--results`` and per-fold logits into one file per (model, variant)."""
    work = Path(a.work)
    n = 0
    for f in sorted((work / "records").glob("*.json")):
        for rec in json.loads(f.read_text()):
            rec["command"] = a.command or rec["command"]
            _save_record(Path(a.results), rec)
            n += 1
    if a.logits:
        out = Path(a.logits)
        out.mkdir(parents=True, exist_ok=True)
        groups: dict[str, list[Path]] = {}
        for f in sorted((work / "logits").glob("*.npz")):
            groups.setdefault(f.name.rsplit("-fold", 1)[0], []).append(f)
        for key, files in groups.items():
            zs = [np.load(f) for f in files]
            folds = np.array([int(z["fold"]) for z in zs])
            np.savez_compressed(out / f"{key}.npz", logits=np.stack([z["logits"] for z in zs]), folds=folds,
                                clip_ids=zs[0]["clip_ids"])
    print(f"merged {n} record(s) into {a.results}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m train", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pk = sub.add_parser("pack", help="pack a corpus (log-mels, labels, text features, TTS views) into one .npz")
    pk.add_argument("--data", default="ravdess")
    pk.add_argument("--copies", type=int, default=2, help="1 clean + (copies-1) augmented")
    pk.add_argument("--out", type=Path, required=True)
    pk.add_argument("--limit", type=int, default=None, help="first N clips of a few speakers (smoke tests)")
    pk.add_argument("--no-text", action="store_true")
    pk.add_argument("--no-tts", action="store_true")
    pk.add_argument("--asr", default=None, metavar="MODEL",
                    help="transcribe clips without gold transcripts with faster-whisper (tiny.en | base | dir)")
    for name in ("fit", "cv"):
        f = sub.add_parser(name, help="train and evaluate " + ("one fold" if name == "fit" else "every fold"))
        f.add_argument("--model", choices=MODELS, required=True)
        f.add_argument("--variant", default="full")
        f.add_argument("--data", default="ravdess", help="ravdess | path/to/pack.npz")
        if name == "fit":
            f.add_argument("--fold", type=int, required=True)
        f.add_argument("--preset", choices=("paper", "tiny"), default="paper")
        f.add_argument("--backbone", default=None, help="whisper-base | whisper-tiny.en | ssl:<dir> | random-tiny")
        f.add_argument("--backbone-weights", default=None, help="fp16 encoder file (train.backbones.speech)")
        f.add_argument("--epochs", type=int)
        f.add_argument("--batch-size", type=int)
        f.add_argument("--lr", type=float)
        f.add_argument("--lr-backbone", type=float)
        f.add_argument("--seed", type=int)
        f.add_argument("--fit-json", default=None, help="more FitConfig overrides as JSON")
        f.add_argument("--device", default=None)
        f.add_argument("--out", default=None, help="checkpoint folder (resumes from it)")
        f.add_argument("--results", default=None, help="JSON list to add the record(s) to")
        f.add_argument("--logits", default=None, help="folder for per-clip logits")
        f.add_argument("--quiet", action="store_true")
    q = sub.add_parser("queue", help="run many (model, variant, fold) jobs in parallel processes")
    q.add_argument("--pack", required=True)
    q.add_argument("--jobs", default="all")
    q.add_argument("--folds", default="0,1,2,3,4")
    q.add_argument("--workers", type=int, default=4)
    q.add_argument("--work", required=True)
    q.add_argument("--preset", choices=("paper", "tiny"), default="paper")
    q.add_argument("--backbone", default=None)
    q.add_argument("--backbone-weights", default=None)
    q.add_argument("--fit-json", default=None)
    q.add_argument("--budget", type=float, default=None, help="seconds after which no new job starts")
    q.add_argument("--skip", default=None, help="comma list of model-variant-foldN jobs not to run")
    q.add_argument("--kill-after", type=float, default=None, help="seconds after which running jobs are killed")
    m = sub.add_parser("merge", help="merge a queue's records and logits")
    m.add_argument("--work", required=True)
    m.add_argument("--results", required=True)
    m.add_argument("--logits", default=None)
    m.add_argument("--command", default=None, help="command to record instead of each job's own")
    a = p.parse_args(argv)
    if a.cmd == "pack":
        path = build_pack(a.data, a.copies, a.out, limit=a.limit, text=not a.no_text, tts=not a.no_tts, asr=a.asr)
        print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
        return 0
    if a.cmd == "fit":
        return cmd_fit(a)
    if a.cmd == "cv":
        corpus_folds = len(resolve_data(a.data).folds)
        return cmd_fit(a, folds=list(range(corpus_folds)))
    if a.cmd == "queue":
        return cmd_queue(a)
    return cmd_merge(a)


if __name__ == "__main__":
    raise SystemExit(main())
