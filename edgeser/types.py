"""Result types. Plain frozen dataclasses, JSON-serialisable through ``to_dict()``."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

UNCERTAIN = "uncertain"  # the label of a result whose confidence is below the abstain threshold (scores are kept)
NO_SPEECH = "no_speech"  # the label of a clip in which the VAD found no speech: no emotion is claimed


@dataclass(frozen=True)
class EmotionResult:
    """The emotion of a whole clip. ``label`` is one of the model's labels, ``"uncertain"`` when ``confidence``
    is below the abstain threshold (then ``scores`` still says what the model leaned to), or ``"no_speech"``
    (:data:`NO_SPEECH`) when the clip holds no speech (silence, noise, hum, tones): then ``confidence`` is 0.0,
    every score is 0.0 (the keys are still the model's labels) and ``duration`` is 0.0."""

    label: str
    confidence: float
    scores: dict[str, float] = field(default_factory=dict)
    duration: float = 0.0  # seconds of speech the result is based on (0.0 = no speech found)

    @property
    def speech(self) -> bool:
        """Whether the clip held speech (False: ``label`` is ``"no_speech"``)."""
        return self.label != NO_SPEECH

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


@dataclass(frozen=True)
class EmotionEvent:
    """The emotion of one speech segment, from ``start`` to ``end`` seconds of the stream. A segment is a stretch of
    speech between pauses (as the VAD and the segmenter see them), or part of a long one that was cut where the
    emotion changed (``Model.stream(split_on_change=...)``; the next segment then starts where this one ends).

    ``final`` is False for partial events, emitted while the segment goes on (each covers the segment so far), and
    True for the single last event of a segment. ``label`` is ``"uncertain"`` when ``confidence`` is below the
    abstain threshold (``scores`` keep the model's probabilities).
    """

    start: float
    end: float
    label: str
    confidence: float
    scores: dict[str, float]
    final: bool
    segment: int = 0  # index of the speech segment in the stream, counting from 0

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())
