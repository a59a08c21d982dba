"""Carry out a recipe: server under strace, curl scenario, clean stop, annotate.

Whatever happens (curl fails, the server dies, Ctrl-C) the server and strace
are stopped and reaped, by PID, and the port is free again before we return.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tracing import ltrace, timeline
from tracing.annotate import Step, annotate_file
from tracing.recipes import Target, load_flags, strace_flags
from tracing.views import eprint, summary_text, threads_by_role, write_outputs

START_TIMEOUT = 60.0  # a traced Python server imports slowly
STOP_TIMEOUT = 10.0


class TraceError(Exception):
    """A run that cannot go on; `code` is the process exit code to use."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# Exit codes (also in `python -m tracing --help`).
EXIT_SETUP, EXIT_START, EXIT_SCENARIO, EXIT_INTERRUPTED = 3, 4, 5, 130


def preflight(port: int, tool: str = "strace") -> str:
    path = shutil.which(tool)
    if path is None:
        raise TraceError(f"{tool} is not installed. Install it with: sudo apt-get install -y {tool} "
                         "(or run `make setup` as root)", EXIT_SETUP)
    probe_args = (["-f", "-o", os.devnull, "-e", "trace=none", "true"] if tool == "strace"
                  else ["-o", os.devnull, "-e", "getpid", "true"])
    probe = subprocess.run([path, *probe_args], capture_output=True, text=True)
    if probe.returncode != 0 or (tool == "ltrace" and "Operation not permitted" in probe.stderr):
        detail = probe.stderr.strip().splitlines()[-1] if probe.stderr.strip() else ""
        if "Operation not permitted" in probe.stderr or "EPERM" in probe.stderr:
            raise TraceError(
                f"ptrace is not permitted here, so {tool} cannot trace the server "
                f"({detail}). In a container, run it with --cap-add SYS_PTRACE; on a host, "
                "check /proc/sys/kernel/yama/ptrace_scope.", EXIT_SETUP)
        raise TraceError(f"{tool} does not work here: {detail}", EXIT_SETUP)
    if not port_free(port):
        raise TraceError(f"port {port} on 127.0.0.1 is in use: stop whatever listens there "
                         f"(ss -ltnp 'sport = :{port}') or pick another with PORT=...", EXIT_SETUP)
    return path


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def child_pids(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@dataclass
class Traced:
    """strace and the server it runs."""

    strace: subprocess.Popen
    log: Path
    started: float  # time.time() just before strace was started

    def server_pid(self) -> int | None:
        kids = child_pids(self.strace.pid)
        return kids[0] if kids else None

    def stop(self, port: int) -> list[str]:
        """SIGINT the server, then SIGTERM, then SIGKILL; reap strace. Returns what it did."""
        done = []
        server = self.server_pid()
        for sig, wait in ((signal.SIGINT, STOP_TIMEOUT), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            if server is None or not alive(server):
                break
            try:
                os.kill(server, sig)
            except ProcessLookupError:
                break
            done.append(f"sent {sig.name} to server {server}")
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and alive(server):
                time.sleep(0.05)
        # Children the server left behind (a /subprocess child) go too.
        try:
            self.strace.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            for pid in child_pids(self.strace.pid):
                _kill(pid)
            self.strace.kill()
            self.strace.wait()
            done.append("killed strace")
        deadline = time.monotonic() + 5
        while not port_free(port) and time.monotonic() < deadline:
            time.sleep(0.05)
        return done


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def start(target: Target, tracer: str, out: Path, output: str | None = None,
          pass_fds: tuple[int, ...] = ()) -> Traced:
    """The tracer running the server; its log goes to `output` (default the raw file)."""
    out.mkdir(parents=True, exist_ok=True)
    log = out / "server.log"
    if target.tracer == "ltrace":
        flags = target.tracer_flags
    else:
        flags = [*(load_flags() if target.recipe == "load" else strace_flags()), *target.extra_strace]
    cmd = [tracer, *flags, "-o", output or str(out / target.raw_name), "--", *target.command()]
    eprint(f"[epoll-lab] starting: {' '.join(cmd)}")
    t0 = time.time()
    with open(log, "wb") as logf:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                pass_fds=pass_fds, env={**os.environ, **target.env},
                                start_new_session=True)
    return Traced(proc, log, t0)


def wait_ready(traced: Traced, port: int) -> dict:
    """Wait until the server answers HTTP, not just until the port connects.

    Some servers (Sanic) listen() long before they serve, so a bare connect
    succeeds too early. The probe is a real request, kept in the scenario.
    """
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if traced.strace.poll() is not None:
            raise TraceError("the server did not start (it exited with "
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
                        return {"path": "start-up", "start": traced.started, "end": time.time(),
                                "lesson": "imports, listening socket, epoll set-up; the recipe "
                                          "polls with GET / until the server answers"}
                    break  # closed without an answer: try again
                except socket.timeout:
                    continue
                except OSError:
                    break
        time.sleep(0.05)
    raise TraceError(f"the server did not answer on port {port} within {START_TIMEOUT:.0f} s. "
                     f"Its output:\n{tail(traced.log)}", EXIT_START)


def tail(path: Path, n: int = 20) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no output)"
    return "\n".join("    " + line for line in lines[-n:]) or "    (no output)"


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
    """One request with real curl; returns status, body and timing."""
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


def trace(target: Target, out: Path, annotate: bool = True) -> dict:
    """Run the whole recipe. Raises TraceError; never leaves a process behind."""
    tracer = preflight(target.port, target.tracer)
    traced = start(target, tracer, out)
    results: list[dict] = []
    stopped: list[str] = []
    pids = {"strace": traced.strace.pid, "server": None}
    try:
        results.append(wait_ready(traced, target.port))
        pids["server"] = traced.server_pid()
        eprint(f"[epoll-lab] server {traced.server_pid()} is up on 127.0.0.1:{target.port}; "
               f"sending {len(target.requests)} requests with curl")
        if target.recipe == "load":
            results.append(load(target.port))
        reqs = target.requests
        i = 0
        while i < len(reqs):
            pair = reqs[i:i + 2] if i + 1 < len(reqs) and reqs[i + 1].probe_after is not None else reqs[i:i + 1]
            for r in send(target.port, pair):
                results.append(r)
                i += 1
                eprint(f"[epoll-lab]   {i}/{len(reqs)} GET {r['path']} -> "
                       f"{r['status'] or 'curl failed'} ({(r['end'] - r['start']) * 1000:.0f} ms)"
                       + (" [sent while the one before ran]" if r.get("probe") else ""))
                if r["curl_exit"] != 0:
                    raise TraceError(f"curl GET {r['path']} failed (exit {r['curl_exit']}): {r['error']}",
                                     EXIT_SCENARIO)
    except KeyboardInterrupt:
        raise TraceError("interrupted; the server and strace were stopped", EXIT_INTERRUPTED)
    finally:
        stop_at = time.time()
        stopped = traced.stop(target.port)
        write_scenario(out, results, stop_at)
    eprint(f"[epoll-lab] stopped: {'; '.join(stopped) or 'server had exited'}")
    summary = (ltrace_run(out) if target.tracer == "ltrace" else annotate_run(out)) if annotate else {}
    return {"out": str(out), "requests": results, "summary": summary, "pids": pids}


LOAD_SECONDS = 3


def load(port: int) -> dict:
    """The load recipe's scenario: wrk, 16 connections, a few seconds."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise TraceError("wrk is not installed (the load recipe needs it). Install it with: "
                         "sudo apt-get install -y wrk (or `make setup` as root)", EXIT_SETUP)
    eprint(f"[epoll-lab] load recipe: wrk -c16 for {LOAD_SECONDS} s against 127.0.0.1:{port}")
    t0 = time.time()
    p = subprocess.run([wrk, "-t1", "-c16", f"-d{LOAD_SECONDS}s", f"http://127.0.0.1:{port}/"],
                       capture_output=True, text=True)
    t1 = time.time()
    m = re.search(r"(\d+) requests in", p.stdout)
    if p.returncode != 0 or m is None:
        raise TraceError(f"wrk failed (exit {p.returncode}): {p.stderr.strip() or p.stdout[-300:]}",
                         EXIT_SCENARIO)
    eprint(f"[epoll-lab]   {m.group(1)} requests under strace")
    return {"path": "load", "start": t0, "end": t1, "requests": int(m.group(1)), "status": 200,
            "lesson": f"wrk: 16 keep-alive connections for {LOAD_SECONDS} s; only the loop's epoll "
                      "and accept calls are traced, filtered in the kernel (--seccomp-bpf)"}


def write_scenario(out: Path, results: list[dict], stop_at: float) -> None:
    with open(out / "scenario.jsonl", "w") as f:
        for r in results:
            f.write(json.dumps(r) + "\n")
        f.write(json.dumps({"path": "shutdown", "start": stop_at, "end": stop_at + 3600,
                            "lesson": "SIGINT: the server closes its sockets and exits"}) + "\n")


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


def annotate_run(out: Path) -> dict:
    steps, headers = load_steps(out)
    records, ann = annotate_file(str(out / "raw.strace"), steps)
    _write_views(out, records, headers,
                 f"# epoll-lab annotated trace of {out.name}; raw lines from raw.strace, each "
                 "followed by '->' [category] note.\n# Columns: line in raw.strace, thread role, "
                 "raw strace line (pid, time, call, result, duration).\n",
                 f"epoll-lab timeline: {out.name}")
    return _write_summary(out, ann.summary.as_dict())


def ltrace_run(out: Path) -> dict:
    steps, headers = load_steps(out)
    records, ann = ltrace.annotate_file(str(out / "raw.ltrace"), steps)
    _write_views(out, records, headers,
                 f"# epoll-lab annotated ltrace of {out.name}: library calls (not syscalls), "
                 "each followed by '->' [category] note.\n",
                 f"epoll-lab timeline: {out.name} (ltrace: library calls)")
    summary = _write_summary(out, ltrace.summary(ann))
    if not summary["calls"]:
        raise TraceError(f"ltrace recorded no library calls (see {out / 'raw.ltrace'}): it may not "
                         "have attached to the server's threads", EXIT_SCENARIO)
    return summary


def _write_views(out: Path, records, headers: dict, heading: str, title: str) -> None:
    """annotated.log and events.jsonl in one pass over the records, then the timeline page."""
    with open(out / "annotated.log", "w") as text, open(out / "events.jsonl", "w") as jsonl:
        text.write(heading)
        write_outputs(records, text, jsonl, headers)
    timeline.write(timeline.from_jsonl(out / "events.jsonl"), out / "timeline.html", title)


def _write_summary(out: Path, summary: dict) -> dict:
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def report(result: dict) -> None:
    out = Path(result["out"])
    summary = result["summary"]
    raw = "raw.strace"
    if summary.get("tool") == "ltrace":
        raw = "raw.ltrace"
        print("library calls: " + ", ".join(f"{k} {v}" for k, v in summary["calls"].items()))
        print("threads: " + threads_by_role(summary["threads"]))
    else:
        print(summary_text(summary))
    print(f"files: {out / raw}\n       {out / 'annotated.log'}\n       {out / 'events.jsonl'}\n"
          f"       {out / 'timeline.html'}")
