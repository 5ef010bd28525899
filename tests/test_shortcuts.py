"""benchmarks/shortcuts.py: the conditions change only what they say, and the report renders."""

import numpy as np

from benchmarks.shortcuts import SR, conditions, render_markdown


def test_conditions_change_only_silence_length_or_level():
    rng = np.random.default_rng(0)
    x = (0.3 * np.sin(np.arange(3 * SR) / 10)).astype(np.float32)
    c = conditions()
    assert np.array_equal(c["as recorded"](x, rng), x)
    lead = c["+2 s leading digital silence"](x, rng)
    assert lead.size == x.size + 2 * SR and not lead[: 2 * SR].any() and np.array_equal(lead[2 * SR :], x)
    noisy = c["+2 s leading room noise (-60 dBFS)"](x, rng)
    assert 0 < np.sqrt(np.mean(noisy[: 2 * SR] ** 2)) < 2e-3 and np.array_equal(noisy[2 * SR :], x)
    trail = c["+2 s trailing digital silence"](x, rng)
    assert np.array_equal(trail[: x.size], x) and not trail[x.size :].any()
    assert np.array_equal(c["first 1.5 s only (shorter clip)"](x, rng), x[: int(1.5 * SR)])
    quiet = c["level -20 dB"](x, rng)
    np.testing.assert_allclose(quiet, x * 0.1, rtol=1e-5)
    loud = c["level +12 dB (clipped)"](x, rng)
    assert loud.max() <= 1.0 and loud.min() >= -1.0 and np.abs(loud).max() == 1.0
    assert all(f(x, rng).dtype == np.float32 for f in c.values())


def test_render_markdown():
    d = {"command": "python benchmarks/shortcuts.py", "machine": {"cpu": "cpu"}, "date": "today", "clips": 2,
         "test_speakers": ["Actor_01"], "protocol": "each clip alone",
         "conditions": {"as recorded": {"uar": 0.5, "same_label_as_recorded": 1.0},
                        "level -20 dB": {"uar": 0.25, "same_label_as_recorded": 0.5}}}
    md = render_markdown(d)
    assert "| as recorded | 50.0 | 100.0 |" in md and "| level -20 dB | 25.0 | 50.0 |" in md
