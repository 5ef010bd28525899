"""Evaluation protocols: which speakers are held out together, per corpus.

Every protocol returns folds as ``list[list[str]]`` (sorted speaker ids per fold, folds disjoint), so
:func:`train.data.ravdess.split` turns any of them into ``(train, test)`` clips.

Standard protocols (:func:`folds_for`):

=============  =====================================================================
``ravdess``    5 speaker folds balanced by gender (:func:`~train.data.ravdess.speaker_folds`)
``iemocap``    leave-one-session-out, 5 folds (each session = one male + one female actor)
``msp_improv`` leave-one-session-out, 6 folds (each session = one male + one female actor)
``cremad``     5 speaker folds balanced by gender
``manifest``   5 speaker folds balanced by gender (also the synthetic TTS corpus)
=============  =====================================================================
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence

from .ravdess import Clip, speaker_folds

#: Canonical corpus names accepted by :func:`folds_for` and their aliases.
CORPORA: tuple[str, ...] = ("ravdess", "iemocap", "msp_improv", "cremad", "manifest")
_ALIASES = {
    "msp-improv": "msp_improv",
    "mspimprov": "msp_improv",
    "crema-d": "cremad",
    "crema_d": "cremad",
    "synth": "manifest",
    "csv": "manifest",
}


def group_folds(clips: Iterable[Clip], key: Callable[[Clip], Hashable]) -> list[list[str]]:
    """One fold per distinct ``key(clip)`` (in sorted key order) holding the speakers of that group.

    Raises ValueError when a speaker falls into two groups (the folds would not be speaker-independent)
    or when there are fewer than two groups.
    """
    group_of: dict[str, Hashable] = {}
    members: dict[Hashable, set[str]] = defaultdict(set)
    for c in clips:
        g = key(c)
        prev = group_of.setdefault(c.speaker, g)
        if prev != g:
            raise ValueError(f"speaker {c.speaker!r} appears in two groups ({prev!r} and {g!r})")
        members[g].add(c.speaker)
    if len(members) < 2:
        raise ValueError(f"need clips from at least 2 groups to make folds, got {sorted(map(str, members))}")
    return [sorted(members[g]) for g in sorted(members)]


def _session(c: Clip) -> int:
    try:
        return int(c.meta["session"])
    except KeyError:
        raise ValueError(
            f"clip {c.path} has no 'session' in its meta; session folds need clips from a reader that records "
            "sessions (load_iemocap, load_msp_improv, or a manifest with a 'session' column)"
        ) from None
    except (TypeError, ValueError):
        raise ValueError(f"clip {c.path} has a non-integer session {c.meta['session']!r}") from None


def session_folds(clips: Iterable[Clip]) -> list[list[str]]:
    """Leave-one-session-out: fold k = the speakers of the k-th session present (sessions in numeric order).

    On the full IEMOCAP (5 sessions) fold k is Session k+1; on MSP-IMPROV (6 sessions) it is session k+1.
    Reads ``clip.meta["session"]`` (an int, or a string holding one).
    """
    return group_folds(clips, _session)


def leave_one_speaker_out(clips: Iterable[Clip]) -> list[list[str]]:
    """One fold per speaker, in sorted speaker order."""
    return group_folds(clips, lambda c: c.speaker)


def canonical_corpus(name: str) -> str:
    """Normalise a corpus name (``"MSP-IMPROV"`` -> ``"msp_improv"``); ValueError listing the known names."""
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; known: {CORPORA} (aliases: {sorted(_ALIASES)})")
    return key


def folds_for(corpus: str, clips: Sequence[Clip], n_folds: int = 5, seed: int = 0) -> list[list[str]]:
    """The standard protocol's folds for ``corpus`` (see the module docstring).

    ``n_folds`` and ``seed`` apply to the speaker-fold protocols (ravdess, cremad, manifest) only; the session
    protocols have one fold per session present in ``clips``.
    """
    key = canonical_corpus(corpus)
    if key in ("iemocap", "msp_improv"):
        return session_folds(clips)
    return speaker_folds(clips, n_folds=n_folds, seed=seed)


def check_disjoint(folds: Sequence[Sequence[str]]) -> None:
    """Raise ValueError if a speaker is in more than one fold."""
    seen: dict[str, int] = {}
    for k, fold in enumerate(folds):
        for s in fold:
            if s in seen:
                raise ValueError(f"speaker {s!r} is in folds {seen[s]} and {k}")
            seen[s] = k
