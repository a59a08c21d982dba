"""--color auto|always|never on annotate (and live); NO_COLOR counts only when
it is set to something (no-color.org)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

import pytest

from tests.helpers import ROOT

LOG = ROOT / "tests" / "fixtures" / "others" / "node.strace"
ESC = "\x1b["


def on_a_terminal(*args: str, no_color: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    if no_color is not None:
        env["NO_COLOR"] = no_color
    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "tracing", "annotate", str(LOG), *args], cwd=ROOT,
                         stdout=slave, stderr=subprocess.DEVNULL, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    p.wait(timeout=60)
    os.close(master)
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.parametrize("no_color, coloured", [(None, True), ("", True), ("1", False)])
def test_auto_colours_a_terminal_unless_no_color_is_set_to_something(no_color, coloured):
    assert (ESC in on_a_terminal(no_color=no_color)) is coloured


def test_never_and_always_override_the_terminal_and_no_color():
    assert ESC not in on_a_terminal("--color", "never", no_color=None)
    p = subprocess.run([sys.executable, "-m", "tracing", "annotate", str(LOG), "--color", "always"],
                       cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"})
    assert ESC in p.stdout, "always colours even a pipe, even with NO_COLOR"


def test_live_takes_the_same_choice():
    p = subprocess.run([sys.executable, "-m", "tracing", "live", "--help"], cwd=ROOT,
                       capture_output=True, text=True)
    assert "--color {auto,always,never}" in p.stdout
