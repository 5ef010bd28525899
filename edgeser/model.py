"""``Model``: an exported emotion model plus the front end that feeds it; ``load`` finds and opens one."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .audio import iter_file, load as load_audio, prepare
from .constants import HOP_LENGTH, N_FFT, N_MELS, SAMPLE_RATE
from .errors import AudioError, ModelError
from .runtime import open_backend
from .runtime.base import Backend
from .stream import Stream, softmax
from .types import EmotionEvent, EmotionResult

DEFAULT_DIR = Path(__file__).parent / "models" / "default"
DEFAULT_NAME = "edgeser-default"


def default_model_path(backend: str = "auto") -> Path:
    """Path of the bundled default model for a backend ("auto"/"onnx" -> .onnx, "executorch" -> .pte)."""
    suffix = ".pte" if backend == "executorch" else ".onnx"
    p = DEFAULT_DIR / (DEFAULT_NAME + suffix)
    if not p.is_file():
        raise ModelError(f"the bundled default model {p.name} is missing from this installation ({DEFAULT_DIR})")
    return p


class Model:
    """An emotion model ready to classify clips and to create streams. Thread-safe to share; streams are not."""

    def __init__(self, backend: Backend, *, vad: str = "silero"):
        self.backend = backend
        self.info = backend.info
        if (self.info.sample_rate, self.info.hop_length, self.info.n_fft, self.info.n_mels) != (
            SAMPLE_RATE, HOP_LENGTH, N_FFT, N_MELS,
        ):
            raise ModelError(
                f"{backend.path}: model expects {self.info.sample_rate} Hz / hop {self.info.hop_length} / "
                f"n_fft {self.info.n_fft} / {self.info.n_mels} mels, which this edgeser's front end does not produce"
            )
        if vad not in ("silero", "energy"):
            raise ModelError(f"unknown vad {vad!r}: 'silero' or 'energy'")
        self.vad = vad

    def __repr__(self) -> str:
        return f"Model({self.backend.path!r}, backend={self.backend.name!r}, labels={self.labels})"

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.info.labels)

    @property
    def path(self) -> str:
        return self.backend.path

    def _segmenter(self):
        from .vad import EnergyVad, Segmenter, SileroVad

        return Segmenter(SileroVad() if self.vad == "silero" else EnergyVad())

    def stream(self, *, emit_partial: bool = True) -> Stream:
        """A new independent stream (its own front-end, VAD and segment state)."""
        return Stream(self.backend, self._segmenter, emit_partial=emit_partial)

    def _result(self, probs: list[np.ndarray], speech_seconds: float) -> EmotionResult:
        mean = np.mean(probs, axis=0)
        k = int(np.argmax(mean))
        return EmotionResult(
            label=self.labels[k],
            confidence=float(mean[k]),
            scores={lab: float(p) for lab, p in zip(self.labels, mean)},
            duration=round(speech_seconds, 4),
        )

    def classify(self, audio, sample_rate: int) -> EmotionResult:
        """Emotion of a whole clip: mean of the window probabilities over its speech.

        If the VAD finds no speech, the whole clip is classified as one segment (``duration`` is then 0.0).
        """
        x = prepare(audio, sample_rate)
        s = self.stream(emit_partial=False)
        events = s.accept(x, SAMPLE_RATE) + s.flush()
        if s.window_probs:
            speech = sum(e.end - e.start for e in events if e.final)
            return self._result(s.window_probs, speech)
        return self._result(self._windows_over(x), 0.0)

    def _windows_over(self, x: np.ndarray) -> list[np.ndarray]:
        from .features import log_mel
        from .stream import SILENCE_LOGMEL

        if x.size <= N_FFT // 2:
            x = np.pad(x, (0, N_FFT // 2 + 1 - x.size))
        mel = log_mel(x)
        w, hop, first = self.info.window_frames, self.info.hop_frames, self.info.first_frames
        n = mel.shape[1]
        ends = list(range(min(first, n), n + 1, hop)) or [n]
        if n - ends[-1] >= 10:
            ends.append(n)
        padded = np.concatenate([np.full((N_MELS, w), SILENCE_LOGMEL, np.float32), mel], axis=1)
        return [softmax(self.backend.run(padded[None, :, e : e + w]), self.info.temperature) for e in ends]

    def analyze(self, source, sample_rate: int | None = None, *, partial: bool = False) -> list[EmotionEvent]:
        """Timeline of a recording (path or array): one final event per speech segment (and partials if asked).
        Files are streamed from disk in blocks, so memory stays bounded for long recordings."""
        s = self.stream(emit_partial=partial)
        events: list[EmotionEvent] = []
        if isinstance(source, (str, os.PathLike)):
            if sample_rate is not None:
                raise AudioError("sample_rate is only for array input; a file carries its own rate")
            for block, rate in iter_file(source):
                events += s.accept(block, rate)
        else:
            if sample_rate is None:
                raise AudioError("sample_rate is required for array input")
            x = prepare(source, sample_rate)
            events += s.accept(x, SAMPLE_RATE)
        events += s.flush()
        return events


def load(model=None, backend: str = "auto", *, vad: str = "silero", threads: int = 1) -> Model:
    """Open an emotion model: ``None`` = the bundled default, or a path to an exported ``.onnx`` / ``.pte``.

    ``backend``: "auto" (by file suffix; the default model uses ONNX Runtime), "onnx" or "executorch".
    """
    if isinstance(model, Model):
        return model
    path = default_model_path(backend) if model is None else Path(os.fspath(model))
    return Model(open_backend(path, backend, threads=threads), vad=vad)


def classify(source, sample_rate: int | None = None, model=None) -> EmotionResult:
    """Emotion of a whole clip given as a file path or an array (then ``sample_rate`` is required)."""
    m = load(model)
    if isinstance(source, (str, os.PathLike)):
        if sample_rate is not None:
            raise AudioError("sample_rate is only for array input; a file carries its own rate")
        return m.classify(load_audio(source), SAMPLE_RATE)
    if sample_rate is None:
        raise AudioError("sample_rate is required for array input")
    return m.classify(source, sample_rate)


def analyze(source, sample_rate: int | None = None, model=None, *, partial: bool = False) -> list[EmotionEvent]:
    """Timeline of a recording (path or array): a list of EmotionEvents, one final event per speech segment."""
    return load(model).analyze(source, sample_rate, partial=partial)
