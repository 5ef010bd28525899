"""``Model``: an exported emotion model plus the front end that feeds it; ``load`` finds and opens one."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from .audio import StreamResampler, is_encoded, iter_file, prepare
from .constants import HOP_LENGTH, N_FFT, N_MELS, SAMPLE_RATE
from .errors import AudioError, ModelError
from .runtime import open_backend
from .runtime.base import Backend
from .stream import Stream, pool_scores, softmax
from .vad import MovingPitch
from .types import NO_SPEECH, UNCERTAIN, EmotionEvent, EmotionResult

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
        self._vad_session = None
        self._vad_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Model({self.backend.path!r}, backend={self.backend.name!r}, labels={self.labels})"

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.info.labels)

    @property
    def path(self) -> str:
        return self.backend.path

    def _segmenter(self):
        from .vad import EnergyVad, Segmenter, SileroVad, load_silero_session

        if self.vad == "energy":
            return Segmenter(EnergyVad())
        with self._vad_lock:  # one Silero session per model, shared by its streams (their VAD state is their own)
            if self._vad_session is None:
                self._vad_session = load_silero_session()
        return Segmenter(SileroVad(session=self._vad_session))

    @property
    def adaptive(self) -> bool:
        """Whether the model carries test-time adaptation state (``adapt=`` and ``Stream.calibrate`` apply)."""
        return "stream" in self.info.state_scopes()

    def stream(self, *, emit_partial: bool = True, adapt: str | None = None,
               abstain_below: float | str | None = None, split_on_change: bool = True,
               sample_rate: int | None = None) -> Stream:
        """A new independent stream (its own front-end, VAD, segment and adaptation state).

        ``adapt``: "running" (normalise against the statistics of the stream so far; the default of adaptive models),
        "off" (against the training data's, or the calibration's, fixed statistics). ``abstain_below``: confidence
        under which results are labelled "uncertain": None (default) = never, "auto" = the threshold the model's
        metadata recommends (fitted on validation speakers), or a number in [0, 1). ``split_on_change``: a segment
        also ends where the emotion changes within continuous speech (see :mod:`edgeser.stream`); False = one event
        per speech segment of the VAD. ``sample_rate``: the rate of the audio the stream will be fed, so that
        ``accept(chunk)`` / ``calibrate(samples)`` need not repeat it (without it they must be told)."""
        return Stream(self.backend, self._segmenter, emit_partial=emit_partial, adapt=adapt,
                      abstain_below=abstain_below, split_on_change=split_on_change, sample_rate=sample_rate)

    def _result(self, mean: np.ndarray, speech_seconds: float, abstain_below: float = 0.0) -> EmotionResult:
        k = int(np.argmax(mean))
        return EmotionResult(
            label=UNCERTAIN if float(mean[k]) < abstain_below else self.labels[k],
            confidence=float(mean[k]),
            scores={lab: float(p) for lab, p in zip(self.labels, mean)},
            duration=round(speech_seconds, 4),
        )

    def _no_speech(self) -> EmotionResult:
        """The result of a clip without speech: label ``"no_speech"``, confidence 0.0, every score 0.0, duration 0.0."""
        return EmotionResult(label=NO_SPEECH, confidence=0.0, scores={lab: 0.0 for lab in self.labels}, duration=0.0)

    def classify(self, audio, sample_rate: int | None = None, *, stream: Stream | None = None,
                 adapt: str | None = None, abstain_below: float | str | None = None) -> EmotionResult:
        """Emotion of a whole clip (an array with its ``sample_rate``, or a file: a path, the bytes of an audio file,
        or a readable file object): its speech's windows pooled as the model's metadata ``aggregate`` says (the mean
        of their probabilities, or softmax of their mean logits). Files are streamed from disk in blocks, so memory
        stays bounded.

        If the VAD finds no speech segment, a cheap pitch check (:class:`edgeser.vad.MovingPitch`) tells speech
        the VAD missed (some shouted or sobbing speech) from silence, noise, hum and tones: speech is then classified
        as one segment over the whole clip (``duration`` = the clip's length); anything else gets no emotion: label
        ``"no_speech"``, confidence 0.0, every score 0.0, ``duration`` 0.0, at about the cost of the VAD pass alone
        (the model runs no window). ``adapt`` / ``abstain_below``: as for :meth:`stream`. ``stream``: classify with this
        stream's adaptation state and calibration (e.g. one speaker's session, clip after clip): it is reset first,
        keeping its calibration, and keeps the adaptation statistics the clip adds.
        """
        if is_encoded(audio):
            if sample_rate is not None:
                raise AudioError("sample_rate is only for array input; a file carries its own rate")
            blocks = _replayable(audio)
        else:
            if sample_rate is None:
                raise AudioError("sample_rate is required for array input")
            x = prepare(audio, sample_rate)
            blocks = lambda: iter([(x, SAMPLE_RATE)])  # noqa: E731
        if stream is None:
            stream = self.stream(emit_partial=False, adapt=adapt, abstain_below=abstain_below)
        elif adapt is not None or abstain_below is not None:
            raise ValueError("give adapt / abstain_below when creating the stream, not with stream=")
        return self._classify_blocks(blocks, stream)

    def _classify_blocks(self, blocks, s: Stream) -> EmotionResult:
        """``blocks()``: a fresh iterator of (samples, rate) each time (read again only when the VAD finds no
        speech)."""
        s.reset(keep_adaptation=True)  # a new recording; a session's adaptation statistics go on
        events: list[EmotionEvent] = []
        for block, rate in blocks():
            events += s.accept(block, rate)
        events += s.flush()
        if s.windows_run:
            speech = sum(e.end - e.start for e in events if e.final)
            return self._result(s.mean_window_probs(), speech, s.abstain_below)
        # no speech segment: speech the VAD missed (strongly emotional speech) still has a moving pitch, which
        # silence, noise, hum and tones have not (edgeser.vad.MovingPitch); only then is the whole clip classified
        check = MovingPitch()
        for x in _resampled(blocks()):
            check.accept(x)
        if not check.speech_like:
            return self._no_speech()
        every = _EveryWindow(self.backend, s)
        n = 0
        for x in _resampled(blocks()):
            every.accept(x)
            n += x.size
        return self._result(every.finish(), n / SAMPLE_RATE, s.abstain_below)

    def analyze(self, source, sample_rate: int | None = None, *, partial: bool = False, adapt: str | None = None,
                abstain_below: float | str | None = None, calibration=None,
                split_on_change: bool = True) -> list[EmotionEvent]:
        """Timeline of a recording (array, or file: path, bytes or file object): one final event per speech segment,
        a long one also cut where the emotion changes (and partials if asked); none without speech.
        Files are streamed from disk in blocks, so memory stays bounded for long recordings. ``adapt`` /
        ``abstain_below`` / ``split_on_change``: as for :meth:`stream`; ``calibration``: (samples, sample_rate) of
        the speaker's ordinary speech for :meth:`Stream.calibrate`."""
        s = self.stream(emit_partial=partial, adapt=adapt, abstain_below=abstain_below,
                        split_on_change=split_on_change)
        if calibration is not None:
            s.calibrate(*calibration)
        events: list[EmotionEvent] = []
        if is_encoded(source):
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

    def __init__(self, backend: Backend, stream: Stream):
        from .features import LogMelStream
        from .stream import SILENCE_LOGMEL

        self.backend, self.info, self.stream = backend, backend.info, stream
        stream._start_segment_state()  # the whole signal is one segment
        w = self.info.window_frames
        self.mel = LogMelStream()
        self.frames = np.full((N_MELS, w), SILENCE_LOGMEL, np.float32)  # frames before the start: digital silence
        self.frames_start = -w  # absolute index of self.frames[:, 0]
        self.n = 0  # frames so far
        self.next_end = self.info.first_frames
        self.last_end: int | None = None
        self.prob_sum: np.ndarray | None = None
        self.logit_sum: np.ndarray | None = None
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

    def _run(self, end: int, tail: bool = False) -> None:
        from .stream import SILENCE_LOGMEL

        w = self.info.window_frames
        a = end - w - self.frames_start
        win = self.frames[:, a : a + w]
        if tail and self.last_end is not None and "segment" in self.info.state_scopes():
            # a stateful model's last chunk: only the frames after its previous chunk, padded with silence
            new = self.frames[:, self.last_end - self.frames_start : end - self.frames_start]
            win = np.concatenate([new, np.full((N_MELS, w - new.shape[1]), SILENCE_LOGMEL, np.float32)], axis=1)
        logits = np.asarray(self.stream._step(np.ascontiguousarray(win[None])), np.float32)
        probs = softmax(logits, self.info.temperature)
        if self.info.aggregate == "last":
            self.prob_sum = probs
            self.count = 1
        else:
            self.prob_sum = probs.copy() if self.prob_sum is None else self.prob_sum + probs
            self.logit_sum = logits.copy() if self.logit_sum is None else self.logit_sum + logits
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
            tiny = _EveryWindow(self.backend, self.stream)
            tiny.accept(np.pad(x, (0, N_FFT // 2 + 1 - x.size)))
            return tiny.finish()
        self._add(self.mel.flush())
        if self.last_end is None or self.n - self.last_end >= 10:
            self._run(self.n, tail=True)
        if self.info.aggregate == "last":
            return self.prob_sum
        return pool_scores(self.info, self.prob_sum, self.logit_sum, self.count)


def _replayable(source):
    """A function giving a fresh iterator over the blocks of a file each call: a path is opened again, bytes are
    re-read, a file object is rewound to where it was (a pipe that cannot be rewound is read into memory once)."""
    import io

    if not isinstance(source, (str, os.PathLike, bytes, bytearray)):
        try:
            pos = source.tell() if source.seekable() else None
        except (AttributeError, OSError, ValueError):
            pos = None
        if pos is None:
            source = source.read()
            if isinstance(source, str):
                raise AudioError("the file object was opened in text mode; open audio files with 'rb'")
        else:
            f = source

            def blocks():
                f.seek(pos)
                return iter_file(f)

            return blocks
    if isinstance(source, bytearray):
        source = bytes(source)
    return lambda: iter_file(io.BytesIO(source) if isinstance(source, bytes) else source)


def _resampled(blocks):
    """16 kHz mono pieces of (samples, rate) blocks, resampled as a stream does."""
    rs = None
    for block, rate in blocks:
        if rs is None:
            rs = StreamResampler(rate)
        yield rs(block)
    if rs is not None:
        yield rs(np.zeros(0, np.float32), last=True)


def load(model=None, backend: str = "auto", *, vad: str = "silero", threads: int = 1) -> Model:
    """Open an emotion model: ``None`` = the bundled default, or a path to an exported ``.onnx`` / ``.pte``.

    ``backend``: "auto" (by file suffix; the default model uses ONNX Runtime), "onnx" or "executorch".
    """
    if isinstance(model, Model):
        return model
    path = default_model_path(backend) if model is None else Path(os.fspath(model))
    return Model(open_backend(path, backend, threads=threads), vad=vad)


def classify(audio, sample_rate: int | None = None, model=None, *, stream: Stream | None = None,
             adapt: str | None = None, abstain_below: float | str | None = None) -> EmotionResult:
    """:meth:`Model.classify` with ``model`` (None = the bundled default, a path, or a loaded :class:`Model`): the
    emotion of a whole clip given as a file (path, bytes, file object; streamed from disk) or an array (then
    ``sample_rate`` is required); ``"no_speech"`` when it holds no speech."""
    return load(model).classify(audio, sample_rate, stream=stream, adapt=adapt, abstain_below=abstain_below)


def analyze(source, sample_rate: int | None = None, model=None, *, partial: bool = False, adapt: str | None = None,
            abstain_below: float | str | None = None, calibration=None,
            split_on_change: bool = True) -> list[EmotionEvent]:
    """:meth:`Model.analyze` with ``model`` (as for :func:`classify`): the timeline of a recording, a list of
    EmotionEvents, one final event per speech segment (a long one also cut where the emotion changes)."""
    return load(model).analyze(source, sample_rate, partial=partial, adapt=adapt, abstain_below=abstain_below,
                               calibration=calibration, split_on_change=split_on_change)
