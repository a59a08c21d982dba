"""Headless Chromium driven through chromedriver (W3C WebDriver over HTTP, the
standard library only): open a page, run a script in it, click, resize, take
a screenshot, read its console. The tests' real browser, and what the lab
uses to look at a page the way a person would.

chromedriver runs in a session of its own and is stopped by PID with every
browser process below it, whatever happened in between.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from ..run import procs
from .browser import BrowserError, chromium

# The flags that work on a closed network as root (see tracing/render/browser.py).
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars"]


def chromedriver() -> str:
    path = shutil.which("chromedriver")
    if path is None:
        raise BrowserError("chromedriver is not installed. Install it with: sudo apt-get install -y "
                           "chromium-driver (or run `make test` as root)")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    """One headless Chromium, `with Browser(1024, 768) as b: b.get(url) ...`."""

    def __init__(self, width: int = 1024, height: int = 768) -> None:
        self.profile = tempfile.TemporaryDirectory(prefix="epoll-lab-chromium-")
        self.port = _free_port()
        self.driver = subprocess.Popen([chromedriver(), f"--port={self.port}"], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL, start_new_session=True)
        self.session = ""
        try:
            if not procs.wait_for(self._up, 20, 0.05):
                raise BrowserError(f"chromedriver did not answer on 127.0.0.1:{self.port}")
            caps = {"browserName": "chrome", "goog:loggingPrefs": {"browser": "ALL"},
                    "goog:chromeOptions": {"binary": chromium(), "args": [
                        *FLAGS, f"--user-data-dir={self.profile.name}", f"--window-size={width},{height}"]}}
            got = self._call("POST", "/session", {"capabilities": {"alwaysMatch": caps}}, timeout=60)
            self.session = got["value"]["sessionId"]
        except BaseException:
            self.close()
            raise

    def _up(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/status", timeout=1) as r:
                return json.load(r)["value"].get("ready", False)
        except (OSError, ValueError, KeyError):
            return False

    def _call(self, method: str, path: str, body: dict | None = None, timeout: float = 30) -> dict:
        data = json.dumps(body if body is not None else {}).encode() if method == "POST" else None
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")[:400]
            raise BrowserError(f"webdriver {method} {path}: {e.code} {detail}") from None

    def _s(self, method: str, path: str, body: dict | None = None, timeout: float = 30):
        return self._call(method, f"/session/{self.session}{path}", body, timeout)["value"]

    # -- what a test does ---------------------------------------------------
    def get(self, url: str) -> None:
        self._s("POST", "/url", {"url": url}, timeout=60)

    def run(self, script: str, *args):
        """Run `script` (a function body; `arguments` holds args) in the page; returns its value."""
        return self._s("POST", "/execute/sync", {"script": script, "args": list(args)})

    def run_async(self, script: str, *args, timeout: float = 30):
        """Run `script`, which calls `arguments[arguments.length - 1](value)` when done."""
        return self._s("POST", "/execute/async", {"script": script, "args": list(args)}, timeout=timeout + 5)

    def wait(self, script: str, timeout: float = 10, step: float = 0.05):
        """Until `script` returns something truthy; returns it (None when the time is up)."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.run(script)
            if got or time.monotonic() >= deadline:
                return got
            time.sleep(step)

    def click(self, css: str) -> None:
        el = self._s("POST", "/element", {"using": "css selector", "value": css})
        (ref,) = el.values()
        self._s("POST", f"/element/{ref}/click")

    def size(self, width: int, height: int) -> None:
        self._s("POST", "/window/rect", {"width": width, "height": height})

    def fit_height(self, most: int = 4000) -> int:
        """Make the window as tall as the page (a screenshot shows all of it); returns the height."""
        inner, outer, page = self.run("return [innerHeight, outerHeight, "
                                      "document.documentElement.scrollHeight]")
        width = self.run("return outerWidth")
        self.size(width, min(most, page + outer - inner))
        return page

    def screenshot(self, png: Path) -> Path:
        png.write_bytes(base64.b64decode(self._s("GET", "/screenshot")))
        return png

    def console(self) -> list[dict]:
        """The console's messages since the last call: [{"level": "WARNING", "message": ...}]."""
        return self._s("POST", "/se/log", {"type": "browser"})

    def pids(self) -> list[int]:
        """chromedriver and every browser process it started."""
        return [self.driver.pid, *procs.descendants(self.driver.pid)]

    def close(self) -> None:
        try:
            if self.session and self.driver.poll() is None:
                self._call("DELETE", f"/session/{self.session}", timeout=20)
        except (OSError, BrowserError):
            pass
        finally:
            # A browser that closed with its session has reaped its own children; what is
            # left (a hung one) goes by PID, the deepest first.
            procs.wait_for(lambda: not procs.descendants(self.driver.pid), 5)
            for pid in reversed(procs.descendants(self.driver.pid)):
                procs.kill(pid)
            if self.driver.poll() is None:
                procs.stop(self.driver.pid, wait=5)
            self.driver.wait()
            self.profile.cleanup()

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
