"""Headless Chromium: render a page to PNG and report what its console said."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

# Without the background-networking flags Chromium tries to reach Google's
# hosts at start, which a closed network refuses many times over.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--no-first-run", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--enable-logging=stderr", "--v=0"]
_CONSOLE = re.compile(r":CONSOLE[:(]\d+|Uncaught ")


class BrowserError(Exception):
    pass


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise BrowserError("chromium is not installed. Install it with: sudo apt-get install -y chromium "
                           "(or run `make screenshot` / `make test` as root)")
    return path


def page_height(page: Path, default: int = 420) -> int:
    """The height a timeline page says it needs (all its lanes), else `default`."""
    m = re.search(r'<meta name="epoll-lab-page-height" content="(\d+)">', page.read_text(errors="replace")[:4000])
    return int(m.group(1)) if m else default


def url(page: Path, zoom: str | None = None) -> str:
    return page.resolve().as_uri() + (f"#zoom={quote(zoom)}" if zoom else "")


def screenshot(page: Path, png: Path, width: int = 1600, height: int = 420, zoom: str | None = None
               ) -> list[str]:
    """Render `page` (zoomed on the request `zoom` names) to `png`; returns the console messages."""
    with tempfile.TemporaryDirectory() as profile:
        got = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}",
                              f"--window-size={width},{height}", f"--screenshot={png.resolve()}",
                              url(page, zoom)], capture_output=True, text=True, timeout=120)
    if not png.exists():
        raise BrowserError(f"chromium wrote no screenshot (exit {got.returncode}): {got.stderr[-400:]}")
    return [line for line in got.stderr.splitlines() if _CONSOLE.search(line)]


def dom(page: Path, width: int = 1600, height: int = 420, zoom: str | None = None) -> str:
    """The page's DOM after its script ran (the labels placed), as headless Chromium sees it."""
    with tempfile.TemporaryDirectory() as profile:
        got = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}",
                              f"--window-size={width},{height}", "--dump-dom", url(page, zoom)],
                             capture_output=True, text=True, timeout=120)
    if got.returncode != 0 or "<html" not in got.stdout:
        raise BrowserError(f"chromium could not load {page} (exit {got.returncode}): {got.stderr[-400:]}")
    return got.stdout
