"""edgeser.listen: the threaded listener, its sources and its error handling. No model and no sound card needed: a
fake model stands in for edgeser.model (one partial event per accept() call, one final event at flush())."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest

from edgeser.errors import AudioError, DeviceError, EdgeserError
from edgeser.listen import ArraySource, FileSource, Listener, MicrophoneSource, list_devices, listen
from edgeser.types import EmotionEvent

LABELS = ("angry", "happy", "neutral", "sad")


class FakeStream:
    """One partial event per accept() call; flush() closes the segment with one final event."""

    def __init__(self, fail_at: int | None = None):
        self.samples = 0
        self.calls = 0
        self.rates = set()
        self.fail_at = fail_at
        self.flushed = 0

    def _event(self, final: bool) -> EmotionEvent:
        rate = next(iter(self.rates)) if self.rates else 16000
        scores = {k: (0.7 if k == "happy" else 0.1) for k in LABELS}
        return EmotionEvent(0.0, self.samples / rate, "happy", 0.7, scores, final, 0)

    def accept(self, samples, sample_rate):
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise AudioError("inference blew up")
        a = np.asarray(samples)
        self.samples += a.shape[0]
        self.rates.add(sample_rate)
        return [self._event(False)]

    def flush(self):
        self.flushed += 1
        return [self._event(True)] if self.samples else []

    def reset(self):
        self.samples = 0


class FakeModel:
    labels = LABELS
    info = {"name": "fake"}

    def __init__(self, **kw):
        self.kw = kw
        self.streams: list[FakeStream] = []

    def stream(self):
        s = FakeStream(**self.kw)
        self.streams.append(s)
        return s


class ManualSource:
    """A mic-like source driven by the test: the test calls ``push`` (non-blocking, as the PortAudio callback)."""

    def __init__(self, sample_rate=16000):
        self.sample_rate = sample_rate
        self.push = None
        self.stopped = 0

    def start(self, push):
        self.push = push

    def stop(self):
        self.stopped += 1


def block(n=480):
    return np.zeros(n, dtype=np.float32)


def test_callback_gets_events_from_array_source():
    got = []
    model = FakeModel()
    x = (0.1 * np.sin(np.arange(16000) / 10)).astype(np.float32)
    lst = listen(got.append, model=model, source=ArraySource(x, 16000, block_ms=100))
    assert lst.wait(10)
    assert not lst.running
    lst.stop()  # no error
    assert lst.error is None
    assert len(got) == 11 and sum(e.final for e in got) == 1 and got[-1].final
    assert all(isinstance(e, EmotionEvent) for e in got)
    s = model.streams[0]
    assert s.samples == 16000 and s.rates == {16000} and s.flushed == 1
    assert lst.dropped_blocks == 0 and lst.events == 11


def test_array_source_mixes_down_and_keeps_rate():
    model = FakeModel()
    x = (np.ones((8000, 2)) * 1000).astype(np.int16)
    lst = listen(lambda e: None, model=model, source=ArraySource(x, 8000))
    assert lst.wait(10)
    lst.stop()
    assert model.streams[0].samples == 8000 and model.streams[0].rates == {8000}
    with pytest.raises(AudioError):
        ArraySource(np.zeros(0), 16000)
    with pytest.raises(AudioError):
        ArraySource(np.zeros(10), 0)


def test_callback_exception_reported_and_stream_continues():
    errors, got = [], []

    def cb(e):
        got.append(e)
        if len(got) in (1, 3):
            raise RuntimeError("user bug")

    lst = listen(cb, model=FakeModel(), source=ArraySource(block(4800), 16000, block_ms=30), on_error=errors.append)
    assert lst.wait(10)
    lst.stop()  # a callback error is not a listener error
    assert lst.error is None
    assert lst.callback_errors == 2 and len(errors) == 2 and all(isinstance(x, RuntimeError) for x in errors)
    assert got[-1].final and len(got) == 11


def test_callback_exception_logged_without_on_error(caplog):
    def cb(e):
        raise ValueError("boom")

    with caplog.at_level(logging.ERROR, logger="edgeser.listen"):
        lst = listen(cb, model=FakeModel(), source=ArraySource(block(960), 16000))
        assert lst.wait(10)
        lst.stop()
    assert lst.callback_errors == 3
    recs = [r for r in caplog.records if r.exc_info and isinstance(r.exc_info[1], ValueError)]
    assert len(recs) == 3


def test_stop_from_another_thread_flushes_final_event():
    got = []
    x = block(16000 * 30)  # 30 s replayed in real time: only stop() can end it quickly
    lst = listen(got.append, model=FakeModel(), source=ArraySource(x, 16000, realtime=True))
    t0 = time.monotonic()
    threading.Timer(0.3, lst.stop).start()
    assert lst.wait(5)
    assert time.monotonic() - t0 < 3
    lst.stop()  # idempotent, from this thread too
    lst.stop()
    assert not lst.running
    assert got and got[-1].final and sum(e.final for e in got) == 1


def test_stop_from_inside_callback_does_not_deadlock():
    got = []
    holder = {}

    def cb(e):
        got.append(e)
        if len(got) == 2:
            holder["l"].stop()  # returns at once; the worker ends after this callback returns

    lst = listen(cb, model=FakeModel(), source=ArraySource(block(16000 * 30), 16000, realtime=True), start=False)
    holder["l"] = lst
    assert not lst.running
    lst.start()
    assert lst.wait(5), "listener did not end after stop() from the callback"
    lst.stop()
    assert got[-1].final and sum(e.final for e in got) == 1
    assert lst.error is None


def test_blocked_callback_tiny_queue_drops_blocks(caplog):
    release = threading.Event()
    entered = threading.Event()
    got = []

    def cb(e):
        got.append(e)
        entered.set()
        release.wait(10)

    src = ManualSource()
    with caplog.at_level(logging.WARNING, logger="edgeser.listen"):
        lst = listen(cb, model=FakeModel(), source=src, block_ms=30, queue_seconds=0.1)  # room for 4 blocks
        maxsize = lst._queue.maxsize
        assert maxsize == 4
        assert src.push(block())
        assert entered.wait(5)  # the worker is now stuck in the callback
        n = 200
        t0 = time.monotonic()
        taken = sum(bool(src.push(block())) for _ in range(n))
        assert time.monotonic() - t0 < 2  # push never blocks
        assert lst.queued_blocks <= maxsize  # no unbounded growth
        assert taken <= maxsize
        assert lst.dropped_blocks == n - taken >= n - maxsize
        release.set()
        lst.stop(timeout=10)
    assert not lst.running
    assert got[-1].final
    warnings = [r for r in caplog.records if "dropping" in r.getMessage()]
    assert len(warnings) == 1  # warned once


def test_no_device_raises_device_error():
    with pytest.raises(DeviceError) as info:
        MicrophoneSource(device=9999)
    msg = str(info.value)
    assert "device" in msg.lower() and len(msg) > 20
    with pytest.raises(DeviceError):
        listen(lambda e: None, model=FakeModel(), device=9999)


def test_no_device_message_on_machine_without_input_devices():
    try:
        devices = list_devices()
    except DeviceError as exc:  # no PortAudio at all: also a clear DeviceError
        assert "PortAudio" in str(exc) or "sounddevice" in str(exc)
        return
    assert all({"index", "name", "channels", "default_samplerate"} <= set(d) for d in devices)
    if devices:
        pytest.skip("this machine has input devices")
    with pytest.raises(DeviceError, match="no audio input device found"):
        MicrophoneSource()


class FailingSource:
    """Pushes a few blocks from its own thread, then the 'device disappears'."""

    sample_rate = 16000

    def __init__(self, exc):
        self.exc = exc
        self.thread = None

    def start(self, push):
        def run():
            for _ in range(3):
                push(block())
                time.sleep(0.01)
            push.fail(self.exc)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def stop(self):
        pass


@pytest.mark.parametrize("exc", [DeviceError("input device disappeared"), OSError("device unplugged")])
def test_failing_source_surfaces_as_error(exc):
    got = []
    lst = listen(got.append, model=FakeModel(), source=FailingSource(exc))
    assert lst.wait(5), "listener hung after its source failed"
    assert isinstance(lst.error, DeviceError)
    assert "disappeared" in str(lst.error) or "unplugged" in str(lst.error)
    with pytest.raises(DeviceError):
        lst.stop()
    lst.stop()  # raised once; stop() stays idempotent
    assert lst.error is not None
    assert got and got[-1].final  # what was captured is still flushed


def test_source_failing_to_start_raises():
    class BadStart(ManualSource):
        def start(self, push):
            raise OSError("cannot open")

    with pytest.raises(DeviceError, match="cannot open"):
        listen(lambda e: None, model=FakeModel(), source=BadStart())


def test_inference_error_is_reraised_by_join_and_exit():
    lst = listen(lambda e: None, model=FakeModel(fail_at=3), source=ArraySource(block(16000), 16000))
    assert lst.wait(5)
    assert isinstance(lst.error, AudioError)
    with pytest.raises(AudioError):
        lst.join()

    with pytest.raises(AudioError, match="blew up"):
        with listen(lambda e: None, model=FakeModel(fail_at=2), source=ArraySource(block(16000), 16000)) as lst2:
            lst2.wait(5)


def test_context_manager_and_push_none_ends():
    got = []
    src = ManualSource()
    with listen(got.append, model=FakeModel(), source=src) as lst:
        assert lst.running
        src.push(block())
        src.push(block())
        src.push(None)  # end of source
        assert lst.wait(5)
    assert [e.final for e in got] == [False, False, True]
    assert src.stopped == 1
    assert not src.push(block())  # pushes after the end are ignored


def test_file_source_fast_and_realtime(tmp_path):
    import soundfile as sf

    path = tmp_path / "a.wav"
    sf.write(path, (0.1 * np.random.default_rng(0).standard_normal(6000)).astype(np.float32), 24000)
    got = []
    model = FakeModel()
    lst = listen(got.append, model=model, source=FileSource(path, realtime=False, block_ms=20))
    assert lst.wait(5)
    lst.stop()
    assert model.streams[0].samples == 6000 and model.streams[0].rates == {24000}
    assert got[-1].final and len(got) == 14  # 13 blocks of 480 + final

    t0 = time.monotonic()
    lst = listen(lambda e: None, model=FakeModel(), source=FileSource(path, realtime=True))
    assert lst.wait(5)
    lst.stop()
    assert time.monotonic() - t0 >= 0.2  # 0.25 s of audio, played in real time

    long = tmp_path / "long.wav"
    sf.write(long, np.zeros(48000, np.float32), 24000)  # 2 s
    t0 = time.monotonic()
    model = FakeModel()
    lst = listen(lambda e: None, model=model, source=FileSource(long, realtime=True, speed=8))
    assert lst.wait(5)
    lst.stop()
    took = time.monotonic() - t0
    assert 0.2 <= took < 1.5 and model.streams[0].samples == 48000  # 2 s of audio paced 8x faster: ~0.25 s
    with pytest.raises(AudioError, match="speed must be positive"):
        FileSource(long, speed=0)

    with pytest.raises(AudioError, match="no such audio file"):
        FileSource(tmp_path / "missing.wav")


def test_listener_rejects_bad_arguments():
    with pytest.raises(TypeError):
        Listener(None, model=FakeModel(), source=ManualSource())
    with pytest.raises(ValueError):
        Listener(print, model=FakeModel(), source=ManualSource(), queue_seconds=0)
    assert issubclass(DeviceError, EdgeserError)


def test_listen_sets_up_the_stream_as_model_stream_does():
    """adapt / abstain_below / split_on_change reach Model.stream; left unset, the model's defaults apply."""
    class Recording(FakeModel):
        def stream(self, **kw):
            self.stream_kw = kw
            return super().stream()

    m = Recording()
    listen(print, model=m, source=ManualSource(), start=False, split_on_change=False, adapt="off")
    assert m.stream_kw == {"split_on_change": False, "adapt": "off"}
    listen(print, model=m, source=ManualSource(), start=False)
    assert m.stream_kw == {}
