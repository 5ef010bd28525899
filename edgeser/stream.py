"""Streaming inference: audio chunks -> log-mel + speech segments -> windows -> model -> EmotionEvents.

Windows are fixed by absolute frame positions, never by how the audio was chunked: for a speech segment starting at
frame ``s``, windows end at ``s + first_frames``, then every ``hop_frames``, while the segment lasts; one last window
ends at the segment's end (if at least ``min_tail_frames`` after the previous one, or if the segment had none). Each
window is the ``window_frames`` log-mel frames before its end (frames before the stream began count as digital
silence). A segment's scores pool its windows as the model's metadata ``aggregate`` says: the mean of their
probabilities softmax(logits / T) (``"mean"``), or softmax of their mean logits / T (``"mean_logits"``, the bundled
model: better calibrated, ``benchmarks/calibration.py``). Partial events (``final=False``) are
emitted for every window while the segment goes on, one final event when it ends. The VAD knows that a segment has
ended only ~0.2 s after its end, so a window may be due between the two: it is run (as a partial) exactly when its
frames were complete before the VAD decided the end, as a sample-by-sample feed would, whatever the chunks. So any
chunking of the same audio gives the same events; memory stays bounded however long the stream runs (running sums,
not lists, of the window probabilities and logits; a long chunk is processed in 10 s pieces).

A long segment also ends where the emotion changes (``split_on_change``, on by default). Over babble or in a cafe
the VAD hears speech all along and cannot find the pauses between utterances, so one speech segment can hold several
utterances of different emotions, and its one mean would blur them (a neutral sentence between two angry ones gets
their label). So once a speech segment has lasted :data:`CHANGE_AFTER_FRAMES` (4 s, as the segmenter's
``split_after_ms``: shorter than that it is taken for one utterance) and the open segment holds
:data:`CHANGE_MIN_WINDOWS` windows, a window whose most likely label differs from the segment's and whose
probabilities are more than :data:`CHANGE_MIN_DISTANCE` (total variation) from the segment's mean ends the segment at
that window's middle (its final event), and opens the next segment: each final event pools its own windows,
and the partial event of that window already belongs to the new segment. It only uses window probabilities at fixed
frame positions, so events stay independent of the chunking.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .audio import StreamResampler, as_mono, channel_axis, check_rate, to_float32
from .constants import HOP_LENGTH, LOG_FLOOR, N_FFT, N_MELS, SAMPLE_RATE
from .errors import AudioError
from .features import LogMelStream
from .runtime.base import Backend
from .types import UNCERTAIN, EmotionEvent

SILENCE_LOGMEL = float(np.log10(LOG_FLOOR))  # what the features give for digital silence
HISTORY_FRAMES = 400  # log-mel frames kept beyond one window (covers the VAD's decision delay)
MAX_PUSH_SAMPLES = 10 * SAMPLE_RATE  # a longer chunk is processed in pieces of this size (bounded memory)
# Emotion-change splitting (``split_on_change``). Chosen on the babble/cafe sessions of benchmarks/robustness.py with
# RAVDESS speakers of folds 1 and 2 (not the bundled model's test speakers; `robustness.py --folds 1 --adapt running
# --conditions "babble 0 dB" "cafe 0 dB" clean [--no-change-split]`): fold 1 babble 0 dB 35.2 -> 55.5 % UAR (neutral
# recall 0.19 -> 0.56), cafe 0 dB 43.8 -> 56.2 % (0.31 -> 0.50), clean unchanged (94.5 %). Confirming a change over
# two windows was ~0.7 points worse there; cutting from the segment's start (not after 4 s) ~1 point better, but it
# cut single sentences (a float16 copy of an espeak-ng sentence was cut where the float32 one was not).
CHANGE_AFTER_FRAMES = 400  # a speech segment is cut at emotion changes only once it has lasted 4 s
CHANGE_MIN_WINDOWS = 3  # windows a segment holds before a change can end it
CHANGE_MIN_DISTANCE = 0.4  # total-variation distance between a window's probabilities and the segment's mean
# Stream.calibrate refuses audio with less speech than this (seconds, as the VAD finds it): a baseline from a word or
# two is mostly that word's; the README asks for 5-30 s of ordinary speech, which holds at least this much
MIN_CALIBRATION_SPEECH_S = 3.0


def frames_available(n_samples: int) -> int:
    """Log-mel frames :class:`LogMelStream` has produced once ``n_samples`` samples were fed (before flush)."""
    pad = N_FFT // 2
    return 0 if n_samples <= pad else (n_samples - pad) // HOP_LENGTH + 1


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / max(temperature, 1e-6)
    z = np.exp(z - z.max())
    return (z / z.sum()).astype(np.float32)


def pool_scores(info, prob_sum: np.ndarray, logit_sum: np.ndarray, n: int) -> np.ndarray:
    """The score of ``n`` windows from their running sums, as the model's metadata ``aggregate`` says: softmax of the
    mean logits over the temperature (``"mean_logits"``), else the mean of the window probabilities."""
    if info.aggregate == "mean_logits":
        return softmax(logit_sum / np.float32(n), info.temperature)
    return prob_sum / np.float32(n)


@dataclass
class _Segment:
    index: int
    start_frame: int
    start_sample: int
    next_end: int  # frame at which the next window ends
    end_frame: int | None = None
    end_sample: int | None = None
    last_end: int | None = None
    prob_sum: np.ndarray | None = None  # running float32 sum of the window probabilities (mean = sum / n)
    logit_sum: np.ndarray | None = None  # running float32 sum of the window logits (aggregate "mean_logits")
    last_probs: np.ndarray | None = None
    n_windows: int = 0
    speech_start: int = -1  # first frame of the speech segment (of the VAD) this segment is part of


class Stream:
    """Per-stream state over a shared model. Create with :meth:`edgeser.Model.stream`.

    Stateful models: the state the model's metadata declares is held here and passed through every window
    (``Backend.step``). "segment" state starts afresh at each speech segment (a streaming encoder's caches);
    "stream" state lives as long as the stream (test-time adaptation statistics): with ``adapt="running"`` it is
    updated after every window, with ``adapt="off"`` it stays at its baseline. The baseline is the model's initial
    state, or what :meth:`calibrate` measured on a few seconds of the speaker's ordinary speech; :meth:`reset` returns
    to the baseline (``reset(forget_calibration=True)`` to the model's initial state).
    """

    def __init__(self, backend: Backend, segmenter_factory, *, min_tail_frames: int = 10, emit_partial: bool = True,
                 adapt: str | None = None, abstain_below: float | None = None, split_on_change: bool = True,
                 sample_rate: int | None = None):
        self._backend = backend
        # the rate of every chunk when accept() / calibrate() are not told one (None: they must be told)
        self.sample_rate = None if sample_rate is None else check_rate(sample_rate)
        self._info = backend.info
        self._labels = tuple(self._info.labels)
        self._make_segmenter = segmenter_factory
        self.min_tail_frames = min_tail_frames
        self.emit_partial = emit_partial
        self._scopes = self._info.state_scopes()
        self._adaptive = "stream" in self._scopes
        if adapt is None:
            adapt = self._info.adaptation.get("default", "running") if self._adaptive else "off"
        if adapt not in ("off", "running"):
            raise ValueError(f"adapt must be 'off' or 'running', got {adapt!r}")
        if adapt == "running" and not self._adaptive:
            from .errors import ModelError

            raise ModelError(f"{backend.path}: this model has no test-time adaptation (adapt='running' needs a model "
                             "exported with it, e.g. the bundled default); use adapt='off' or leave it unset")
        self.adapt = adapt
        # abstention is opt-in: None = never; "auto" = the threshold recommended in the model's metadata (fitted on
        # validation speakers with the temperature), or a number
        t = 0.0 if abstain_below is None else self._info.abstain_below if abstain_below == "auto" else abstain_below
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 <= t < 1.0:
            raise ValueError(f"abstain_below must be a number in [0, 1), got {t!r}")
        self.abstain_below = float(t)
        if not isinstance(split_on_change, bool):
            raise ValueError(f"split_on_change must be True or False, got {split_on_change!r}")
        # a model that aggregates by its last output, or that carries state within a segment, integrates the segment
        # itself: cutting its segments would restart nothing and average nothing, so it is never split on change
        self.split_on_change = split_on_change and self._info.aggregate != "last" and "segment" not in self._scopes
        self._init_state = self._info.initial_state()
        self._baseline = self._init_state
        self._state: list = list(self._init_state)
        self.reset()

    # -- public -----------------------------------------------------------------------------------------------
    @property
    def labels(self) -> tuple[str, ...]:
        return self._labels

    @property
    def seconds(self) -> float:
        """Seconds of (16 kHz) audio accepted so far."""
        return self._n_samples / SAMPLE_RATE

    @property
    def calibrated(self) -> bool:
        return self._baseline is not self._init_state

    def reset(self, *, keep_adaptation: bool = False, forget_calibration: bool = False) -> None:
        """Forget all audio: the stream is as new (same model, same settings, same calibration unless
        ``forget_calibration``; nothing random). ``keep_adaptation``: keep the adaptation statistics gathered so far
        (the same speaker goes on in a new recording)."""
        if forget_calibration:
            self._baseline = self._init_state
        kept = self._state if keep_adaptation else None
        self._rate: int | None = None
        self._resampler: StreamResampler | None = None
        self._mel = LogMelStream()
        self._seg = self._make_segmenter()
        self._frames = np.full((N_MELS, 0), SILENCE_LOGMEL, dtype=np.float32)
        self._frames_start = 0  # absolute index of self._frames[:, 0]
        self._n_frames = 0  # frames produced so far
        self._n_samples = 0
        self._segment: _Segment | None = None
        self._n_segments = 0
        self._finished = False
        self._layout: tuple[int, int] | None = None  # (channel axis, channels) of 2-D chunks, once unambiguous
        self._prob_sum: np.ndarray | None = None  # sum of every window's probabilities (for classify())
        self._logit_sum: np.ndarray | None = None  # sum of every window's logits (classify(), "mean_logits")
        self._prob_weight = 0  # windows counted in _prob_sum
        self._state = list(self._baseline)
        if kept is not None:
            self._state = [k if sc == "stream" else b for k, sc, b in zip(kept, self._scopes, self._baseline)]
        self.windows_run = 0  # windows classified since the last reset

    def calibrate(self, samples, sample_rate: int | None = None) -> float:
        """Measure this speaker's / room's baseline from a few seconds (5-30 s) of their ordinary speech; later
        windows are normalised against it. Replaces an earlier calibration; kept across :meth:`reset`. Returns the
        seconds of speech found; :class:`AudioError` if the VAD finds less than :data:`MIN_CALIBRATION_SPEECH_S`
        (the stream is then unchanged). The audio is analysed apart: it does not enter this stream's events.
        ``sample_rate``: as for :meth:`accept`."""
        if not self._adaptive:
            from .errors import ModelError

            raise ModelError(f"{self._backend.path}: this model has no adaptation state to calibrate "
                             "(export it with test-time adaptation)")
        probe = Stream(self._backend, self._make_segmenter, min_tail_frames=self.min_tail_frames,
                       emit_partial=False, adapt="running", abstain_below=0.0)
        events = probe.accept(samples, self._rate_of("calibrate", sample_rate)) + probe.flush()
        if not probe.windows_run:
            raise AudioError("no speech found in the calibration audio: give 5-30 s of ordinary speech")
        speech = float(sum(e.end - e.start for e in events if e.final))
        if speech < MIN_CALIBRATION_SPEECH_S:
            raise AudioError(f"only {speech:.1f} s of speech found in the calibration audio; calibrate() needs at "
                             f"least {MIN_CALIBRATION_SPEECH_S:g} s of it: give 5-30 s of ordinary speech")
        self._baseline = tuple(v if sc == "stream" else i for v, sc, i in
                               zip(probe._state, self._scopes, self._init_state))
        for i, sc in enumerate(self._scopes):
            if sc == "stream":
                self._state[i] = self._baseline[i]
        return speech

    def _rate_of(self, method: str, sample_rate) -> int:
        """The rate of a chunk given to ``method``: ``sample_rate``, else the stream's own; AudioError without
        either (nothing is assumed) or when they differ."""
        if sample_rate is None:
            if self.sample_rate is None:
                raise AudioError(f"Stream.{method}(samples, sample_rate) needs the sample rate of the samples (or "
                                 "create the stream with model.stream(sample_rate=...) to give it once)")
            return self.sample_rate
        rate = check_rate(sample_rate)
        if self.sample_rate is not None and rate != self.sample_rate:
            raise AudioError(f"this stream was created for {self.sample_rate} Hz audio "
                             f"(model.stream(sample_rate=...)), got {rate} Hz")
        return rate

    def mean_window_probs(self) -> np.ndarray | None:
        """The clip score over every window classified since the last reset (None if none was), pooled as the
        model's metadata ``aggregate`` says: the mean of the window probabilities (``"mean"``), softmax of the mean
        window logits over the temperature (``"mean_logits"``) or, for a model whose segment score is its last output
        (``"last"``), the mean of the segments' final scores weighted by their windows."""
        if self._prob_sum is None:
            return None
        if self._info.aggregate == "last":  # the sums hold the segments' final scores, weighted by their windows
            return self._prob_sum / np.float32(self._prob_weight)
        return pool_scores(self._info, self._prob_sum, self._logit_sum, self._prob_weight)

    def accept(self, samples, sample_rate: int | None = None) -> list[EmotionEvent]:
        """Feed audio (any length, dtype, layout accepted by edgeser.audio) recorded at ``sample_rate`` Hz (may be
        left out if the stream was created with ``sample_rate``); return the events it completes."""
        if self._finished:
            raise AudioError("stream was flushed; call reset() to start a new one")
        rate = self._rate_of("accept", sample_rate)
        if self._rate is not None and rate != self._rate:
            raise AudioError(f"sample rate changed from {self._rate} to {rate} Hz within a stream; call reset()")
        a = to_float32(samples)
        axis, layout = None, None
        if a.ndim == 2 and a.shape[0] and a.shape[1]:
            # a short chunk of multi-channel audio (fewer frames than channels) must not be read the other way round
            if self._layout is not None and a.shape[self._layout[0]] == self._layout[1]:
                axis = self._layout[0]
            elif self._layout is not None:
                raise AudioError(f"channel layout changed within a stream: {self._layout[1]} channels on axis "
                                 f"{self._layout[0]} before, now a chunk of shape {a.shape}; call reset()")
            elif a.shape[0] != a.shape[1]:
                layout = (channel_axis(a), a.shape[channel_axis(a)])
        x = as_mono(a, allow_empty=True, axis=axis)  # validated before any state changes: a bad chunk changes nothing
        if self._rate is None:
            self._rate, self._resampler = rate, StreamResampler(rate)
        if layout is not None:
            self._layout = layout
        x = self._resampler(x)
        if x.size <= MAX_PUSH_SAMPLES:
            return self._push(x, last=False)
        out: list[EmotionEvent] = []
        for i in range(0, x.size, MAX_PUSH_SAMPLES):  # same events as one piece (chunking never matters)
            out += self._push(x[i : i + MAX_PUSH_SAMPLES], last=False)
        return out

    def flush(self) -> list[EmotionEvent]:
        """End of audio: close the open segment (its final event) and finish the stream."""
        if self._finished:
            return []
        tail = self._resampler(np.zeros(0, np.float32), last=True) if self._resampler else np.zeros(0, np.float32)
        events = self._push(tail, last=True)
        self._finished = True
        return events

    # -- internals ----------------------------------------------------------------------------------------------
    def _push(self, x: np.ndarray, last: bool) -> list[EmotionEvent]:
        self._n_samples += x.size
        frames_before_flush = frames_available(self._n_samples)
        new = self._mel.accept(x) if x.size else np.zeros((N_MELS, 0), np.float32)
        if last:
            new = np.concatenate([new, self._mel.flush()], axis=1)
        self._append_frames(new)
        seg_events = self._seg.accept(x) if x.size else []
        if last:
            seg_events = list(seg_events) + list(self._seg.flush())
        out: list[EmotionEvent] = []
        for ev in seg_events:
            if ev.kind == "start":
                out += self._run_due()
                self._start_segment_state()
                self._segment = _Segment(
                    index=self._n_segments,
                    start_frame=ev.sample // HOP_LENGTH,
                    start_sample=ev.sample,
                    next_end=ev.sample // HOP_LENGTH + self._info.first_frames,
                    speech_start=ev.sample // HOP_LENGTH,
                )
                self._n_segments += 1
            elif ev.kind == "end" and self._segment is not None:
                # first the partial windows that were due before the end became known -- those a sample-by-sample
                # feed would have run -- so that the events never depend on how the audio was chunked
                known = frames_before_flush if ev.decided is None else frames_available(ev.decided - 1)
                out += self._run_due(limit=known)
                self._segment.end_frame = min(ev.sample // HOP_LENGTH, self._n_frames)
                self._segment.end_sample = ev.sample
                out += self._run_due()
        out += self._run_due()
        self._trim()
        return out

    def _append_frames(self, new: np.ndarray) -> None:
        if new.shape[1]:
            self._frames = np.concatenate([self._frames, new], axis=1)
            self._n_frames += new.shape[1]

    def _trim(self) -> None:
        # keep one window plus the VAD's decision delay, and whatever the open segment still needs
        first_needed = self._n_frames - self._info.window_frames - HISTORY_FRAMES
        if self._segment is not None:
            first_needed = min(first_needed, self._segment.next_end - self._info.window_frames)
        drop = first_needed - self._frames_start
        if drop > 0:
            self._frames = self._frames[:, drop:]
            self._frames_start += drop

    def _window(self, end: int, start: int | None = None) -> np.ndarray:
        """The window_frames frames before ``end``; with ``start``, only the frames from ``start`` (a stateful
        model's last, partial chunk: it must not see the frames of its previous chunk again) padded on the right
        with digital silence."""
        w = self._info.window_frames
        a, b = end - w - self._frames_start, end - self._frames_start
        if start is not None:
            a = start - self._frames_start
        if a < 0 and self._frames_start > 0:
            raise RuntimeError("internal: window starts before the kept history")
        buf = self._frames[:, max(a, 0) : b]
        if buf.shape[1] < w:
            pad = np.full((N_MELS, w - buf.shape[1]), SILENCE_LOGMEL, np.float32)
            # before the stream began: digital silence on the left; after a partial chunk: on the right
            buf = np.concatenate([buf, pad] if start is not None else [pad, buf], axis=1)
        return np.ascontiguousarray(buf[None])  # same bytes, same layout, whatever the chunking

    def _step(self, window: np.ndarray) -> np.ndarray:
        """Run one window with the carried state; keep the new state as the scopes and ``adapt`` say."""
        if not self._scopes:
            return self._backend.run(window)
        logits, new = self._backend.step(window, tuple(self._state))
        for i, sc in enumerate(self._scopes):
            if sc == "segment" or self.adapt == "running":
                self._state[i] = new[i]
        return logits

    def _start_segment_state(self) -> None:
        for i, sc in enumerate(self._scopes):
            if sc == "segment":
                self._state[i] = self._init_state[i]

    def _classify_window(self, seg: _Segment, end: int, tail: bool = False) -> list[EmotionEvent]:
        """Run the window ending at frame ``end`` for ``seg`` and add it to the open segment; returns the final event
        of the segment it ended if the window showed an emotion change (``self._segment`` is then the new one)."""
        partial_chunk = tail and "segment" in self._scopes and seg.last_end is not None
        window = self._window(end, start=seg.last_end if partial_chunk else None)
        logits = np.asarray(self._step(window), np.float32)
        probs = softmax(logits, self._info.temperature)
        out = []
        if self.split_on_change and self._changes(seg, end, probs):
            out.append(self._split(seg, end))
            seg = self._segment
        # running sums, not lists: memory stays bounded however long a segment or a stream lasts (float32 sums
        # in window order give exactly np.mean of the list)
        seg.prob_sum = probs.copy() if seg.prob_sum is None else seg.prob_sum + probs
        seg.logit_sum = logits.copy() if seg.logit_sum is None else seg.logit_sum + logits
        seg.last_probs = probs
        seg.n_windows += 1
        seg.last_end = end
        if self._info.aggregate != "last":
            self._prob_sum = probs.copy() if self._prob_sum is None else self._prob_sum + probs
            self._logit_sum = logits.copy() if self._logit_sum is None else self._logit_sum + logits
            self._prob_weight += 1
        self.windows_run += 1
        return out

    @staticmethod
    def _changes(seg: _Segment, end: int, probs: np.ndarray) -> bool:
        """Whether the window ending at frame ``end`` shows an emotion change against the segment so far."""
        if seg.n_windows < CHANGE_MIN_WINDOWS or end - seg.speech_start < CHANGE_AFTER_FRAMES:
            return False
        mean = seg.prob_sum / np.float32(seg.n_windows)
        return int(np.argmax(probs)) != int(np.argmax(mean)) and \
            0.5 * float(np.abs(probs - mean).sum()) > CHANGE_MIN_DISTANCE

    def _split(self, seg: _Segment, end: int) -> EmotionEvent:
        """End ``seg`` at the middle of the window ending at frame ``end`` (its final event is returned) and open the
        next segment there; the speech segment (its window schedule and its end, if known) goes on."""
        cut = max(end - self._info.window_frames // 2, seg.start_frame + 1)
        final = self._event(seg, cut * HOP_LENGTH, final=True)
        self._segment = _Segment(index=self._n_segments, start_frame=cut, start_sample=cut * HOP_LENGTH,
                                 next_end=seg.next_end, end_frame=seg.end_frame, end_sample=seg.end_sample,
                                 last_end=seg.last_end, speech_start=seg.speech_start)
        self._n_segments += 1
        return final

    def _scores(self, seg: _Segment) -> np.ndarray:
        if self._info.aggregate == "last":
            return seg.last_probs
        return pool_scores(self._info, seg.prob_sum, seg.logit_sum, seg.n_windows)

    def _event(self, seg: _Segment, end_sample: int, final: bool) -> EmotionEvent:
        mean = self._scores(seg)
        k = int(np.argmax(mean))
        if final and self._info.aggregate == "last":  # classify(): segments weighted by their windows
            w = np.float32(seg.n_windows)
            self._prob_sum = mean * w if self._prob_sum is None else self._prob_sum + mean * w
            self._prob_weight += seg.n_windows
        conf = float(mean[k])
        return EmotionEvent(
            start=round(seg.start_sample / SAMPLE_RATE, 4),
            end=round(end_sample / SAMPLE_RATE, 4),
            label=UNCERTAIN if conf < self.abstain_below else self._labels[k],
            confidence=conf,
            scores={lab: float(p) for lab, p in zip(self._labels, mean)},
            final=final,
            segment=seg.index,
        )

    def _run_due(self, limit: int | None = None) -> list[EmotionEvent]:
        """Run the segment's windows due up to ``limit`` frames (default: all the frames there are, and the final
        window and event if the segment has ended)."""
        seg = self._segment
        if seg is None:
            return []
        out = []
        partial_only = limit is not None
        if limit is not None:
            limit = min(limit, self._n_frames)
        elif seg.end_frame is None:
            limit = self._n_frames
        else:
            limit = min(self._n_frames, seg.end_frame)
        while seg.next_end <= limit:
            out += self._classify_window(seg, seg.next_end)
            seg = self._segment
            if self.emit_partial:
                out.append(self._event(seg, seg.next_end * HOP_LENGTH, final=False))
            seg.next_end += self._info.hop_frames
        if seg.end_frame is not None and not partial_only:
            end = seg.end_frame
            if seg.last_end is None or end - seg.last_end >= self.min_tail_frames:
                out += self._classify_window(seg, max(end, 1), tail=True)
                seg = self._segment
            out.append(self._event(seg, seg.end_sample, final=True))
            self._segment = None
        return out
