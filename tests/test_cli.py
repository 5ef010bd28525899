"""edgeser.cli and edgeser.demo with a fake model: outputs, JSON, and errors -> one line on stderr + exit code 2."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeser.cli import main
from edgeser.errors import ModelError
from edgeser.types import EmotionEvent, EmotionResult

ROOT = Path(__file__).resolve().parents[1]
LABELS = ("angry", "happy", "neutral", "sad")
SCORES = {"angry": 0.1, "happy": 0.7, "neutral": 0.15, "sad": 0.05}


class FakeStream:
    """One partial event per accept() call, one final event at flush()."""

    def __init__(self):
        self.t = 0.0

    def accept(self, samples, sample_rate):
        self.t += np.asarray(samples).shape[0] / sample_rate
        return [EmotionEvent(0.0, self.t, "happy", 0.7, dict(SCORES), False, 0)]

    def flush(self):
        return [EmotionEvent(0.0, self.t, "happy", 0.7, dict(SCORES), True, 0)] if self.t else []


class FakeModel:
    labels = LABELS
    info = {"name": "fake"}

    def stream(self):
        return FakeStream()

    def classify(self, audio, sample_rate=None):
        if sample_rate is None:  # a path (the CLI streams files through Model.classify)
            import soundfile as sf

            return EmotionResult("happy", 0.7, dict(SCORES), sf.info(str(audio)).duration)
        return EmotionResult("happy", 0.7, dict(SCORES), len(audio) / sample_rate)


class BrokenModel(FakeModel):
    def classify(self, audio, sample_rate=None):
        raise ModelError("model file is corrupt")


@pytest.fixture
def wav(tmp_path):
    import soundfile as sf

    p = tmp_path / "speech.wav"
    sf.write(p, (0.1 * np.random.default_rng(0).standard_normal(8000)).astype(np.float32), 16000)
    return str(p)


def _one_line_error(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("command", ["classify", "analyze"])
def test_missing_file_is_exit_2_with_message(command, capsys, tmp_path):
    missing = str(tmp_path / "nope.wav")
    assert main([command, missing], model=FakeModel()) == 2
    cap = capsys.readouterr()
    line = _one_line_error(cap.err)
    assert "nope.wav" in line and "no such audio file" in line
    assert cap.out == ""


def test_classify_text_and_json(wav, capsys):
    assert main(["classify", wav], model=FakeModel()) == 0
    out = capsys.readouterr().out
    assert "happy" in out and "0.70" in out
    assert main(["classify", wav, "--json"], model=FakeModel()) == 0
    data = json.loads(capsys.readouterr().out)
    assert data[0]["file"] == wav and data[0]["label"] == "happy" and data[0]["scores"]["happy"] == 0.7


def test_several_files_one_missing(wav, capsys):
    assert main(["classify", wav, "missing.wav", "--json"], model=FakeModel()) == 2
    cap = capsys.readouterr()
    data = json.loads(cap.out)  # stdout stays valid JSON
    assert data[0]["label"] == "happy" and "error" in data[1]
    assert "missing.wav" in _one_line_error(cap.err)


def test_analyze_timeline_and_json(wav, capsys):
    assert main(["analyze", wav], model=FakeModel()) == 0
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if "happy" in ln]
    assert len(lines) == 1 and "0.00" in lines[0] and "0.50" in lines[0]  # final events only
    assert main(["analyze", wav, "--json"], model=FakeModel()) == 0
    data = json.loads(capsys.readouterr().out)
    assert data[0]["file"] == wav
    assert [e["final"] for e in data[0]["events"]] == [True]
    assert data[0]["events"][0]["end"] == pytest.approx(0.5)
    assert main(["analyze", wav, "--json", "--partial"], model=FakeModel()) == 0
    events = json.loads(capsys.readouterr().out)[0]["events"]
    assert events[-1]["final"] and not events[0]["final"]


def test_model_error_is_exit_2(wav, capsys):
    assert main(["classify", wav], model=BrokenModel()) == 2
    assert "corrupt" in _one_line_error(capsys.readouterr().err)


def test_usage_error_is_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["classify", "x.wav", "--backend", "tpu"])
    assert info.value.code == 2


def test_devices_command(capsys):
    code = main(["devices", "--json"])
    cap = capsys.readouterr()
    if code == 2:  # PortAudio missing: one clear line
        _one_line_error(cap.err)
    else:
        assert code == 0 and isinstance(json.loads(cap.out), list)


def test_python_m_edgeser_devices_no_traceback():
    r = subprocess.run([sys.executable, "-m", "edgeser", "devices"], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode in (0, 2)
    assert "Traceback" not in r.stderr


# ---- demo -----------------------------------------------------------------------------------------------------------


def test_demo_file_replay_plain_output(wav, capsys):
    from edgeser import demo

    out = io.StringIO()
    assert demo.main(["--file", wav, "--fast"], model=FakeModel(), out=out) == 0
    text = out.getvalue()
    assert "FINAL" in text and "partial" in text and "happy=0.70" in text
    assert "\x1b[" not in text  # not a TTY: no ANSI codes


def test_demo_tty_redraw(wav):
    from edgeser import demo

    class TTY(io.StringIO):
        encoding = "utf-8"

        def isatty(self):
            return True

    out = TTY()
    assert demo.main(["--file", wav, "--seconds", "5"], model=FakeModel(), out=out) == 0  # real time, 0.5 s
    text = out.getvalue()
    assert "\x1b[" in text and "happy" in text and "\u2588" in text


def test_demo_no_device_is_exit_2(capsys):
    from edgeser import demo

    assert demo.main(["--device", "9999"], model=FakeModel(), out=io.StringIO()) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "device" in line


def test_demo_missing_file_is_exit_2(capsys, tmp_path):
    from edgeser import demo

    assert demo.main(["--file", str(tmp_path / "nope.wav")], model=FakeModel(), out=io.StringIO()) == 2
    assert "no such audio file" in _one_line_error(capsys.readouterr().err)


def test_demo_seconds_stops(tmp_path):
    import time

    import soundfile as sf

    from edgeser import demo

    p = tmp_path / "long.wav"
    sf.write(p, np.zeros(16000 * 20, dtype=np.float32), 16000)  # 20 s in real time; --seconds ends it early
    t0 = time.monotonic()
    assert demo.main(["--file", str(p), "--seconds", "0.3"], model=FakeModel(), out=io.StringIO()) == 0
    assert time.monotonic() - t0 < 5


def test_adapt_and_abstain_options_reach_the_model(wav, capsys):
    """--adapt / --abstain-below go to Model.classify / Model.stream only when given; bad values are usage errors."""
    seen = []

    class Recording(FakeModel):
        def stream(self, **kw):
            seen.append(("stream", kw))
            return FakeStream()

        def classify(self, audio, sample_rate=None, **kw):
            seen.append(("classify", kw))
            return super().classify(audio, sample_rate)

    assert main(["classify", wav, "--abstain-below", "auto", "--adapt", "off"], model=Recording()) == 0
    assert main(["analyze", wav, "--abstain-below", "0.6"], model=Recording()) == 0
    assert main(["classify", wav], model=Recording()) == 0
    assert seen == [("classify", {"adapt": "off", "abstain_below": "auto"}), ("stream", {"abstain_below": 0.6}),
                    ("classify", {})]
    capsys.readouterr()
    for bad in (["--abstain-below", "1.5"], ["--abstain-below", "often"], ["--adapt", "sometimes"]):
        with pytest.raises(SystemExit) as info:
            main(["classify", wav, *bad], model=Recording())
        assert info.value.code == 2


def test_version(capsys, monkeypatch):
    import importlib.metadata

    import edgeser
    from edgeser import cli

    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"edgeser {importlib.metadata.version('edgeser')}"

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)  # a source tree that was never installed
    assert cli.version() == edgeser.__version__


def test_url_and_empty_file_messages(capsys, tmp_path):
    from edgeser import cli

    assert cli.main(["classify", "https://example.com/clip.wav"], model=FakeModel()) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "https://example.com/clip.wav" in line and "URLs are not supported" in line and "download" in line
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    assert cli.main(["analyze", str(empty)], model=FakeModel()) == 2
    assert "is an empty file (0 bytes)" in _one_line_error(capsys.readouterr().err)
