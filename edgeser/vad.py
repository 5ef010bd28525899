"""Speech segmentation: voice activity detection (VAD) and a streaming speech segmenter.

Two frame-level detectors share one interface (``frame_samples``, ``reset()``, ``accept(x) -> probabilities``):

* :class:`SileroVad` runs the Silero VAD v6 ONNX model (vendored as ``edgeser/models/silero_vad.onnx``, MIT, see
  ``SILERO_VAD_LICENSE.txt``) with onnxruntime on one CPU thread. It is the default.
* :class:`EnergyVad` is a model-free log-energy detector with an adaptive noise floor: a fallback and a baseline.

Both cut the stream into consecutive frames of ``frame_samples`` (512 samples = 32 ms at 16 kHz) counted from the
first sample ever fed; samples that do not fill a frame are buffered until the next call. The output therefore
depends only on the signal, never on how it was split into chunks.

:class:`Segmenter` turns the frame probabilities into ``start``/``end`` :class:`SegmentEvent` s with hysteresis
(as Silero's ``VADIterator``/``get_speech_timestamps``), and :func:`speech_segments` does a whole signal at once
with the same code.

All input is 16 kHz mono; resample first (:func:`edgeser.audio.prepare` / :func:`edgeser.audio.load`).
This module needs numpy and onnxruntime only, and keeps no module-level state: every object owns its session and
buffers, so several streams can run side by side.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .audio import to_float32
from .constants import SAMPLE_RATE
from .errors import AudioError, ModelError

__all__ = ["SILERO_MODEL_PATH", "SileroVad", "EnergyVad", "BandEnergy", "SegmentEvent", "Segmenter", "speech_segments",
           "MovingPitch"]

SILERO_MODEL_PATH = Path(__file__).resolve().parent / "models" / "silero_vad.onnx"


def _check_chunk(x) -> np.ndarray:
    """Validate one chunk of 16 kHz mono audio and return it as contiguous float32.

    Integer PCM is scaled to [-1, 1] (as everywhere in edgeser); an empty chunk is allowed (it does nothing).
    Raises :class:`AudioError` for anything that is not 1-D, or that holds NaN/inf.
    """
    a = to_float32(x)
    if a.ndim != 1:
        raise AudioError(f"VAD input must be 1-D mono 16 kHz samples, got shape {a.shape}")
    if a.size and not np.all(np.isfinite(a)):
        raise AudioError("VAD input contains NaN or infinite samples")
    return np.ascontiguousarray(a, dtype=np.float32)


class _Framer:
    """Buffers samples and hands out consecutive whole frames, whatever the chunking of the input."""

    def __init__(self, frame_samples: int):
        self.frame_samples = frame_samples
        self._buf = np.zeros(0, dtype=np.float32)

    def reset(self) -> None:
        self._buf = np.zeros(0, dtype=np.float32)

    def push(self, x: np.ndarray) -> np.ndarray:
        """Append ``x``; return the newly completed frames as an array of shape (n, frame_samples)."""
        buf = np.concatenate([self._buf, x]) if self._buf.size else x
        n = buf.size // self.frame_samples
        used = n * self.frame_samples
        self._buf = buf[used:].copy()
        return buf[:used].reshape(n, self.frame_samples)

    @property
    def pending(self) -> int:
        """Samples buffered that do not yet fill a frame."""
        return int(self._buf.size)


def load_silero_session(model_path=None, threads: int = 1):
    """An onnxruntime session of the Silero VAD model (shareable between :class:`SileroVad` instances)."""
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - onnxruntime is a hard dependency
        raise ModelError("onnxruntime is required for SileroVad") from exc
    path = Path(model_path) if model_path is not None else SILERO_MODEL_PATH
    if not path.is_file():
        raise ModelError(f"Silero VAD model not found: {path}")
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelError(f"cannot load Silero VAD model {path}: {exc}") from exc


class SileroVad:
    """Silero VAD v6 (ONNX) speech probabilities for 16 kHz audio, one per 512-sample (32 ms) frame.

    Model I/O, as the reference ``OnnxWrapper`` of ``silero-vad==6.2.3``: each call takes ``input`` float32
    [1, 64 + 512] (the last 64 samples of the previous frame, zeros at the start, followed by the new frame),
    ``state`` float32 [2, 1, 128] (zeros at the start, then the previous ``stateN``) and ``sr`` int64 scalar 16000,
    and returns ``output`` [1, 1] (the speech probability of the frame) and ``stateN``. The frames here are the
    ones ``silero_vad.get_speech_timestamps`` uses (frame i = samples [512 i, 512 (i + 1))), so the probabilities
    match the reference; the reference zero-pads a final partial frame, whereas a stream keeps it buffered.

    Parameters
    ----------
    model_path:
        ONNX file; default the vendored ``edgeser/models/silero_vad.onnx``.
    threads:
        onnxruntime intra-op threads (default 1: a 32 ms frame costs well under a millisecond, more threads only
        add overhead and steal cores from the emotion model).
    session:
        an ``onnxruntime.InferenceSession`` of the model to share (the VAD's state lives in this object, not in the
        session, so many streams can share one; :func:`load_silero_session` makes one).
    max_gain_db:
        automatic gain of the VAD's input: the recording is raised or lowered, by at most this much, so that its
        recent loudest frame sits at ``target_rms`` whatever the microphone's distance or level. The envelope
        follows a louder frame at once and decays by ``decay_db_per_s``. 0 disables it. The emotion model is not
        affected (its front end normalises each window's level itself).
    """

    frame_samples = 512
    context_samples = 64
    sample_rate = SAMPLE_RATE

    def __init__(self, model_path=None, *, threads: int = 1, session=None, max_gain_db: float = 30.0,
                 target_rms: float = 0.05, decay_db_per_s: float = 3.0):
        for name, v in (("max_gain_db", max_gain_db), ("target_rms", target_rms), ("decay_db_per_s", decay_db_per_s)):
            if not np.isfinite(v) or v < 0 or (name == "target_rms" and v == 0):
                raise ValueError(f"{name} must be a finite non-negative number (target_rms > 0), got {v!r}")
        self._max_gain = float(10 ** (max_gain_db / 20))
        self._target = float(target_rms)
        self._decay = float(10 ** (-decay_db_per_s * self.frame_samples / SAMPLE_RATE / 20))
        path = Path(model_path) if model_path is not None else SILERO_MODEL_PATH
        self._session = session if session is not None else load_silero_session(path, threads)
        names_in = {i.name for i in self._session.get_inputs()}
        names_out = [o.name for o in self._session.get_outputs()]
        if names_in != {"input", "state", "sr"} or names_out[:2] != ["output", "stateN"]:
            raise ModelError(f"{path} does not have the Silero VAD v5/v6 inputs/outputs (got {names_in}, {names_out})")
        self.model_path = path
        self._sr = np.array(self.sample_rate, dtype=np.int64)
        self._framer = _Framer(self.frame_samples)
        self.reset()

    def reset(self) -> None:
        """Forget the stream: recurrent state, context and buffered samples. The next sample is sample 0."""
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros(self.context_samples, dtype=np.float32)
        self._framer.reset()
        self._envelope = 0.0  # recent loudest frame RMS (input scale) for the automatic gain
        self.frames_done = 0

    def _gain(self, frame: np.ndarray) -> float:
        self._envelope = max(float(np.sqrt(np.mean(np.square(frame, dtype=np.float64)))), self._envelope * self._decay)
        return min(max(self._target / max(self._envelope, 1e-12), 1.0 / self._max_gain), self._max_gain)

    def accept(self, x) -> np.ndarray:
        """Feed 16 kHz mono samples; return the speech probabilities (float32, in [0, 1]) of the frames completed."""
        frames = self._framer.push(_check_chunk(x))
        out = np.empty(len(frames), dtype=np.float32)
        inp = np.empty((1, self.context_samples + self.frame_samples), dtype=np.float32)
        for k, frame in enumerate(frames):
            if self._max_gain != 1.0:
                frame = frame * np.float32(self._gain(frame))
            inp[0, : self.context_samples] = self._context
            inp[0, self.context_samples :] = frame
            prob, self._state = self._session.run(None, {"input": inp, "state": self._state, "sr": self._sr})
            out[k] = prob.reshape(-1)[0]
            self._context = frame[-self.context_samples :].copy()
        self.frames_done += len(frames)
        return out


class BandEnergy:
    """In-band log energy (dB) of 16 kHz frames: Hann window, power between ``band_hz``, scaled by 2 / (sum of the
    window)^2, so a full-scale in-band sine reads about -1.2 dB (its mean power, -3 dB, plus the Hann window's
    1.5-bin noise-equivalent bandwidth); digital silence reads -120 dB. Only differences of these levels are used."""

    def __init__(self, frame_samples: int = 512, band_hz: tuple[float, float] = (200.0, 4000.0)):
        freqs = np.fft.rfftfreq(frame_samples, 1.0 / SAMPLE_RATE)
        self._band = (freqs >= band_hz[0]) & (freqs <= band_hz[1])
        self._window = np.hanning(frame_samples).astype(np.float32)
        self._norm = 2.0 / (float(np.sum(self._window)) ** 2)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """Energies (dB, float64) of frames of shape (n, frame_samples)."""
        spec = np.fft.rfft(frames.astype(np.float64) * self._window, axis=1)
        power = (spec.real**2 + spec.imag**2)[:, self._band].sum(axis=1) * self._norm
        return 10.0 * np.log10(power + 1e-12)


class EnergyVad:
    """Model-free VAD: band-limited log energy against an adaptive noise floor, one probability per 32 ms frame.

    For each 512-sample frame (Hann window), ``e`` = 10 log10 of the mean power between ``band_hz`` (default
    200-4000 Hz, where voiced speech has most of its energy and rumble/hiss least). The noise floor ``f`` (dB) tracks
    the quiet frames: it falls fast (``f += fall * (e - f)`` when ``e < f``, ``fall`` = 0.3 per frame) and rises
    slowly (at most ``rise_db_per_s`` = 3 dB/s), so it follows the noise level through speech pauses and adapts to a
    louder background within seconds, while a few seconds of continuous speech barely move it. It starts at the
    first frame's energy (and during the first ``warmup_s`` = 0.25 s falls to the minimum seen). The speech
    probability is the logistic ``1 / (1 + exp(-(e - f - margin_db) / slope_db))``: 0.5 at ``margin_db`` = 6 dB above
    the floor, ~0.9 at 10 dB (6 dB did best of 5-9 dB on ``benchmarks/vad.py``). Frames quieter than
    ``abs_floor_db`` (-70 dBFS) are silence whatever the floor.

    It has no notion of what speech sounds like: any sound clearly above the background (a door, music, a cough) is
    "speech". Use it where the model cannot be loaded, or to compare (see ``benchmarks/vad.py``).
    """

    frame_samples = 512
    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        *,
        margin_db: float = 6.0,
        slope_db: float = 2.0,
        rise_db_per_s: float = 3.0,
        fall: float = 0.3,
        band_hz: tuple[float, float] = (200.0, 4000.0),
        abs_floor_db: float = -70.0,
        warmup_s: float = 0.25,
    ):
        self.margin_db = float(margin_db)
        self.slope_db = float(slope_db)
        self.rise_db_per_frame = float(rise_db_per_s) * self.frame_samples / self.sample_rate
        self.fall = float(fall)
        self.abs_floor_db = float(abs_floor_db)
        self.warmup_frames = int(round(warmup_s * self.sample_rate / self.frame_samples))
        self._energy = BandEnergy(self.frame_samples, band_hz)
        self._framer = _Framer(self.frame_samples)
        self.reset()

    def reset(self) -> None:
        self._framer.reset()
        self._floor = None
        self.frames_done = 0

    @property
    def noise_floor_db(self) -> float | None:
        """Current noise-floor estimate in dB (None before the first frame)."""
        return self._floor

    def frame_energy_db(self, frames: np.ndarray) -> np.ndarray:
        """In-band energy (dB) of frames of shape (n, 512)."""
        return self._energy(frames)

    def accept(self, x) -> np.ndarray:
        """Feed 16 kHz mono samples; return the speech probabilities (float32) of the frames completed."""
        frames = self._framer.push(_check_chunk(x))
        if len(frames) == 0:
            return np.zeros(0, dtype=np.float32)
        energies = self.frame_energy_db(frames)
        out = np.empty(len(frames), dtype=np.float32)
        floor = self._floor
        for k, e in enumerate(energies):
            e = float(e)
            if floor is None:
                floor = e
            elif self.frames_done + k < self.warmup_frames:
                floor = min(floor, e)
            elif e < floor:
                floor += self.fall * (e - floor)
            else:
                floor = min(e, floor + self.rise_db_per_frame)
            floor = max(floor, self.abs_floor_db - 20.0)
            if e < self.abs_floor_db:
                out[k] = 0.0
            else:
                z = (e - floor - self.margin_db) / self.slope_db
                out[k] = 1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0)))
        self._floor = floor
        self.frames_done += len(frames)
        return out


@dataclass(frozen=True)
class SegmentEvent:
    """A speech segment boundary: ``kind`` is ``"start"`` or ``"end"``; ``sample`` is the absolute 16 kHz sample
    index in the stream (counted from the first sample fed since the last reset) where the segment starts (padding
    applied, never below 0) or ends (exclusive, padding applied). ``decided``: the number of samples fed when the
    event became known (the end of the VAD frame that decided it; None for events of ``flush()``, decided after
    all the audio). Not part of equality."""

    kind: str
    sample: int
    decided: int | None = field(default=None, compare=False)

    @property
    def seconds(self) -> float:
        return self.sample / SAMPLE_RATE


class Segmenter:
    """Streaming speech segmenter: hysteresis on per-frame speech probabilities, as Silero's ``VADIterator`` /
    ``get_speech_timestamps``.

    A segment opens at the first frame with probability >= ``threshold``. While open, a frame below
    ``neg_threshold`` starts a pause, a frame >= ``threshold`` cancels it (frames in between change nothing); when a
    pause has lasted ``min_silence_ms`` the segment ends where the pause began (+ ``speech_pad_ms``). A segment is
    only reported once it has lasted ``min_speech_ms`` (counted from its first speech frame, and not while in a pause);
    a shorter blip is dropped silently, so a ``start`` is always followed by its ``end``. The start is reported with
    its true position (first speech frame - ``speech_pad_ms``, never before 0 or before the previous end).

    Defaults, and why:

    * ``threshold`` = 0.5, ``neg_threshold`` = 0.35: Silero's own defaults (neg = threshold - 0.15).
    * ``min_silence_ms`` = 192 (6 frames of 32 ms): the end of a segment is *known* once the probability has stayed
      below ``neg_threshold`` for 192 ms. Silero's probability falls 1-2 frames after speech stops, so the ``end``
      event comes out ~0.25 s (at most ~0.3 s) after the end of speech (measured on espeak-ng speech by
      ``tests/test_vad.py`` and ``benchmarks/vad.py``), which leaves ~0.2 s of the product's 0.5 s budget for the
      final emotion inference. The price: a pause is only bridged if Silero sees less than 192 ms of it. Measured
      on espeak-ng phrases separated by silent gaps: gaps <= 0.15 s never split a sentence, 0.2 s gaps split it about
      2 times in 3, gaps >= 0.22 s always. Latency and the longest pause bridged move together one for one (any
      VAD without look-ahead has to wait out a pause to know it is not one): 200 ms (7 frames) gives mean/max
      latency 0.29/0.33 s and splits 0.2 s gaps 1 time in 3; to keep 0.25 s gaps together takes ~300 ms, i.e.
      ~0.35-0.4 s latency.
    * ``min_speech_ms`` = 250 (Silero's default): drops clicks, knocks and breaths. It delays only the ``start``
      event, not its position.
    * ``speech_pad_ms`` = 30 (Silero's default): keeps the onset and the decay of the first/last phoneme.

    Long segments (speech over continuous background talk, a monologue in a noisy room): a VAD says "speech" as long
    as *anyone* talks, so over babble or in a cafe one segment would never end, and its one final event would mix every
    utterance of the foreground speaker. So the segmenter also follows the in-band energy (:class:`BandEnergy` of the
    same frames, smoothed over 3 frames): the open segment's *foreground level* (the loudest recent speech frame, at
    once, decaying by ``level_decay_db_per_s``) and the *background floor* (lower envelope of the energy: it falls
    within a few frames, rises at most ``floor_rise_db_per_s``). A frame is in a *dip* when it is ``dip_db`` or more
    below the foreground level and within ``dip_floor_db`` of the floor: the foreground speaker pauses while the
    background goes on (a soft syllable of clean speech is far above the floor of a quiet room: no dip). Once a segment
    has lasted ``split_after_ms``, ``dip_ms`` of dip ends it (where the dip began + pad) even though the VAD still hears
    speech; the next segment then starts only when the energy rises ``rise_db`` above the dip's level (following the
    background down). A segment that finds neither a pause nor a dip ends at ``max_speech_ms`` and the next one starts
    at once if speech goes on, so a final event comes at least that often.

    * ``split_after_ms`` = 4000: longer than most single utterances, so a sentence is not cut, and a recording of one
      utterance in babble keeps its one segment (with 2500, ``Model.classify`` of single RAVDESS clips in 5 dB babble
      lost 9 points UAR: their babble-only tails became segments of their own).
    * ``dip_db`` = 8, ``dip_floor_db`` = 6, ``dip_ms`` = 320, ``rise_db`` = 4, ``level_decay_db_per_s`` = 2,
      ``floor_rise_db_per_s`` = 10: chosen on espeak-ng sentences over three-voice espeak-ng babble
      (``tests/test_vad.py``: at 10 dB SNR, sentences 1.5 s apart, each becomes its own segment ending within 0.15 s
      of the sentence; with 1.2 s pauses the second and third share one, as the segment that opened on the
      background before the second had not lasted 4 s at its end) and on RAVDESS speakers of fold 1 (not the bundled model's test speakers) in the babble sessions of
      ``benchmarks/robustness.py`` (10 dB: clips sharing a segment with another 82 -> 65 of 112, session UAR 56 -> 71
      %; 192 ms dips or splits from 2.5 s did better there but cut the espeak sentences at their commas, or single
      clips, see above). At 0 dB SNR the energy
      says little (speech + babble is only ~3 dB above babble) and most clips still merge.
    * ``max_speech_ms`` = 10000 (0 = no limit).

    ``vad`` is any object with ``frame_samples``, ``reset()`` and ``accept(x) -> probabilities``; None makes a
    :class:`SileroVad`. Its frames must be the consecutive ``frame_samples``-sample frames from the first sample (as
    both VADs here), since the energy is measured on the same frames. Events depend only on the signal, never on the
    chunking of the input, but they can only come out when the frame that decides them is complete, i.e. up to
    ``frame_samples`` - 1 samples plus the chunk size after the decisive sample.
    """

    def __init__(
        self,
        vad=None,
        threshold: float = 0.5,
        neg_threshold: float = 0.35,
        min_speech_ms: float = 250.0,
        min_silence_ms: float = 192.0,
        speech_pad_ms: float = 30.0,
        *,
        split_after_ms: float = 4000.0,
        dip_db: float = 8.0,
        dip_ms: float = 320.0,
        level_decay_db_per_s: float = 2.0,
        max_speech_ms: float = 10000.0,
        rise_db: float = 4.0,
        dip_floor_db: float = 6.0,
        floor_rise_db_per_s: float = 10.0,
    ):
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        if not 0.0 <= neg_threshold <= threshold:
            raise ValueError(f"neg_threshold must be in [0, threshold], got {neg_threshold}")
        for name, v in (("min_speech_ms", min_speech_ms), ("min_silence_ms", min_silence_ms),
                        ("speech_pad_ms", speech_pad_ms), ("split_after_ms", split_after_ms), ("dip_db", dip_db),
                        ("dip_ms", dip_ms), ("level_decay_db_per_s", level_decay_db_per_s),
                        ("max_speech_ms", max_speech_ms), ("rise_db", rise_db),
                        ("dip_floor_db", dip_floor_db), ("floor_rise_db_per_s", floor_rise_db_per_s)):
            if not np.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a non-negative number, got {v}")
        if speech_pad_ms >= min_silence_ms > 0:
            raise ValueError("speech_pad_ms must be shorter than min_silence_ms")
        self.vad = SileroVad() if vad is None else vad
        self.frame_samples = int(self.vad.frame_samples)
        self.threshold = float(threshold)
        self.neg_threshold = float(neg_threshold)
        self.min_speech_samples = int(round(min_speech_ms * SAMPLE_RATE / 1000))
        self.min_silence_samples = int(round(min_silence_ms * SAMPLE_RATE / 1000))
        self.pad_samples = int(round(speech_pad_ms * SAMPLE_RATE / 1000))
        if speech_pad_ms >= dip_ms > 0:
            raise ValueError("speech_pad_ms must be shorter than dip_ms")
        self._split_after_frames = -(-int(round(split_after_ms * SAMPLE_RATE / 1000)) // self.frame_samples)
        self.dip_db = float(dip_db)
        self.rise_db = float(rise_db)
        self.dip_floor_db = float(dip_floor_db)
        self.floor_rise_db = float(floor_rise_db_per_s) * self.frame_samples / SAMPLE_RATE  # per frame
        self.dip_frames = max(1, int(round(dip_ms * SAMPLE_RATE / 1000 / self.frame_samples)))
        self.level_decay_db = float(level_decay_db_per_s) * self.frame_samples / SAMPLE_RATE  # per frame
        self.max_speech_samples = int(round(max_speech_ms * SAMPLE_RATE / 1000))
        if 0 < self.max_speech_samples < self.min_speech_samples + self.frame_samples:
            raise ValueError("max_speech_ms must be 0 (no limit) or longer than min_speech_ms")
        self._framer = _Framer(self.frame_samples)
        self._band_energy = BandEnergy(self.frame_samples)
        self._reset_state()

    def _reset_state(self) -> None:
        self._frame = 0  # index of the next frame to come
        self._samples = 0  # samples fed so far
        self._triggered = False  # a (possibly unconfirmed) segment is open
        self._confirmed = False  # its start has been reported
        self._start = 0  # first speech frame of the open segment
        self._pause = None  # frame where the current pause began, or None
        self._last_end = 0  # sample of the last reported end (starts never go before it)
        self._recent = []  # energies (dB) of the last 3 frames
        self._level = None  # open segment's foreground level (dB): smoothed energy of its speech frames, decaying
        self._low_start = None  # first frame of the current run of frames below level - dip_db, or None
        self._dip_sum, self._dip_n = 0.0, 0  # smoothed energies of that run
        self._floor = None  # background floor (dB): lower envelope of the smoothed energy
        self._await_rise = None  # the last segment ended at a dip: that dip's mean energy (dB), else None

    def reset(self) -> None:
        """Forget everything (the VAD too). The next sample fed is sample 0 again."""
        self.vad.reset()
        self._framer.reset()
        self._reset_state()

    @property
    def in_speech(self) -> bool:
        """True between a reported ``start`` and its ``end``."""
        return self._triggered and self._confirmed

    @property
    def position(self) -> int:
        """Number of samples fed since the last reset."""
        return self._samples

    def _start_event(self, decided: int | None = None) -> SegmentEvent:
        self._confirmed = True
        s = max(0, self._start * self.frame_samples - self.pad_samples, self._last_end)
        return SegmentEvent("start", int(s), decided)

    def _close(self, end_sample: int, events: list, decided: int | None = None) -> None:
        end = int(min(end_sample, self._samples))
        if self._confirmed:
            events.append(SegmentEvent("end", end, decided))
            self._last_end = end
        self._triggered = self._confirmed = False
        self._pause = None

    def _track_level(self, p: float, e: float) -> float:
        """Update the open segment's foreground level with frame energy ``e``; return the smoothed energy."""
        self._recent = (self._recent + [e])[-3:]
        es = float(np.mean(self._recent))
        if self._floor is None or es < self._floor:
            self._floor = es if self._floor is None else self._floor + 0.3 * (es - self._floor)
        else:
            self._floor = min(es, self._floor + self.floor_rise_db)
        if not self._triggered:
            return es
        if self._level is not None:
            self._level -= self.level_decay_db
        if p >= self.threshold and (self._level is None or es > self._level):
            self._level = es
        if self._level is None or not es < min(self._level - self.dip_db, self._floor + self.dip_floor_db):
            self._low_start, self._dip_sum, self._dip_n = None, 0.0, 0
        else:
            if self._low_start is None:
                self._low_start = self._frame
            self._dip_sum += es
            self._dip_n += 1
        return es

    def _step(self, p: float, e: float, events: list) -> None:
        es = self._track_level(p, e)
        i = self._frame
        self._frame += 1
        fs = self.frame_samples
        if not self._triggered:
            # after a dip: wait until the energy rises rise_db above the background (the dip's level, following the
            # energy down)
            if self._await_rise is not None:
                self._await_rise = min(self._await_rise, es)
            if p >= self.threshold and (self._await_rise is None or es >= self._await_rise + self.rise_db):
                self._triggered, self._confirmed, self._start, self._pause = True, False, i, None
                self._await_rise, self._level, self._low_start = None, None, None
            else:
                return
        elif p >= self.threshold:
            self._pause = None
        elif p < self.neg_threshold and self._pause is None:
            self._pause = i
        if self._pause is not None:
            if (i + 1 - self._pause) * fs >= self.min_silence_samples:
                self._close(self._pause * fs + self.pad_samples, events, (i + 1) * fs)
            return
        if not self._confirmed:
            if (i + 1 - self._start) * fs >= self.min_speech_samples:
                events.append(self._start_event((i + 1) * fs))
            return
        # a dip counts from where the segment is old enough to split (a dip that began earlier, from there)
        dip = None if self._low_start is None else max(self._low_start, self._start + self._split_after_frames)
        if dip is not None and i + 1 - dip >= self.dip_frames:
            background = self._dip_sum / max(self._dip_n, 1)
            self._close(dip * fs + self.pad_samples, events, (i + 1) * fs)
            self._await_rise = background
        elif self.max_speech_samples and (i + 1 - self._start) * fs >= self.max_speech_samples:
            self._close((i + 1) * fs, events, (i + 1) * fs)

    def accept(self, x) -> list[SegmentEvent]:
        """Feed 16 kHz mono samples (any length); return the events decided by the frames they completed."""
        a = _check_chunk(x)
        probs = self.vad.accept(a)
        energies = self._band_energy(self._framer.push(a))
        if len(energies) != len(probs):
            raise ModelError(f"the VAD gave {len(probs)} probabilities for {len(energies)} frames of "
                             f"{self.frame_samples} samples: its frames must be the consecutive frames from sample 0")
        self._samples += int(a.shape[0])
        events: list[SegmentEvent] = []
        for p, e in zip(probs, energies):
            self._step(float(p), float(e), events)
        return events

    def flush(self) -> list[SegmentEvent]:
        """End of audio: close an open segment and reset (the next sample fed is sample 0 of a new stream).

        An open segment ends at the end of the audio, or where its pause began (+ pad) if it was in a pause. One
        that was not reported yet is reported (start and end) if it lasted ``min_speech_ms``.
        """
        events: list[SegmentEvent] = []
        if self._triggered:
            fs = self.frame_samples
            if self._pause is not None:
                end, speech_end = self._pause * fs + self.pad_samples, self._pause * fs
            else:
                end = speech_end = self._samples
            if not self._confirmed and speech_end - self._start * fs >= self.min_speech_samples:
                events.append(self._start_event())
            self._close(end, events)
        self.reset()
        return events


def speech_segments(x, segmenter: Segmenter | None = None) -> list[tuple[int, int]]:
    """Speech segments of a whole 16 kHz mono signal as ``(start, end)`` sample pairs (end exclusive).

    Runs ``segmenter`` (default a new ``Segmenter()``) from a reset state over ``x`` and flushes it, so the result
    equals what a stream of ``x`` in any chunking reports. The segmenter is left reset.
    """
    seg = Segmenter() if segmenter is None else segmenter
    a = _check_chunk(x)
    seg.reset()
    events = seg.accept(a) + seg.flush()
    out: list[tuple[int, int]] = []
    start = None
    for ev in events:
        if ev.kind == "start":
            start = ev.sample
        else:
            out.append((int(start), int(ev.sample)))
            start = None
    return out


class MovingPitch:
    """Whether 16 kHz audio holds voiced sound whose pitch moves, as speech's does: the check ``Model.classify`` makes
    when the VAD found no speech segment, before it answers "no speech".

    Why: Silero misses some strongly emotional speech (shouted or sobbing RAVDESS clips, intensity 2: 10 of the 560
    4-class clips, actors 06, 14 and 18, get no segment), while silence, noise, hum and tones must count as no speech.
    Per 512-sample frame above ``floor_db`` (dBFS mean power), the normalised autocorrelation's first local peak
    between 80 and 500 Hz (within 0.9 of the highest one, at least ``r_min``) gives the pitch period, refined by a
    parabola. A *step* is two consecutive voiced frames whose periods differ by less than 12 %; it *moves* when they
    differ by more than 1 %. Speech has at least ``min_steps`` steps and ``min_moving`` of them move. Measured
    (``tests/test_no_speech.py``): the 10 missed clips have 16-48 steps, 44-81 % moving; white, pink and brown noise,
    silence and clicks have 0-1 steps; tones (150 Hz-1 kHz, also in noise or after silence), 50/60 Hz hum with its
    harmonics, a C major chord, beeps and a 100 Hz pulse train have many steps but none moving. A sine sweep moves
    (97 %) and counts as speech-like: a glide is what this check cannot tell from intonation.
    Cost: one 1024-point FFT per frame, about 1 % of the VAD's; memory: one frame and a few counters.
    """

    frame_samples = 512
    lag_range = (32, 200)  # samples: 500 .. 80 Hz

    def __init__(self, *, floor_db: float = -60.0, r_min: float = 0.5, min_steps: int = 8, min_moving: float = 0.2):
        self.floor_db, self.r_min = float(floor_db), float(r_min)
        self.min_steps, self.min_moving = int(min_steps), float(min_moving)
        self._framer = _Framer(self.frame_samples)
        self._prev = 0.0  # pitch period of the last frame (0.0: unvoiced)
        self.steps = 0
        self.moving = 0

    @property
    def speech_like(self) -> bool:
        return self.steps >= self.min_steps and self.moving >= self.min_moving * self.steps

    def periods(self, frames: np.ndarray) -> np.ndarray:
        """Pitch period (samples, fractional) of each frame of shape (n, 512); 0.0 where unvoiced."""
        lo, hi = self.lag_range
        fr = frames.astype(np.float64)
        fr = fr - fr.mean(axis=1, keepdims=True)
        out = np.zeros(len(fr))
        loud = 10.0 * np.log10((fr**2).mean(axis=1) + 1e-20) > self.floor_db
        if not loud.any():
            return out
        idx = np.nonzero(loud)[0]
        spec = np.fft.rfft(fr[idx], 2 * self.frame_samples, axis=1)
        ac = np.fft.irfft(spec.real**2 + spec.imag**2, 2 * self.frame_samples, axis=1)[:, : hi + 2]
        ac = ac / np.maximum(ac[:, :1], 1e-20) * (self.frame_samples / (self.frame_samples - np.arange(hi + 2)))
        seg = ac[:, lo - 1 : hi + 2]
        mid = seg[:, 1:-1]
        peak = (mid > seg[:, :-2]) & (mid >= seg[:, 2:]) & (mid >= self.r_min)
        for j in np.nonzero(peak.any(axis=1))[0]:
            cand = np.nonzero(peak[j])[0]
            k = cand[mid[j, cand] >= 0.9 * mid[j, cand].max()][0]  # the shortest period, not a multiple of it
            y0, y1, y2 = seg[j, k], seg[j, k + 1], seg[j, k + 2]
            den = y0 - 2.0 * y1 + y2
            out[idx[j]] = k + lo + (0.5 * (y0 - y2) / den if den < 0 else 0.0)
        return out

    def accept(self, x) -> None:
        """Feed 16 kHz mono samples (any chunking gives the same counts)."""
        for period in self.periods(self._framer.push(_check_chunk(x))):
            if period and self._prev:
                change = abs(float(np.log(period / self._prev)))
                if change < 0.12:
                    self.steps += 1
                    self.moving += change > 0.01
            self._prev = period
