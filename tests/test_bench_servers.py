"""The bench's aiohttp and tornado servers answer GET / and GET /json with
Sanic's bytes, and the bench reads syscall counts from strace -c's own table.
(Their speed is the benchmark's business: `make bench`.)"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import ROOT, curl, serving

sys.path.insert(0, str(ROOT / "bench"))
from bench import parse_strace_counts  # noqa: E402


@pytest.mark.parametrize("framework", ["aiohttp", "tornado"])
def test_bench_framework_serves_sanics_bodies_byte_for_byte(sanic_server, framework):
    with serving([sys.executable, str(ROOT / "bench" / f"{framework}_server.py")]) as port:
        for path in ("/", "/json"):
            status, body = curl(port, path)
            assert (status, body) == curl(sanic_server, path), f"{framework} {path}: {status} {body}"


def test_syscall_counts_are_read_from_strace_c_output(tmp_path):
    out = tmp_path / "count"
    subprocess.run(["strace", "-c", "-f", "-o", str(out), "/bin/sh", "-c", "/bin/true; /bin/true"],
                   check=True)
    calls = {name: n for name, n, _ in parse_strace_counts(out.read_text())}
    assert calls.get("execve") == 3, f"{calls}\n{out.read_text()}"
    assert "total" not in calls and all(n > 0 for n in calls.values()), calls
