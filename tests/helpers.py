"""What the tests share: ports, curl, starting and stopping a server by PID,
reading a trace back, the CLI as a user runs it. One home for each; process
work goes through the library's own functions (tracing.run.procs)."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tracing.run import procs
from tracing.names import WAITS  # noqa: F401  (the tests' one set of wait names)
from tracing.read.parse import split_args, split_prefix
from tracing.run.procs import alive, port_answers, stop, wait_port

ROOT = Path(__file__).resolve().parents[1]
PROGRAMS = Path(__file__).parent / "programs"
FIXTURES = Path(__file__).parent / "fixtures"
# Every recorded strace log (each folder's record.sh made them), and a server under load.
LOGS = sorted(p for p in FIXTURES.rglob("*") if p.is_file() and ".strace" in p.name)
LOAD = FIXTURES / "load" / "c-pool-keepalive.strace"


def covered(records) -> list[int]:
    """The input lines the records hold, sorted: each call's line, its resumed line, and the
    stack lines strace -k printed after it. Every line once is "nothing lost"."""
    return sorted([r["line"] for r in records] + [r["resumed_line"] for r in records if r["resumed_line"]]
                  + [n for r in records for n, _ in r.get("stack", ())])


def call_lines(path: Path) -> list[str]:
    """A log's complete call lines, to shuffle into orders no program made."""
    return [line for line in path.read_text(errors="replace").splitlines()
            if "(" in line and "resumed>" not in line and "<unfinished" not in line]


def split_calls(path: Path) -> list[tuple[str, str]]:
    """A log's calls strace printed in two halves: (the `<unfinished ...>` line, its `resumed>` line)."""
    started, pairs = {}, []
    for line in path.read_text(errors="replace").splitlines():
        tid = split_prefix(line)[0]
        if line.endswith("<unfinished ...>"):
            started[tid] = line
        elif "resumed>" in line and tid in started:
            pairs.append((started.pop(tid), line))
    return pairs


# Servers that repeat themselves (the pool, memcached's workers, Go's netpoller), uvloop
# (io_uring_enter, its signal's self-pipe) and a server with no loop (bind, listen, accept).
MIXED = [line for log in (LOAD, FIXTURES / "kinds" / "go.strace", FIXTURES / "kinds" / "memcached.strace",
                          FIXTURES / "kinds" / "uvloop-signal.strace", FIXTURES / "kinds" / "http-server.strace")
         for line in call_lines(log)]
SPLIT = [pair for log in (LOAD, FIXTURES / "kinds" / "go.strace", FIXTURES / "kinds" / "memcached.strace")
         for pair in split_calls(log)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def curl(port: int, path: str, *extra: str) -> tuple[int, str]:
    """Real curl; returns (HTTP status, body)."""
    p = subprocess.run(["curl", "-sS", "--max-time", "15", *extra, "-w", "\n%{http_code}",
                        f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True)
    body, _, status = p.stdout.rpartition("\n")
    assert p.returncode == 0, f"curl {path} failed: {p.stderr}"
    return int(status), body


def wait_for(cond, timeout: float = 5.0, step: float = 0.02) -> bool:
    """Until `cond()` is true (the library's loop); one last look when the time is up."""
    return procs.wait_for(cond, timeout, step) or bool(cond())


class Server:
    """A server process started untraced, waited for on its port, stopped by PID (SIGINT first)."""

    def __init__(self, argv: list[str], port: int, timeout: float = 30, **popen) -> None:
        self.port = port
        popen.setdefault("stdout", subprocess.PIPE)
        popen.setdefault("stderr", subprocess.STDOUT)
        self.proc = subprocess.Popen(argv, cwd=popen.pop("cwd", ROOT), **popen)
        if not wait_for(lambda: port_answers(port) or self.proc.poll() is not None, timeout, 0.05) \
                or self.proc.poll() is not None:
            out = self.output()
            self.stop()
            raise AssertionError(f"{argv[0]} did not listen on {port}:\n{out}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        if self.proc.poll() is None or self.proc.stdout is None:
            return ""
        return self.proc.stdout.read().decode(errors="replace")

    def stop(self) -> str:
        stop(self.proc.pid)
        self.proc.wait()
        return self.output()


@contextlib.contextmanager
def serving(argv: list[str]):
    """Run `argv --port N` untraced until it accepts; yield N; stop it by PID (SIGINT first)."""
    port = free_port()
    server = Server([*argv, "--port", str(port)], port)
    try:
        yield port
    finally:
        out = server.stop()
    assert "Traceback" not in out, f"{argv} printed a traceback:\n{out}"


def sanic_server(port: int, *extra: str) -> Server:
    return Server([sys.executable, "-m", "server", "--port", str(port), *extra], port)


def run_cli(*args: str, cwd: Path = ROOT, env: dict | None = None, timeout: float = 180
            ) -> subprocess.CompletedProcess:
    """`python -m tracing ARGS` as a user runs it (from another folder: the checkout's)."""
    return subprocess.run([sys.executable, "-m", "tracing", *args], cwd=cwd, env=checkout_env(env, cwd),
                          capture_output=True, text=True, timeout=timeout)


def checkout_env(env: dict | None, cwd: Path = ROOT) -> dict | None:
    """`python -m tracing` from a folder other than the checkout finds the checkout's package
    (installed, the lab is `epoll_lab.tracing`; the checkout's own name is `tracing`)."""
    if Path(cwd).resolve() == ROOT:
        return env
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def cli_process(*args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.Popen:
    """`python -m tracing ARGS` started, its output piped as text: for runs a test signals."""
    return subprocess.Popen([sys.executable, "-m", "tracing", *args], cwd=cwd, env=checkout_env(env, cwd),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def processes_running(needle: str) -> list[str]:
    """Command lines of live processes that mention `needle` (a unique port, say). Each one
    found is stopped by PID after the test (stop_leftovers), whatever the test asserts."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        except OSError:
            continue
        if needle in cmd and state != "Z":
            found.append(f"{pid}: {cmd}")
            _note_leftover(int(pid))
    return found


# What a cleanup check found still running, by PID and start time (so a PID the kernel has
# given to another process since is left alone): conftest stops these after each test.
LEFTOVERS: dict[int, str] = {}


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _note_leftover(pid: int) -> None:
    started = _start_time(pid)
    if started is not None and pid != os.getpid():
        LEFTOVERS[pid] = started


def stop_leftovers() -> list[str]:
    """Stop, by PID (SIGTERM, then SIGKILL), what the cleanup checks found; say what."""
    mine = {pid for pid, started in LEFTOVERS.items() if _start_time(pid) == started}
    LEFTOVERS.clear()
    return procs.stop_all(sorted(mine), wait=5)


def count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def stop_server(top: subprocess.Popen, traced: bool, first: int = signal.SIGINT) -> None:
    """Stop a server by PID (under a tracer: the tracer's child, so the tracer ends with it),
    `first` then harder (tracing.run.procs.stop), and reap the process we started."""
    for pid in (procs.child_pids(top.pid)[:1] if traced else []) or [top.pid]:
        stop(pid, first)
    stop(top.pid, first)
    top.wait()


def trace_c_under_wrk(path: Path, lines: int, seconds: float = 600, poll: float = 0.5,
                      say=lambda _: None, server_prefix: list[str] = (), load_prefix: list[str] = ()) -> int:
    """The C server traced with the lab's story flags (strace -f -ttt -T -yy) while wrk sends
    keep-alive requests, until the log has `lines` lines or `seconds` pass: a big real log.
    Returns its lines. The prefixes put the tracer and wrk on CPUs of their own (the bench)."""
    from tracing.run.tracers import strace_flags
    port = free_port()
    tracer = subprocess.Popen([*server_prefix, "strace", *strace_flags(), "-o", str(path),
                               str(ROOT / "cdemo/bin/epoll_server"), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    load = None
    try:
        if not wait_port(port):
            raise RuntimeError(f"the C server did not listen on {port}")
        load = subprocess.Popen([*load_prefix, "wrk", "-t1", "-c16", f"-d{int(seconds)}s",
                                 f"http://127.0.0.1:{port}/"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(poll)
            size = path.stat().st_size
            say(f"  log: ~{size // 230:,} of {lines:,} lines")
            if size // 230 >= lines * 1.02 and count_lines(path) >= lines:
                break
    finally:
        if load is not None:
            stop(load.pid)
            load.wait()
        # SIGINT to the server (a child of strace) lets it exit cleanly; then strace ends.
        stop_server(tracer, traced=True)
    return count_lines(path)


def still_alive_after_a_while(pids) -> list[int]:
    """The PIDs of `pids` still running, after giving them a few seconds to go. Those are
    stopped by PID after the test (stop_leftovers), so a failing check leaves nothing."""
    pids = [p for p in pids if p]
    wait_for(lambda: not any(alive(p) for p in pids), 10, 0.1)
    left = [p for p in pids if alive(p)]
    for pid in left:
        _note_leftover(pid)
    return left


@dataclass
class Trace:
    """A finished run, read back from its files."""

    out: Path
    records: list[dict]
    requests: list[dict]

    @classmethod
    def load(cls, out: Path) -> "Trace":
        records = [json.loads(l) for l in (out / "events.jsonl").read_text().splitlines()]
        scenario = out / "scenario.jsonl"
        requests = [json.loads(l) for l in scenario.read_text().splitlines()] if scenario.exists() else []
        return cls(out, records, requests)

    def in_request(self, path: str) -> list[dict]:
        steps = [r for r in self.requests if r["path"].startswith("/") and not r.get("probe")]
        label = next(f"request {i + 1}: GET {r['path']}" for i, r in enumerate(steps)
                     if r["path"] == path)
        return [r for r in self.records if r.get("request") == label]

    @property
    def loop_tid(self) -> int:
        waits = [r["tid"] for r in self.records if r["syscall"] in WAITS]
        return max(set(waits), key=waits.count)


def show(records, n: int = 25) -> str:
    """Failure-message form of records: their line numbers, threads and notes."""
    lines = [f"  line {r['line']:>6} tid {r['tid']} {r['thread']:<5} {r['syscall'] or r['kind']}: "
             f"{r['note'][:160]}" for r in list(records)[:n]]
    return "\n".join(lines) or "  (no records)"


def fd_roles(rec: dict) -> set[str]:
    return {f["role"] for f in rec.get("fds", [])}


def assert_add_follows_each_accept(trace):
    """Each accepted client: EPOLL_CTL_ADD first, EPOLL_CTL_DEL last, then close."""
    loop = trace.loop_tid
    recs = [r for r in trace.records if r["tid"] == loop]
    accepts = [(i, int(r["ret"])) for i, r in enumerate(recs)
               if r["syscall"] == "accept4" and r["errno"] is None]
    assert accepts, "no accept4 on the loop thread"
    for i, fd in accepts:
        rest = recs[i + 1:]
        close_at = next((j for j, r in enumerate(rest)
                         if r["syscall"] == "close" and r["fds"] and r["fds"][0]["fd"] == fd), None)
        assert close_at is not None, f"client fd {fd} never closed"
        life = rest[:close_at]
        ops = [split_args(r["args"])[1] for r in life
               if r["syscall"] == "epoll_ctl" and r["fds"][1]["fd"] == fd]
        assert ops[:1] == ["EPOLL_CTL_ADD"], f"fd {fd}: {ops}\n{show(life)}"
        assert ops[-1] == "EPOLL_CTL_DEL", f"fd {fd}: {ops}\n{show(life)}"





class Live:
    """`python -m tracing live c` with its output read line by line, with deadlines."""

    def __init__(self, tmp_path, *extra: str, tty: bool = False, env: dict | None = None) -> None:
        self.port = free_port()
        self.out = tmp_path / "live"
        cmd = [sys.executable, "-m", "tracing", "live", "c", "--port", str(self.port),
               "--out", str(self.out), *extra]
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        full_env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
        full_env.update(env or {})
        if tty:
            master, slave = pty.openpty()
            self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=slave, stderr=slave, env=full_env)
            os.close(slave)
            stream = os.fdopen(master, "r", errors="replace")
        else:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         text=True, env=full_env)
            stream = self.proc.stdout
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream) -> None:
        try:
            for line in stream:
                self.lines.put(line)
        except OSError:  # the pty closes when the process ends
            pass

    def wait_for(self, pattern: str, seconds: float = 30) -> str:
        deadline = time.monotonic() + seconds
        for line in self.seen:
            if re.search(pattern, line):
                return line
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.seen.append(line)
            if re.search(pattern, line):
                return line
        pytest.fail(f"no line matching {pattern!r} within {seconds} s; got:\n" + "".join(self.seen[-30:]))

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        rc = self.proc.wait(timeout=60)
        time.sleep(0.2)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return rc

    def pids(self, seconds: float = 30) -> tuple[int, int]:
        """The tracer's and the server's PIDs, from live mode's first line."""
        line = self.wait_for(r"live: strace \d+, server \d+", seconds)
        strace, server = map(int, re.search(r"strace (\d+), server (\d+)", line).groups())
        return strace, server


def nesting_problems(events: list[dict]) -> list[str]:
    """Complete slices ("X") that do not nest strictly on their track (pid, tid): each slice
    lies after the one before it ends, or strictly inside it (starting after it starts and
    ending before it ends: a viewer that sorts begin and end events may order equal times
    either way)."""
    tracks: dict[tuple, list[dict]] = {}
    for e in events:
        if e.get("ph") == "X":
            tracks.setdefault((e["pid"], e["tid"]), []).append(e)
    bad = []
    for key, slices in tracks.items():
        slices.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack: list[tuple[float, float, dict]] = []
        for e in slices:
            a, b = e["ts"], e["ts"] + e["dur"]
            while stack and stack[-1][1] <= a:
                stack.pop()
            if stack and not (stack[-1][0] < a and b < stack[-1][1]):
                pa, pb, p = stack[-1]
                bad.append(f"track {key}: {e['name']} [{a}, {b}] line {e.get('args', {}).get('line')} is not "
                           f"inside {p['name']} [{pa}, {pb}] line {p.get('args', {}).get('line')}")
            stack.append((a, b, e))
        # A zero-length slice is a begin and an end at one time: at another slice's edge,
        # or at another zero-length slice's time, its order is the viewer's guess.
        edges: dict[float, int] = {}
        for e in slices:
            for t in {e["ts"], e["ts"] + e["dur"]}:
                edges[t] = edges.get(t, 0) + 1
        bad += [f"track {key}: zero-length {e['name']} line {e.get('args', {}).get('line')} at {e['ts']} "
                f"shares its time with another slice's edge" for e in slices
                if e["dur"] == 0 and edges[e["ts"]] > 1]
    return bad


class WebPage:
    """`python -m tracing web` on a free port, its URL and token read from its first line;
    stopped with SIGINT (as Ctrl-C) and reaped."""

    def __init__(self, tmp_path: Path, *extra: str) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-m", "tracing", "web", "--port", str(self.port),
                                      "--out", str(tmp_path / "web"), *extra], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.output: list[str] = []
        line = self.proc.stdout.readline()
        self.output.append(line)
        m = re.search(r"open (http://127\.0\.0\.1:\d+/\?token=(\S+))", line)
        if not m:
            self.stop()
            raise AssertionError(f"epoll-lab web printed no URL: {line!r}")
        self.url, self.token = m.groups()
        self.base = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=lambda: self.output.extend(self.proc.stdout), daemon=True).start()
        if not wait_for(lambda: port_answers(self.port), 20):
            self.stop()
            raise AssertionError("epoll-lab web did not listen:\n" + "".join(self.output))

    def pids(self) -> list[int]:
        return procs.descendants(self.proc.pid)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                stop(self.proc.pid)
        return self.proc.wait()


def artifacts(name: str) -> Path:
    """Where a test leaves a file for people to look at (screenshots): test-artifacts/ in the
    checkout, or $EPOLL_LAB_ARTIFACTS."""
    folder = Path(os.environ.get("EPOLL_LAB_ARTIFACTS") or ROOT / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


__all__ = ["Live", "PROGRAMS", "ROOT", "Server", "Trace", "WAITS",
           "artifacts", "assert_add_follows_each_accept", "checkout_env", "cli_process", "covered", "curl", "fd_roles", "free_port", "nesting_problems", "processes_running", "WebPage",
           "run_cli", "sanic_server", "serving", "show", "still_alive_after_a_while", "stop_leftovers", "wait_for",
           "wait_port"]
