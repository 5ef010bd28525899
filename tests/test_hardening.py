"""Bad input, as one matrix: every kind of input through every entry point, with the bundled default model.

Entry points: ``Model.classify(array, rate)``, ``Model.analyze(array, rate)``, ``Stream.accept`` (37 ms chunks, then
``flush()``) and ``edgeser.classify(path)`` (the same samples written to a file, where a file can hold them). Each
case either raises a typed error (``AudioError``) at every entry point, or gives a valid result there (a result's
scores are finite and sum to 1; events keep the stream invariants of ``benchmarks/hardening.check_events``).

Documented behaviours tested here (README "Limits and hardening"):

* an empty array is an ``AudioError`` for classify/analyze; for ``Stream.accept`` an empty chunk is a no-op;
* audio with no speech (all zero, one sample) gives no events; ``classify`` answers ``"no_speech"`` (confidence,
  scores and ``duration`` 0.0);
* NaN/inf samples, float samples beyond +-1e6, dtypes other than int8/16/32/64, uint8, float16/32/64, more than 2
  dimensions, sample rates outside 4-384 kHz are ``AudioError``;
* clipped audio and floats a little beyond +-1 are accepted as they are (no error, a valid result);
* 1-8 channels in either layout are averaged: identical channels give exactly the mono result;
* the same speech at 8-96 kHz gives the same label (tolerances in ``RATE_TOL``).

Then bad files (truncated, corrupt, zero-length, text, PNG, absurd headers, a FIFO, a huge sparse file) and fuzzing
of the array and file entry points with hypothesis.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import edgeser
from benchmarks.hardening import check_events
from edgeser import NO_SPEECH, AudioError, EdgeserError, EmotionEvent, EmotionResult
from edgeser.audio import resample
from tests.conftest import ESPEAK_TEXT, espeak_wav

ROOT = Path(__file__).resolve().parents[1]
ENTRIES = ("model.classify", "model.analyze", "stream.accept", "edgeser.classify(path)")

# Tolerances on class probabilities against the 16 kHz float32 result of the same speech (max over the 4 classes).
# Rates >= 16 kHz carry the whole 0-8 kHz band the model sees: only the resampler's passband ripple and phase differ
# (measured <= 0.003), so 0.01. 8 kHz audio has nothing above 4 kHz (telephone band): the model sees less, measured
# on this sentence at temperature 1: 0.086 with the first default; 0.104 with the current one pooled by the mean of
# window probabilities and 0.134 pooled by its mean logits (softmax of a mean of logits moves further for the same
# logit change than a mean of softmaxes), so 0.15 -- and the label must still agree.
RATE_TOL = {8000: 0.15, 22050: 1e-6, 44100: 0.01, 48000: 0.01, 96000: 0.01}


@dataclass
class Case:
    name: str
    make: object  # (x16, x22) -> (array, rate)
    outcome: str  # "speech" | "silence" | "empty" | "error"
    tol: float | None = None  # max |p - p_ref| of classify's scores against the 16 kHz float32 result
    file: tuple | None = None  # (format, subtype) a file can hold it in; None: no file form
    channels_first: bool = False
    exact: bool = False  # identical events to the 16 kHz float32 reference (same samples after mixing)
    same_segments: bool = False  # same final segments as the reference


def _nan(x):
    y = x.copy()
    y[len(y) // 2] = np.nan
    return y


def _inf(x, sign=1.0):
    y = x.copy()
    y[len(y) // 3] = sign * np.inf
    return y


def _cases() -> list[Case]:
    wav_f = ("WAV", "FLOAT")
    c = [
        Case("float32", lambda x, o: (x, 16000), "speech", 0.0, wav_f, exact=True),
        Case("float64", lambda x, o: (x.astype(np.float64), 16000), "speech", 0.0, ("WAV", "DOUBLE"), exact=True),
        Case("float16", lambda x, o: (x.astype(np.float16), 16000), "speech", 0.03, same_segments=True),
        Case("int16", lambda x, o: (np.round(x * 32767).astype(np.int16), 16000), "speech", 0.01, ("WAV", "PCM_16"),
             same_segments=True),
        Case("int32", lambda x, o: (np.round(x * (2**31 - 1)).astype(np.int32), 16000), "speech", 0.005,
             ("WAV", "PCM_32"), same_segments=True),
        Case("int64", lambda x, o: (np.round(x.astype(np.float64) * 2.0**63).astype(np.int64), 16000), "speech",
             0.005, same_segments=True),
        # 8-bit PCM: quantisation noise at about -48 dB re full scale, a real (if mild) noise condition for the
        # model (measured at T = 1: 0.024 for the first default, 0.054 for the noisy-session-trained one)
        Case("int8", lambda x, o: (np.round(x * 127).astype(np.int8), 16000), "speech", 0.08, ("AIFF", "PCM_S8")),
        Case("uint8", lambda x, o: ((np.round(x * 127) + 128).astype(np.uint8), 16000), "speech", 0.08,
             ("WAV", "PCM_U8")),
        Case("clipped x10", lambda x, o: (np.clip(x * 10, -1, 1), 16000), "speech", None, wav_f),
        Case("float beyond 1 (x3, not clipped)", lambda x, o: (x * 3, 16000), "speech", None, wav_f),
        Case("DC offset +0.3", lambda x, o: (x + np.float32(0.3), 16000), "speech", 0.05, wav_f),
        # -0.5 full scale is a step at the first sample: the VAD confirms speech 0.16 s later, so the windows sit
        # elsewhere (measured 0.047 with the previous default, 0.054 with the current, in temperature-1 units)
        Case("DC offset -0.5", lambda x, o: (x - np.float32(0.5), 16000), "speech", 0.06, wav_f),
    ]
    for ch in range(1, 9):
        c.append(Case(f"{ch} ch channels-last", lambda x, o, ch=ch: (np.repeat(x[:, None], ch, axis=1), 16000),
                      "speech", 0.0, wav_f, exact=True))
        c.append(Case(f"{ch} ch channels-first", lambda x, o, ch=ch: (np.repeat(x[None, :], ch, axis=0), 16000),
                      "speech", 0.0, wav_f, channels_first=True, exact=True))
    for rate, tol in RATE_TOL.items():
        c.append(Case(f"{rate} Hz", lambda x, o, rate=rate: (o if rate == 22050 else resample(o, 22050, rate), rate),
                      "speech", tol, wav_f))
    c += [
        Case("all zero", lambda x, o: (np.zeros(16000, np.float32), 16000), "silence", file=wav_f),
        Case("all zero int16 stereo 44.1k", lambda x, o: (np.zeros((44100, 2), np.int16), 44100), "silence",
             file=("WAV", "PCM_16")),
        Case("one sample", lambda x, o: (np.array([0.5], np.float32), 16000), "silence", file=wav_f),
        Case("empty", lambda x, o: (np.zeros(0, np.float32), 16000), "empty", file=wav_f),
        Case("empty 2-D (0, 2)", lambda x, o: (np.zeros((0, 2), np.float32), 16000), "empty"),
        Case("empty list", lambda x, o: ([], 16000), "empty"),
        Case("NaN sample", lambda x, o: (_nan(x), 16000), "error", file=wav_f),
        Case("+inf sample", lambda x, o: (_inf(x), 16000), "error", file=wav_f),
        Case("-inf sample", lambda x, o: (_inf(x, -1.0), 16000), "error", file=wav_f),
        Case("float64 beyond float32", lambda x, o: (x.astype(np.float64) * 1e300, 16000), "error"),
        Case("float 1e10 peaks", lambda x, o: (x * np.float32(1e10), 16000), "error", file=wav_f),
        Case("uint16", lambda x, o: ((x * 1000 + 2000).astype(np.uint16), 16000), "error"),
        Case("bool", lambda x, o: (x > 0, 16000), "error"),
        Case("complex64", lambda x, o: (x.astype(np.complex64), 16000), "error"),
        Case("strings", lambda x, o: (np.array(["a", "b"]), 16000), "error"),
        Case("objects", lambda x, o: (np.array([0.1, None], dtype=object), 16000), "error"),
        Case("3-D", lambda x, o: (x[:15000].reshape(3, 50, 100), 16000), "error"),
        Case("0-D scalar", lambda x, o: (np.float32(0.5), 16000), "error"),
        Case("65 channels", lambda x, o: (np.zeros((100, 65), np.float32), 16000), "error"),
        Case("rate 0", lambda x, o: (x, 0), "error"),
        Case("rate -16000", lambda x, o: (x, -16000), "error"),
        Case("rate 3999 (below 4 kHz)", lambda x, o: (x, 3999), "error"),
        Case("rate 400 kHz", lambda x, o: (x, 400_000), "error"),
        Case("rate 44100.5", lambda x, o: (x, 44100.5), "error"),
        Case("rate NaN", lambda x, o: (x, float("nan")), "error"),
        Case("rate None", lambda x, o: (x, None), "error"),
        Case("rate '16000'", lambda x, o: (x, "16000"), "error"),
    ]
    return c


CASES = _cases()
PARAMS = [pytest.param(c, e, id=f"{c.name}-{e}") for c in CASES for e in ENTRIES
          if e != "edgeser.classify(path)" or c.file]


@pytest.fixture(scope="module")
def model():
    return edgeser.load()


@pytest.fixture(scope="module")
def speech(espeak_speech, tmp_path_factory):
    """(16 kHz float32, espeak's own 22.05 kHz float32) of the same sentence."""
    p = tmp_path_factory.mktemp("espeak22") / "s.wav"
    espeak_wav(p, ESPEAK_TEXT)
    o, rate = sf.read(str(p), dtype="float32")
    assert rate == 22050
    x, _ = espeak_speech
    return x, o


@pytest.fixture(scope="module")
def reference(model, speech):
    x, _ = speech
    return model.classify(x, 16000), model.analyze(x, 16000, partial=True)


def _valid_result(r, model):
    """A valid classify result: an emotion with scores that sum to 1, or the no-speech answer (all zero)."""
    assert isinstance(r, EmotionResult)
    if r.label == NO_SPEECH:
        assert r.confidence == 0.0 and r.duration == 0.0 and r.scores == {k: 0.0 for k in model.labels}
        return
    assert r.label in model.labels and set(r.scores) == set(model.labels)
    v = np.array(list(r.scores.values()))
    assert np.all(np.isfinite(v)) and np.all(v >= 0) and abs(v.sum() - 1) < 1e-4
    assert r.confidence == max(r.scores.values()) and r.scores[r.label] == r.confidence
    assert np.isfinite(r.duration) and r.duration >= 0


def _valid_events(events, model):
    assert all(isinstance(e, EmotionEvent) for e in events)
    check_events(events)
    for e in events:
        assert e.label in model.labels and np.isfinite(e.start) and np.isfinite(e.end) and 0 <= e.start <= e.end
        assert abs(sum(e.scores.values()) - 1) < 1e-4


def _chunks(a, rate, channels_first, ms=37):
    a = np.asarray(a)
    if a.ndim == 0 or a.size == 0 or a.ndim > 2 or not isinstance(rate, (int, float)) or not rate > 0 \
            or not np.isfinite(rate):
        yield a
        return
    n = max(1, int(rate * ms / 1000))
    frames = a.shape[1] if (a.ndim == 2 and channels_first) else a.shape[0]
    for i in range(0, frames, n):
        yield a[:, i : i + n] if (a.ndim == 2 and channels_first) else a[i : i + n]


def _write(case, a, rate, path):
    fmt, subtype = case.file
    a = np.asarray(a)
    if a.ndim == 2 and case.channels_first:
        a = a.T
    if a.dtype == np.int8 and subtype == "PCM_S8":  # soundfile writes int16/int32/float; scale to keep the values
        a = a.astype(np.int16) * 256
    elif a.dtype == np.uint8:
        a = (a.astype(np.int16) - 128) * 256
    sf.write(str(path), a, rate, format=fmt, subtype=subtype)


def _run(entry, case, a, rate, model, tmp_path):
    if entry == "model.classify":
        return model.classify(a, rate)
    if entry == "model.analyze":
        return model.analyze(a, rate, partial=True)
    if entry == "stream.accept":
        s = model.stream()
        out = []
        for c in _chunks(a, rate, case.channels_first):
            out += s.accept(c, rate)
        return out + s.flush()
    p = tmp_path / ("clip." + case.file[0].lower())
    _write(case, a, rate, p)
    return edgeser.classify(p, model=model)


@pytest.mark.parametrize("case, entry", PARAMS)
def test_bad_input_matrix(case, entry, model, speech, reference, tmp_path):
    x, o = speech
    a, rate = case.make(x, o)
    ref_result, ref_events = reference
    classify = entry in ("model.classify", "edgeser.classify(path)")
    expect_error = case.outcome == "error" or (case.outcome == "empty" and entry != "stream.accept")
    if expect_error:
        with pytest.raises(AudioError) as info:
            _run(entry, case, a, rate, model, tmp_path)
        msg = str(info.value)
        assert len(msg) > 10 and "Traceback" not in msg
        return
    out = _run(entry, case, a, rate, model, tmp_path)
    if classify:
        _valid_result(out, model)
        if case.outcome in ("silence", "empty"):
            assert out.label == NO_SPEECH  # no speech found: no emotion claimed
            return
        assert out.label in model.labels and out.duration > 1.0
        if case.tol is not None:
            # a file at another rate is resampled block by block (soxr's stream), the array at once: 0.01
            tol = case.tol if entry == "model.classify" or rate == 16000 else max(case.tol, 0.01)
            # the tolerances hold for probabilities at temperature 1; a calibrated model's temperature T < 1 makes the
            # same logit change move its probabilities about 1 / T as much
            tol /= min(1.0, model.info.temperature)
            diff = max(abs(out.scores[k] - ref_result.scores[k]) for k in model.labels)
            assert diff <= tol, f"{case.name}: scores differ by {diff:.4f} from the 16 kHz float32 result"
            assert out.label == ref_result.label
        if entry == "edgeser.classify(path)" and rate == 16000:  # a file gives what its samples give as an array
            arr = model.classify(a, rate)
            assert max(abs(out.scores[k] - arr.scores[k]) for k in model.labels) <= 1e-6
        return
    _valid_events(out, model)
    if case.outcome in ("silence", "empty"):
        assert out == []
        return
    assert any(e.final for e in out), "the sentence must give a final event"
    if case.exact:
        assert [e.to_dict() for e in out] == [e.to_dict() for e in ref_events]
    elif case.same_segments:  # PCM quantisation moves no boundary of the VAD's speech segments of this sentence
        # (a cut at an emotion change is a model decision: at a window whose distance to its segment's mean is near
        # the threshold, PCM quantisation can move it as it can flip a near-tie label -- the int8 model's logits move
        # by a few hundredths, 0.44 vs 0.39 against 0.40 for this sentence's tail window -- so the segments the
        # cuts split are compared, joined again: a cut ends one event exactly where the next starts)
        assert _speech_segments(out) == _speech_segments(ref_events)


def _speech_segments(events) -> list[tuple[float, float]]:
    """The spans of the final events with the cuts at emotion changes joined (the VAD's speech segments)."""
    spans: list[list[float]] = []
    for e in (e for e in events if e.final):
        if spans and spans[-1][1] == e.start:
            spans[-1][1] = e.end
        else:
            spans.append([e.start, e.end])
    return [tuple(x) for x in spans]


def test_matrix_covers_the_issue():
    names = {c.name for c in CASES}
    for want in ("empty", "all zero", "NaN sample", "+inf sample", "clipped x10", "DC offset +0.3", "int8", "int16",
                 "int32", "float64", "uint8", "8000 Hz", "44100 Hz", "48000 Hz", "96000 Hz"):
        assert want in names
    assert {f"{ch} ch channels-{lay}" for ch in range(1, 9) for lay in ("first", "last")} <= names
    assert len(PARAMS) > 200


# ------------------------------------------------------------------------------------------------ streams: nothing lost


def test_rejected_chunk_changes_nothing(model, speech):
    """A bad chunk in the middle of a stream raises AudioError and leaves the stream as it was: the events equal those
    of the same stream without it (so a caller can log it and go on)."""
    x, _ = speech
    chunks = [x[i : i + 700] for i in range(0, x.size, 700)]
    ref = model.stream()
    want = [e for c in chunks for e in ref.accept(c, 16000)] + ref.flush()
    s = model.stream()
    got = []
    bad = [np.array([0.1, np.nan], np.float32), np.zeros((2, 2, 2), np.float32), np.array(["x"]),
           np.full(10, 1e30, np.float32)]
    for i, c in enumerate(chunks):
        if i % 7 == 3:
            with pytest.raises(AudioError):
                s.accept(bad[i % len(bad)], 16000)
            with pytest.raises(AudioError):
                s.accept(c, 8000)  # a different rate within a stream
        got += s.accept(c, 16000)
    got += s.flush()
    assert [e.to_dict() for e in got] == [e.to_dict() for e in want] and want


def test_first_chunk_rejected_does_not_fix_the_rate(model):
    s = model.stream()
    with pytest.raises(AudioError):
        s.accept(np.array([np.nan] * 100, np.float32), 8000)
    assert s.accept(np.zeros(1600, np.float32), 16000) == []  # the rate is set by the first *accepted* chunk


def test_short_multichannel_chunks_keep_their_layout(model, speech):
    """Chunks of 1-3 frames of 4-channel audio (fewer frames than channels) are still read as frames x channels once
    the stream has seen the layout: the events equal the mono ones. A chunk of another layout is an AudioError."""
    x, _ = speech
    four = np.repeat(x[:, None], 4, axis=1)
    rng = np.random.default_rng(0)
    s, got, i = model.stream(), [], 0
    while i < x.size:
        n = int(rng.choice([1, 2, 3, 480, 1000]))
        got += s.accept(four[i : i + n], 16000)
        i += n
    got += s.flush()
    mono = model.stream()
    want = mono.accept(x, 16000) + mono.flush()
    assert [e.to_dict() for e in got] == [e.to_dict() for e in want]
    s = model.stream()
    s.accept(four[:480], 16000)
    with pytest.raises(AudioError, match="channel layout changed"):
        s.accept(np.zeros((480, 2), np.float32), 16000)


def test_one_long_array_is_processed_in_bounded_pieces(model):
    """Two minutes given to ``Stream.accept`` in one call: the features are computed in 10 s pieces, so the memory
    allocated on top of the input stays small (it was ~90 MB, the STFT of the whole array at once)."""
    import tracemalloc

    x = np.zeros(120 * 16000, np.float32)
    s = model.stream()
    s.accept(x[:16000], 16000)  # warm up
    tracemalloc.start()
    try:
        s.accept(x, 16000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 30 * 2**20, f"peak {peak / 2**20:.1f} MiB"


# ---------------------------------------------------------------------------------------------------------- bad files


def _wav_bytes(x, rate=16000, subtype="PCM_16", channels=1):
    import io

    b = io.BytesIO()
    a = np.repeat(x[:, None], channels, axis=1) if channels > 1 else x
    sf.write(b, a, rate, format="WAV", subtype=subtype)
    return b.getvalue()


def _patch_fmt(raw: bytes, *, rate=None, channels=None) -> bytes:
    """Rewrite the sample rate / channel count fields of a canonical WAV's fmt chunk."""
    b = bytearray(raw)
    i = b.index(b"fmt ") + 8
    if channels is not None:
        b[i + 2 : i + 4] = struct.pack("<H", channels)
    if rate is not None:
        b[i + 4 : i + 8] = struct.pack("<I", rate)
    return bytes(b)


PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x02\x00\x00\x00\x90\x91h6"
       + bytes(range(256)) * 4)


def _bad_file(kind, x, d: Path) -> tuple[Path, str]:
    """(path, expected outcome: 'error' | 'speech' | 'no speech')."""
    wav = _wav_bytes(x)
    rng = np.random.default_rng(7)
    p = d / f"{kind}.wav"
    if kind == "missing":
        return d / "nope.wav", "error"
    if kind == "directory":
        p.mkdir()
        return p, "error"
    if kind == "fifo":
        os.mkfifo(p)
        return p, "error"
    data = {
        "zero-length": b"",
        "text": b"this is not audio, just some text\n" * 50,
        "png": PNG,
        "wav header only": wav[:44],
        "wav cut in header": wav[:30],
        "wav cut mid-data": wav[: len(wav) // 2],
        "wav random data after header": wav[:44] + rng.integers(0, 256, 64000, dtype=np.uint8).tobytes(),
        "wav rate 1 Hz in header": _patch_fmt(wav, rate=1),
        "wav rate 4 GHz in header": _patch_fmt(wav, rate=4_000_000_000),
        "wav 1000 channels in header": _patch_fmt(wav, channels=1000),
        "wav 0 channels in header": _patch_fmt(wav, channels=0),
        "random bytes": rng.integers(0, 256, 20000, dtype=np.uint8).tobytes(),
    }[kind]
    p.write_bytes(data)
    outcome = {"wav cut mid-data": "speech", "wav random data after header": "no speech"}.get(kind, "error")
    return p, outcome


def _flac_file(kind, x, d: Path) -> tuple[Path, str]:
    p = d / "full.flac"
    sf.write(str(p), x, 16000, format="FLAC", subtype="PCM_16")
    raw = p.read_bytes()
    q = d / f"{kind}.flac"
    if kind == "flac cut mid-stream":
        q.write_bytes(raw[: len(raw) // 2])
    else:  # bytes overwritten in the middle
        b = bytearray(raw)
        b[len(b) // 2 : len(b) // 2 + 2000] = bytes(2000)
        q.write_bytes(bytes(b))
    return q, "error"  # libsndfile's FLAC decoder loses sync: an AudioError "truncated or corrupt"


FILE_KINDS = ["missing", "directory", "fifo", "zero-length", "text", "png", "wav header only", "wav cut in header",
              "wav cut mid-data", "wav random data after header", "wav rate 1 Hz in header",
              "wav rate 4 GHz in header", "wav 1000 channels in header", "wav 0 channels in header", "random bytes",
              "flac cut mid-stream", "flac corrupt mid-stream"]
FILE_ENTRIES = ("edgeser.classify(path)", "model.analyze(path)", "FileSource")


@pytest.mark.parametrize("entry", FILE_ENTRIES)
@pytest.mark.parametrize("kind", FILE_KINDS)
def test_bad_files(kind, entry, model, speech, tmp_path):
    """Each bad file is an AudioError (naming the file) at every file entry point, except a WAV cut in its data (the
    samples before the cut are used) and a WAV of random samples (noise: no speech)."""
    from edgeser.listen import FileSource, listen

    x, _ = speech
    make = _flac_file if kind.startswith("flac") else _bad_file
    path, outcome = make(kind, x, tmp_path)

    def run():
        if entry == "edgeser.classify(path)":
            return edgeser.classify(path, model=model)
        if entry == "model.analyze(path)":
            return model.analyze(path)
        got = []
        lst = listen(got.append, model=model, source=FileSource(path, realtime=False))
        assert lst.wait(30), "listener hung on a bad file"
        lst.stop()  # raises the error that ended it
        return [e for e in got if e.final]

    if outcome == "error":
        with pytest.raises(AudioError) as info:
            run()
        assert path.name in str(info.value)
        return
    out = run()
    if isinstance(out, EmotionResult):
        _valid_result(out, model)
        assert (out.duration > 0) == (outcome == "speech") == (out.label != NO_SPEECH)
    else:
        assert bool(out) == (outcome == "speech")


def test_huge_sparse_file_is_streamed(tmp_path):
    """A 368 MB WAV (60 s, 384 kHz, 8 channels, int16; sparse on disk: all zero) would take 737 MB as float32 if it
    were read whole. classify(path) and analyze(path) read it in blocks: a fresh process peaks far below that."""
    p = tmp_path / "huge.wav"
    rate, ch, seconds = 384_000, 8, 60
    n = rate * ch * seconds * 2
    hdr = (b"RIFF" + struct.pack("<I", 36 + n) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, ch, rate, rate * ch * 2,
                                                                           ch * 2, 16) + b"data" + struct.pack("<I", n))
    with open(p, "wb") as f:
        f.write(hdr)
        f.truncate(len(hdr) + n)
    assert p.stat().st_size > 360e6
    code = ("import sys, edgeser\n"
            "m = edgeser.load()\n"
            "r = m.classify(sys.argv[1]); ev = m.analyze(sys.argv[1])\n"
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
            "print(r.duration, len(ev), int(hwm) / 1024)\n")
    out = subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    duration, n_events, peak = out.stdout.split()
    assert float(duration) == 0.0 and int(n_events) == 0
    assert float(peak) < 250, f"peak RSS {peak} MiB"


# ------------------------------------------------------------------------------------------------------------- fuzzing

DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.float16, np.float32, np.float64,
          np.bool_, np.complex64]
RATES = st.one_of(st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000, 96000]),
                  st.integers(-10, 500_000), st.floats(allow_nan=True, allow_infinity=True), st.none())


@st.composite
def audio_arrays(draw):
    dtype = draw(st.sampled_from(DTYPES))
    ndim = draw(st.sampled_from([0, 1, 1, 2, 2, 3]))
    if ndim == 0:
        shape = ()
    elif ndim == 1:
        shape = (draw(st.integers(0, 24000)),)
    elif ndim == 2:
        frames, ch = draw(st.integers(0, 12000)), draw(st.integers(1, 10))
        shape = (frames, ch) if draw(st.booleans()) else (ch, frames)
    else:
        shape = (draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 50)))
    a = draw(hnp.arrays(dtype, shape, elements=hnp.from_dtype(np.dtype(dtype)), fill=hnp.from_dtype(np.dtype(dtype))))
    return a


FUZZ = settings(max_examples=60, deadline=5000, suppress_health_check=list(HealthCheck), database=None)


@settings(FUZZ, max_examples=150)
@given(a=audio_arrays(), rate=RATES, entry=st.sampled_from(["classify", "analyze", "stream"]),
       chunk=st.integers(1, 5000))
def test_fuzz_arrays(model, a, rate, entry, chunk):
    """Random arrays of random dtype/shape/rate: a typed EdgeserError or a valid result, nothing else."""
    try:
        if entry == "classify":
            _valid_result(model.classify(a, rate), model)
        elif entry == "analyze":
            _valid_events(model.analyze(a, rate, partial=True), model)
        else:
            s = model.stream()
            ev = []
            if a.ndim == 1:
                for i in range(0, max(a.size, 1), chunk):
                    ev += s.accept(a[i : i + chunk], rate)
            else:
                ev += s.accept(a, rate)
            _valid_events(ev + s.flush(), model)
    except EdgeserError:
        pass


HEADERS = [b"", b"RIFF\x24\x00\x00\x00WAVEfmt ", b"fLaC", b"OggS", b"ID3\x03\x00", b"\xff\xfb\x90",
           b"FORM\x00\x00\x00\x00AIFF", b"\x89PNG\r\n\x1a\n"]


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def small_wav(speech):
    x, _ = speech
    return _wav_bytes(x[:8000])


@FUZZ
@given(head=st.sampled_from(HEADERS), body=st.binary(max_size=4000), entry=st.sampled_from(["classify", "analyze"]))
def test_fuzz_random_bytes_as_file(model, fuzz_dir, head, body, entry):
    """Random bytes (behind a real format's magic, or none) as an audio file: AudioError or a valid result."""
    p = fuzz_dir / "random.bin"
    p.write_bytes(head + body)
    try:
        if entry == "classify":
            _valid_result(edgeser.classify(p, model=model), model)
        else:
            _valid_events(model.analyze(p), model)
    except EdgeserError:
        pass


@FUZZ
@given(data=st.data())
def test_fuzz_mutated_wav(model, fuzz_dir, small_wav, data):
    """A valid WAV with random bytes overwritten and/or cut short: AudioError or a valid result."""
    b = bytearray(small_wav)
    for _ in range(data.draw(st.integers(0, 8))):
        i = data.draw(st.integers(0, len(b) - 1))
        b[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(b)))
    p = fuzz_dir / "mutated.wav"
    p.write_bytes(bytes(b[:cut]))
    try:
        _valid_result(edgeser.classify(p, model=model), model)
    except EdgeserError:
        pass
