"""Result types. Plain frozen dataclasses, JSON-serialisable through ``to_dict()``."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

UNCERTAIN = "uncertain"  # the label of a result whose confidence is below the abstain threshold (scores are kept)


@dataclass(frozen=True)
class EmotionResult:
    """The emotion of a whole clip. ``label`` is one of the model's labels, or ``"uncertain"`` when ``confidence``
    is below the abstain threshold (then ``scores`` still says what the model leaned to)."""

    label: str
    confidence: float
    scores: dict[str, float] = field(default_factory=dict)
    duration: float = 0.0  # seconds of speech the result is based on (0.0 = no speech found)

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
