"""Batch annotator: ``python -m apps.annotate IN_DIR --out OUT_DIR [--jobs N] [--format csv json] [--plot]``.

Annotates every recording below IN_DIR (recursive; the audio formats libsndfile reads) into per-file timelines
(CSV and/or JSON: start, end, label, confidence, per-class scores; a PNG plot with --plot) and a summary.csv /
summary.json (duration, speech seconds, seconds per label, dominant label per file). Resumable: a file whose outputs
exist and are newer than it is skipped (--force redoes all). Parallel over files (one model per worker process).
Bad files are reported and skipped; the exit code is 1 if any failed, 0 otherwise (2: usage or model error).
"""

from .cli import main
from .core import annotate_file, find_audio, run, summarize

__all__ = ["annotate_file", "find_audio", "main", "run", "summarize"]
