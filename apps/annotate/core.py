"""Batch annotation: find recordings, run the model over each (in worker processes), write per-file timelines and a
summary. Everything here is importable and testable without the command line (see :func:`run`)."""

from __future__ import annotations

import csv
import io
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..common import label_colors, one_line

FORMATS = ("csv", "json")
SUMMARY_NAME = "summary"

# File extensions per libsndfile format (soundfile.available_formats()); only formats this libsndfile reads count.
_EXTENSIONS = {
    "WAV": ("wav", "wave"), "WAVEX": ("wav",), "RF64": ("rf64",), "W64": ("w64",), "FLAC": ("flac",),
    "OGG": ("ogg", "oga", "opus"), "MP3": ("mp3",), "AIFF": ("aif", "aiff", "aifc"), "AU": ("au", "snd"),
    "CAF": ("caf",), "NIST": ("nist", "sph"), "VOC": ("voc",), "SVX": ("8svx", "svx"), "IRCAM": ("sf",),
    "PAF": ("paf",), "AVR": ("avr",),
}


def audio_extensions() -> frozenset[str]:
    """Lower-case extensions (no dot) of the audio formats the installed libsndfile can read."""
    import soundfile as sf

    formats = set(sf.available_formats())
    return frozenset(ext for fmt, exts in _EXTENSIONS.items() if fmt in formats for ext in exts)


def find_audio(in_dir: Path, exclude: Path | None = None) -> list[Path]:
    """Audio files below ``in_dir`` (recursive, sorted; hidden files and folders and ``exclude`` left out)."""
    return find_inputs(in_dir, exclude)[0]


def find_inputs(in_dir: Path, exclude: Path | None = None) -> tuple[list[Path], list[Path]]:
    """(audio files, other files) below ``in_dir``, both sorted; hidden files and folders and ``exclude`` are in
    neither (the other files are reported, so that a folder of unsupported recordings is not silently empty)."""
    exts = audio_extensions()
    in_dir = in_dir.resolve()
    exclude = exclude.resolve() if exclude is not None else None
    found, other = [], []
    for root, dirs, files in os.walk(in_dir):
        r = Path(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (exclude is None or (r / d).resolve() != exclude))
        for name in files:
            if name.startswith("."):
                continue
            if "." in name and name.rsplit(".", 1)[1].lower() in exts:
                found.append(r / name)
            else:
                other.append(r / name)
    return sorted(found), sorted(other)


# --------------------------------------------------------------------------------------------------------------------
# per-file results


def summarize(events, duration: float, labels) -> dict:
    """Statistics of one file's final events: duration, speech seconds, seconds per label, dominant label."""
    seconds = {lab: 0.0 for lab in labels}
    conf_weighted = 0.0
    for e in events:
        d = max(0.0, float(e["end"]) - float(e["start"]))
        seconds[e["label"]] = seconds.get(e["label"], 0.0) + d
        conf_weighted += d * float(e["confidence"])
    speech = sum(seconds.values())
    dominant = max(seconds, key=lambda k: seconds[k]) if speech > 0 else None
    return {
        "duration": round(float(duration), 4),
        "speech_seconds": round(speech, 4),
        "segments": len(events),
        "dominant": dominant,
        "dominant_share": round(seconds[dominant] / speech, 4) if dominant else None,
        "mean_confidence": round(conf_weighted / speech, 4) if speech > 0 else None,
        "seconds": {k: round(v, 4) for k, v in seconds.items()},
    }


def outputs_for(rel: str, out_dir: Path, formats, plot: bool) -> dict[str, Path]:
    """Output paths of one input (``sub/a.wav`` -> ``OUT/sub/a.wav.csv`` ...: the extension is kept, so ``a.wav``
    and ``a.flac`` do not collide)."""
    base = out_dir / rel
    out = {fmt: base.with_name(base.name + "." + fmt) for fmt in formats}
    if plot:
        out["png"] = base.with_name(base.name + ".png")
    return out


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def csv_columns(labels) -> list[str]:
    return ["start", "end", "duration", "segment", "label", "confidence"] + [f"score_{k}" for k in labels]


def events_csv(events, labels) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(csv_columns(labels))
    for e in events:
        w.writerow([f"{e['start']:.4f}", f"{e['end']:.4f}", f"{e['end'] - e['start']:.4f}", e["segment"], e["label"],
                    f"{e['confidence']:.6f}"] + [f"{e['scores'].get(k, 0.0):.6f}" for k in labels])
    return buf.getvalue().encode()


def read_events_csv(path: Path, labels) -> list[dict]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [{"start": float(r["start"]), "end": float(r["end"]), "segment": int(r["segment"]), "label": r["label"],
             "confidence": float(r["confidence"]), "scores": {k: float(r[f"score_{k}"]) for k in labels}}
            for r in rows]


def existing_summary(path: Path, outputs: dict[str, Path], model_info: dict) -> dict | None:
    """The summary of a file whose outputs are all there and newer than it (resume), else None."""
    try:
        mtime = path.stat().st_mtime
        if not all(p.is_file() and p.stat().st_mtime >= mtime for p in outputs.values()):
            return None
        labels = model_info["labels"]
        if "json" in outputs:
            doc = json.loads(outputs["json"].read_text())
            if doc.get("model", {}).get("labels") != labels:
                return None
            return doc["summary"]
        from edgeser.audio import file_info

        _, info = file_info(path)
        events = read_events_csv(outputs["csv"], labels)
        return summarize(events, info.frames / info.samplerate, labels)
    except Exception:  # unreadable or foreign outputs: annotate again
        return None


# --------------------------------------------------------------------------------------------------------------------
# the work of one file (in a worker process, or in-process with --jobs 1)

_WORKER: dict = {}


def init_worker(model_path, backend: str) -> None:
    """Process-pool initializer: load the model once per worker process."""
    try:
        import edgeser

        _WORKER["model"] = edgeser.load(model_path, backend=backend)
    except Exception as exc:  # reported with the first task
        _WORKER["error"] = one_line(exc)


def model_info(model) -> dict:
    info = model.info
    return {"name": info.name, "version": info.version, "labels": list(model.labels), "backend": model.backend.name,
            "path": str(model.path), "quantization": info.quantization,
            "licence": (info.training or {}).get("licence", "")}


def annotate_file(path: str, rel: str, out_dir: str, formats, plot: bool, model=None) -> dict:
    """Annotate one file and write its outputs. Returns ``{"file", "status": "ok"|"error", "summary"|"error",
    "fatal", "seconds"}`` (``fatal``: the model itself is unusable, stop everything)."""
    t0 = time.monotonic()
    model = model if model is not None else _WORKER.get("model")
    if model is None:
        return {"file": rel, "status": "error", "fatal": True,
                "error": f"the model could not be loaded: {_WORKER.get('error', 'unknown error')}"}
    from edgeser.audio import file_info
    from edgeser.errors import ModelError

    p = Path(path)
    try:
        _, info = file_info(p)
        duration = info.frames / info.samplerate
        events = [e.to_dict() for e in model.analyze(p) if e.final]
        labels = list(model.labels)
        summary = summarize(events, duration, labels)
        minfo = model_info(model)
        outs = outputs_for(rel, Path(out_dir), formats, plot)
        if "csv" in outs:
            _atomic_write(outs["csv"], events_csv(events, labels))
        if "png" in outs:
            from .plot import timeline_png

            _atomic_write(outs["png"], timeline_png(events, duration, labels, label_colors(labels), title=rel,
                                                    summary=summary))
        if "json" in outs:  # last: a file counts as done only when every output is there
            doc = {"file": rel, "source": str(p.resolve()), "duration": round(duration, 4),
                   "sample_rate": int(info.samplerate), "channels": int(info.channels), "model": minfo,
                   "summary": summary, "events": events,
                   "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            _atomic_write(outs["json"], (json.dumps(doc, indent=1) + "\n").encode())
        return {"file": rel, "status": "ok", "summary": summary, "seconds": round(time.monotonic() - t0, 3)}
    except ModelError as exc:
        return {"file": rel, "status": "error", "fatal": True, "error": one_line(exc)}
    except Exception as exc:  # a bad file (AudioError) or anything else about this one file: report, go on
        msg = one_line(exc)
        if rel not in msg and str(p) not in msg:
            msg = f"{rel}: {msg}"
        return {"file": rel, "status": "error", "fatal": False, "error": msg,
                "seconds": round(time.monotonic() - t0, 3)}


# --------------------------------------------------------------------------------------------------------------------
# the whole folder


@dataclass
class Report:
    out_dir: Path
    model: dict
    results: list[dict] = field(default_factory=list)  # one per input, in input order
    non_audio: list[str] = field(default_factory=list)  # files below the input folder left out: not audio by name
    aborted: str | None = None  # fatal error (the model), or "interrupted"

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.results if r["status"] == "error"]

    def count(self, status: str) -> int:
        return sum(r["status"] == status for r in self.results)


def summary_rows(report: Report) -> tuple[list[str], list[list]]:
    labels = report.model["labels"]
    cols = ["file", "status", "duration", "speech_seconds", "segments", "dominant", "dominant_share",
            "mean_confidence"] + [f"seconds_{k}" for k in labels] + ["error"]
    rows = []
    for r in report.results:
        s = r.get("summary") or {}
        secs = s.get("seconds") or {}
        rows.append([r["file"], r["status"], s.get("duration", ""), s.get("speech_seconds", ""),
                     s.get("segments", ""), s.get("dominant") or "", _blank(s.get("dominant_share")),
                     _blank(s.get("mean_confidence"))] + [secs.get(k, "") for k in labels] + [r.get("error", "")])
    return cols, rows


def _blank(x):
    return "" if x is None else x


def write_summary(report: Report) -> dict[str, Path]:
    cols, rows = summary_rows(report)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    w.writerows(rows)
    paths = {"csv": report.out_dir / f"{SUMMARY_NAME}.csv", "json": report.out_dir / f"{SUMMARY_NAME}.json"}
    _atomic_write(paths["csv"], buf.getvalue().encode())
    labels = report.model["labels"]
    ok = [r["summary"] for r in report.results if r["status"] in ("ok", "skipped")]
    totals = {
        "files": len(report.results), "annotated": report.count("ok"), "skipped": report.count("skipped"),
        "failed": report.count("error"), "non_audio_skipped": len(report.non_audio),
        "duration": round(sum(s["duration"] for s in ok), 4),
        "speech_seconds": round(sum(s["speech_seconds"] for s in ok), 4),
        "seconds": {k: round(sum(s["seconds"].get(k, 0.0) for s in ok), 4) for k in labels},
    }
    doc = {"model": report.model, "totals": totals, "aborted": report.aborted, "non_audio": report.non_audio,
           "files": [{k: v for k, v in r.items() if k not in ("fatal",)} for r in report.results]}
    _atomic_write(paths["json"], (json.dumps(doc, indent=1) + "\n").encode())
    return paths


def run(in_dir, out_dir, *, formats=FORMATS, plot: bool = False, jobs: int = 1, force: bool = False,
        model_path=None, backend: str = "auto", progress=None, on_result=None) -> Report:
    """Annotate every audio file below ``in_dir`` into ``out_dir``; returns the :class:`Report` (the summary files
    are written too). ``progress``: a tqdm-like factory ``(total=..) -> bar`` (``update()``, ``close()``) or None;
    ``on_result(result)``: called in the main process for each file as it completes.
    Raises :class:`edgeser.ModelError` if the model cannot be loaded."""
    import edgeser

    in_dir, out_dir = Path(in_dir), Path(out_dir)
    formats = tuple(dict.fromkeys(formats))
    if not formats or any(f not in FORMATS for f in formats):
        raise ValueError(f"formats must be among {FORMATS}, got {formats}")
    model = edgeser.load(model_path, backend=backend)  # fails early, with one clear error, if the model is bad
    minfo = model_info(model)
    report = Report(out_dir=out_dir, model=minfo)
    inputs, others = find_inputs(in_dir, exclude=out_dir)
    report.non_audio = [p.relative_to(in_dir.resolve()).as_posix() for p in others]
    slots: dict[str, dict] = {}
    todo = []
    for p in inputs:
        rel = p.relative_to(in_dir.resolve()).as_posix()
        outs = outputs_for(rel, out_dir, formats, plot)
        prev = None if force else existing_summary(p, outs, minfo)
        slots[rel] = {"file": rel, "status": "skipped", "summary": prev} if prev is not None else None
        if prev is None:
            todo.append((str(p), rel))
    out_dir.mkdir(parents=True, exist_ok=True)
    bar = progress(total=len(todo)) if progress is not None and todo else None

    def done(res: dict) -> None:
        slots[res["file"]] = res
        if bar is not None:
            bar.update(1)
        if on_result is not None:
            on_result(res)

    jobs = max(1, min(int(jobs), len(todo)))
    try:
        if jobs == 1:
            for path, rel in todo:
                res = annotate_file(path, rel, str(out_dir), formats, plot, model=model)
                done(res)
                if res.get("fatal"):
                    report.aborted = res["error"]
                    break
        else:
            _run_pool(todo, out_dir, formats, plot, jobs, model_path, backend, done, report)
    except KeyboardInterrupt:
        report.aborted = "interrupted"
        raise
    finally:
        if bar is not None:
            bar.close()
        report.results = [slots[rel] for rel in (p.relative_to(in_dir.resolve()).as_posix() for p in inputs)
                          if slots.get(rel) is not None]
        write_summary(report)
    return report


def _run_pool(todo, out_dir, formats, plot, jobs, model_path, backend, done, report) -> None:
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    # spawn, not fork: the parent holds an ONNX Runtime session, which is not safe to fork
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"), initializer=init_worker,
                               initargs=(None if model_path is None else str(model_path), backend))
    pending = {}
    try:
        pending = {pool.submit(annotate_file, path, rel, str(out_dir), formats, plot): rel for path, rel in todo}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                rel = pending.pop(fut)
                try:
                    res = fut.result()
                except Exception as exc:  # a worker died (crash in native code, out of memory, ...)
                    res = {"file": rel, "status": "error", "fatal": False,
                           "error": f"{rel}: worker failed ({one_line(exc)})"}
                done(res)
                if res.get("fatal"):
                    report.aborted = res["error"]
                    raise _Abort
    except BaseException as exc:
        # cancel what has not started (explicitly: a later shutdown() would reset cancel_futures) and do not wait
        # for the whole queue; the files being processed finish in the background and are written atomically
        for fut in pending:
            fut.cancel()
        pool.shutdown(wait=False, cancel_futures=True)
        if not isinstance(exc, _Abort):
            raise
        return
    pool.shutdown(wait=True)


class _Abort(Exception):
    """The model is unusable: stop the pool."""
