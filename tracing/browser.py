"""Headless Chromium: render a page to PNG and report what its console said."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

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


def screenshot(page: Path, png: Path, width: int = 1600, height: int = 420) -> list[str]:
    """Render `page` to `png`; returns the console messages (errors included)."""
    with tempfile.TemporaryDirectory() as profile:
        got = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}",
                              f"--window-size={width},{height}", f"--screenshot={png.resolve()}",
                              page.resolve().as_uri()], capture_output=True, text=True, timeout=120)
    if not png.exists():
        raise BrowserError(f"chromium wrote no screenshot (exit {got.returncode}): {got.stderr[-400:]}")
    return [line for line in got.stderr.splitlines() if _CONSOLE.search(line)]
