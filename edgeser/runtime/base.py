"""The one backend interface: a pure function from one feature window to class logits."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from .metadata import ModelInfo


class Backend(ABC):
    info: ModelInfo
    path: str
    name: str

    @abstractmethod
    def run(self, window: np.ndarray) -> np.ndarray:
        """``window``: float32 log10-mel [1, n_mels, window_frames] -> float32 logits [n_classes]."""
