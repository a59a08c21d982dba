"""Load on any HTTP port: `--load CONNS:SECONDS`, bounded.

wrk where it is installed, else a small built-in client (asyncio, keep-alive
HTTP/1.1, one GET at a time per connection). Either way the step records its
window on strace's clock, how many requests completed on how many connections,
and the CPU the program's process used meanwhile (from /proc: its threads,
not its child processes), so the summary can give figures per request.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import EXIT_SCENARIO, TraceError
from ..log import eprint

MAX_CONNS = 1024  # a load, not a flood: the traced program's fds and the trace stay bounded
MAX_SECONDS = 60
DEFAULT = "16:1"  # --load alone: short, so the trace stays readable
TIMEOUT_S = 10  # a response under strace may be slow; longer than this is an error


@dataclass(frozen=True)
class Load:
    conns: int
    seconds: int
    path: str = "/"

    def describe(self) -> str:
        return f"load: {self.conns} connections for {self.seconds} s (GET {self.path})"


def parse(text: str, path: str = "/") -> Load:
    """CONNS:SECONDS, both whole numbers within the bounds; ValueError says why not."""
    got = re.fullmatch(r"\s*(\d{1,7})\s*:\s*(\d{1,7})\s*", text or "")
    if not got:
        raise ValueError(f"{text!r} is not CONNS:SECONDS (e.g. 64:3: 64 connections for 3 s)")
    conns, seconds = int(got.group(1)), int(got.group(2))
    if not 1 <= conns <= MAX_CONNS:
        raise ValueError(f"{conns} connections: give 1 to {MAX_CONNS}")
    if not 1 <= seconds <= MAX_SECONDS:
        raise ValueError(f"{seconds} s: give 1 to {MAX_SECONDS} (a trace of more is hard to read)")
    return Load(conns, seconds, path)


def cpu_of(pid: int | None) -> tuple[float, float] | None:
    """(user, system) seconds the process (all its threads) has used, or None."""
    if not pid:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def run(load: Load, port: int, pid: int | None) -> dict:
    """The load step: wrk, else the built-in client; its window, counts and the program's CPU."""
    wrk = shutil.which("wrk")
    tool = "wrk" if wrk else "built-in client"
    eprint(f"[epoll-lab] {load.describe()} against 127.0.0.1:{port} with {tool}")
    before = cpu_of(pid)
    start = time.time()
    got = _wrk(wrk, load, port) if wrk else _builtin(load, port)
    end = time.time()
    after = cpu_of(pid)
    row = {"path": "load", "start": start, "end": end, "tool": tool, "connections": load.conns,
           "seconds": load.seconds, "target": load.path, **got,
           "lesson": f"{load.conns} keep-alive connections send GET {load.path} for {load.seconds} s "
                     f"({tool}); the program is traced as in the rest of the run"}
    if before and after:
        row["cpu"] = {"user": round(after[0] - before[0], 3), "system": round(after[1] - before[1], 3),
                      "of": pid}
    bad = got["errors"] + got["non_2xx"]
    eprint(f"[epoll-lab]   {got['requests']:,} requests in {end - start:.1f} s under strace"
           + (f"; {bad:,} failed or not 2xx/3xx" if bad else ""))
    if got["requests"] == 0:
        raise TraceError(f"the load completed no request on 127.0.0.1:{port}"
                         + (f" ({got['why']})" if got.get("why") else ""), EXIT_SCENARIO)
    return row


def _wrk(wrk: str, load: Load, port: int) -> dict:
    p = subprocess.run([wrk, "-t1", f"-c{load.conns}", f"-d{load.seconds}s", "--timeout", f"{TIMEOUT_S}s",
                        f"http://127.0.0.1:{port}{load.path}"], capture_output=True, text=True)
    m = re.search(r"(\d+) requests in", p.stdout)
    if p.returncode != 0 or m is None:
        raise TraceError(f"wrk failed (exit {p.returncode}): {p.stderr.strip() or p.stdout[-300:]}", EXIT_SCENARIO)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", p.stdout)
    non = re.search(r"Non-2xx or 3xx responses: (\d+)", p.stdout)
    bad = sum(map(int, errors.groups())) if errors else 0
    return {"requests": int(m.group(1)), "errors": bad, "non_2xx": int(non.group(1)) if non else 0,
            "why": errors.group(0) if bad else ""}


# -- the built-in client ------------------------------------------------------

def _builtin(load: Load, port: int) -> dict:
    stats = {"requests": 0, "errors": 0, "non_2xx": 0, "why": ""}
    asyncio.run(_drive(load, port, stats))
    return stats


async def _drive(load: Load, port: int, stats: dict) -> None:
    deadline = asyncio.get_running_loop().time() + load.seconds
    await asyncio.gather(*(_connection(load.path, port, deadline, stats) for _ in range(load.conns)))


async def _connection(path: str, port: int, deadline: float, stats: dict) -> None:
    loop = asyncio.get_running_loop()
    ask = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    writer = None
    try:
        while loop.time() < deadline:
            if writer is None:
                reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), TIMEOUT_S)
            writer.write(ask)
            status, keep = await asyncio.wait_for(_response(reader), TIMEOUT_S)
            stats["requests"] += 1
            if not 200 <= status < 400:
                stats["non_2xx"] += 1
            if not keep:
                writer.close()
                writer = None
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
        stats["errors"] += 1
        stats["why"] = stats["why"] or f"{type(e).__name__}: {e}"
    finally:
        if writer is not None:
            writer.close()


async def _response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one HTTP/1.1 response; (status, whether the connection stays open)."""
    status_line = await reader.readuntil(b"\r\n")
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP response: {status_line[:60]!r}")
    headers = {}
    while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    keep = headers.get("connection", "").lower() != "close" and parts[0] != b"HTTP/1.0"
    status = int(parts[1])
    if status < 200 or status in (204, 304):
        return status, keep  # no body
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while (size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)) > 0:
            await reader.readexactly(size + 2)
        while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
            pass
    elif "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    else:
        await reader.read()  # the body runs to the close
        keep = False
    return status, keep
