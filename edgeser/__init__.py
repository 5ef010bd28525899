"""edgeser: on-device speech emotion recognition.

    import edgeser
    edgeser.classify("clip.wav")                 # -> EmotionResult(label, confidence, scores); "no_speech" without speech
    edgeser.analyze("meeting.flac")              # -> [EmotionEvent(start, end, label, ...), ...]
    with edgeser.listen(print): ...              # live microphone events on a worker thread

Importing edgeser does not import torch; the default (ONNX) path runs without it.
"""

from .errors import AudioError, DeviceError, EdgeserError, ModelError
from .listen import Listener, listen
from .model import Model, analyze, classify, load
from .stream import Stream
from .types import NO_SPEECH, UNCERTAIN, EmotionEvent, EmotionResult

__version__ = "0.1.0"

__all__ = [
    "load",
    "classify",
    "analyze",
    "listen",
    "Model",
    "Stream",
    "Listener",
    "EmotionEvent",
    "EmotionResult",
    "NO_SPEECH",
    "UNCERTAIN",
    "EdgeserError",
    "AudioError",
    "ModelError",
    "DeviceError",
    "__version__",
]
