"""The README's Python examples run as written: every ```python block, with a generated clip for the file names.

Blocks are found generically (the README is edited by several people): quoted audio file names ("clip.wav",
"meeting.flac", ...) become an espeak-ng clip, ``my_audio_source()`` yields that clip in chunks, and the microphone
of ``edgeser.listen`` is replaced by a replay of the clip (no sound card, no sounddevice needed); ``input`` returns
after a moment.
"""

import builtins
import contextlib
import io
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import ESPEAK_TEXT, espeak_wav

README = Path(__file__).resolve().parents[1] / "README.md"
AUDIO_NAME = re.compile(r"""(["'])[\w./-]+\.(?:wav|flac|ogg|mp3|opus)\1""")  # a quoted audio file name


def python_blocks() -> list[tuple[int, str]]:
    """(line number, code) of every ```python block of the README."""
    out, lines, start = [], README.read_text(encoding="utf-8").splitlines(), None
    for i, line in enumerate(lines):
        if start is None and re.match(r"^\s*```\s*python\s*$", line):
            start = i + 1
        elif start is not None and re.match(r"^\s*```\s*$", line):
            out.append((start + 1, "\n".join(lines[start:i])))
            start = None
    return out


BLOCKS = python_blocks()


def test_the_readme_has_python_examples():
    assert BLOCKS and any("edgeser." in code for _, code in BLOCKS)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("readme") / "clip.wav"
    espeak_wav(path, ESPEAK_TEXT)
    return path


@pytest.mark.parametrize("line, code", BLOCKS, ids=[f"README.md:{n}" for n, _ in BLOCKS])
def test_readme_block_runs(line, code, clip, monkeypatch):
    from edgeser.listen import FileSource

    listen_module = sys.modules["edgeser.listen"]  # the module (edgeser.listen is also the function)

    x, rate = sf.read(str(clip), dtype="float32")

    speech_end = int(np.nonzero(np.abs(x) > 0.01)[0][-1]) + rate // 20
    x = x[:speech_end]  # the audio ends 50 ms after the speech: the VAD cannot end the segment before flush()

    def my_audio_source():  # 20 ms chunks of the clip
        step = rate // 50
        for i in range(0, x.size, step):
            yield x[i : i + step], rate

    mics = []

    def fake_microphone(*args, **kwargs):  # edgeser.listen's default source, replaced by the clip
        mics.append(args)
        return FileSource(clip, realtime=False)

    monkeypatch.setattr(listen_module, "MicrophoneSource", fake_microphone)
    monkeypatch.setattr(builtins, "input", lambda prompt="": time.sleep(1.0) or "")
    source = AUDIO_NAME.sub(lambda m: repr(str(clip)), code)
    out = io.StringIO()
    namespace = {"__name__": "readme_example", "my_audio_source": my_audio_source}
    with contextlib.redirect_stdout(out):
        exec(compile(source, f"README.md:{line}", "exec"), namespace)  # noqa: S102 - the README's own example
    printed = out.getvalue()
    if "my_audio_source()" in code:  # the stream example prints every event, the last segment's final one too
        events = [json.loads(ln) for ln in printed.splitlines() if ln.startswith("{")]
        assert any(e["final"] for e in events), "the stream example lost the final event of the last segment"
    if "edgeser.listen(" in code:
        assert mics, "the listen example did not reach the (stubbed) microphone"
    assert "Traceback" not in printed and sys.exc_info() == (None, None, None)
