"""The one backend interface: a pure function of one feature window (and, for stateful models, the state the caller
carries) to class logits (and the new state)."""

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
        """``window``: float32 log10-mel [1, n_mels, window_frames] -> float32 logits [n_classes] (stateless models;
        a stateful model is run from its initial state)."""

    def step(self, window: np.ndarray, state: tuple) -> tuple[np.ndarray, tuple]:
        """``(window, *state) -> (logits, new_state)``: the exported graph as a pure function; the caller holds the
        state (``info.state`` describes it; ``info.initial_state()`` is where it starts). Stateless models return
        the state unchanged (empty)."""
        if state:
            raise NotImplementedError(f"{type(self).__name__} does not run stateful models")
        return self.run(window), ()
