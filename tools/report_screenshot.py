"""Render a drift report JSON (or a report page) to a PNG with headless Chromium, offline.

    python tools/report_screenshot.py monitor_report_20261126.json docs/report-example.png \
        [--width 1280] [--history history.json] [--html keep.html]
    python tools/report_screenshot.py var/reports/monitor_report_20261126.html \
        docs/report-example-phone.png --width 390

A ``.json`` report is rendered with ``analyzer.html.render_html_report`` to a temporary file;
an ``.html`` page (as the daemon wrote it, with its trend of previous nights) is used as is.
The page is opened
in headless Chromium over the DevTools protocol (a websocket on 127.0.0.1, via the
``websocket-client`` package), and captured as a full-page screenshot. The command fails when
the page logs a console error or requests anything but itself and ``data:`` URIs.

``HeadlessChromium`` is also what tests/analyzer/test_html.py uses to check the page.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websocket

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--hide-scrollbars",
    "--mute-audio",
    "--remote-debugging-port=0",
)
"""Flags for an offline, quiet headless Chromium; the DevTools port is picked by Chromium."""


def find_chromium() -> str | None:
    """The Chromium binary on this machine (``$CHROMIUM``, then PATH), or ``None``."""
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name) if name else None
        if found:
            return found
    return None


class BrowserError(RuntimeError):
    """Raised when Chromium cannot be started, does not answer, or a page fails to load."""


@dataclass
class PageLoad:
    """What happened while one page loaded.

    ``requests`` are the URLs the page asked for (the page itself included);
    ``console_errors`` are console errors, uncaught exceptions and browser log errors.
    """

    url: str
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    @property
    def foreign_requests(self) -> list[str]:
        """Requests for anything other than the page itself and inline ``data:`` URIs."""
        return [u for u in self.requests if u != self.url and not u.startswith("data:")]


class HeadlessChromium:
    """A headless Chromium with one tab, driven over the Chrome DevTools Protocol.

    Use as a context manager; ``load()`` opens a local file and records its requests and
    console errors, ``evaluate()`` runs an expression in the page, ``screenshot()`` captures
    the full page as PNG bytes. The profile lives in a fresh temporary folder.

    Raises:
        BrowserError: Chromium is missing, does not start within ``timeout`` seconds, or a
            command fails.
    """

    def __init__(self, binary: str | None = None, timeout: float = 30.0) -> None:
        self._binary = binary or find_chromium()
        if not self._binary:
            raise BrowserError("chromium not found on PATH; install Debian's `chromium` package"
                               " or set CHROMIUM=/path/to/chrome")
        self._timeout = timeout
        self._profile = Path(tempfile.mkdtemp(prefix="driftd-chromium-"))
        self._proc: subprocess.Popen[bytes] | None = None
        self._ws: websocket.WebSocket | None = None
        self._session = ""
        self._next_id = 0
        self._events: list[dict[str, Any]] = []

    def __enter__(self) -> HeadlessChromium:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        assert self._binary is not None
        self._proc = subprocess.Popen(
            [self._binary, *CHROMIUM_FLAGS, f"--user-data-dir={self._profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        port_file = self._profile / "DevToolsActivePort"
        deadline = time.monotonic() + self._timeout
        while not port_file.exists() or len(port_file.read_text().splitlines()) < 2:
            if self._proc.poll() is not None:
                raise BrowserError(f"chromium exited with status {self._proc.returncode} "
                                   f"before opening its DevTools port ({self._binary})")
            if time.monotonic() > deadline:
                raise BrowserError(f"chromium did not open its DevTools port within "
                                   f"{self._timeout:.0f} s ({self._binary})")
            time.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        self._ws = websocket.create_connection(
            f"ws://127.0.0.1:{port}{path}", timeout=self._timeout, suppress_origin=True)
        target = self._call("Target.createTarget", {"url": "about:blank"}, session=False)
        attached = self._call("Target.attachToTarget",
                              {"targetId": target["targetId"], "flatten": True}, session=False)
        self._session = attached["sessionId"]
        for domain in ("Page", "Network", "Runtime", "Log"):
            self._call(f"{domain}.enable")

    def close(self) -> None:
        """Close the browser, end its process group and delete the profile folder."""
        if self._ws is not None:
            with contextlib.suppress(Exception):
                self._call("Browser.close", session=False)
            self._ws.close()
            self._ws = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait()
            self._proc = None
        shutil.rmtree(self._profile, ignore_errors=True)

    def _call(self, method: str, params: dict[str, Any] | None = None,
              session: bool = True) -> dict[str, Any]:
        if self._ws is None:
            raise BrowserError(f"{method}: the browser is not running")
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method,
                                   "params": params or {}}
        if session:
            message["sessionId"] = self._session
        self._ws.send(json.dumps(message))
        while True:
            reply = self._receive()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method} failed: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result

    def _receive(self) -> dict[str, Any]:
        assert self._ws is not None
        try:
            message: dict[str, Any] = json.loads(self._ws.recv())
        except websocket.WebSocketTimeoutException as err:
            raise BrowserError(f"chromium did not answer within {self._timeout:.0f} s") from err
        if "method" in message:
            self._events.append(message)
        return message

    def load(self, path: Path, width: int = 1280, height: int = 900) -> PageLoad:
        """Open the local file ``path`` in a ``width`` × ``height`` viewport and wait for load.

        A width under 600 px emulates a phone (mobile viewport, touch layout).
        """
        self._call("Emulation.setDeviceMetricsOverride",
                   {"width": width, "height": height, "deviceScaleFactor": 1,
                    "mobile": width < 600})
        self._events.clear()
        url = path.resolve().as_uri()
        self._call("Page.navigate", {"url": url})
        deadline = time.monotonic() + self._timeout
        while not any(e["method"] == "Page.loadEventFired" for e in self._events):
            if time.monotonic() > deadline:
                raise BrowserError(f"{url} did not finish loading within {self._timeout:.0f} s")
            self._receive()
        return self._page_load(url)

    def _page_load(self, url: str) -> PageLoad:
        page = PageLoad(url)
        for event in self._events:
            params = event.get("params", {})
            method = event["method"]
            if method == "Network.requestWillBeSent":
                page.requests.append(params["request"]["url"])
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error",
                                                                                   "assert"):
                page.console_errors.append(" ".join(
                    str(a.get("value", a.get("description", ""))) for a in params["args"]))
            elif method == "Runtime.exceptionThrown":
                page.console_errors.append(str(params["exceptionDetails"].get("text")))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                page.console_errors.append(str(params["entry"].get("text")))
        return page

    def evaluate(self, expression: str) -> Any:
        """The JSON value of ``expression`` evaluated in the current page."""
        result = self._call("Runtime.evaluate", {"expression": expression,
                                                 "returnByValue": True})
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r} raised {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def screenshot(self) -> bytes:
        """A PNG of the whole page (not only the viewport)."""
        metrics = self._call("Page.getLayoutMetrics")["cssContentSize"]
        data = self._call("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": metrics["width"], "height": metrics["height"],
                     "scale": 1},
        })["data"]
        return base64.b64decode(data)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: render REPORT.json to OUT.png; exit 1 when the page misbehaves."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from analyzer.html import generate_html_report

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path,
                        help="drift report JSON (DriftReport.to_dict()), or a report .html")
    parser.add_argument("png", type=Path, help="where to write the screenshot")
    parser.add_argument("--width", type=int, default=1280, help="viewport width in CSS px")
    parser.add_argument("--history", type=Path, help="JSON list of trend points")
    parser.add_argument("--html", type=Path, help="also keep the rendered HTML here")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="driftd-report-") as tmp:
        if args.report.suffix == ".html":
            html = args.report
        else:
            report = json.loads(args.report.read_text(encoding="utf-8"))
            history = (json.loads(args.history.read_text(encoding="utf-8")) if args.history
                       else None)
            html = generate_html_report(report, args.html or Path(tmp) / "report.html",
                                        history)
        html_kib = html.stat().st_size / 1024
        with HeadlessChromium() as browser:
            page = browser.load(html, width=args.width)
            png = browser.screenshot()
    problems = page.console_errors + [f"request for {u}" for u in page.foreign_requests]
    for problem in problems:
        print(f"report_screenshot: {problem}", file=sys.stderr)
    args.png.parent.mkdir(parents=True, exist_ok=True)
    args.png.write_bytes(png)
    print(f"wrote {args.png} ({len(png) / 1024:.0f} KiB) from {html_kib:.0f}"
          f" KiB of HTML")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
