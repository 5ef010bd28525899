"""The live demo's terminal view fits small terminals: bars shrink, the event log gives way first."""

import io
import re

from edgeser.demo import View
from edgeser.types import EmotionEvent

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _view(n_finals: int) -> View:
    v = View(["neutral", "happy", "angry", "sad"], io.StringIO(), tty=True, title="test")
    for k in range(n_finals):
        v.on_event(EmotionEvent(start=k, end=k + 1.0, label="happy", confidence=0.8,
                                scores={"neutral": 0.1, "happy": 0.8, "angry": 0.05, "sad": 0.05}, final=True,
                                segment=k))
    return v


def _lines(v: View, size) -> list[str]:
    v._render_tty(v._latest, list(v._finals), size=size)
    return [ANSI.sub("", ln) for ln in v.out.getvalue().splitlines()]


def test_small_terminal_keeps_header_and_bars():
    lines = _lines(_view(20), (40, 12))
    assert len(lines) <= 11
    assert lines[0].startswith("edgeser")
    assert all(len(ln) <= 40 for ln in lines), max(lines, key=len)
    assert sum(ln.strip().startswith(("neutral", "happy", "angry", "sad")) for ln in lines) == 4


def test_large_terminal_shows_the_log():
    small, large = _lines(_view(8), (40, 12)), _lines(_view(8), (120, 40))
    assert len(large) > len(small)
    assert max(len(ln) for ln in large) > 40  # full-width bars where there is room
