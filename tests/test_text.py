"""train.text: the 32-symbol character vocabulary, CTC greedy decoding, WER / CER, the sentencepiece wrapper."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from train.text import (
    CharVocab,
    SentencePieceVocab,
    char_error_rate,
    ctc_greedy_ids,
    edit_distance,
    normalize,
    word_error_rate,
)


def test_vocab_layout():
    v = CharVocab()
    assert len(v) == 32
    assert v.blank == 0 and v.symbols[0] == "<blank>"
    assert v.symbols[1] == "|" and v.symbols[2] == "'"
    assert v.symbols[3] == "A" and v.symbols[28] == "Z"
    assert v.symbols[29:] == (".", ",", "?")


def test_normalize():
    assert normalize("  Hello,\tworld!  It's   fine? ") == "HELLO WORLD IT'S FINE"
    assert normalize("Hello,\tworld!  It's fine?", keep_punct=True) == "HELLO, WORLD IT'S FINE?"
    assert normalize("Café twenty-five [laughter] 42") == "CAFE TWENTY FIVE LAUGHTER"
    assert normalize("don\u2019t") == "DON'T"
    assert normalize("") == ""
    with pytest.raises(TypeError):
        normalize(None)  # type: ignore[arg-type]


def test_encode_decode_round_trip():
    v = CharVocab()
    ids = v.encode("Hi, you!")
    assert ids == [10, 11, 1, 27, 17, 23]  # H I | Y O U (punctuation removed)
    assert 0 not in ids
    assert v.decode(ids) == "HI YOU"
    text = "I DON'T KNOW WHAT YOU MEAN"
    assert v.decode(v.encode(text)) == text
    vp = CharVocab(keep_punct=True)
    assert vp.decode(vp.encode("Really? yes, sure.")) == "REALLY? YES, SURE."
    assert v.decode(torch.tensor([0, 3, 0, 1, 4])) == "A B"
    with pytest.raises(ValueError, match="outside"):
        v.decode([32])


def _one_hot_log_probs(path: list[int], v: int = 32) -> torch.Tensor:
    x = torch.full((len(path), v), -10.0)
    x[torch.arange(len(path)), torch.tensor(path)] = 0.0
    return x.log_softmax(-1)


def test_greedy_decode_collapses_repeats_and_drops_blanks():
    v = CharVocab()
    h, i, sep, a = v.encode("H")[0], v.encode("I")[0], 1, v.encode("A")[0]
    # H H - I I | | A - A  ->  "HI AA" (the blank separates the two A's)
    path = [h, h, 0, i, i, sep, sep, a, 0, a]
    lp = _one_hot_log_probs(path)
    assert v.greedy_decode(lp) == ["HI AA"]
    assert ctc_greedy_ids(lp) == [[h, i, sep, a, a]]
    # batch with lengths: the second item stops after 4 frames
    batch = torch.stack([lp, _one_hot_log_probs([a, a, 0, h, i, i, 0, 0, 0, 0])])
    assert v.greedy_decode(batch, lengths=torch.tensor([10, 4])) == ["HI AA", "AH"]
    assert v.greedy_decode(batch.numpy()) == ["HI AA", "AHI"]
    with pytest.raises(ValueError, match=r"\[T, V\]"):
        v.greedy_decode(torch.zeros(32))


def test_edit_distance_and_error_rates():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance([], ["a"]) == 1
    assert word_error_rate("the cat sat", "the cat sat") == 0.0
    assert word_error_rate("the cat sat", "the cat sat down") == pytest.approx(1 / 3)  # 1 insertion
    assert word_error_rate("a b c d", "a x c") == pytest.approx(2 / 4)  # 1 substitution + 1 deletion
    # corpus WER: (0 + 2) edits / (2 + 4) words
    assert word_error_rate(["hi there", "a b c d"], ["hi there", "a x c"]) == pytest.approx(2 / 6)
    assert char_error_rate("abc", "abd") == pytest.approx(1 / 3)
    assert char_error_rate("ab cd", "abcd") == pytest.approx(1 / 5)  # the dropped space counts
    assert word_error_rate("", "") == 0.0
    with pytest.raises(ValueError, match="hypotheses"):
        word_error_rate(["a"], ["a", "b"])


SENTENCES = [
    "i do not know what you mean",
    "she was so happy to see him again",
    "why would you say that to me",
    "this is the worst day of my life",
    "we are going to the beach tomorrow",
    "i can not believe you did that",
    "that is wonderful news for everyone",
    "please leave me alone right now",
    "he never listens to anything i say",
    "the weather is nice this morning",
    "are you sure about this decision",
    "my brother is coming home tonight",
    "i feel so tired after the long trip",
    "you should have told me earlier",
    "let us go out for dinner tonight",
    "what time does the train leave",
    "i am really angry with you",
    "it was a beautiful wedding",
    "do you want some more coffee",
    "they won the game last night",
    "nobody told me about the meeting",
    "we have been waiting for hours",
    "i miss my family so much",
    "that movie was really boring",
    "can you help me with this box",
    "the children are playing outside",
    "she is afraid of the dark",
    "give me a call when you arrive",
    "i think we should talk about it",
    "he laughed at his own joke",
]


def test_sentencepiece_vocab(tmp_path):
    import sentencepiece as spm

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES) + "\n")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(tmp_path / "sp"), vocab_size=40, model_type="unigram",
        hard_vocab_limit=False, minloglevel=2,
    )
    v = SentencePieceVocab(tmp_path / "sp.model")
    assert v.blank == 0
    assert len(v) == v.sp.get_piece_size() + 1
    ids = v.encode("i do not know what you mean")
    assert ids and min(ids) >= 1 and max(ids) < len(v)
    assert v.decode(ids) == "i do not know what you mean"
    assert v.decode([0, *ids, 0]) == "i do not know what you mean"
    # CTC greedy decoding of a path that spells the ids with blanks and repeats
    path = []
    for i in ids:
        path += [i, i, 0]
    lp = _one_hot_log_probs(path, v=len(v))
    assert v.greedy_decode(lp) == ["i do not know what you mean"]
    with pytest.raises(FileNotFoundError, match="SentencePieceTrainer"):
        SentencePieceVocab(tmp_path / "missing.model")


def test_greedy_decode_accepts_numpy_and_rejects_other_types():
    v = CharVocab()
    assert v.greedy_decode(np.zeros((3, 32), dtype=np.float32)) == [""]  # all blank
    with pytest.raises(TypeError, match="numpy"):
        v.greedy_decode([[0.0] * 32])
