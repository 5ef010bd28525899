"""Typed errors raised by edgeser. Every public entry point raises one of these for bad input."""


class EdgeserError(Exception):
    """Base class of every error edgeser raises on purpose."""


class AudioError(EdgeserError, ValueError):
    """The audio given is unusable: empty, non-finite, wrong dtype/shape, bad sample rate, unreadable file."""


class ModelError(EdgeserError):
    """A model file is missing, corrupt, of an unsupported format or version, or its backend is unavailable."""


class DeviceError(EdgeserError):
    """No usable audio input device (or the sounddevice/PortAudio stack is missing)."""


def install_hint(extra: str) -> str:
    """How to install one of edgeser's extras, for messages: the released package's form and a clone's."""
    return f"pip install 'edgeser[{extra}]' (from a clone of the repository: pip install '.[{extra}]')"


class ExportError(EdgeserError):
    """An export (``python -m export``) cannot run: its checkpoint is missing or of the wrong kind, the output folder
    is not writable, the verification clips are unusable, or the export extras are not installed."""
