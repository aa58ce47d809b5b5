"""A headless Chromium driven over the DevTools protocol, for checking HTML reports.

Why not ``--dump-dom`` or ``--screenshot``: those flags cannot report console errors or
uncaught exceptions reliably, and a report check that cannot fail on a broken script proves
nothing. Here every ``Runtime.exceptionThrown``, ``console.error`` / ``console.assert``, log
entry of level error, and every request that is not the report file itself (the report must
need no network) is collected while the page loads.

Used by ``tests/test_report_html.py`` and ``benchmarks/report_render.py``; needs the
``websocket-client`` package (the ``test`` extra) and Debian's ``chromium`` (found by
``autotune.doctor.find_chromium``, which `autotune doctor` reports).
"""

from __future__ import annotations

import base64
import itertools
import json
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from autotune.doctor import find_chromium  # noqa: F401 - tests and benchmarks import it here

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--no-default-browser-check",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--disable-extensions", "--mute-audio",
                  "--remote-debugging-port=0")


@dataclass
class PageLoad:
    """What happened while a page loaded: its problems, its requests and its timing."""

    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    load_ms: float | None = None  # navigation start to the end of the load event


class BrowserError(RuntimeError):
    """Chromium did not start, or did not answer in time."""


class Chromium:
    """One headless Chromium with one page; use as a context manager.

    Args:
        binary: the Chromium executable.
        width: viewport width in CSS pixels (the height grows with full-page screenshots).
        timeout_s: how long any one step may take; the machine may be slow and shared.
    """

    def __init__(self, binary: str, width: int = 1280, height: int = 900,
                 timeout_s: float = 60.0) -> None:
        self.binary, self.width, self.height, self.timeout_s = binary, width, height, timeout_s
        self._ids = itertools.count(1)
        self._events: list[dict] = []
        self._profile = tempfile.TemporaryDirectory(prefix="autotune-chromium-")
        self._process: subprocess.Popen | None = None
        self._socket = None

    def __enter__(self) -> Chromium:
        try:
            self._start()
        except BaseException:
            self.close()  # no stray browser or profile folder when the start fails
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        self._profile.cleanup()

    def _start(self) -> None:
        import websocket

        profile = Path(self._profile.name)
        # A file, not a pipe: nobody reads Chromium's chatter, and a full pipe would block it.
        self._log = profile / "chromium.log"
        with open(self._log, "wb") as log:
            self._process = subprocess.Popen(
                [self.binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                 f"--window-size={self.width},{self.height}", "about:blank"],
                stdout=subprocess.DEVNULL, stderr=log)
        port = self._wait_for_port(profile / "DevToolsActivePort")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list",
                                    timeout=self.timeout_s) as answer:
            pages = [t for t in json.load(answer) if t["type"] == "page"]
        if not pages:
            raise BrowserError("Chromium started without a page")
        self._socket = websocket.create_connection(pages[0]["webSocketDebuggerUrl"],
                                                   timeout=self.timeout_s, suppress_origin=True)
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height,
                  deviceScaleFactor=1, mobile=False)

    def _wait_for_port(self, path: Path) -> int:
        # With --remote-debugging-port=0 Chromium picks a free port and writes it here.
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                stderr = self._log.read_text(errors="replace")[-2000:]
                raise BrowserError(f"Chromium exited with {self._process.returncode}: {stderr}")
            if path.exists():
                lines = path.read_text().splitlines()
                if lines and lines[0].isdigit():
                    return int(lines[0])
            time.sleep(0.05)
        raise BrowserError(f"Chromium wrote no DevTools port within {self.timeout_s:.0f} s")

    def send(self, method: str, **params) -> dict:
        """Call a DevTools method and return its result; events that arrive meanwhile are kept."""
        message_id = next(self._ids)
        self._socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv())
            if message.get("id") == message_id:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self._events.append(message)

    def _wait_for_event(self, method: str) -> dict:
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            for index, event in enumerate(self._events):
                if event["method"] == method:
                    return self._events.pop(index)
            message = json.loads(self._socket.recv())
            if "method" in message:
                self._events.append(message)
        raise BrowserError(f"no {method} within {self.timeout_s:.0f} s")

    def load(self, path: Path) -> PageLoad:
        """Open a local file and wait for its load event; returns what went wrong on the way."""
        self._events.clear()
        url = Path(path).resolve().as_uri()
        result = self.send("Page.navigate", url=url)
        if result.get("errorText"):
            raise BrowserError(f"cannot open {url}: {result['errorText']}")
        self._wait_for_event("Page.loadEventFired")
        # Scripts that run after load (timers, handlers) get a moment to fail too.
        self.evaluate("new Promise(resolve => setTimeout(resolve, 100))")
        page = PageLoad(load_ms=self.evaluate(
            "(() => { const n = performance.getEntriesByType('navigation')[0];"
            " return n ? n.loadEventEnd - n.startTime : null; })()"))
        for event in self._events:
            _collect(event, page, url)
        return page

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (promises are awaited)."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression[:80]}: {_exception_text(result['exceptionDetails'])}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        """A PNG of the whole page (not just the viewport)."""
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data["data"]))
        return path


def _collect(event: dict, page: PageLoad, url: str) -> None:
    method, params = event["method"], event.get("params", {})
    if method == "Runtime.exceptionThrown":
        page.errors.append("uncaught: " + _exception_text(params["exceptionDetails"]))
    elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
        text = " ".join(str(arg.get("value", arg.get("description", ""))) for arg in params["args"])
        page.errors.append(f"console.{params['type']}: {text}")
    elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
        page.errors.append(f"log ({params['entry']['source']}): {params['entry']['text']}")
    elif method == "Network.requestWillBeSent":
        request_url = params["request"]["url"]
        if request_url != url and not request_url.startswith("data:"):
            page.requests.append(request_url)


def _exception_text(details: dict) -> str:
    exception = details.get("exception", {})
    return exception.get("description") or details.get("text", "unknown exception")
