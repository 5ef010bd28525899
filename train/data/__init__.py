"""Dataset readers for training. Audio stays in ../shared/data; only paths and labels live here.

Readers return ``list[Clip]``; :func:`folds_for` gives each corpus' standard speaker-independent protocol and
:func:`split` turns folds into ``(train, test)``.
"""

from .cremad import load_cremad
from .iemocap import load_iemocap
from .manifest import load_manifest, write_manifest
from .msp_improv import load_msp_improv
from .protocols import CORPORA, folds_for, leave_one_speaker_out, session_folds
from .ravdess import (
    EMOTIONS8,
    LABELS4,
    Clip,
    load_ravdess,
    ravdess_root,
    speaker_folds,
    split,
)


def __getattr__(name: str):
    # synth is imported lazily so that ``python -m train.data.synth`` does not find it already imported
    if name in ("make_corpus", "tts"):
        from . import synth

        return getattr(synth, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CORPORA",
    "EMOTIONS8",
    "LABELS4",
    "Clip",
    "folds_for",
    "leave_one_speaker_out",
    "load_cremad",
    "load_iemocap",
    "load_manifest",
    "load_msp_improv",
    "load_ravdess",
    "make_corpus",
    "ravdess_root",
    "session_folds",
    "speaker_folds",
    "split",
    "tts",
    "write_manifest",
]
