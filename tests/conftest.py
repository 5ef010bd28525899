"""Shared pytest fixtures."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

ESPEAK_TEXT = "The quick brown fox jumps over the lazy dog, and then it runs far away."
CORPORA = Path(__file__).resolve().parents[1].parent / "shared" / "data"  # ../shared/data from the repository root


def corpus_root(name: str) -> Path:
    """Where corpus ``name`` is looked for: ``$EDGESER_<NAME>`` if set (as ``train.data`` reads it), else
    ``../shared/data/<name>`` next to the repository."""
    env = os.environ.get(f"EDGESER_{name.upper()}")
    return Path(env).expanduser() if env else CORPORA / name


def require_corpus(name: str) -> Path:
    """The folder of corpus ``name`` (``ravdess``, ``nemo``, ``ased``) for a test that reads it. Without the corpus
    (no ``manifest.csv`` there) the test is skipped on a developer's machine, and fails when ``$CI`` is "true": CI
    must run every test, so a missing corpus there is a broken set-up, not a reason to pass."""
    root = corpus_root(name)
    if (root / "manifest.csv").is_file():
        return root.resolve()
    where = f"{root / 'manifest.csv'} not found"
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"corpus {name!r} is missing in CI ({where}); CI must provide it at {CORPORA / name} "
                    f"or through $EDGESER_{name.upper()}", pytrace=False)
    pytest.skip(f"needs the {name!r} corpus ({where}): put it at {CORPORA / name} (with its manifest.csv) or set "
                f"$EDGESER_{name.upper()} to its folder")


@pytest.fixture(scope="session")
def ravdess_corpus() -> Path:
    """The RAVDESS folder (see :func:`require_corpus`: skips without it, fails in CI)."""
    return require_corpus("ravdess")


def espeak_wav(path, text: str, voice: str = "en-us", rate: int = 160) -> None:
    """Synthesize ``text`` with Debian's espeak-ng into a WAV file. Fails (never skips) if espeak-ng is missing."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.fail("espeak-ng is not installed: these tests need it to generate speech (apt-get install -y espeak-ng)")
    proc = subprocess.run([exe, "-v", voice, "-s", str(rate), "-w", str(path), text], capture_output=True, timeout=60)
    if proc.returncode != 0:
        pytest.fail(f"espeak-ng failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}")


@pytest.fixture(scope="session")
def espeak_speech(tmp_path_factory) -> tuple[np.ndarray, str]:
    """(float32 mono 16 kHz samples, text) of one English sentence spoken by espeak-ng."""
    from edgeser.audio import load

    path = tmp_path_factory.mktemp("espeak") / "speech.wav"
    espeak_wav(path, ESPEAK_TEXT)
    x = load(path)
    assert x.dtype == np.float32 and x.ndim == 1 and x.size > 16000
    return x, ESPEAK_TEXT


class FakeBackend:
    """A deterministic stand-in for a model: logits from band energies of the window (tests of stream logic)."""

    name = "fake"
    path = "<fake>"

    def __init__(self, labels=("neutral", "happy", "angry", "sad"), window_frames=200, hop_frames=50, first_frames=50):
        from edgeser.runtime.metadata import ModelInfo

        self.info = ModelInfo(labels=tuple(labels), sample_rate=16000, n_fft=400, hop_length=160, n_mels=80,
                              window_frames=window_frames, hop_frames=hop_frames, first_frames=first_frames,
                              input_shape=(1, 80, window_frames))
        self.calls = 0

    def run(self, window):
        assert window.shape == (1, 80, self.info.window_frames) and window.dtype == np.float32
        self.calls += 1
        bands = np.array_split(window[0], len(self.info.labels), axis=0)
        return np.array([b.mean() for b in bands], dtype=np.float32)


@pytest.fixture
def fake_model():
    from edgeser.model import Model

    return Model(FakeBackend())


@pytest.fixture(scope="session")
def speech_in_silence(espeak_speech):
    """(audio, speech_start_s, speech_end_s): 1 s quiet noise, the espeak sentence, 1.5 s quiet noise."""
    x, _ = espeak_speech
    rng = np.random.default_rng(1)
    lead, tail = np.zeros(16000, np.float32), np.zeros(24000, np.float32)
    audio = np.concatenate([lead, x, tail])
    audio = audio + (rng.standard_normal(audio.size) * 1e-4).astype(np.float32)
    # true speech bounds from the clean sentence's energy
    e = np.convolve(x ** 2, np.ones(160) / 160, mode="same")
    idx = np.nonzero(e > e.max() * 1e-3)[0]
    return audio.astype(np.float32), 1.0 + idx[0] / 16000, 1.0 + idx[-1] / 16000
