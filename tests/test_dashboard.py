"""apps.dashboard: the server (SSE, JSON API, host check), a replayed espeak clip streamed live, and the page rendered
by headless Chromium (driven through the DevTools protocol over --remote-debugging-pipe): its DOM and its
screenshot's pixels are checked against the events the server sent."""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import soundfile as sf
from conftest import espeak_wav

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # apps/ is not an installed package: import it from the checkout
    sys.path.insert(0, str(REPO))
SPEED = 4.0


# --------------------------------------------------------------------------------------------------------------------
# helpers


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """Two espeak sentences (two voices) with pauses: ~8 s, so at least two speech segments."""
    from edgeser.audio import load as load_audio

    d = tmp_path_factory.mktemp("dash")
    espeak_wav(d / "a.wav", "I am so happy to see you today, this is wonderful.")
    espeak_wav(d / "b.wav", "Leave me alone. I do not want to talk about it.", voice="en-us+f3", rate=130)
    # at 16 kHz, so that no resampling happens: the replay (30 ms blocks) and edgeser.analyze (10 s blocks) then see
    # the very same samples, and their events must match to the last digit
    a, b, rate = load_audio(d / "a.wav"), load_audio(d / "b.wav"), 16000
    gap = np.zeros(int(rate * 1.2), np.float32)
    path = d / "clip.wav"
    sf.write(path, np.concatenate([gap[: rate // 2], a, gap, b, gap]), rate)
    return path


@pytest.fixture(scope="module")
def offline(clip):
    """The final events of the clip streamed through the bundled model in 30 ms blocks, as the dashboard's listener
    feeds it (the dashboard must show exactly these segments and scores).

    Not ``model.analyze(clip)``: it reads 10 s blocks, and edgeser's stream then knows where a segment ends before
    the window scheduled past that end is due, so a segment's mean can differ from the live one."""
    import edgeser
    from edgeser.audio import iter_file

    model = edgeser.load()
    s = model.stream(emit_partial=False)
    events = []
    for block, rate in iter_file(clip, block_seconds=0.03):
        events += s.accept(block, rate)
    events += s.flush()
    return model.labels, [e for e in events if e.final]


def start_server(*args, timeout: float = 60.0):
    """``python -m apps.dashboard ARGS`` -> (process, url) once it prints its URL."""
    proc = subprocess.Popen([sys.executable, "-m", "apps.dashboard", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    line = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"dashboard exited {proc.returncode}: {proc.stderr.read()}")
        r, _, _ = select.select([proc.stdout], [], [], 0.2)
        if r:
            line = proc.stdout.readline()
            if "http://" in line:
                url = line.split("http://", 1)[1].split()[0]
                return proc, "http://" + url
    proc.kill()
    raise AssertionError(f"dashboard did not print its URL in {timeout} s (got {line!r})")


def stop_server(proc) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError("dashboard did not stop on SIGTERM")
    assert rc == 0, proc.stderr.read()


def read_sse(url: str, headers=None, timeout: float = 60.0):
    """Read /events until the server's ``end`` event: [(event, id, data), ...] and arrival times."""
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    conn.request("GET", "/events", headers=headers or {})
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.getheader("Content-Type").startswith("text/event-stream")
    out, times = [], []
    event, eid, data = "message", None, []
    deadline = time.monotonic() + timeout
    for raw in resp:
        assert time.monotonic() < deadline, "SSE stream did not end"
        line = raw.decode("utf-8").rstrip("\n")
        if line == "":
            if data:
                out.append((event, eid, json.loads("\n".join(data))))
                times.append(time.monotonic())
            event, eid, data = "message", None, []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            event = value
        elif field == "id":
            eid = int(value)
        elif field == "data":
            data.append(value)
    conn.close()
    return out, times


def get(url: str, path: str, host: str | None = None):
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    conn.request("GET", path, headers={"Host": host} if host else {})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp, body


class Chromium:
    """Headless Chromium driven with the DevTools protocol over ``--remote-debugging-pipe`` (fd 3: commands in,
    fd 4: replies out, NUL-separated JSON): no websocket client needed."""

    def __init__(self, exe: str, profile: Path, log: Path):
        pipe_cmd_r, cmd_w = os.pipe()
        res_r, pipe_res_w = os.pipe()
        # fds 3/4 may be taken by the pipes themselves: use copies above them, so dup2 cannot clobber one with the other
        cmd_r, res_w = os.dup(pipe_cmd_r), os.dup(pipe_res_w)
        os.close(pipe_cmd_r)
        os.close(pipe_res_w)

        def child_fds():  # runs in the child before exec
            os.dup2(cmd_r, 3)
            os.dup2(res_w, 4)

        args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
                f"--user-data-dir={profile}", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--disable-background-networking", "--disable-sync", "--mute-audio", "--hide-scrollbars",
                "--window-size=1280,1000", "about:blank"]
        self._log = open(log, "wb")
        self.proc = subprocess.Popen(args, preexec_fn=child_fds, close_fds=False, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=self._log)
        os.close(cmd_r)
        os.close(res_w)
        self._w = os.fdopen(cmd_w, "wb", buffering=0)
        self._r = os.fdopen(res_r, "rb", buffering=0)
        self._next = 0
        self._lock = threading.Lock()
        self._cond = threading.Condition()
        self._replies: dict[int, dict] = {}
        self.events: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buf = b""
        while True:
            chunk = self._r.read(1 << 16)
            if not chunk:
                return
            buf += chunk
            while b"\0" in buf:
                msg, buf = buf.split(b"\0", 1)
                d = json.loads(msg)
                with self._cond:
                    if "id" in d:
                        self._replies[d["id"]] = d
                    else:
                        self.events.append(d)
                    self._cond.notify_all()

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30):
        with self._lock:
            self._next += 1
            i = self._next
        msg = {"id": i, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self._w.write(json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._cond:
            while i not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError(f"chromium: no reply to {method}")
                self._cond.wait(min(left, 0.5))
            d = self._replies.pop(i)
        if "error" in d:
            raise AssertionError(f"chromium: {method} failed: {d['error']}")
        return d["result"]

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except AssertionError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def chromium_exe() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        exe = shutil.which(name)
        if exe:
            return exe
    pytest.fail("no chromium binary: the dashboard page test needs one (apt-get install -y chromium)")


# --------------------------------------------------------------------------------------------------------------------
# the server


def test_hub_backlog_collapses_partials():
    from apps.dashboard.server import Hub

    hub = Hub({"labels": ["a", "b"]})
    ev = lambda seg, final, end: {"start": 0.0, "end": end, "label": "a", "confidence": 0.6,  # noqa: E731
                                  "scores": {"a": 0.6, "b": 0.4}, "final": final, "segment": seg}
    for e in [ev(0, False, 1), ev(0, False, 2), ev(0, True, 3), ev(1, False, 4), ev(1, False, 5)]:
        hub.publish(e)
    events, last = hub.snapshot(0)
    assert [e["id"] for e in events] == [3, 5] and last == 5  # superseded partials left out
    assert [e["id"] for e in hub.snapshot(3)[0]] == [5]
    got, done = hub.wait(5, timeout=0.05)
    assert got == [] and not done
    hub.end()
    assert hub.wait(5, timeout=1) == ([], True)
    assert hub.status()["state"] == "ended" and hub.status()["finals"] == 1


def test_sse_streams_replayed_clip(clip, offline):
    labels, expected = offline
    duration = sf.info(clip).duration
    proc, url = start_server("--file", str(clip), "--port", "0", "--speed", str(SPEED))
    try:
        assert urlsplit(url).hostname == "127.0.0.1"
        t0 = time.monotonic()
        msgs, times = read_sse(url)
        took = time.monotonic() - t0

        # the stream: info first, emotion events with increasing ids, end last
        kinds = [m[0] for m in msgs]
        assert kinds[0] == "info" and kinds[-1] == "end"
        info = msgs[0][2]
        assert info["labels"] == list(labels)  # labels come from the model's metadata
        assert list(info["colors"]) == list(labels) and len(set(info["colors"].values())) == len(labels)
        assert info["model"]["name"] and info["speed"] == SPEED
        emotions = [(eid, d) for kind, eid, d in msgs if kind == "emotion"]
        ids = [eid for eid, _ in emotions]
        assert ids == sorted(ids) and len(set(ids)) == len(ids) and all(d["id"] == eid for eid, d in emotions)
        finals = [d for _, d in emotions if d["final"]]
        partials = [d for _, d in emotions if not d["final"]]
        assert len(finals) >= 2 and partials

        # replayed at SPEED x real time, events arriving while it plays (not all at the end)
        assert duration / SPEED * 0.7 < took < duration / SPEED + 20
        emotion_times = [t for (kind, _, _), t in zip(msgs, times) if kind == "emotion"]
        assert emotion_times[-1] - emotion_times[0] > duration / SPEED * 0.3

        # exactly the segments of the offline analysis, with the same scores
        assert len(finals) == len(expected)
        for got, want in zip(finals, expected):
            assert got["label"] == want.label and got["segment"] == want.segment
            assert got["start"] == pytest.approx(want.start, abs=1e-3)
            assert got["end"] == pytest.approx(want.end, abs=1e-3)
            assert set(got["scores"]) == set(labels)
            assert sum(got["scores"].values()) == pytest.approx(1.0, abs=1e-4)
            for k in labels:
                assert got["scores"][k] == pytest.approx(want.scores[k], abs=1e-4)
        end = msgs[-1][2]
        assert end["state"] == "ended" and end["error"] is None
        assert end["finals"] == len(finals) and end["events"] == len(emotions) and end["dropped_blocks"] == 0

        # a late client gets the backlog: every final event, no superseded partial
        late, _ = read_sse(url, timeout=15)
        late_emotions = [d for kind, _, d in late if kind == "emotion"]
        assert [d["id"] for d in late_emotions] == [d["id"] for d in finals]
        assert late[-1][0] == "end"
        # a reconnecting EventSource resumes after Last-Event-ID
        resumed, _ = read_sse(url, headers={"Last-Event-ID": str(finals[0]["id"])}, timeout=15)
        assert [d["id"] for kind, _, d in resumed if kind == "emotion"] == [d["id"] for d in finals[1:]]

        # the JSON API
        resp, body = get(url, "/api/events")
        assert resp.status == 200 and [d["id"] for d in json.loads(body)] == [d["id"] for d in finals]
        resp, body = get(url, "/api/info")
        st = json.loads(body)
        assert st["state"] == "ended" and st["labels"] == list(labels)
        # the page: one self-contained file, nothing fetched from elsewhere
        resp, body = get(url, "/")
        assert resp.status == 200 and resp.getheader("Content-Type").startswith("text/html")
        assert "default-src 'none'" in resp.getheader("Content-Security-Policy")
        html = body.decode()
        assert "http://" not in html and "https://" not in html and "EventSource" in html
        for lab in labels:  # labels are never hard-coded in the page
            assert f'"{lab}"' not in html
        assert get(url, "/nope")[0].status == 404
        # DNS-rebinding protection: another Host is refused
        assert get(url, "/api/info", host="attacker.example:80")[0].status == 403
        assert get(url, "/", host=f"localhost:{urlsplit(url).port}")[0].status == 200
    finally:
        stop_server(proc)


def test_cli_errors(tmp_path):
    for args, needle in [
        (["--file", str(tmp_path / "missing.wav"), "--port", "0"], "no such audio file"),
        (["--speed", "2", "--port", "0"], "--speed only applies to --file"),
        (["--file", str(tmp_path / "x.wav"), "--speed", "0"], "--speed must be positive"),
    ]:
        p = subprocess.run([sys.executable, "-m", "apps.dashboard", *args], cwd=REPO, capture_output=True,
                           text=True, timeout=60)
        assert p.returncode == 2, (args, p.stderr)
        assert needle in p.stderr and "Traceback" not in p.stderr


# --------------------------------------------------------------------------------------------------------------------
# the page in a browser


def _color_run(img: np.ndarray, y: int, x0: int, x1: int, rgb, tol: int = 3) -> int:
    row = img[y, max(0, x0):x1, :3].astype(int)
    return int(np.all(np.abs(row - np.array(rgb)) <= tol, axis=1).sum())


def test_page_renders_live_events_in_chromium(clip, offline, tmp_path):
    from PIL import Image

    from apps.common import hex_to_rgb

    labels, expected = offline
    browser = Chromium(chromium_exe(), tmp_path / "profile", tmp_path / "chromium.log")
    proc = None
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        browser.send("Emulation.setDeviceMetricsOverride",
                     {"width": 1280, "height": 1000, "deviceScaleFactor": 1, "mobile": False}, session)
        browser.send("Network.enable", {}, session)
        # the page is opened while the clip is still being replayed: it receives the events live
        proc, url = start_server("--file", str(clip), "--port", "0", "--speed", str(SPEED))
        browser.send("Page.navigate", {"url": url}, session)

        def page(expr: str):
            r = browser.send("Runtime.evaluate", {"expression": expr, "returnByValue": True}, session)
            assert "exceptionDetails" not in r, r
            return r["result"].get("value")

        states = []
        deadline = time.monotonic() + 45
        while True:
            st = page("document.body ? [document.body.dataset.state, Number(document.body.dataset.drawn || -1),"
                      " window.edgeserDashboard ? window.edgeserDashboard.events : -2] : [null, -1, -2]")
            states.append(st[0])
            if st[0] == "ended" and st[1] == st[2]:
                break
            assert time.monotonic() < deadline, f"page never showed the end of the stream: {st}"
            time.sleep(0.1)
        assert "live" in states  # it was open while events were streaming
        page("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")

        info = json.loads(get(url, "/api/info")[1])
        finals = json.loads(get(url, "/api/events")[1])
        colors = {k: hex_to_rgb(v) for k, v in info["colors"].items()}
        state = page("""(() => {
            const S = window.edgeserDashboard, r = (id) => document.getElementById(id).getBoundingClientRect();
            return {labels: S.labels, finals: S.finals.map(e => e.id), bars: S.layout.bars, tl: S.layout.timeline,
                    barsRect: [r('bars').left, r('bars').top], tlRect: [r('timeline').left, r('timeline').top],
                    rows: [...document.querySelectorAll('#log tr')].map(t => [t.dataset.label, +t.dataset.segment]),
                    legend: [...document.querySelectorAll('#legend [data-label]')].map(e => e.dataset.label),
                    current: document.getElementById('cur-label').textContent,
                    status: document.getElementById('status').textContent};
        })()""")

        # DOM: the event log lists every segment (newest first), labels from the model's metadata
        assert state["labels"] == list(labels) and state["legend"] == list(labels)
        assert state["finals"] == [e["id"] for e in finals]
        assert state["rows"] == [[e.label, e.segment] for e in reversed(expected)]
        assert state["current"] == expected[-1].label and state["status"] == "ended"

        # the screenshot: its pixels show the bars and the timeline in the labels' colours
        shot = base64.b64decode(browser.send("Page.captureScreenshot", {"format": "png"}, session)["data"])
        (tmp_path / "dashboard.png").write_bytes(shot)
        img = np.asarray(Image.open(io.BytesIO(shot)).convert("RGB"))
        assert img.shape[:2] == (1000, 1280)

        bx, by = state["barsRect"]
        last = finals[-1]
        assert [b["label"] for b in state["bars"]] == list(labels)
        for b in state["bars"]:  # bar length = the last event's score
            assert b["score"] == pytest.approx(last["scores"][b["label"]], abs=1e-6)
            y = int(round(by + b["y"] + b["h"] / 2))
            x0 = int(round(bx + b["x"]))
            run = _color_run(img, y, x0, x0 + b["maxW"], colors[b["label"]])
            assert abs(run - round(b["score"] * b["maxW"])) <= 2, (b, run)
        assert sum(b["w"] for b in state["bars"]) >= 0.9 * state["bars"][0]["maxW"]

        tl = state["tl"]
        tx, ty = state["tlRect"]
        lane = tl["lane1"]
        y = int(round(ty + lane["y"] + lane["h"] - 3))  # every segment's block reaches the lane's bottom
        scale = tl["w"] / (tl["t1"] - tl["t0"])
        for e in finals:  # each segment is painted in its label's colour over its time span
            xa = int(round(tx + tl["x0"] + (e["start"] - tl["t0"]) * scale))
            xb = int(round(tx + tl["x0"] + (e["end"] - tl["t0"]) * scale))
            run = _color_run(img, y, xa, xb, colors[e["label"]])
            assert run >= (xb - xa) - 2, (e, run, xb - xa)
        gap, i = max((b["start"] - a["end"], i) for i, (a, b) in enumerate(zip(finals, finals[1:])))
        assert gap > 0.5
        gap_x = int(round(tx + tl["x0"] + ((finals[i]["end"] + finals[i + 1]["start"]) / 2 - tl["t0"]) * scale))
        assert all(_color_run(img, y, gap_x - 2, gap_x + 3, c) == 0 for c in colors.values())  # silence: no colour

        # nothing but the dashboard itself was requested
        requested = [ev["params"]["request"]["url"] for ev in browser.events
                     if ev.get("method") == "Network.requestWillBeSent"]
        assert requested and all(u.startswith(url) for u in requested), requested
    finally:
        browser.close()
        if proc is not None:
            stop_server(proc)
