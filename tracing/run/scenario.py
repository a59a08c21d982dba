"""The curl scenario: wait for the port to answer HTTP, send the requests with
real curl (or wrk for the load recipe), and record each request's window on
the clock strace -ttt uses, so the annotator can put calls under requests.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

from tracing.understand.annotate import Step
from tracing.errors import EXIT_SCENARIO, EXIT_SETUP, EXIT_START, TraceError
from tracing.run.procs import Traced, tail
from tracing.log import eprint

START_TIMEOUT = 60.0  # a traced Python server imports slowly


STARTUP = "imports, listening socket, epoll set-up; the recipe polls with GET / until the server answers"
ATTACHED = "strace attached to the running process; GET / until it answers"


def wait_ready(traced: Traced, port: int, timeout: float = START_TIMEOUT) -> dict:
    """Wait until the server answers HTTP, not just until the port connects.

    Some servers (Sanic) listen() long before they serve, so a bare connect
    succeeds too early. The probe is a real request, kept in the scenario.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if traced.strace.poll() is not None:
            what = "the tracer" if traced.attached else "the server"
            raise TraceError(f"{what} did not start (it exited with "
                             f"{traced.strace.returncode}). Its output:\n{tail(traced.log)}", EXIT_START)
        try:
            conn = socket.create_connection(("127.0.0.1", port), timeout=0.2)
        except OSError:
            time.sleep(0.05)
            continue
        with conn:
            conn.sendall(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            while time.monotonic() < deadline:
                if traced.strace.poll() is not None:
                    break
                try:
                    if conn.recv(1):
                        return {"path": "attached" if traced.attached else "start-up",
                                "start": traced.started, "end": time.time(),
                                "lesson": ATTACHED if traced.attached else STARTUP}
                    break  # closed without an answer: try again
                except socket.timeout:
                    continue
                except OSError:
                    break
        time.sleep(0.05)
    raise TraceError(f"nothing answered HTTP on 127.0.0.1:{port} within {timeout:.0f} s. "
                     f"The program's output:\n{tail(traced.log)}", EXIT_START)


def _curl_start(port: int, path: str, timeout: float) -> tuple[subprocess.Popen, dict]:
    if shutil.which("curl") is None:
        raise TraceError("curl is not installed. Install it with: sudo apt-get install -y curl",
                         EXIT_SETUP)
    url = f"http://127.0.0.1:{port}{path}"
    rec = {"path": path, "url": url, "start": time.time()}
    proc = subprocess.Popen(["curl", "-sS", "--max-time", str(timeout), "-w", "\n%{http_code}", url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, rec


def _curl_finish(proc: subprocess.Popen, rec: dict) -> dict:
    out, err = proc.communicate()
    rec["end"] = time.time()
    body, _, status = out.rpartition("\n")
    rec.update(curl_exit=proc.returncode, status=int(status) if status.isdigit() else 0, body=body,
               error=err.strip())
    return rec


def curl(port: int, path: str, timeout: float = 15.0) -> dict:
    """One request with real curl; returns status, body, curl's exit and timing."""
    return _curl_finish(*_curl_start(port, path, timeout))


def send(port: int, reqs: list) -> list[dict]:
    """One request, or a request and its probe sent `probe_after` s later while it runs."""
    first = _curl_start(port, reqs[0].path, reqs[0].timeout)
    out = []
    try:
        if len(reqs) > 1:
            time.sleep(reqs[1].probe_after)
            probe = _curl_finish(*_curl_start(port, reqs[1].path, reqs[1].timeout))
            probe.update(lesson=reqs[1].lesson, probe=True)
            out.append(_curl_finish(*first))
            out.append(probe)
        else:
            out.append(_curl_finish(*first))
    finally:
        if first[0].poll() is None:  # interrupted: no curl outlives the run
            first[0].kill()
            first[0].wait()
    out[0]["lesson"] = reqs[0].lesson
    return out


def run_requests(port: int, reqs: list, results: list[dict]) -> None:
    """The scenario's requests in order (a request and its probe as a pair), into `results`."""
    i = 0
    while i < len(reqs):
        pair = reqs[i:i + 2] if i + 1 < len(reqs) and reqs[i + 1].probe_after is not None else reqs[i:i + 1]
        for r in send(port, pair):
            results.append(r)
            i += 1
            eprint(f"[epoll-lab]   {i}/{len(reqs)} GET {r['path']} -> "
                   f"{r['status'] or 'curl failed'} ({(r['end'] - r['start']) * 1000:.0f} ms)"
                   + (" [sent while the one before ran]" if r.get("probe") else ""))
            if r["curl_exit"] != 0:
                raise TraceError(f"curl GET {r['path']} failed (exit {r['curl_exit']}): {r['error']}",
                                 EXIT_SCENARIO)


LOAD_SECONDS = 3


def load(port: int, seconds: int = LOAD_SECONDS) -> dict:
    """The load recipe's scenario: wrk, 16 connections, a few seconds."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise TraceError("wrk is not installed (the load recipe needs it). Install it with: "
                         "sudo apt-get install -y wrk (or `make setup` as root)", EXIT_SETUP)
    eprint(f"[epoll-lab] load recipe: wrk -c16 for {seconds} s against 127.0.0.1:{port}")
    t0 = time.time()
    p = subprocess.run([wrk, "-t1", "-c16", f"-d{seconds}s", f"http://127.0.0.1:{port}/"],
                       capture_output=True, text=True)
    t1 = time.time()
    m = re.search(r"(\d+) requests in", p.stdout)
    if p.returncode != 0 or m is None:
        raise TraceError(f"wrk failed (exit {p.returncode}): {p.stderr.strip() or p.stdout[-300:]}",
                         EXIT_SCENARIO)
    eprint(f"[epoll-lab]   {m.group(1)} requests under strace")
    return {"path": "load", "start": t0, "end": t1, "requests": int(m.group(1)), "status": 200,
            "lesson": f"wrk: 16 keep-alive connections for {seconds} s; only the loop's epoll "
                      "and accept calls are traced, filtered in the kernel (--seccomp-bpf)"}


def write_scenario(out: Path, results: list[dict], stop_at: float, shutdown: str) -> None:
    with open(out / "scenario.jsonl", "w") as f:
        for r in results:
            f.write(json.dumps(r) + "\n")
        if shutdown:
            f.write(json.dumps({"path": "shutdown", "start": stop_at, "end": stop_at + 3600,
                                "lesson": shutdown}) + "\n")


def load_steps(out: Path) -> tuple[list[Step], dict[str, str]]:
    steps, headers = [], {}
    path = out / "scenario.jsonl"
    if not path.exists():
        return steps, headers
    results = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    n = 0
    # A probe (sent while the request before it ran) shares that request's window.
    mains = [r for r in results if not r.get("probe")]
    for i, r in enumerate(mains):
        if r["path"].startswith("/"):
            n += 1
            label = f"request {n}: GET {r['path']}"
        else:
            label = r["path"]
        # A request's events run from its curl start to the next one's start.
        end = mains[i + 1]["start"] if i + 1 < len(mains) else r["end"]
        steps.append(Step(label, r["start"], end))
        probes = [p for p in results if p.get("probe") and r["start"] <= p["start"] <= end]
        extra = "".join(f" [+ GET {p['path']} sent {(p['start'] - r['start']) * 1000:.0f} ms later, "
                        f"answered {(p['end'] - r['start']) * 1000:.0f} ms after the start; this request "
                        f"answered at {(r['end'] - r['start']) * 1000:.0f} ms]" for p in probes)
        headers[label] = r.get("lesson", "") + extra
    return steps, headers
