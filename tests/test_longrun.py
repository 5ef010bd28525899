"""Short versions of benchmarks/hardening.py's soak and parallel-streams runs, with the bundled default model:
2 minutes of generated speech through one Stream in chunks of random size, and 3 streams in parallel threads."""

from __future__ import annotations

import pytest

import edgeser
from benchmarks.hardening import (
    SR,
    Synth,
    parallel_streams,
    run_stream,
    soak,
    speech_bank,
)
from edgeser.stream import HISTORY_FRAMES


@pytest.fixture(scope="module")
def model():
    return edgeser.load()


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    return speech_bank(tmp_path_factory.mktemp("bank"), n=6)


def test_soak_two_minutes_nothing_lost_nothing_doubled(model, bank):
    r = soak(model, bank, hours=2 / 60, seed=11, sample_every_s=30)
    assert r["audio_seconds"] == pytest.approx(120, abs=0.01)
    assert r["chunk_ms"]["min"] < 5 and r["chunk_ms"]["max"] > 1000  # chunks of 1 ms .. 3 s
    # soak() asserts the event invariants as the events come: segments numbered 0, 1, 2, ... in order, one final
    # each, nothing after a final, no overlap. Every sentence put in is found, and nothing else:
    assert r["sentences_in"] >= 15
    assert r["sentences_missed"] == 0 and r["false_segments"] == 0
    assert r["events"]["final"] >= r["sentences_in"]  # a sentence may split at a comma, never merge with the next
    assert r["events"]["partial"] > r["events"]["final"]
    # what the stream holds stays bounded: one window plus the VAD's history of log-mel frames, less than one FFT
    # frame of samples in the features, less than one VAD frame of samples
    buf = r["stream_buffers_max"]
    assert buf["logmel_frames_kept"] <= model.info.window_frames + HISTORY_FRAMES
    assert buf["feature_samples_buffered"] < 400 + 160 and buf["vad_samples_buffered"] < 512
    assert r["rss_max_mib"] - r["rss_first_mib"] < 30


def test_parallel_streams_give_the_same_events(model, bank):
    r = parallel_streams(model, bank, n=3, minutes=40 / 60, seed=21)
    assert r["identical"], r
    assert all(n > 0 for n in r["final_events_per_stream"])


def test_chunking_does_not_matter_on_generated_speech(model, bank):
    """The same minute of generated audio in 5-500 ms chunks, in 1 ms-3 s chunks and in one call: identical events
    (a window due between a segment's end and the VAD's decision of it runs only if it was due before the decision,
    whatever the chunks; it used to depend on them)."""
    import numpy as np

    syn = Synth(bank, 60, seed=5)
    a = run_stream(model, syn, chunk_seed=1)
    s = model.stream()
    b = []
    for c in syn.chunks(2, 1.0, 3000.0):
        b += s.accept(c, SR)
    b += s.flush()
    s = model.stream()
    whole = s.accept(np.concatenate(list(syn.pieces())), SR) + s.flush()
    assert [e.to_dict() for e in a] == [e.to_dict() for e in b] == [e.to_dict() for e in whole]
    assert any(e.final for e in a)
