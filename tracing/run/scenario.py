"""The scenario: wait for the port to be ready (it answers HTTP, or accepts a
TCP connection), send the requests with real curl, run the client commands,
(wrk for the load recipe), and record each step's window on the clock strace
-ttt uses, so the annotator can put calls under steps.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

from ..understand.annotate import Step
from ..errors import EXIT_SCENARIO, EXIT_SETUP, EXIT_START, TraceError
from .procs import Traced, session_members, stop_all, tail
from .recipes import Request
from ..log import eprint

START_TIMEOUT = 60.0  # a traced Python server imports slowly


def startup_lesson(port: int, ready: str, attached: bool) -> str:
    """What the start-up section holds: up to the moment the port was ready, as the run saw it."""
    how = (f"until 127.0.0.1:{port} accepted a TCP connection (the readiness probe, kept in the trace)"
           if ready == "tcp" else
           f"until 127.0.0.1:{port} answered GET / (the readiness probe, kept in the trace)")
    return ("strace attached to the running process; " if attached else "from the program's start ") + how


def wait_ready(traced: Traced, port: int, timeout: float = START_TIMEOUT, ready: str = "http") -> dict:
    """Wait until the port is ready: it answers HTTP (the default), or (`ready="tcp"`) it accepts
    a connection, for a server that speaks another protocol.

    Some servers (Sanic) listen() long before they serve, so for HTTP a bare connect
    succeeds too early. The probe is a real request, kept in the scenario; its answer is
    read to the end before the socket is closed, so the server never writes to a socket
    the probe reset (http.server logged a ConnectionResetError when it was cut short).
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
            if ready == "tcp" or _answers_http(conn, traced, deadline):
                return {"path": "attached" if traced.attached else "start-up",
                        "start": traced.started, "end": time.time(),
                        "lesson": startup_lesson(port, ready, bool(traced.attached))}
        time.sleep(0.05)
    what = "accepted a TCP connection" if ready == "tcp" else "answered HTTP"
    hint = "" if ready == "tcp" else " (a server that does not speak HTTP: --ready tcp)"
    raise TraceError(f"nothing {what} on 127.0.0.1:{port} within {timeout:.0f} s{hint}. "
                     f"The program's output:\n{tail(traced.log)}", EXIT_START)


def _answers_http(conn: socket.socket, traced: Traced, deadline: float) -> bool:
    """GET / on `conn`: True once an HTTP answer starts; the rest is read until the server
    closes (HTTP/1.0), for at most a second, so the server finishes its write."""
    try:
        conn.sendall(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
    except OSError:
        return False
    got = False
    until = deadline
    while time.monotonic() < until:
        if traced.strace.poll() is not None:
            return False
        try:
            chunk = conn.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            return got
        if not chunk:
            return got  # closed: an answer, or none (then try again)
        if not got:
            if not chunk.startswith(b"HTTP/"[:len(chunk)]):
                return False  # bytes, but not HTTP's (an echo of the probe, a banner)
            got, until = True, min(deadline, time.monotonic() + 1.0)
    return got


def _curl_start(port: int, req, timeout: float | None = None) -> tuple[subprocess.Popen, dict]:
    """curl for one request (a Request, or a path to GET)."""
    if shutil.which("curl") is None:
        raise TraceError("curl is not installed. Install it with: sudo apt-get install -y curl",
                         EXIT_SETUP)
    if isinstance(req, str):
        req = Request(req, "")
    url = f"http://127.0.0.1:{port}{req.path}"
    rec = {"path": req.path, "url": url, "start": time.time()}
    extra: list[str] = []
    if req.method != "GET" or req.body is not None:
        rec["method"] = req.method
        extra += ["-X", req.method]
    for header in req.headers:
        extra += ["-H", header]
    if req.body is not None:
        extra += ["--data-binary", req.body]
    proc = subprocess.Popen(["curl", "-sS", "--max-time", str(timeout or req.timeout), *extra,
                             "-w", "\n%{http_code}", url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace")
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


def run_client(port: int, req) -> dict:
    """A --client step: the command, through /bin/sh (pipes, redirections) in a session of its
    own, with PORT set to the port; its window is its run. What it leaves running in its
    session, or all of it if it overruns, is stopped by PID."""
    rec = {"path": "client", "client": req.client, "start": time.time()}
    proc = subprocess.Popen(["/bin/sh", "-c", req.client], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "PORT": str(port)},
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=req.timeout)
    except subprocess.TimeoutExpired:
        stop_all([proc.pid, *session_members(proc.pid)])
        out, err = proc.communicate()
        err = f"did not end within {req.timeout:g} s, so it was stopped".encode()
    finally:
        if proc.poll() is None:  # interrupted (Ctrl-C): nothing of it outlives the run
            stop_all([proc.pid, *session_members(proc.pid)])
            proc.wait()
    left = stop_all(session_members(proc.pid))
    rec["end"] = time.time()
    rec.update(exit=proc.returncode, output=out.decode(errors="replace")[-2000:],
               error=err.decode(errors="replace").strip()[-2000:], left=left)
    return rec


def send(port: int, reqs: list) -> list[dict]:
    """One step, or a request and its probe sent `probe_after` s later while it runs."""
    if reqs[0].client is not None:
        got = run_client(port, reqs[0])
        got["lesson"] = reqs[0].lesson
        return [got]
    first = _curl_start(port, reqs[0])
    out = []
    try:
        if len(reqs) > 1:
            time.sleep(reqs[1].probe_after)
            probe = _curl_finish(*_curl_start(port, reqs[1]))
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


def step_label(row: dict) -> str:
    """A step's name in annotated.log and trace.json: `GET /path`, `POST /items`, `$ command`."""
    if row.get("client") is not None:
        return f"$ {row['client']}"
    return f"{row.get('method', 'GET')} {row['path']}"


def run_requests(port: int, reqs: list, results: list[dict]) -> None:
    """The scenario's steps in order (a request and its probe as a pair), into `results`."""
    i = 0
    while i < len(reqs):
        pair = reqs[i:i + 2] if i + 1 < len(reqs) and reqs[i + 1].probe_after is not None else reqs[i:i + 1]
        for r in send(port, pair):
            results.append(r)
            i += 1
            took = f"({(r['end'] - r['start']) * 1000:.0f} ms)"
            if r.get("client") is not None:
                eprint(f"[epoll-lab]   {i}/{len(reqs)} $ {r['client']} -> exit {r['exit']} {took}")
                if r["exit"] != 0:
                    why = (r["error"] or r["output"]).strip().splitlines()
                    raise TraceError(f"client step `{r['client']}` failed (exit {r['exit']})"
                                     + (f": {why[-1]}" if why else ""), EXIT_SCENARIO)
                continue
            eprint(f"[epoll-lab]   {i}/{len(reqs)} {step_label(r)} -> "
                   f"{r['status'] or 'curl failed'} {took}"
                   + (" [sent while the one before ran]" if r.get("probe") else ""))
            if r["curl_exit"] != 0:
                raise TraceError(f"curl {step_label(r)} failed (exit {r['curl_exit']}): {r['error']}",
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
        if r["path"].startswith("/") or r.get("client") is not None:
            n += 1
            label = f"request {n}: {step_label(r)}"
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
