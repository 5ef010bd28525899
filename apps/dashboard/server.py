"""The dashboard's server: an edgeser listener publishes events to a :class:`Hub`; a local HTTP server (stdlib
``ThreadingHTTPServer``, bound to 127.0.0.1 only) serves the page and pushes the events with Server-Sent Events.

Endpoints::

    GET /             the page (static/index.html: one file, no external resources)
    GET /api/info     JSON: labels and their colours (from the model's metadata), model, source, state, counters
    GET /api/events   JSON: the events so far (final events + the open segment's latest partial event)
    GET /events       SSE stream: ``info`` once, then ``emotion`` events (``id:`` = event number; a reconnecting
                      EventSource resumes after ``Last-Event-ID``), ``status`` on state changes, and ``end`` when
                      the source has ended (then the server closes the stream); ``: ping`` comments keep it alive.

A client that connects late first receives the backlog (superseded partial events left out), then live events.
Requests whose ``Host`` header is not this server's loopback address are refused (DNS-rebinding protection).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from ..common import label_colors, one_line

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"  # never anything else: the dashboard is for this machine only
STATIC = Path(__file__).parent / "static"
PING_SECONDS = 15.0
MAX_EVENTS = 20000  # events kept for late clients (older ones are dropped)


class Hub:
    """Thread-safe event history + wake-up of the SSE streams. ``publish`` is the listener's callback."""

    def __init__(self, info: dict, max_events: int = MAX_EVENTS):
        self.info = dict(info)
        self.max_events = max_events
        self._events: list[dict] = []
        self._first_id = 1  # id of self._events[0]
        self._next_id = 1
        self._cond = threading.Condition()
        self.state = "waiting"  # waiting -> live -> ended | error
        self.error: str | None = None
        self.closed = False  # the server is shutting down
        self.counters = {"events": 0, "finals": 0, "dropped_blocks": 0, "callback_errors": 0}

    # -- producer side (listener worker thread) ------------------------------------------------------------------
    def publish(self, event) -> None:
        d = event.to_dict() if hasattr(event, "to_dict") else dict(event)
        with self._cond:
            d["id"] = self._next_id
            self._next_id += 1
            self._events.append(d)
            if len(self._events) > self.max_events:
                drop = len(self._events) - self.max_events // 2
                del self._events[:drop]
                self._first_id += drop
            self.counters["events"] += 1
            self.counters["finals"] += bool(d.get("final"))
            if self.state == "waiting":
                self.state = "live"
            self._cond.notify_all()

    def set_live(self) -> None:
        with self._cond:
            if self.state == "waiting":
                self.state = "live"
                self._cond.notify_all()

    def end(self, error: BaseException | None = None, **counters) -> None:
        with self._cond:
            self.counters.update(counters)
            self.state = "error" if error is not None else "ended"
            self.error = one_line(error) if error is not None else None
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    # -- consumer side (one HTTP thread per client) ----------------------------------------------------------------
    @property
    def ended(self) -> bool:
        return self.state in ("ended", "error")

    def status(self) -> dict:
        with self._cond:
            return {"state": self.state, "error": self.error, **self.counters}

    def _after(self, since: int) -> list[dict]:
        start = max(0, since + 1 - self._first_id)
        return self._events[start:]

    def snapshot(self, since: int = 0) -> tuple[list[dict], int]:
        """Events after id ``since`` with superseded partial events left out, and the last id they cover."""
        with self._cond:
            events = self._after(since)
            last = self._next_id - 1
        latest_in_segment: dict[int, int] = {}
        for i, e in enumerate(events):
            latest_in_segment[e.get("segment", 0)] = i
        keep = [e for i, e in enumerate(events) if e.get("final") or latest_in_segment.get(e.get("segment", 0)) == i]
        return keep, max(last, since)

    def wait(self, since: int, timeout: float) -> tuple[list[dict], bool]:
        """Block until there are events after id ``since``, the source ended or the hub closed (or ``timeout``).
        Returns (new events, done) where done means nothing more will come."""
        with self._cond:
            if not self._after(since) and not self.ended and not self.closed:
                self._cond.wait(timeout)
            events = self._after(since)
            done = self.closed or (self.ended and not events)
            return events, done


class DashboardHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, hub: Hub, port: int = 0, verbose: bool = False):
        self.hub = hub
        self.verbose = verbose
        self.page = (STATIC / "index.html").read_bytes()
        super().__init__((HOST, port), Handler)

    @property
    def port(self) -> int:
        return self.server_address[1]


class Handler(BaseHTTPRequestHandler):
    server: DashboardHTTPServer
    server_version = "edgeser-dashboard"

    # Everything the page needs comes from this server: the browser refuses anything else.
    CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
           "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

    def log_message(self, fmt, *args):  # quiet unless --verbose
        if self.server.verbose:
            logger.info("%s - %s", self.address_string(), fmt % args)

    def _host_ok(self) -> bool:
        port = self.server.port
        host = (self.headers.get("Host") or "").strip().lower()
        return host in {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        if ctype.startswith("text/html"):
            self.send_header("Content-Security-Policy", self.CSP)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj, code: int = 200) -> None:
        self._send(code, json.dumps(obj).encode(), "application/json")

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        if not self._host_ok():
            self._send(403, b"forbidden: the dashboard only answers requests for 127.0.0.1/localhost\n", "text/plain")
            return
        url = urlsplit(self.path)
        hub = self.server.hub
        if url.path in ("/", "/index.html"):
            self._send(200, self.server.page, "text/html; charset=utf-8")
        elif url.path == "/api/info":
            self._json({**hub.info, **hub.status()})
        elif url.path == "/api/events":
            self._json(hub.snapshot(0)[0])
        elif url.path == "/events":
            self._stream(url)
        elif url.path == "/favicon.ico":
            self._send(204, b"", "image/x-icon")
        else:
            self._send(404, b"not found\n", "text/plain")

    def _stream(self, url) -> None:
        hub = self.server.hub
        since = 0
        for raw in (self.headers.get("Last-Event-ID"), (parse_qs(url.query).get("since") or [None])[0]):
            try:
                since = max(since, int(raw))
            except (TypeError, ValueError):
                pass
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Accel-Buffering", "no")
        self.end_headers()
        if self.command == "HEAD":
            return
        try:
            self._write("retry: 2000\n\n" + _sse("info", {**hub.info, **hub.status()}))
            backlog, cursor = hub.snapshot(since)
            if backlog:
                self._write("".join(_sse("emotion", e, e["id"]) for e in backlog))
            state = None
            while True:
                events, done = hub.wait(cursor, PING_SECONDS)
                if events:
                    cursor = events[-1]["id"]
                    self._write("".join(_sse("emotion", e, e["id"]) for e in events))
                status = hub.status()
                if status["state"] != state:
                    state = status["state"]
                    self._write(_sse("status", status))
                if done:
                    if hub.ended:
                        self._write(_sse("end", status))
                    return
                if not events:
                    self._write(": ping\n\n")
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError):
            return  # the client went away

    def _write(self, text: str) -> None:
        self.wfile.write(text.encode("utf-8"))
        self.wfile.flush()


def _sse(event: str, data, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


class Dashboard:
    """Listener + hub + HTTP server. ``start()`` serves and listens; ``close()`` stops everything (idempotent).

    ``model``: a loaded :class:`edgeser.Model`; ``source``: an edgeser listener source (FileSource, MicrophoneSource,
    :class:`edgeser.listen.FileSource` (with ``speed``), ...); ``port`` 0 picks a free port.
    """

    def __init__(self, model, source, *, title: str = "", port: int = 0, block_ms: float = 30, speed: float = 1.0,
                 verbose: bool = False):
        labels = list(model.labels)
        info = model.info
        self.model = model
        self.source = source
        self.block_ms = block_ms
        self.hub = Hub({
            "labels": labels,
            "colors": label_colors(labels),
            "model": {"name": info.name, "version": info.version, "backend": model.backend.name,
                      "backbone": info.backbone, "quantization": info.quantization,
                      "licence": (info.training or {}).get("licence", "")},
            "source": title,
            "speed": speed,
            "started": time.time(),
        })
        self.httpd = DashboardHTTPServer(self.hub, port, verbose=verbose)
        self.listener = None
        self._threads: list[threading.Thread] = []
        self._closed = False

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.httpd.port}/"

    def start(self) -> Dashboard:
        import edgeser

        t = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                             name="dashboard-http", daemon=True)
        t.start()
        self._threads.append(t)
        self.listener = edgeser.listen(self.hub.publish, model=self.model, source=self.source,
                                       block_ms=self.block_ms,
                                       on_error=lambda exc: logger.error("dashboard: publishing failed: %s", exc))
        self.hub.set_live()
        w = threading.Thread(target=self._watch, name="dashboard-watch", daemon=True)
        w.start()
        self._threads.append(w)
        return self

    def _watch(self) -> None:
        lst = self.listener
        lst.wait()
        self.hub.end(lst.error, dropped_blocks=lst.dropped_blocks, callback_errors=lst.callback_errors)
        if lst.error is not None:
            logger.error("dashboard: the audio source ended with an error: %s", one_line(lst.error))

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the source has ended (a file replay finished, or the device failed)."""
        return self.listener.wait(timeout) if self.listener is not None else True

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.listener is not None:
            try:
                self.listener.stop(timeout=5)
            except Exception as exc:  # already reported by _watch
                logger.debug("listener stop: %s", exc)
        self.hub.close()
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> Dashboard:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
