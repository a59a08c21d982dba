"""What the benchmarks add to the shared helpers: tools (installed when root), pinning, CPU time."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Ports and processes have one home: the library's and the tests' helpers (imported from there).
from tracing.run import procs  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def need(tool: str, package: str) -> str:
    path = shutil.which(tool) or (f"/usr/sbin/{tool}" if Path(f"/usr/sbin/{tool}").exists() else None)
    if path:
        return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True)
        return shutil.which(tool) or f"/usr/sbin/{tool}"
    sys.exit(f"{tool} is missing: sudo apt-get install -y {package}")


def wait_port(port: int) -> None:
    if not procs.wait_port(port, 10):
        raise RuntimeError(f"nothing answers on {port}")


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process, all its threads: utime and stime of /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK


def cpu_seconds(pid: int) -> float:
    return sum(cpu_split(pid))


def pin(cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)] if (os.cpu_count() or 1) > 1 and shutil.which("taskset") else []


def wait_http(port: int, timeout: float = 60) -> None:
    """Until the server answers a GET (Sanic listens before it serves)."""
    if not procs.wait_http(port, timeout):
        raise RuntimeError(f"no HTTP answer on {port}")


