"""Faults: input devices that are missing, disappear or stall; callbacks that raise or block; stop() from anywhere and
restart; corrupt, truncated or future model files; and a source scan that the runtime never unpickles.

No sound card is needed: a fake ``sounddevice`` module stands in for PortAudio, and the listener's model is the fake
model of ``tests/test_listen.py`` (one partial event per block, one final event at flush).
"""

from __future__ import annotations

import ast
import json
import logging
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest

import edgeser
from edgeser.errors import AudioError, DeviceError, ModelError
from edgeser.listen import (
    NO_DEVICE_MESSAGE,
    ArraySource,
    MicrophoneSource,
    _ThreadSource,
    listen,
)
from tests.test_listen import FakeModel, ManualSource, block

ROOT = Path(__file__).resolve().parents[1]


def _threads_named(prefix):
    return [t for t in threading.enumerate() if t.name.startswith(prefix) and t.is_alive()]


# ------------------------------------------------------------------------------------------- a fake sounddevice


class FakeSd(types.ModuleType):
    """Just enough of sounddevice: devices, settings checks, and an InputStream whose 'device' delivers ``blocks``
    blocks and then disappears (PortAudio ends the stream and calls finished_callback) or stalls (stays active, no
    more audio)."""

    class PortAudioError(Exception):
        pass

    def __init__(self, devices=None, blocks=10, then="disappear"):
        super().__init__("sounddevice")
        self.devices = [{"name": "Fake USB mic", "index": 0, "hostapi": 0, "max_input_channels": 2,
                         "max_output_channels": 0, "default_samplerate": 48000.0}] if devices is None else devices
        self.default = types.SimpleNamespace(device=[0, -1])
        self.blocks, self.then = blocks, then
        self.streams = []
        sd = self

        class InputStream:
            def __init__(self, device, channels, samplerate, blocksize, dtype, callback, finished_callback):
                self.channels, self.blocksize = channels, blocksize
                self.callback, self.finished = callback, finished_callback
                self.active = False
                self._halt = threading.Event()
                self.thread = None
                sd.streams.append(self)

            def start(self):
                self.active = True
                self.thread = threading.Thread(target=self._run, name="fake-portaudio", daemon=True)
                self.thread.start()

            def _run(self):
                for _ in range(sd.blocks):
                    if self._halt.wait(0.002):
                        return
                    self.callback(np.zeros((self.blocksize, self.channels), np.float32), self.blocksize, None, None)
                if sd.then == "disappear":
                    self.active = False
                    self.finished()
                else:  # stall: active, silent
                    self._halt.wait()

            def stop(self):
                self._halt.set()
                self.active = False
                if self.thread is not None and self.thread is not threading.current_thread():
                    self.thread.join(2)

            def close(self):
                self.stop()

        self.InputStream = InputStream

    def query_devices(self, device=None, kind=None):
        inputs = [d for d in self.devices if d["max_input_channels"] > 0]
        if kind is None and device is None:
            return list(self.devices)
        if device is None:
            if not inputs:
                raise self.PortAudioError("Error querying device -1")
            return dict(inputs[0])
        for d in inputs:
            if d["index"] == device or (isinstance(device, str) and device.lower() in d["name"].lower()):
                return dict(d)
        raise ValueError(f"No input device matching {device!r}")

    def query_hostapis(self):
        return [{"name": "FakeAPI"}]

    def check_input_settings(self, **kw):
        pass


@pytest.fixture
def fake_sd(monkeypatch):
    def install(**kw):
        sd = FakeSd(**kw)
        monkeypatch.setitem(sys.modules, "sounddevice", sd)
        return sd

    return install


def test_no_input_device_is_a_clear_device_error(fake_sd):
    fake_sd(devices=[])
    with pytest.raises(DeviceError) as info:
        MicrophoneSource()
    assert str(info.value) == NO_DEVICE_MESSAGE
    with pytest.raises(DeviceError, match="no audio input device found"):
        listen(lambda e: None, model=FakeModel())


def test_unknown_device_names_it_and_says_what_to_do(fake_sd):
    fake_sd()
    with pytest.raises(DeviceError) as info:
        MicrophoneSource(device="Studio Condenser")
    msg = str(info.value)
    assert "'Studio Condenser'" in msg and "edgeser devices" in msg


def test_missing_portaudio_is_a_device_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *a, **k):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return real_import(name, *a, **k)

    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(DeviceError, match="needs the PortAudio library, which is not available") as info:
        MicrophoneSource()
    assert "libportaudio2" in str(info.value) and "--file" not in str(info.value)


def test_missing_sounddevice_names_the_extra_in_both_forms(monkeypatch, capsys):
    """No sounddevice: the Python error and `edgeser devices` say how to install the mic extra (package and clone
    forms) and do not suggest a --file option they do not have; the demo, which has one, adds it."""
    from edgeser import cli, demo

    monkeypatch.setitem(sys.modules, "sounddevice", None)  # `import sounddevice` raises ImportError
    with pytest.raises(DeviceError) as info:
        MicrophoneSource()
    msg = str(info.value)
    assert "pip install 'edgeser[mic]'" in msg and "pip install '.[mic]'" in msg and "--file" not in msg
    assert cli.main(["devices"]) == 2
    err = capsys.readouterr().err
    assert "edgeser[mic]" in err and "--file" not in err
    assert demo.main([]) == 2
    assert "--file F" in capsys.readouterr().err


@pytest.mark.parametrize("then", ["disappear", "stall"])
def test_microphone_disappearing_mid_stream_ends_cleanly(fake_sd, then, caplog):
    """The device delivers 20 blocks, then is unplugged (PortAudio ends the stream) or goes silent (stall): the
    listener reports a DeviceError (on_error and stop()), delivers the final event of what it had, and every thread
    ends -- no hang."""
    sd = fake_sd(blocks=20, then=then)
    src = MicrophoneSource(block_ms=30, stall_timeout=0.5)
    got, reported = [], []
    lst = listen(got.append, model=FakeModel(), source=src, on_error=reported.append)
    assert lst.wait(5), "listener hung after the device went away"
    assert isinstance(lst.error, DeviceError) and "Fake USB mic" in str(lst.error)
    assert ("disconnected" in str(lst.error)) if then == "disappear" else ("no audio" in str(lst.error))
    assert reported == [lst.error]  # reported as it ended, on the worker thread
    with pytest.raises(DeviceError):
        lst.stop()
    assert sum(not e.final for e in got) == 20 and got[-1].final
    assert not lst._worker.is_alive()
    assert not sd.streams[0].thread.is_alive() and not sd.streams[0].active
    time.sleep(0.3)
    assert not _threads_named("edgeser-mic-monitor")


class DyingSource(_ThreadSource):
    """A replay source whose reader raises after ``n`` blocks (a network stream or a device that disappears)."""

    sample_rate = 16000

    def __init__(self, n, exc):
        super().__init__(realtime=False, block_ms=30)
        self.n, self.exc = n, exc

    def _blocks(self):
        for _ in range(self.n):
            yield np.zeros(480, np.float32)
        raise self.exc


@pytest.mark.parametrize("exc", [OSError("[Errno 19] No such device"), AudioError("stream truncated"),
                                 RuntimeError("driver crashed")])
def test_source_raising_after_n_chunks_is_reported_and_stops(exc, caplog):
    got = []
    with caplog.at_level(logging.ERROR, logger="edgeser.listen"):
        lst = listen(got.append, model=FakeModel(), source=DyingSource(7, exc))
        assert lst.wait(5), "listener hung after its source raised"
    err = lst.error
    assert isinstance(err, AudioError if isinstance(exc, AudioError) else DeviceError)
    assert str(exc) in str(err)
    # without on_error the error is logged when the listener ends
    assert any("listening ended by an error" in r.getMessage() and str(exc) in r.getMessage() for r in caplog.records)
    assert sum(not e.final for e in got) == 7 and got[-1].final  # what was captured is kept
    with pytest.raises(type(err)):
        lst.join()
    lst.stop()  # raised once already: stop() is quiet now
    assert not lst._worker.is_alive() and not lst.source._thread.is_alive()


def test_inference_error_is_reported_once_on_error():
    reported = []
    lst = listen(lambda e: None, model=FakeModel(fail_at=3), source=ArraySource(block(16000), 16000),
                 on_error=reported.append)
    assert lst.wait(5)
    assert len(reported) == 1 and reported[0] is lst.error and isinstance(lst.error, AudioError)


# --------------------------------------------------------------------------------------------------------- callbacks


def test_callback_and_on_error_raising_keep_listening(caplog):
    def cb(e):
        raise KeyError("user bug")

    def on_error(exc):
        raise ValueError("the error handler is buggy too")

    with caplog.at_level(logging.ERROR, logger="edgeser.listen"):
        lst = listen(cb, model=FakeModel(), source=ArraySource(block(4800), 16000), on_error=on_error)
        assert lst.wait(5)
        lst.stop()
    assert lst.error is None and lst.callback_errors == lst.events == 11
    assert sum("on_error raised" in r.getMessage() for r in caplog.records) == 11


def test_callback_blocking_for_seconds_drops_with_a_bound(caplog):
    """A device pushes 30 ms blocks (never waiting, as PortAudio's callback) while the user's callback blocks for
    1.2 s: the queue never holds more than its bound, the blocks that do not fit are dropped and counted, one warning
    is logged, and once the callback returns listening goes on and ends cleanly."""
    release = threading.Event()
    first = threading.Event()
    got = []

    def cb(e):
        got.append(e)
        if not first.is_set():
            first.set()
            release.wait(1.2)

    src = ManualSource()
    with caplog.at_level(logging.WARNING, logger="edgeser.listen"):
        lst = listen(cb, model=FakeModel(), source=src, block_ms=30, queue_seconds=0.3)  # room for 10 blocks
        bound = lst._queue.maxsize
        assert bound == 10
        pushed = taken = 0
        longest = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.5:  # a fast device: far more than real time
            taken += bool(src.push(block()))
            pushed += 1
            longest = max(longest, lst.queued_blocks)
            time.sleep(0.002)
        assert longest <= bound
        assert lst.dropped_blocks == pushed - taken > 0
        src.push(None)
        assert lst.wait(10)
        lst.stop()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "dropping" in r.getMessage()]
    assert len(warnings) == 1
    assert len(got) == taken + 1 and got[-1].final  # every block taken was processed, then the final event


# ------------------------------------------------------------------------------------------------- stop and restart


def test_stop_from_many_threads_at_once():
    got = []
    lst = listen(got.append, model=FakeModel(), source=ArraySource(block(16000 * 30), 16000, realtime=True))
    time.sleep(0.2)
    errors = []

    def stop():
        try:
            lst.stop(timeout=5)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=stop) for _ in range(8)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert time.monotonic() - t0 < 5 and not any(t.is_alive() for t in threads)
    assert not errors and not lst.running and not lst._worker.is_alive()
    assert sum(e.final for e in got) == 1 and got[-1].final


def test_stop_from_the_source_thread_and_from_on_error():
    holder = {}

    class StopsItself(_ThreadSource):
        sample_rate = 16000

        def _blocks(self):
            for i in range(1000):
                if i == 5:
                    holder["l"].stop()  # from the source's own thread
                yield np.zeros(480, np.float32)

    lst = listen(lambda e: None, model=FakeModel(), source=StopsItself(False, 30), start=False)
    holder["l"] = lst
    lst.start()
    assert lst.wait(5)
    lst.stop()

    def on_error(exc):
        holder["m"].stop()  # from the worker thread, while reporting

    def cb(e):
        raise RuntimeError("x")

    m = listen(cb, model=FakeModel(), source=ArraySource(block(16000 * 30), 16000, realtime=True),
               on_error=on_error, start=False)
    holder["m"] = m
    m.start()
    assert m.wait(5)
    m.stop()
    assert m.error is None and m.callback_errors >= 1


def test_restart_after_stop_and_after_an_error():
    got = []
    model = FakeModel()
    lst = listen(got.append, model=model, source=ArraySource(block(4800), 16000, block_ms=30))
    assert lst.wait(5)
    lst.stop()
    first = list(got)
    assert len(first) == 11 and first[-1].final
    lst.start()  # again: the source replays, the stream starts afresh
    assert lst.wait(5)
    lst.stop()
    assert got[11:] == first and lst.events == 22
    assert not lst._worker.is_alive()

    # a run that ended by an error can be started again; the error is cleared
    src = DyingSource(3, OSError("gone"))
    lst = listen(lambda e: None, model=FakeModel(), source=src)
    assert lst.wait(5) and isinstance(lst.error, DeviceError)
    src.n, src.exc = 4, OSError("gone again")
    lst.start()
    assert lst.wait(5)
    assert "gone again" in str(lst.error)
    with pytest.raises(DeviceError, match="gone again"):
        lst.stop()


def test_stop_before_start_then_start_listens():
    got = []
    lst = listen(got.append, model=FakeModel(), source=ArraySource(block(960), 16000), start=False)
    lst.stop()  # nothing to stop
    lst.start()
    assert lst.wait(5)
    lst.stop()
    assert len(got) == 3 and got[-1].final


def test_start_while_running_is_a_no_op():
    src = ManualSource()
    lst = listen(lambda e: None, model=FakeModel(), source=src)
    worker = lst._worker
    assert lst.start() is lst and lst._worker is worker
    lst.stop()


# ----------------------------------------------------------------------------------------------------- model files

DEFAULT = ROOT / "edgeser" / "models" / "default"


TRUNCATED = [("onnx", f, ("corrupt, truncated or not ONNX",)) for f in (0.0, 0.01, 0.5, 0.99)] + [
    ("pte", f, ("corrupt, truncated", "not an ExecuTorch program")) for f in (0.01, 0.5, 0.99)]


@pytest.mark.parametrize("suffix, fraction, words", TRUNCATED)
def test_truncated_model_is_a_model_error(tmp_path, suffix, fraction, words):
    raw = (DEFAULT / f"edgeser-default.{suffix}").read_bytes()
    p = tmp_path / f"cut.{suffix}"
    p.write_bytes(raw[: int(len(raw) * fraction)])
    with pytest.raises(ModelError) as info:
        edgeser.load(p)
    msg = str(info.value)
    assert p.name in msg and any(w in msg for w in words)


def test_onnx_with_garbage_header_is_a_model_error(tmp_path):
    raw = bytearray((DEFAULT / "edgeser-default.onnx").read_bytes())
    raw[:4096] = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    p = tmp_path / "garbage.onnx"
    p.write_bytes(bytes(raw))
    with pytest.raises(ModelError, match="garbage.onnx"):
        edgeser.load(p)


@pytest.fixture(scope="module")
def onnx_proto():
    import onnx

    return onnx.load(str(DEFAULT / "edgeser-default.onnx"))


def _save_with_meta(proto, path, edit):
    import onnx

    m = type(proto)()
    m.CopyFrom(proto)
    entry = next(e for e in m.metadata_props if e.key == "edgeser")
    meta = json.loads(entry.value)
    edit(meta)
    entry.value = json.dumps(meta)
    onnx.save(m, str(path))
    return path


def test_metadata_schema_from_the_future(tmp_path, onnx_proto):
    p = _save_with_meta(onnx_proto, tmp_path / "future.onnx", lambda m: m.update(schema=2))
    with pytest.raises(ModelError) as info:
        edgeser.load(p)
    msg = str(info.value)
    assert "future.onnx" in msg and "schema 2 is newer" in msg and "upgrade edgeser" in msg


@pytest.mark.parametrize("edit, words", [
    (lambda m: m.update(window_frames=100), "describes windows of shape [1, 80, 100]"),
    (lambda m: m.update(window_frames="200"), "window_frames must be an integer"),
    (lambda m: m.update(labels=["a", "a"]), "distinct"),
    (lambda m: m.update(labels=[1, 2, 3, 4]), "distinct"),
    (lambda m: m.update(temperature=0), "temperature"),
    (lambda m: m.pop("labels"), "incomplete"),
    (lambda m: m.update(input_name="mel"), "not in the graph"),
    (lambda m: m.update(output_name="probs"), "not in the graph"),
    (lambda m: m.update(sample_rate=8000), "front end does not produce"),
    (lambda m: m.update(aggregate="max"), "aggregate must be one of 'mean', 'mean_logits', 'last'"),
], ids=["window-100", "window-str", "labels-dup", "labels-int", "temperature-0", "no-labels", "input-name",
        "output-name", "rate-8k", "aggregate-max"])
def test_metadata_that_does_not_fit_is_a_model_error_at_load(tmp_path, onnx_proto, edit, words):
    p = _save_with_meta(onnx_proto, tmp_path / "odd.onnx", edit)
    with pytest.raises(ModelError, match="odd.onnx") as info:
        edgeser.load(p)
    assert words in str(info.value)


def test_pte_sidecar_schema_from_the_future(tmp_path):
    from edgeser.runtime.executorch import ExecuTorchBackend

    meta = json.loads((DEFAULT / "edgeser-default.pte.json").read_text())
    meta["schema"] = 3
    p = tmp_path / "m.pte"
    (tmp_path / "m.pte.json").write_text(json.dumps(meta))
    program = types.SimpleNamespace(method_names=["forward"])  # a program without the metadata method
    with pytest.raises(ModelError, match="schema 3 is newer"):
        ExecuTorchBackend._read_info(program, p)


# ------------------------------------------------------------------------------------------------- never unpickle


def _calls(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
            kw = {k.arg: k.value for k in node.keywords}
            yield node, owner, name, kw


def _true(v) -> bool:
    return isinstance(v, ast.Constant) and v.value is True


def test_runtime_never_unpickles():
    """edgeser/ (the runtime users install) imports no pickle-like loader and never loads with pickling allowed."""
    bad = []
    for path in sorted((ROOT / "edgeser").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                for m in mods:
                    if m and m.split(".")[0] in ("pickle", "cPickle", "dill", "joblib", "shelve", "marshal",
                                                   "cloudpickle"):
                        bad.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {m}")
        for node, owner, name, kw in _calls(path):
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            if owner == "torch" and name == "load":
                bad.append(f"{where} torch.load")
            if name == "load" and owner in ("np", "numpy") and _true(kw.get("allow_pickle")):
                bad.append(f"{where} np.load(allow_pickle=True)")
            if name in ("loads", "load") and owner in ("pickle", "dill", "joblib", "marshal"):
                bad.append(f"{where} {owner}.{name}")
    assert not bad, bad


def test_training_loads_checkpoints_with_weights_only():
    """train/, export/ and benchmarks/ load every torch checkpoint with weights_only=True and never allow pickles in
    np.load."""
    bad, seen = [], 0
    for d in ("train", "export", "benchmarks"):
        for path in sorted((ROOT / d).rglob("*.py")):
            for node, owner, name, kw in _calls(path):
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                if owner == "torch" and name == "load":
                    seen += 1
                    if not _true(kw.get("weights_only")):
                        bad.append(f"{where} torch.load without weights_only=True")
                if name == "load" and owner in ("np", "numpy") and "allow_pickle" in kw and not (
                        isinstance(kw["allow_pickle"], ast.Constant) and kw["allow_pickle"].value is False):
                    bad.append(f"{where} np.load(allow_pickle=...)")
                if owner in ("pickle", "dill", "joblib") and name in ("load", "loads"):
                    bad.append(f"{where} {owner}.{name}")
    assert not bad, bad
    assert seen >= 3  # the scan does see the checkpoint loads
