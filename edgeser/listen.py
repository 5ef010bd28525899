"""Live listening: audio from a microphone (or a file/array replayed like one) -> emotion events -> your callback.

Threading model::

    audio source thread (PortAudio callback, file reader, ...)
        push(block): copy + put_nowait into a bounded queue; never blocks; a full queue drops the block
                     (counted in ``Listener.dropped_blocks``, warned about once)
    worker thread (one)
        block = queue.get(); events = stream.accept(block, rate); callback(event) for each event
        at the end (stop(), or the source ran out): stream.flush() -> the last segment's final event

An exception raised by the user's callback is reported (``on_error(exc)``, else logged with its traceback), counted in
``Listener.callback_errors`` and does not stop listening. An error of the source (device gone) or of inference ends the
listener: the audio already queued is still processed (and, after a source error, the last segment's final event
delivered), then the error is reported on the worker thread (``on_error(exc)``, else logged as an error), kept in
``Listener.error`` and raised again (once) by ``stop()``, ``join()`` and ``__exit__``.

``start()`` after the listener has ended (stopped, source ended or failed) starts it again: a fresh stream state,
``error`` cleared, the counters going on counting.

A source is any object with ``sample_rate`` (Hz of the blocks it pushes), ``start(push)`` and ``stop()``. ``push`` is
the same enqueue function the microphone callback uses; it also has:

* ``push(block, wait=True)``: block until the queue has room instead of dropping (for sources that are not real time);
* ``push.close()`` (or ``push(None)``): the source has ended; the listener drains, flushes and ends by itself;
* ``push.fail(exc)``: the source failed; the listener ends and reports ``exc`` (non-edgeser errors become DeviceError).

``stop()`` must make the source stop pushing and return promptly; pushes after the end are ignored.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
import time
from typing import Any, Callable

import numpy as np

from .errors import AudioError, DeviceError, EdgeserError, install_hint

logger = logging.getLogger(__name__)

__all__ = [
    "Listener",
    "listen",
    "MicrophoneSource",
    "FileSource",
    "ArraySource",
    "list_devices",
]

NO_DEVICE_MESSAGE = "no audio input device found; connect a microphone"  # front ends add their own alternative

_WAKE = object()  # queue item that only wakes the worker up


# --------------------------------------------------------------------------------------------------------------------
# sounddevice / PortAudio


def _import_sounddevice():
    """Import sounddevice, turning a missing package or PortAudio library into a DeviceError."""
    try:
        import sounddevice as sd
    except ImportError as exc:
        raise DeviceError(
            f"microphone input needs the 'sounddevice' package, which is not installed: {install_hint('mic')}; "
            "files and arrays need no microphone"
        ) from exc
    except OSError as exc:  # sounddevice raises OSError when the PortAudio library cannot be found
        raise DeviceError(
            f"microphone input needs the PortAudio library, which is not available ({exc}): install it "
            "(`apt-get install libportaudio2` on Debian/Ubuntu, `brew install portaudio` on macOS); files and arrays "
            "need no microphone"
        ) from exc
    return sd


def list_devices() -> list[dict]:
    """The audio input devices PortAudio sees: ``[{"index", "name", "channels", "default_samplerate",
    "hostapi", "default"}]``. Raises :class:`DeviceError` if PortAudio is unavailable. May be empty."""
    sd = _import_sounddevice()
    try:
        devices = sd.query_devices()
        hostapis = sd.query_hostapis()
    except Exception as exc:  # PortAudioError and friends
        raise DeviceError(f"cannot list audio devices ({exc})") from exc
    try:
        default_in = sd.default.device[0]
    except Exception:
        default_in = -1
    out = []
    for i, d in enumerate(devices):
        if int(d.get("max_input_channels", 0)) <= 0:
            continue
        try:
            hostapi = hostapis[d["hostapi"]]["name"]
        except Exception:
            hostapi = ""
        out.append(
            {
                "index": i,
                "name": str(d["name"]),
                "channels": int(d["max_input_channels"]),
                "default_samplerate": float(d["default_samplerate"]),
                "hostapi": hostapi,
                "default": i == default_in,
            }
        )
    return out


# --------------------------------------------------------------------------------------------------------------------
# sources


class MicrophoneSource:
    """Live audio from an input device through sounddevice (PortAudio).

    ``device``: index or (part of a) name as listed by :func:`list_devices`; None = the system default input.
    ``sample_rate``: None = the device's default rate (the stream resamples to 16 kHz itself).
    The device is checked here, so a missing device fails at construction with :class:`DeviceError`.
    If the device stops delivering audio (unplugged) for ``stall_timeout`` seconds, or PortAudio ends the stream, the
    listener ends with a DeviceError instead of hanging.
    """

    def __init__(self, device=None, sample_rate=None, block_ms: float = 30, *, channels: int = 1,
                 stall_timeout: float = 5.0):
        sd = _import_sounddevice()
        self._sd = sd
        if isinstance(device, str) and device.strip().lstrip("-").isdigit():
            device = int(device)
        try:
            info = sd.query_devices(device, "input")
        except (ValueError, sd.PortAudioError) as exc:
            if device is None or not _has_input_devices(sd):
                raise DeviceError(NO_DEVICE_MESSAGE) from exc
            raise DeviceError(
                f"audio input device {device!r} not found ({exc}); run `edgeser devices` to list input devices"
            ) from exc
        except Exception as exc:
            raise DeviceError(f"cannot query audio input device {device!r} ({exc})") from exc
        if int(info.get("max_input_channels", 0)) <= 0:
            raise DeviceError(f"audio device {info.get('name', device)!r} has no input channels")
        self.device_info = dict(info)
        self.device = int(info["index"]) if "index" in info else device
        self.name = str(info.get("name", device))
        rate = sample_rate if sample_rate is not None else info.get("default_samplerate")
        try:
            rate = int(round(float(rate)))
        except (TypeError, ValueError):
            raise DeviceError(f"invalid sample rate {sample_rate!r} for device {self.name!r}") from None
        if rate <= 0:
            raise DeviceError(f"invalid sample rate {rate} for device {self.name!r}")
        self.sample_rate = rate
        self.channels = max(1, min(int(channels), int(info["max_input_channels"])))
        if not (block_ms > 0):
            raise DeviceError(f"block_ms must be positive, got {block_ms!r}")
        self.blocksize = max(1, int(round(rate * block_ms / 1000.0)))
        self.stall_timeout = stall_timeout
        try:
            sd.check_input_settings(device=self.device, channels=self.channels, samplerate=rate, dtype="float32")
        except Exception as exc:
            raise DeviceError(f"audio input device {self.name!r} cannot record at {rate} Hz ({exc})") from exc
        self.overflows = 0  # blocks PortAudio reported as overflowed (audio lost before it reached us)
        self._stream = None
        self._stopped = threading.Event()
        self._monitor: threading.Thread | None = None
        self._last_block = 0.0

    def start(self, push) -> None:
        sd = self._sd
        self._stopped.clear()

        def callback(indata, frames, time_info, status):  # PortAudio thread: keep it minimal
            self._last_block = time.monotonic()
            if status and status.input_overflow:
                self.overflows += 1
            push(indata)

        def finished():
            if not self._stopped.is_set():
                push.fail(DeviceError(f"audio input stream of {self.name!r} ended unexpectedly "
                                      "(device disconnected?)"))

        try:
            stream = sd.InputStream(device=self.device, channels=self.channels, samplerate=self.sample_rate,
                                    blocksize=self.blocksize, dtype="float32", callback=callback,
                                    finished_callback=finished)
            self._last_block = time.monotonic()
            stream.start()
        except Exception as exc:  # PortAudioError, OSError, ...
            raise DeviceError(f"cannot open audio input device {self.name!r} ({exc})") from exc
        self._stream = stream
        self._monitor = threading.Thread(target=self._watch, args=(stream, push), name="edgeser-mic-monitor",
                                         daemon=True)
        self._monitor.start()

    def _watch(self, stream, push) -> None:
        while not self._stopped.wait(0.25):
            try:
                active = stream.active
            except Exception:
                active = False
            if not active and not self._stopped.is_set():
                push.fail(DeviceError(f"audio input stream of {self.name!r} stopped (device disconnected?)"))
                return
            if self.stall_timeout and time.monotonic() - self._last_block > self.stall_timeout:
                push.fail(DeviceError(f"no audio from input device {self.name!r} for {self.stall_timeout:g} s "
                                      "(device disconnected?)"))
                return

    def stop(self) -> None:
        self._stopped.set()
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.stop()
            except Exception as exc:
                logger.debug("stopping the input stream failed: %s", exc)
            try:
                stream.close()
            except Exception as exc:
                logger.debug("closing the input stream failed: %s", exc)
        mon = self._monitor
        if mon is not None and mon is not threading.current_thread():
            mon.join(1.0)


def _has_input_devices(sd) -> bool:
    try:
        return any(int(d.get("max_input_channels", 0)) > 0 for d in sd.query_devices())
    except Exception:
        return False


class _ThreadSource:
    """Base of sources that push from their own thread (file and array replay)."""

    sample_rate: int

    def __init__(self, realtime: bool, block_ms: float, speed: float = 1.0):
        if not (block_ms > 0):
            raise AudioError(f"block_ms must be positive, got {block_ms!r}")
        if not (speed > 0):
            raise AudioError(f"speed must be positive, got {speed!r}")
        self.realtime = bool(realtime)
        self.block_ms = float(block_ms)
        self.speed = float(speed)  # real-time pacing runs this many times faster (events keep the audio's time)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _blocks(self):  # yields (mono float32 block) at self.sample_rate
        raise NotImplementedError

    def start(self, push) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(push,), name=f"edgeser-{type(self).__name__}",
                                        daemon=True)
        self._thread.start()

    def _run(self, push) -> None:
        try:
            t0 = time.monotonic()
            sent = 0
            for block in self._blocks():
                if self._stop.is_set():
                    return
                if self.realtime:
                    due = t0 + sent / self.sample_rate / self.speed
                    delay = due - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        return
                if not push(block, wait=True):  # the listener ended
                    return
                sent += len(block)
            if self.realtime:  # let the last block "play" before ending, as a device would
                delay = t0 + sent / self.sample_rate / self.speed - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
            push.close()
        except BaseException as exc:  # noqa: BLE001 - reported to the listener
            push.fail(exc)

    def stop(self) -> None:
        self._stop.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join()


class FileSource(_ThreadSource):
    """Replays an audio file in blocks of ``block_ms``, in real time (``realtime=True``, like a microphone) or as fast
    as the listener takes it; the listener ends by itself (flush, ``wait()`` returns) when the file ends.
    A missing or unreadable file raises :class:`AudioError` here. ``speed`` > 1 replays real time faster (4: a 60 s
    file in 15 s), for demos and tests."""

    def __init__(self, path, realtime: bool = True, block_ms: float = 30, speed: float = 1.0):
        super().__init__(realtime, block_ms, speed)
        from .audio import file_info

        p, info = file_info(path)
        self.path = p
        self.sample_rate = int(info.samplerate)
        self.duration = float(info.frames) / info.samplerate if info.samplerate else 0.0

    def _blocks(self):
        from .audio import iter_file

        for block, _rate in iter_file(self.path, block_seconds=self.block_ms / 1000.0):
            yield block


class ArraySource(_ThreadSource):
    """Replays an in-memory signal (any dtype/layout :func:`edgeser.audio.prepare` accepts) in blocks of ``block_ms``;
    as fast as possible by default. The listener ends by itself at the end of the array."""

    def __init__(self, samples, rate, realtime: bool = False, block_ms: float = 30):
        super().__init__(realtime, block_ms)
        from .audio import as_mono, check_rate

        self.sample_rate = check_rate(rate)
        self.samples = as_mono(samples)  # AudioError for empty, NaN/inf, bad dtype or shape

    def _blocks(self):
        n = max(1, int(round(self.sample_rate * self.block_ms / 1000.0)))
        for i in range(0, len(self.samples), n):
            yield self.samples[i:i + n]


# --------------------------------------------------------------------------------------------------------------------
# the listener


class _Push:
    """The enqueue function handed to a source (see the module docstring)."""

    def __init__(self, listener: "Listener"):
        self._listener = listener

    def __call__(self, block, wait: bool = False) -> bool:
        return self._listener._push(block, wait)

    def close(self) -> None:
        self._listener._source_ended(None)

    def fail(self, exc: BaseException) -> None:
        self._listener._source_ended(exc)


class Listener:
    """Runs a model's stream over a live audio source on a worker thread and calls ``callback(event)`` for each
    :class:`~edgeser.types.EmotionEvent`. Build it with :func:`listen`. See the module docstring for the details.

    Attributes: ``dropped_blocks`` (blocks dropped because the queue was full), ``callback_errors`` (exceptions
    raised by the callback), ``events`` (events delivered), ``error`` (the error that ended the listener, or None),
    ``source``, ``model``, ``sample_rate``.
    """

    def __init__(self, callback: Callable[[Any], Any], *, model=None, device=None, sample_rate=None,
                 block_ms: float = 30, queue_seconds: float = 10.0, on_error: Callable[[BaseException], Any] | None = None,
                 source=None, adapt: str | None = None, abstain_below: float | str | None = None, calibration=None,
                 split_on_change: bool = True, emit_partial: bool = True):
        if not callable(callback):
            raise TypeError("callback must be callable")
        if not (block_ms > 0):
            raise ValueError(f"block_ms must be positive, got {block_ms!r}")
        if not (queue_seconds > 0):
            raise ValueError(f"queue_seconds must be positive, got {queue_seconds!r}")
        self._callback = callback
        self._on_error = on_error
        if model is None or isinstance(model, (str, os.PathLike)):
            from .model import load

            model = load(model)
        self.model = model
        if source is None:
            source = MicrophoneSource(device, sample_rate, block_ms)
        self.source = source
        self.sample_rate = source.sample_rate
        # only the options that differ from Model.stream's defaults (a stand-in model may take none)
        opts = {k: v for k, v in (("adapt", adapt), ("abstain_below", abstain_below)) if v is not None}
        opts.update({k: v for k, v in (("split_on_change", split_on_change), ("emit_partial", emit_partial))
                     if v is not None and v is not True})
        self._stream = model.stream(**opts)
        if calibration is not None:  # (samples, sample_rate) of the speaker's ordinary speech
            self._stream.calibrate(*calibration)
        self._queue: queue.Queue = queue.Queue(maxsize=max(2, int(math.ceil(queue_seconds * 1000.0 / block_ms))))
        self.dropped_blocks = 0
        self.callback_errors = 0
        self.events = 0
        self.error: BaseException | None = None
        self._error_raised = False
        self._warned_drop = False
        self._lock = threading.Lock()
        self._end = threading.Event()  # no more audio will be accepted; the worker drains, flushes and exits
        self._done = threading.Event()  # the worker has exited
        self._started = False
        self._stopping_source = False
        self._worker: threading.Thread | None = None

    # ---- public API ------------------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True from start() until the listener has ended (stopped, source ended or failed)."""
        return self._started and not self._done.is_set()

    @property
    def queued_blocks(self) -> int:
        return self._queue.qsize()

    def start(self) -> "Listener":
        """Start the worker and the source. Raises DeviceError if the source cannot start. Returns self.
        Does nothing while running; after the listener has ended, starts it again (fresh stream state)."""
        with self._lock:
            if self._started and not self._done.is_set():
                return self  # running
            if self._started:  # a restart: a fresh stream, no error; the counters go on
                self._stream.reset()
                self.error = None
                self._error_raised = False
                self._warned_drop = False
                self._drain()
            self._started = True
            self._end.clear()  # (a stop() before the first start() must not end this run at once)
            self._done.clear()
            self._stopping_source = False
        self._worker = threading.Thread(target=self._run, name="edgeser-listener", daemon=True)
        self._worker.start()
        try:
            self.source.start(_Push(self))
        except BaseException as exc:
            self._end.set()
            self._wake()
            self._worker.join()
            self._error_raised = True  # raised right here
            if isinstance(exc, EdgeserError) or not isinstance(exc, Exception):
                self.error = exc
                raise
            self.error = DeviceError(f"audio source failed to start ({type(exc).__name__}: {exc})")
            raise self.error from exc
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop listening: stop the source, process the audio already queued, flush the stream (so the last
        segment's final event is delivered) and join the worker. Idempotent; callable from any thread, including
        from inside the callback (then it returns at once and the worker ends after the callback returns).
        Raises the error that ended the listener, if any (once)."""
        self._end.set()
        self._stop_source()
        self._wake()
        if self._worker is not None and threading.current_thread() is self._worker:
            return
        if self._worker is not None:
            self._worker.join(timeout)
        self._raise_error()

    def join(self, timeout: float | None = None) -> None:
        """Wait until the listener ends by itself (source ended or failed, or stop() from elsewhere) and raise the
        error that ended it, if any (once). Does not stop it."""
        if self._worker is not None and threading.current_thread() is not self._worker:
            self._done.wait(timeout)
        if self._done.is_set():
            self._raise_error()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the listener has ended; True if it has. Never raises (see ``error``)."""
        if not self._started:
            return True
        if self._worker is not None and threading.current_thread() is self._worker:
            return self._done.is_set()
        return self._done.wait(timeout)

    def __enter__(self) -> "Listener":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.stop()
            return
        try:  # do not hide the exception of the with-body
            self.stop()
        except BaseException as err:  # noqa: BLE001
            logger.error("listener error while handling another exception: %s", err)

    def __repr__(self) -> str:
        state = "running" if self.running else ("ended" if self._started else "not started")
        return (f"<Listener {state} source={type(self.source).__name__} rate={self.sample_rate} "
                f"events={self.events} dropped_blocks={self.dropped_blocks} callback_errors={self.callback_errors}>")

    # ---- source side -----------------------------------------------------------------------------------------------

    def _push(self, block, wait: bool = False) -> bool:
        """Enqueue a copy of ``block``. Never blocks unless ``wait``. False if the block was not taken."""
        if block is None:
            self._source_ended(None)
            return False
        if self._end.is_set():
            return False
        item = np.array(block, copy=True)
        if wait:
            while True:
                try:
                    self._queue.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    if self._end.is_set():
                        return False
        try:
            self._queue.put_nowait(item)
            return True
        except queue.Full:
            self.dropped_blocks += 1
            if not self._warned_drop:
                self._warned_drop = True
                logger.warning("edgeser listener: audio queue full (callback or inference too slow); dropping "
                               "audio blocks (see Listener.dropped_blocks)")
            return False

    def _source_ended(self, exc: BaseException | None) -> None:
        if self._done.is_set() or self._end.is_set() and exc is None:
            return  # already ending (a late close/fail of a stopped source changes nothing)
        if exc is not None:
            if not isinstance(exc, EdgeserError) and isinstance(exc, Exception):
                err = DeviceError(f"audio source failed ({type(exc).__name__}: {exc})")
                err.__cause__ = exc
                exc = err
            self._set_error(exc)  # reported by the worker as it ends (never on the source's own thread)
        self._end.set()
        self._wake()

    def _wake(self) -> None:
        try:
            self._queue.put_nowait(_WAKE)
        except queue.Full:
            pass  # the worker is busy and will see the end flag

    def _stop_source(self) -> None:
        with self._lock:
            if self._stopping_source or not self._started:
                return
            self._stopping_source = True
        try:
            self.source.stop()
        except Exception as exc:
            logger.warning("stopping the audio source failed: %s", exc)

    # ---- worker ----------------------------------------------------------------------------------------------------

    def _run(self) -> None:
        flush = True
        try:
            q = self._queue
            while True:
                try:
                    item = q.get(timeout=0.1)
                except queue.Empty:
                    if self._end.is_set():
                        break
                    continue
                if item is not _WAKE:
                    try:
                        events = self._stream.accept(item, self.sample_rate)
                    except BaseException:
                        flush = False
                        raise
                    self._deliver(events)
                if self._end.is_set() and q.empty():
                    break
            if flush:
                self._deliver(self._stream.flush())
        except BaseException as exc:  # noqa: BLE001 - kept and raised by stop()/join()
            self._set_error(exc)
        finally:
            self._end.set()
            self._stop_source()
            self._drain()
            if self.error is not None:
                self._report(self.error)
            self._done.set()

    def _drain(self) -> None:
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass

    def _deliver(self, events) -> None:
        for event in events or ():
            self.events += 1
            try:
                self._callback(event)
            except Exception as exc:
                self.callback_errors += 1
                if self._on_error is not None:
                    try:
                        self._on_error(exc)
                    except Exception:
                        logger.exception("edgeser listener: on_error raised while reporting a callback error")
                else:
                    logger.error("edgeser listener: the callback raised an exception (listening goes on)",
                                 exc_info=exc)

    def _set_error(self, exc: BaseException) -> bool:
        """Keep the first error that ends the listener; True if ``exc`` is it."""
        with self._lock:
            if self.error is None:
                self.error = exc
                return True
            return False

    def _report(self, exc: BaseException) -> None:
        """Tell of the error that ended the listener: on_error(exc), else an error in the log."""
        if self._on_error is not None and isinstance(exc, Exception):
            try:
                self._on_error(exc)
                return
            except Exception:
                logger.exception("edgeser listener: on_error raised while reporting the error that ended listening")
        logger.error("edgeser listener: listening ended by an error: %s: %s", type(exc).__name__, exc)

    def _raise_error(self) -> None:
        with self._lock:
            if self.error is None or self._error_raised:
                return
            self._error_raised = True
            err = self.error
        raise err


def listen(callback: Callable[[Any], Any], *, model=None, device=None, sample_rate=None, block_ms: float = 30,
           queue_seconds: float = 10.0, on_error: Callable[[BaseException], Any] | None = None, source=None,
           start: bool = True, adapt: str | None = None, abstain_below: float | str | None = None,
           calibration=None, split_on_change: bool = True, emit_partial: bool = True) -> Listener:
    """Listen to the microphone (or ``source``) and call ``callback(event)`` for every emotion event.

    ``model``: a loaded model, a model path, or None for the default model. ``device``/``sample_rate``/``block_ms``
    configure the default :class:`MicrophoneSource` (ignored when ``source`` is given). ``queue_seconds``: how much
    audio may wait for the worker before blocks are dropped. ``on_error(exc)``: called for exceptions raised by the
    callback (default: logged), and for the error that ends listening (device gone, inference failed), which
    ``stop()``/``join()`` also raise. ``adapt`` ("running" / "off"), ``abstain_below`` (events under this confidence
    are labelled "uncertain"; "auto" = the model's recommended threshold) and ``calibration`` ((samples, sample_rate) of a few seconds of the speaker's ordinary
    speech), ``split_on_change`` (False: one event per speech segment, never cut where the emotion changes) and
    ``emit_partial`` (False: final events only) set up the stream as :meth:`edgeser.Model.stream` and
    :meth:`edgeser.Stream.calibrate` do (``sample_rate`` is the microphone's; a ``source`` brings its own).
    Returns the :class:`Listener`, started unless ``start=False``::

        with edgeser.listen(print) as listener:
            listener.wait(10)
    """
    listener = Listener(callback, model=model, device=device, sample_rate=sample_rate, block_ms=block_ms,
                        queue_seconds=queue_seconds, on_error=on_error, source=source, adapt=adapt,
                        abstain_below=abstain_below, calibration=calibration, split_on_change=split_on_change,
                        emit_partial=emit_partial)
    if start:
        listener.start()
    return listener
