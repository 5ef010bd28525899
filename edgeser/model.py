"""``Model``: an exported emotion model plus the front end that feeds it; ``load`` finds and opens one."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .audio import StreamResampler, iter_file, prepare
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

    def _result(self, mean: np.ndarray, speech_seconds: float) -> EmotionResult:
        k = int(np.argmax(mean))
        return EmotionResult(
            label=self.labels[k],
            confidence=float(mean[k]),
            scores={lab: float(p) for lab, p in zip(self.labels, mean)},
            duration=round(speech_seconds, 4),
        )

    def classify(self, audio, sample_rate: int | None = None) -> EmotionResult:
        """Emotion of a whole clip (an array with its ``sample_rate``, or a file path): mean of the window
        probabilities over its speech. Files are streamed from disk in blocks, so memory stays bounded.

        If the VAD finds no speech, the whole clip is classified as one segment (``duration`` is then 0.0).
        """
        if isinstance(audio, (str, os.PathLike)):
            if sample_rate is not None:
                raise AudioError("sample_rate is only for array input; a file carries its own rate")
            return self._classify_blocks(lambda: iter_file(audio))
        if sample_rate is None:
            raise AudioError("sample_rate is required for array input")
        x = prepare(audio, sample_rate)
        return self._classify_blocks(lambda: iter([(x, SAMPLE_RATE)]))

    def _classify_blocks(self, blocks) -> EmotionResult:
        """``blocks()``: a fresh iterator of (samples, rate) each time (read a second time only without speech)."""
        s = self.stream(emit_partial=False)
        events: list[EmotionEvent] = []
        for block, rate in blocks():
            events += s.accept(block, rate)
        events += s.flush()
        if s.windows_run:
            speech = sum(e.end - e.start for e in events if e.final)
            return self._result(s.mean_window_probs(), speech)
        every = _EveryWindow(self.backend)
        rs = None
        for block, rate in blocks():
            if rs is None:
                rs = StreamResampler(rate)
            every.accept(rs(block))
        if rs is not None:
            every.accept(rs(np.zeros(0, np.float32), last=True))
        return self._result(every.finish(), 0.0)

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


class _EveryWindow:
    """The windows of a whole 16 kHz signal fed in chunks, with no VAD (``classify``'s answer when there is no
    speech): windows end ``first_frames`` after the start, then every ``hop_frames``, plus one at the end if it is at
    least 10 frames after the last (or if there was none). The features are :class:`LogMelStream`'s, bit-identical
    to the whole-clip ones whatever the chunking; only the last window's frames are kept (bounded memory)."""

    def __init__(self, backend: Backend):
        from .features import LogMelStream
        from .stream import SILENCE_LOGMEL

        self.backend, self.info = backend, backend.info
        w = self.info.window_frames
        self.mel = LogMelStream()
        self.frames = np.full((N_MELS, w), SILENCE_LOGMEL, np.float32)  # frames before the start: digital silence
        self.frames_start = -w  # absolute index of self.frames[:, 0]
        self.n = 0  # frames so far
        self.next_end = self.info.first_frames
        self.last_end: int | None = None
        self.prob_sum: np.ndarray | None = None
        self.count = 0
        self.head: list[np.ndarray] = []  # the first samples, while there are too few for the features
        self.n_in = 0

    def accept(self, x: np.ndarray) -> None:
        from .stream import MAX_PUSH_SAMPLES

        if self.n_in + x.size <= N_FFT // 2:
            self.head.append(np.array(x, np.float32))
        self.n_in += x.size
        for i in range(0, x.size, MAX_PUSH_SAMPLES):  # pieces: the features of a long chunk at once are huge
            self._add(self.mel.accept(x[i : i + MAX_PUSH_SAMPLES]))

    def _run(self, end: int) -> None:
        a = end - self.info.window_frames - self.frames_start
        win = np.ascontiguousarray(self.frames[None, :, a : a + self.info.window_frames])
        probs = softmax(self.backend.run(win), self.info.temperature)
        self.prob_sum = probs.copy() if self.prob_sum is None else self.prob_sum + probs
        self.count += 1
        self.last_end = end

    def _add(self, new: np.ndarray) -> None:
        if new.shape[1]:
            self.frames = np.concatenate([self.frames, new], axis=1)
            self.n += new.shape[1]
        while self.next_end <= self.n:
            self._run(self.next_end)
            self.next_end += self.info.hop_frames
        drop = self.n - self.info.window_frames - self.frames_start  # keep the last window (for the end one)
        if drop > 0:
            self.frames = self.frames[:, drop:]
            self.frames_start += drop

    def finish(self) -> np.ndarray:
        if self.n_in <= N_FFT // 2:  # too short for the features: zero-padded, as Whisper does
            x = np.concatenate(self.head) if self.head else np.zeros(0, np.float32)
            tiny = _EveryWindow(self.backend)
            tiny.accept(np.pad(x, (0, N_FFT // 2 + 1 - x.size)))
            return tiny.finish()
        self._add(self.mel.flush())
        if self.last_end is None or self.n - self.last_end >= 10:
            self._run(self.n)
        return self.prob_sum / np.float32(self.count)


def load(model=None, backend: str = "auto", *, vad: str = "silero", threads: int = 1) -> Model:
    """Open an emotion model: ``None`` = the bundled default, or a path to an exported ``.onnx`` / ``.pte``.

    ``backend``: "auto" (by file suffix; the default model uses ONNX Runtime), "onnx" or "executorch".
    """
    if isinstance(model, Model):
        return model
    path = default_model_path(backend) if model is None else Path(os.fspath(model))
    return Model(open_backend(path, backend, threads=threads), vad=vad)


def classify(source, sample_rate: int | None = None, model=None) -> EmotionResult:
    """Emotion of a whole clip given as a file path (streamed from disk) or an array (then ``sample_rate`` is
    required)."""
    return load(model).classify(source, sample_rate)


def analyze(source, sample_rate: int | None = None, model=None, *, partial: bool = False) -> list[EmotionEvent]:
    """Timeline of a recording (path or array): a list of EmotionEvents, one final event per speech segment."""
    return load(model).analyze(source, sample_rate, partial=partial)
