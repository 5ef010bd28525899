"""Streaming inference: audio chunks -> log-mel + speech segments -> windows -> model -> EmotionEvents.

Windows are fixed by absolute frame positions, never by how the audio was chunked: for a speech segment starting at
frame ``s``, windows end at ``s + first_frames``, then every ``hop_frames``, while the segment lasts; one last window
ends at the segment's end (if at least ``min_tail_frames`` after the previous one, or if the segment had none). Each
window is the ``window_frames`` log-mel frames before its end (frames before the stream began count as digital
silence). A segment's scores are the mean of its windows' probabilities. Partial events (``final=False``) are
emitted for every window while the segment goes on, one final event when it ends. So any chunking of the same audio
gives the same events.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .audio import StreamResampler, as_mono, check_rate
from .constants import HOP_LENGTH, LOG_FLOOR, N_MELS, SAMPLE_RATE
from .errors import AudioError
from .features import LogMelStream
from .runtime.base import Backend
from .types import EmotionEvent

SILENCE_LOGMEL = float(np.log10(LOG_FLOOR))  # what the features give for digital silence
HISTORY_FRAMES = 400  # log-mel frames kept beyond one window (covers the VAD's decision delay)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / max(temperature, 1e-6)
    z = np.exp(z - z.max())
    return (z / z.sum()).astype(np.float32)


@dataclass
class _Segment:
    index: int
    start_frame: int
    start_sample: int
    next_end: int  # frame at which the next window ends
    end_frame: int | None = None
    end_sample: int | None = None
    last_end: int | None = None
    probs: list = field(default_factory=list)


class Stream:
    """Per-stream state over a shared model. Create with :meth:`edgeser.Model.stream`."""

    def __init__(self, backend: Backend, segmenter_factory, *, min_tail_frames: int = 10, emit_partial: bool = True):
        self._backend = backend
        self._info = backend.info
        self._labels = tuple(self._info.labels)
        self._make_segmenter = segmenter_factory
        self.min_tail_frames = min_tail_frames
        self.emit_partial = emit_partial
        self.reset()

    # -- public -----------------------------------------------------------------------------------------------
    @property
    def labels(self) -> tuple[str, ...]:
        return self._labels

    @property
    def seconds(self) -> float:
        """Seconds of (16 kHz) audio accepted so far."""
        return self._n_samples / SAMPLE_RATE

    def reset(self) -> None:
        """Forget all audio: the stream is as new (same model, same settings; nothing random)."""
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
        self.window_probs: list[np.ndarray] = []  # every window's probabilities, in order (for classify())

    def accept(self, samples, sample_rate: int = SAMPLE_RATE) -> list[EmotionEvent]:
        """Feed audio (any length, dtype, layout accepted by edgeser.audio); return the events it completes."""
        if self._finished:
            raise AudioError("stream was flushed; call reset() to start a new one")
        rate = check_rate(sample_rate)
        if self._rate is None:
            self._rate, self._resampler = rate, StreamResampler(rate)
        elif rate != self._rate:
            raise AudioError(f"sample rate changed from {self._rate} to {rate} Hz within a stream; call reset()")
        x = as_mono(samples, allow_empty=True)
        x = self._resampler(x)
        return self._push(x, last=False)

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
                self._segment = _Segment(
                    index=self._n_segments,
                    start_frame=ev.sample // HOP_LENGTH,
                    start_sample=ev.sample,
                    next_end=ev.sample // HOP_LENGTH + self._info.first_frames,
                )
                self._n_segments += 1
            elif ev.kind == "end" and self._segment is not None:
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

    def _window(self, end: int) -> np.ndarray:
        w = self._info.window_frames
        a, b = end - w - self._frames_start, end - self._frames_start
        if a < 0 and self._frames_start > 0:
            raise RuntimeError("internal: window starts before the kept history")
        buf = self._frames[:, max(a, 0) : b]
        if buf.shape[1] < w:  # before the stream began: digital silence
            buf = np.concatenate([np.full((N_MELS, w - buf.shape[1]), SILENCE_LOGMEL, np.float32), buf], axis=1)
        return np.ascontiguousarray(buf[None])  # same bytes, same layout, whatever the chunking

    def _classify_window(self, seg: _Segment, end: int) -> None:
        probs = softmax(self._backend.run(self._window(end)), self._info.temperature)
        seg.probs.append(probs)
        seg.last_end = end
        self.window_probs.append(probs)

    def _event(self, seg: _Segment, end_sample: int, final: bool) -> EmotionEvent:
        mean = np.mean(seg.probs, axis=0)
        k = int(np.argmax(mean))
        return EmotionEvent(
            start=round(seg.start_sample / SAMPLE_RATE, 4),
            end=round(end_sample / SAMPLE_RATE, 4),
            label=self._labels[k],
            confidence=float(mean[k]),
            scores={lab: float(p) for lab, p in zip(self._labels, mean)},
            final=final,
            segment=seg.index,
        )

    def _run_due(self) -> list[EmotionEvent]:
        seg = self._segment
        if seg is None:
            return []
        out = []
        limit = self._n_frames if seg.end_frame is None else min(self._n_frames, seg.end_frame)
        while seg.next_end <= limit:
            self._classify_window(seg, seg.next_end)
            if self.emit_partial:
                out.append(self._event(seg, seg.next_end * HOP_LENGTH, final=False))
            seg.next_end += self._info.hop_frames
        if seg.end_frame is not None:
            end = seg.end_frame
            if seg.last_end is None or end - seg.last_end >= self.min_tail_frames:
                self._classify_window(seg, max(end, 1))
            out.append(self._event(seg, seg.end_sample, final=True))
            self._segment = None
        return out
