"""Transcript vocabularies for the auxiliary CTC (ASR) heads, CTC greedy decoding, and WER / CER.

:class:`CharVocab` is the character set of Cai et al. (Interspeech 2021: the 26 letters plus a few symbols) and of
MMER (Interspeech 2023, which upper-cases transcripts and removes punctuation). 32 symbols::

    0 "<blank>" (CTC blank)   1 "|" (word separator, a space)   2 "'"   3..28 "A".."Z"   29 "."   30 ","   31 "?"

:class:`SentencePieceVocab` wraps a trained sentencepiece model with the same API, its ids shifted by one so that
0 stays the CTC blank.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

BLANK = 0
LETTERS = tuple(chr(c) for c in range(ord("A"), ord("Z") + 1))
PUNCT = (".", ",", "?")
SYMBOLS: tuple[str, ...] = ("<blank>", "|", "'", *LETTERS, *PUNCT)

_DASHES = re.compile(r"[-\u2010-\u2015/_]+")  # hyphens / dashes / slashes separate words: "twenty-five" -> 2 words
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u02bc": "'", "`": "'"})


def normalize(text: str, keep_punct: bool = False) -> str:
    """Normalise a transcript to the :class:`CharVocab` alphabet.

    Upper-cases, strips accents (``"café"`` -> ``"CAFE"``), maps curly apostrophes to ``'``, treats hyphens, dashes
    and slashes as word breaks, drops every other character outside the vocabulary (with ``keep_punct=False``, as in
    MMER, also ``.``, ``,`` and ``?``) and collapses whitespace to single spaces (no leading / trailing space).
    """
    if not isinstance(text, str):
        raise TypeError(f"normalize expects a str, got {type(text).__name__}")
    text = unicodedata.normalize("NFKD", text.translate(_QUOTES))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).upper()
    text = _DASHES.sub(" ", text)
    allowed = set(LETTERS) | {"'"} | (set(PUNCT) if keep_punct else set())
    kept = "".join(ch if (ch in allowed or ch.isspace()) else "" for ch in text)
    return " ".join(kept.split())


def _as_tensor(log_probs) -> torch.Tensor:
    if isinstance(log_probs, np.ndarray):
        return torch.from_numpy(log_probs)
    if isinstance(log_probs, torch.Tensor):
        return log_probs
    raise TypeError(f"expected a torch.Tensor or numpy array of log-probabilities, got {type(log_probs).__name__}")


def ctc_greedy_ids(log_probs, lengths=None, blank: int = BLANK) -> list[list[int]]:
    """Best-path CTC decoding: argmax per frame, collapse repeats, drop blanks.

    Args:
        log_probs: ``[T, V]`` (one utterance) or ``[B, T, V]`` scores (log-probabilities or logits: only the argmax
            matters), torch or numpy.
        lengths: optional ``[B]`` valid frames per utterance (all ``T`` frames when omitted).
        blank: the blank index.

    Returns:
        One list of label ids per utterance (a single list for ``[T, V]`` input).
    """
    x = _as_tensor(log_probs)
    if x.dim() == 2:
        x = x[None]
    if x.dim() != 3:
        raise ValueError(f"greedy decoding expects [T, V] or [B, T, V] scores, got shape {tuple(x.shape)}")
    best = x.argmax(-1).cpu()
    if lengths is None:
        lens = [best.shape[1]] * best.shape[0]
    else:
        lens = [int(v) for v in torch.as_tensor(lengths).reshape(-1).tolist()]
        if len(lens) != best.shape[0]:
            raise ValueError(f"lengths has {len(lens)} entries for a batch of {best.shape[0]}")
    out: list[list[int]] = []
    for row, n in zip(best.tolist(), lens, strict=True):
        ids: list[int] = []
        prev = None
        for v in row[:n]:
            if v != prev and v != blank:
                ids.append(v)
            prev = v
        out.append(ids)
    return out


class CharVocab:
    """The 32-symbol character vocabulary (index 0 = CTC blank, 1 = word separator ``|``).

    ``encode`` normalises its input with :func:`normalize` (``keep_punct`` as given here, default False as in MMER),
    so raw transcripts can be passed directly.
    """

    blank = BLANK
    symbols = SYMBOLS

    def __init__(self, keep_punct: bool = False):
        self.keep_punct = keep_punct
        self._index = {s: i for i, s in enumerate(SYMBOLS)}

    def __len__(self) -> int:
        return len(SYMBOLS)

    def normalize(self, text: str) -> str:
        """:func:`normalize` with this vocabulary's ``keep_punct``."""
        return normalize(text, keep_punct=self.keep_punct)

    def encode(self, text: str) -> list[int]:
        """Ids of the normalised ``text`` (spaces -> ``|`` = 1). Never contains the blank."""
        return [self._index["|" if ch == " " else ch] for ch in self.normalize(text)]

    def decode(self, ids: Sequence[int] | torch.Tensor | np.ndarray) -> str:
        """Text of ``ids``: blanks dropped, ``|`` -> space, whitespace collapsed (no CTC repeat collapsing)."""
        if isinstance(ids, (torch.Tensor, np.ndarray)):
            ids = ids.tolist()
        chars = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(SYMBOLS):
                raise ValueError(f"id {i} is outside the {len(SYMBOLS)}-symbol character vocabulary")
            if i == BLANK:
                continue
            chars.append(" " if SYMBOLS[i] == "|" else SYMBOLS[i])
        return " ".join("".join(chars).split())

    def greedy_decode(self, log_probs, lengths=None) -> list[str]:
        """CTC best-path transcripts of ``[T, V]`` or ``[B, T, V]`` scores (see :func:`ctc_greedy_ids`)."""
        return [self.decode(ids) for ids in ctc_greedy_ids(log_probs, lengths, blank=self.blank)]


class SentencePieceVocab:
    """A sentencepiece model with the :class:`CharVocab` API; id 0 is reserved for the CTC blank.

    Piece ``k`` of the sentencepiece model has id ``k + 1`` here, so ``len(vocab) == piece_size + 1``.
    Text is passed to sentencepiece as given (normalise it first, e.g. with :func:`normalize`, if the model was
    trained on normalised text).
    """

    blank = BLANK

    def __init__(self, model_path: str | Path):
        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(
                f"sentencepiece model {path} not found: train one with sentencepiece.SentencePieceTrainer.train("
                "input=..., model_prefix=..., vocab_size=...) and pass the resulting .model file"
            )
        import sentencepiece as spm

        self.model_path = path
        self.sp = spm.SentencePieceProcessor(model_file=str(path))

    def __len__(self) -> int:
        return int(self.sp.get_piece_size()) + 1

    def encode(self, text: str) -> list[int]:
        """Piece ids of ``text``, shifted by one (never 0)."""
        return [i + 1 for i in self.sp.encode(text, out_type=int)]

    def decode(self, ids: Sequence[int] | torch.Tensor | np.ndarray) -> str:
        """Text of ``ids`` (blanks dropped)."""
        if isinstance(ids, (torch.Tensor, np.ndarray)):
            ids = ids.tolist()
        pieces = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self):
                raise ValueError(f"id {i} is outside this {len(self)}-id sentencepiece vocabulary (blank included)")
            if i != BLANK:
                pieces.append(i - 1)
        return self.sp.decode(pieces)

    def greedy_decode(self, log_probs, lengths=None) -> list[str]:
        """CTC best-path transcripts of ``[T, V]`` or ``[B, T, V]`` scores (see :func:`ctc_greedy_ids`)."""
        return [self.decode(ids) for ids in ctc_greedy_ids(log_probs, lengths, blank=self.blank)]


def edit_distance(ref: Sequence, hyp: Sequence) -> int:
    """Levenshtein distance (substitutions + deletions + insertions, each of cost 1) between two sequences."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def _pairs(ref: str | Sequence[str], hyp: str | Sequence[str]) -> list[tuple[str, str]]:
    if isinstance(ref, str) and isinstance(hyp, str):
        return [(ref, hyp)]
    if isinstance(ref, str) or isinstance(hyp, str):
        raise TypeError("pass two strings, or two lists of strings (a corpus), not one of each")
    if len(ref) != len(hyp):
        raise ValueError(f"{len(ref)} references but {len(hyp)} hypotheses")
    return list(zip(ref, hyp, strict=True))


def word_error_rate(ref: str | Sequence[str], hyp: str | Sequence[str]) -> float:
    """WER = word-level edit distance / number of reference words (words split on whitespace).

    Two lists give the corpus WER (total edits / total reference words). An empty reference counts as one word's
    denominator, so an empty pair scores 0 and a non-empty hypothesis against it scores its word count.
    """
    edits = total = 0
    for r, h in _pairs(ref, hyp):
        rw, hw = r.split(), h.split()
        edits += edit_distance(rw, hw)
        total += len(rw)
    return edits / max(total, 1)


def char_error_rate(ref: str | Sequence[str], hyp: str | Sequence[str]) -> float:
    """CER = character-level edit distance / reference characters (whitespace collapsed to single spaces, which
    count as characters). Two lists give the corpus CER."""
    edits = total = 0
    for r, h in _pairs(ref, hyp):
        rc, hc = " ".join(r.split()), " ".join(h.split())
        edits += edit_distance(rc, hc)
        total += len(rc)
    return edits / max(total, 1)
