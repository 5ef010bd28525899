"""Live emotion dashboard: ``python -m apps.dashboard [--file F | --device N] [--port P] [--speed S]``.

A local web page (served on 127.0.0.1 only) with the live emotion timeline, per-class probability bars and the event
log, fed by ``edgeser.listen`` from the microphone or from a file replayed in real time (or ``--speed`` times faster).
Events reach the page by Server-Sent Events; the page is one static HTML file that fetches nothing from elsewhere.
"""

from .cli import main
from .server import Dashboard, Hub

__all__ = ["Dashboard", "Hub", "main"]
