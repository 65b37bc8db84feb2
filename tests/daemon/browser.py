"""A small headless-Chromium driver over the DevTools protocol (no chromedriver, no selenium).

Debian's ``chromium`` package has no driver; the DevTools protocol is built into the browser:
``--remote-debugging-port=0`` picks a free port and writes it to ``DevToolsActivePort`` in
the profile folder, and one WebSocket per page takes JSON commands (``Page.navigate``,
``Runtime.evaluate``, ``Input.dispatchMouseEvent``, ``Page.captureScreenshot``).
The ``websockets`` client comes with ``uvicorn[standard]``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

#: Flags of every headless run (a test that only needs the DOM adds ``--dump-dom URL``).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
    "--virtual-time-budget=5000",  # --dump-dom: let the page's scripts run first
]


class BrowserError(AssertionError):
    """A DevTools command failed, or the page did not get where a test waited for."""


class Page:
    """One browser tab: send DevTools commands, evaluate JavaScript, take screenshots."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws, self._id = ws, 0

    def cmd(self, method: str, **params: Any) -> dict[str, Any]:  # noqa: ANN401
        """Send one command and return its result (events in between are skipped)."""
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise BrowserError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def js(self, expression: str) -> Any:  # noqa: ANN401 - whatever the expression returns
        """Evaluate ``expression`` in the page (promises awaited) and return its JSON value."""
        r = self.cmd("Runtime.evaluate", expression=expression, returnByValue=True,
                     awaitPromise=True)
        if "exceptionDetails" in r:
            raise BrowserError(f"{expression!r}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def size(self, width: int, height: int) -> None:
        """Set the viewport (CSS pixels, scale 1)."""
        self.cmd("Emulation.setDeviceMetricsOverride", width=width, height=height,
                 deviceScaleFactor=1, mobile=False)

    def open(self, url: str, ready: str = "document.body && document.body.dataset.loaded === '1'",
             timeout_s: float = 30) -> None:
        """Navigate to ``url`` and wait until the expression ``ready`` is true."""
        self.cmd("Page.navigate", url=url)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            time.sleep(0.1)
            with contextlib.suppress(BrowserError):  # the old document may be going away
                if self.js(f"location.href === {json.dumps(url)} && !!({ready})"):
                    return
        raise BrowserError(f"{url}: not ready ({ready}) after {timeout_s} s")

    def html(self) -> str:
        """The DOM as the page's scripts left it."""
        return self.js("document.documentElement.outerHTML")

    def hover(self, selector: str) -> None:
        """Scroll the first element matching ``selector`` into view and move the mouse over it."""
        box = self.js(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e) return null; e.scrollIntoView({block: 'center'});"
            " const b = e.getBoundingClientRect();"
            " return [b.left + b.width / 2, b.top + b.height / 2]; })()"
        )
        if box is None:
            raise BrowserError(f"nothing matches {selector!r}")
        self.cmd("Input.dispatchMouseEvent", type="mouseMoved", x=box[0], y=box[1])

    def screenshot(self, path: Path, full_page: bool = False) -> None:
        """Write a PNG of the viewport (or of the whole page) to ``path``."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            w, h = self.js("[document.documentElement.clientWidth,"
                           " document.documentElement.scrollHeight]")
            params.update(captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": w, "height": h, "scale": 1})
        data = self.cmd("Page.captureScreenshot", **params)["data"]
        path.write_bytes(base64.b64decode(data))


@contextlib.contextmanager
def chromium(binary: str, profile: Path) -> Iterator[Page]:
    """Start headless Chromium with a fresh ``profile`` folder; yield its first tab."""
    proc = subprocess.Popen(
        [binary, *(f for f in CHROMIUM_FLAGS if not f.startswith("--virtual-time-budget")),
         "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise BrowserError(f"chromium exited ({proc.returncode}): {err[-2000:]}")
            if time.monotonic() > deadline:
                raise BrowserError("chromium wrote no DevToolsActivePort in 30 s")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        tabs = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        ws_url = next(t["webSocketDebuggerUrl"] for t in tabs if t["type"] == "page")
        with connect(ws_url, max_size=None, open_timeout=10) as ws:
            yield Page(ws)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
