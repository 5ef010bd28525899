"""Offline ASR transcripts (faster-whisper on the packaged Whisper tiny.en weights) and their cache."""

import subprocess

import pytest

from train.data import Clip
from train.data.transcribe import Transcriber, fill_transcripts, model_dir
from train.text import word_error_rate, normalize


@pytest.fixture(scope="module")
def sentence(tmp_path_factory):
    path = tmp_path_factory.mktemp("asr") / "fox.wav"
    subprocess.run(["espeak-ng", "-w", str(path), "The weather is lovely today and the sun is shining"], check=True)
    return path


def test_transcribes_espeak_speech_and_caches(sentence, tmp_path):
    tr = Transcriber("tiny.en", cache_dir=tmp_path)
    text = tr.transcribe(sentence)
    # robotic espeak-ng speech through the smallest Whisper: most words, not all (measured WER 0.5 on this sentence)
    wer = word_error_rate(normalize("The weather is lovely today and the sun is shining"), normalize(text))
    assert wer <= 0.6, text
    assert {"LOVELY", "SUN", "SHINING"} <= set(normalize(text).split()), text
    # a second transcriber reads the cache and never needs the model
    tr2 = Transcriber("tiny.en", cache_dir=tmp_path)
    tr2._load = lambda: (_ for _ in ()).throw(AssertionError("model loaded despite cache"))
    assert tr2.transcribe(sentence) == text


def test_fill_transcripts_keeps_gold_and_fills_missing(sentence, tmp_path):
    gold = Clip(str(sentence), "s1", "happy", "female", {"transcript": "gold words"})
    missing = Clip(str(sentence), "s2", "sad", "male", {})
    out = fill_transcripts([gold, missing], Transcriber("tiny.en", cache_dir=tmp_path))
    assert out[0].meta["transcript"] == "gold words" and out[0].meta["transcript_source"] == "gold"
    assert out[1].meta["transcript_source"] == "asr:tiny.en"
    assert "sun" in out[1].meta["transcript"].lower()


def test_model_dir_errors_without_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="no download"):
        model_dir(str(tmp_path))
