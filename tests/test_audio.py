"""Tests of edgeser.audio: dtype scaling, channel mixing, rate checks, validation, resampling, file reading."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from edgeser.audio import (
    StreamResampler,
    check_rate,
    iter_file,
    load,
    mix_down,
    prepare,
    resample,
    to_float32,
)
from edgeser.errors import AudioError

SR = 16000


def sine(freq: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(rate * seconds))) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(x: np.ndarray, rate: int = SR) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1.0 / rate)[np.argmax(spec)])


# --------------------------------------------------------------------------------------------- to_float32


@pytest.mark.parametrize(
    "dtype, raw, expected",
    [
        (np.int8, [0, 127, -128, 64], [0.0, 127 / 128, -1.0, 0.5]),
        (np.int16, [0, 32767, -32768, 16384], [0.0, 32767 / 32768, -1.0, 0.5]),
        (np.int32, [0, 2**31 - 1, -(2**31), 2**30], [0.0, (2**31 - 1) / 2**31, -1.0, 0.5]),
        (np.uint8, [128, 255, 0, 192], [0.0, 127 / 128, -1.0, 0.5]),
        (np.float32, [0.0, 0.25, -1.0, 0.5], [0.0, 0.25, -1.0, 0.5]),
        (np.float64, [0.0, 0.25, -1.0, 0.5], [0.0, 0.25, -1.0, 0.5]),
    ],
)
def test_to_float32_scaling(dtype, raw, expected):
    out = to_float32(np.array(raw, dtype=dtype))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, np.array(expected, dtype=np.float64), rtol=0, atol=1e-6)
    assert np.all(np.abs(out) <= 1.0)


def test_to_float32_full_scale_int16_is_about_one():
    out = to_float32(np.array([32767, -32768], dtype=np.int16))
    assert abs(out[0] - 1.0) < 1e-4 and out[1] == -1.0


def test_to_float32_keeps_float_values_and_shape():
    x = np.random.default_rng(0).uniform(-1, 1, size=(50, 2))
    out = to_float32(x)
    assert out.shape == (50, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out, x, atol=1e-7)


@pytest.mark.parametrize("bad", [np.array([True, False]), np.array(["a", "b"]), np.array([1 + 1j]),
                                 np.array([1, 2], dtype=np.uint16)])
def test_to_float32_rejects_bad_dtypes(bad):
    with pytest.raises(AudioError):
        to_float32(bad)


# --------------------------------------------------------------------------------------------- mix_down


def test_mix_down_1d_is_identity():
    x = np.arange(10, dtype=np.float32)
    np.testing.assert_array_equal(mix_down(x), x)


@pytest.mark.parametrize("channels", range(1, 9))
def test_mix_down_both_layouts(channels):
    rng = np.random.default_rng(channels)
    frames = 300
    a = rng.uniform(-1, 1, size=(frames, channels)).astype(np.float32)
    want = a.astype(np.float64).mean(axis=1)
    out_fc = mix_down(a)  # (frames, channels)
    out_cf = mix_down(np.ascontiguousarray(a.T))  # (channels, frames)
    for out in (out_fc, out_cf):
        assert out.shape == (frames,) and out.dtype == np.float32
        np.testing.assert_allclose(out, want, atol=1e-6)


def test_mix_down_rejects_3d():
    with pytest.raises(AudioError):
        mix_down(np.zeros((2, 3, 4), dtype=np.float32))


# --------------------------------------------------------------------------------------------- check_rate


@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000.0, np.int64(22050), np.float32(96000)])
def test_check_rate_accepts(rate):
    out = check_rate(rate)
    assert type(out) is int and out == int(rate)


@pytest.mark.parametrize("rate", [0, -16000, float("nan"), float("inf"), 44100.5, None, "16000", True, False,
                                  [16000]])
def test_check_rate_rejects(rate):
    with pytest.raises(AudioError):
        check_rate(rate)


# --------------------------------------------------------------------------------------------- prepare


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros(0, dtype=np.float32),
        [],
        np.zeros((0, 2), dtype=np.float32),
        np.array([0.1, np.nan, 0.2], dtype=np.float32),
        np.array([0.1, np.inf, 0.2]),
        np.array([0.1, -np.inf]),
        np.zeros((2, 3, 4), dtype=np.float32),
        np.array([0.1, 0.2], dtype=object),
        np.array([True, False, True]),
    ],
    ids=["empty", "empty-list", "empty-2d", "nan", "inf", "-inf", "3d", "object", "bool"],
)
def test_prepare_rejects(bad):
    with pytest.raises(AudioError):
        prepare(bad, SR)


def test_prepare_allow_empty():
    out = prepare(np.zeros(0, dtype=np.float32), SR, allow_empty=True)
    assert out.shape == (0,) and out.dtype == np.float32


def test_prepare_rejects_bad_rate():
    with pytest.raises(AudioError):
        prepare(np.zeros(100, dtype=np.float32), 44100.5)


def test_prepare_16k_passthrough_and_int_pcm():
    x = sine(300, SR, 0.1)
    np.testing.assert_array_equal(prepare(x, SR), x)
    pcm = np.round(x * 32767).astype(np.int16)
    np.testing.assert_allclose(prepare(pcm, SR), x, atol=1e-4)
    stereo = np.stack([pcm, pcm], axis=1)
    np.testing.assert_allclose(prepare(stereo, SR), x, atol=1e-4)


@pytest.mark.parametrize("rate", [8000, 44100, 48000, 96000])
def test_prepare_resamples_length_and_pitch(rate):
    x = sine(440, rate, 0.5)
    y = prepare(x, rate)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - len(x) * SR / rate) <= 2
    assert abs(peak_hz(y) - 440.0) <= SR / len(y)  # within one FFT bin
    # amplitude is preserved (away from the filter's edges)
    assert abs(np.abs(y[500:-500]).max() - 0.5) < 0.02


# --------------------------------------------------------------------------------------------- files


def _formats():
    avail = sf.available_formats()
    out = [("WAV", "FLOAT", "wav", True), ("WAV", "PCM_16", "wav", True), ("FLAC", "PCM_16", "flac", True),
           ("OGG", "VORBIS", "ogg", False)]
    if "MP3" in avail:
        out.append(("MP3", "MPEG_LAYER_III", "mp3", False))
    return out


@pytest.mark.parametrize("fmt, subtype, ext, lossless", _formats(), ids=lambda v: str(v))
@pytest.mark.parametrize("rate", [16000, 44100])
def test_load_formats_match_array_path(tmp_path, fmt, subtype, ext, lossless, rate):
    x = sine(440, rate, 1.0)
    stereo = np.stack([x, 0.5 * x], axis=1)  # mixed down to 0.75 * x
    p = tmp_path / f"clip_{subtype}.{ext}"
    sf.write(str(p), stereo, rate, format=fmt, subtype=subtype)
    y = load(p)
    assert y.dtype == np.float32 and y.ndim == 1
    # the file path gives exactly what the array path gives for the decoded samples
    data, r = sf.read(str(p), dtype="float32", always_2d=True)
    assert r == rate
    np.testing.assert_array_equal(y, prepare(data, rate))
    # and (up to the codec) the original signal
    ref = prepare(0.75 * x, rate)
    if lossless:
        assert len(y) == len(ref)
        np.testing.assert_allclose(y, ref, atol=2e-4 if subtype == "PCM_16" else 1e-6)
    else:
        assert abs(len(y) - len(ref)) <= 1152
        n = min(len(y), len(ref))
        assert np.corrcoef(y[:n], ref[:n])[0, 1] > 0.99
    assert abs(peak_hz(y) - 440.0) <= 2.0
    # load with str path and start/stop in seconds
    part = load(str(p), start=0.25, stop=0.75)
    assert abs(len(part) - SR // 2) <= 2 + (1152 if not lossless else 0)


def test_iter_file_blocks_cover_the_file(tmp_path):
    x = sine(440, 22050, 1.3)
    p = tmp_path / "a.wav"
    sf.write(str(p), x, 22050, subtype="FLOAT")
    blocks = list(iter_file(p, block_seconds=0.25))
    assert all(r == 22050 for _, r in blocks)
    assert [len(b) for b, _ in blocks[:-1]] == [int(0.25 * 22050)] * (len(blocks) - 1)
    np.testing.assert_array_equal(np.concatenate([b for b, _ in blocks]), x)


def _bad_files(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(str(good), sine(440, SR, 0.5), SR, subtype="PCM_16")
    raw = good.read_bytes()
    files = {"missing": tmp_path / "nope.wav", "directory": tmp_path / "adir"}
    files["directory"].mkdir()
    (tmp_path / "text.wav").write_text("this is not audio at all\n" * 20)
    files["text"] = tmp_path / "text.wav"
    (tmp_path / "empty.wav").write_bytes(b"")
    files["zero-length"] = tmp_path / "empty.wav"
    for cut in (10, 30, 44):  # cut inside the RIFF header, before the data marker, right after the header
        q = tmp_path / f"cut{cut}.wav"
        q.write_bytes(raw[:cut])
        files[f"truncated-{cut}"] = q
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(raw[:12] + bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8)))
    files["corrupt-chunks"] = garbage
    return files


BAD = ["missing", "directory", "text", "zero-length", "truncated-10", "truncated-30", "truncated-44",
       "corrupt-chunks"]


@pytest.mark.parametrize("kind", BAD)
def test_load_rejects_bad_files(tmp_path, kind):
    p = _bad_files(tmp_path)[kind]
    with pytest.raises(AudioError):
        load(p)


@pytest.mark.parametrize("kind", BAD)
def test_iter_file_rejects_bad_files(tmp_path, kind):
    p = _bad_files(tmp_path)[kind]
    with pytest.raises(AudioError):
        list(iter_file(p))


def test_load_wav_truncated_mid_data_gives_the_prefix(tmp_path):
    """A WAV cut in its data chunk still decodes (libsndfile reads what is there): exactly the surviving samples."""
    x = sine(440, SR, 0.5)
    p = tmp_path / "a.wav"
    sf.write(str(p), x, SR, subtype="FLOAT")
    raw = p.read_bytes()
    header = len(raw) - 4 * len(x)
    keep = 3000
    p.write_bytes(raw[: header + 4 * keep])
    y = load(p)
    np.testing.assert_array_equal(y, x[:keep])
    np.testing.assert_array_equal(np.concatenate([b for b, _ in iter_file(p)]), x[:keep])


# --------------------------------------------------------------------------------------------- streaming resampler


@pytest.mark.parametrize("rate", [8000, 44100, 48000])
@pytest.mark.parametrize("chunk", [37, 512, 4410])
def test_stream_resampler_matches_whole(rate, chunk):
    rng = np.random.default_rng(rate + chunk)
    x = (sine(440, rate, 0.6) + 0.1 * rng.standard_normal(int(0.6 * rate))).astype(np.float32)
    whole = resample(x, rate)
    rs = StreamResampler(rate)
    parts = [rs(x[i : i + chunk]) for i in range(0, len(x), chunk)]
    parts.append(rs(np.zeros(0, dtype=np.float32), last=True))
    streamed = np.concatenate(parts)
    assert abs(len(streamed) - len(whole)) <= 2
    n = min(len(streamed), len(whole))
    np.testing.assert_allclose(streamed[100:n], whole[100:n], atol=1e-4)


def test_stream_resampler_identity_at_16k():
    x = sine(440, SR, 0.1)
    rs = StreamResampler(SR)
    np.testing.assert_array_equal(rs(x), x)
    np.testing.assert_array_equal(resample(x, SR), x)


# ------------------------------------------------------------------ messages that name the real problem; bytes, files


@pytest.mark.parametrize("url", ["https://example.com/clip.wav", "http://host/a.flac", "s3://bucket/key.wav"])
def test_a_url_is_refused_as_a_url(url):
    from pathlib import Path

    from edgeser.audio import file_info

    for given in (url, Path(url)):  # Path("https://...") reads "https:/..."; still a URL
        with pytest.raises(AudioError, match="URLs are not supported.*download the file first"):
            file_info(given)
        with pytest.raises(AudioError, match="URLs are not supported"):
            list(iter_file(given))


def test_a_file_named_like_a_url_scheme_is_still_a_file(tmp_path, monkeypatch):
    """Only a path that does not exist is taken for a URL: a real folder named ``http:`` is read as any other."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "http:").mkdir()
    sf.write(str(tmp_path / "http:" / "a.wav"), sine(440, SR, 0.3), SR)
    assert sum(len(b) for b, _ in iter_file("http:/a.wav")) == int(0.3 * SR)
    with pytest.raises(AudioError, match="no such audio file"):
        list(iter_file("nope/clip.wav"))


def test_a_zero_byte_file_is_called_empty(tmp_path):
    p = tmp_path / "empty.wav"
    p.write_bytes(b"")
    for f in (load, lambda q: list(iter_file(q))):
        with pytest.raises(AudioError, match=r"empty\.wav is an empty file \(0 bytes\)"):
            f(p)


def test_iter_file_reads_bytes_and_file_objects(tmp_path):
    import io

    x = sine(440, 22050, 1.3)
    p = tmp_path / "a.flac"
    sf.write(str(p), x, 22050, format="FLAC", subtype="PCM_24")
    want = [(b.copy(), r) for b, r in iter_file(p, block_seconds=0.25)]

    class Pipe:  # a readable object that cannot seek (a pipe, a socket, an upload stream)
        def __init__(self, data):
            self._f = io.BytesIO(data)

        def read(self, n=-1):
            return self._f.read(n)

    data = p.read_bytes()
    with open(p, "rb") as fobj:
        sources = {"bytes": data, "bytearray": bytearray(data), "BytesIO": io.BytesIO(data), "open file": fobj,
                   "pipe": Pipe(data)}
        for name, src in sources.items():
            got = list(iter_file(src, block_seconds=0.25))
            assert [r for _, r in got] == [r for _, r in want], name
            np.testing.assert_array_equal(np.concatenate([b for b, _ in got]), np.concatenate([b for b, _ in want]))


def test_bytes_that_are_no_audio_file_say_what_is_expected():
    import io

    with pytest.raises(AudioError, match="empty"):
        list(iter_file(b""))
    with pytest.raises(AudioError, match="empty"):
        list(iter_file(io.BytesIO(b"")))
    pcm = (sine(440, SR, 0.2) * 32767).astype(np.int16).tobytes()  # raw PCM: no header to decode
    with pytest.raises(AudioError, match=r"cannot read <6400 bytes> as audio.*np\.frombuffer"):
        list(iter_file(pcm))
