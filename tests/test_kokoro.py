"""The Kokoro-82M voices of train.data.synth (the robustness benchmark's natural-voice set): phonemes, prosody."""

import numpy as np
import pytest

from train.augment import active_power
from train.data import synth as SY


def test_phoneme_map_turns_espeak_ipa_into_kokoro_symbols():
    assert SY.kokoro_phonemes("ðə skˈa^ɪ əbˌʌv ðə pˈoː^ɹt wʌz ɡɹˈe^ɪ") == "ðə skˈI əbˌʌv ðə pˈɔɹt wʌz ɡɹˈA"
    assert SY.kokoro_phonemes("d^ʒˈʌmp t^ʃˈɜːt^ʃ bˈɚd nˈo^ʊ bˈɔ^ɪ") == "ʤˈʌmp ʧˈɜːʧ bˈəɹd nˈO bˈY"
    ipa = SY.espeak_phonemes("I would like a new alarm clock.")
    assert "^" in ipa and "\n" not in ipa  # espeak-ng ties multi-letter phonemes, one line
    assert "^" not in SY.kokoro_phonemes(ipa)


def test_every_sentence_maps_onto_kokoros_vocabulary():
    from benchmarks.robustness import CALIBRATION_SENTENCES

    vocab = SY._kokoro().vocab
    for text in [t for ts in SY.SENTENCES.values() for t in ts] + list(CALIBRATION_SENTENCES):
        ph = SY.kokoro_phonemes(SY.espeak_phonemes(text))
        assert set(ph) <= set(vocab), (text, set(ph) - set(vocab))  # no symbol silently dropped


def _f0(x: np.ndarray, sr: int = 16000) -> float:
    """Median autocorrelation F0 (70-400 Hz) over voiced 40 ms frames."""
    f0s = []
    n = int(0.04 * sr)
    for i in range(0, len(x) - n, n):
        fr = x[i : i + n] - x[i : i + n].mean()
        if np.sqrt(np.mean(fr**2)) < 0.02:
            continue
        ac = np.correlate(fr, fr, "full")[n - 1 :]
        lo, hi = sr // 400, sr // 70
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.3 * ac[0]:
            f0s.append(sr / lag)
    return float(np.median(f0s))


def test_kokoro_voice_follows_the_prosody():
    text = "The meeting starts at ten in the morning."
    base = SY.tts(text, "kokoro:jf_alpha", rate=165, pitch=50, amplitude=100)
    assert base.dtype == np.float32 and base.ndim == 1 and np.abs(base).max() <= 1.0
    assert 1.0 < base.size / SY.SAMPLE_RATE < 6.0
    assert abs(10 * np.log10(active_power(base)) - SY.KOKORO_LEVEL_DB) < 0.5
    fast = SY.tts(text, "kokoro:jf_alpha", rate=210, pitch=50, amplitude=100)
    slow = SY.tts(text, "kokoro:jf_alpha", rate=125, pitch=50, amplitude=100)
    assert fast.size < base.size < slow.size  # rate -> Kokoro's speed
    quiet = SY.tts(text, "kokoro:jf_alpha", rate=165, pitch=50, amplitude=50)
    assert abs(10 * np.log10(active_power(base) / active_power(quiet)) - 6.02) < 0.3  # amplitude -> gain
    high = SY.tts(text, "kokoro:jf_alpha", rate=165, pitch=72, amplitude=100)
    semis = 12 * np.log2(_f0(high) / _f0(base))
    assert abs(semis - 22 * SY.KOKORO_SEMITONES_PER_PITCH) < 1.0  # pitch -> a shift of 2.6 semitones


def test_kokoro_voices_mix_and_validate(tmp_path):
    engine = SY._kokoro()
    mix = engine.style("jm_kumo+jf_alpha")
    assert np.allclose(mix, (engine.styles["jm_kumo"] + engine.styles["jf_alpha"]) / 2)
    assert set(SY.DEFAULT_KOKORO_VOICES) and all(SY.voice_gender(v) in ("female", "male", "unknown")
                                                 for v in SY.DEFAULT_KOKORO_VOICES)
    assert SY.voice_gender("kokoro:jm_kumo") == "male" and SY.voice_gender("kokoro:jf_alpha+jf_nezumi") == "female"
    assert SY.voice_gender("kokoro:jm_kumo+jf_alpha") == "unknown"
    with pytest.raises(ValueError, match="unknown Kokoro style"):
        SY.make_corpus(tmp_path, n_per_label=1, voices=["kokoro:nobody"])
    with pytest.raises(ValueError, match="no Kokoro phonemes"):
        engine.synthesize("123", engine.style("jf_alpha"))
    with pytest.raises(ValueError, match="at most 510 at once"):  # never cut off silently
        engine.synthesize("a" * 511, engine.style("jf_alpha"))
    assert [SY.voice_engine(v) for v in ("kokoro:jm_kumo", "flite:slt", "en-us+f2")] == ["kokoro", "flite", "espeak-ng"]
    man = SY.make_corpus(tmp_path / "c", n_per_label=1, voices=["kokoro:jm_kumo"], labels=("neutral", "sad"))
    from train.data.manifest import load_manifest

    clips = load_manifest(man)
    assert [c.label for c in clips] == ["neutral", "sad"] and {c.speaker for c in clips} == {"kokoro:jm_kumo"}
