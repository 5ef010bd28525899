"""Dataset readers for training. Audio stays in ../shared/data; only paths and labels live here."""

from .ravdess import EMOTIONS8, LABELS4, Clip, load_ravdess, ravdess_root, speaker_folds, split

__all__ = ["EMOTIONS8", "LABELS4", "Clip", "load_ravdess", "ravdess_root", "speaker_folds", "split"]
