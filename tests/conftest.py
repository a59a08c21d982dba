"""Shared fixtures: real traces made once per session, real servers, real curl."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tracing import recipes
from tracing.names import WAITS
from tracing.parse import split_args
from tracing.run import trace

ROOT = Path(__file__).resolve().parents[1]


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


@dataclass
class Trace:
    """A finished recipe run, read back from its files."""

    out: Path
    records: list[dict]
    requests: list[dict]

    @classmethod
    def load(cls, out: Path) -> "Trace":
        records = [json.loads(l) for l in (out / "events.jsonl").read_text().splitlines()]
        requests = [json.loads(l) for l in (out / "scenario.jsonl").read_text().splitlines()]
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


@pytest.fixture(scope="session")
def tools_present():
    missing = [t for t in ("strace", "curl") if shutil.which(t) is None]
    if missing:
        pytest.fail(f"missing {missing}: run `make setup` (the suite must not skip live traces)")


def run_recipe(tmp_path_factory, target) -> Trace:
    """Trace `target` once with the real recipe; every scenario request must answer 200."""
    assert Path(target.argv[0]).exists(), f"{target.argv[0]} missing: run `make build-c` (make test does)"
    out = tmp_path_factory.mktemp(f"trace-{target.name}")
    result = trace(target, out)
    steps = [r for r in result["requests"] if r["path"] != "start-up"]
    # /timeout's lesson is a 504; every other request must succeed.
    assert steps and all(r["status"] == (504 if r["path"].startswith("/timeout") else 200)
                         for r in steps), result["requests"]
    return Trace.load(out)


@pytest.fixture(scope="session")
def uvloop_trace(tools_present, tmp_path_factory) -> Trace:
    return run_recipe(tmp_path_factory, recipes.sanic(loop="uvloop", port=free_port()))


@pytest.fixture(scope="session")
def asyncio_trace(tools_present, tmp_path_factory) -> Trace:
    return run_recipe(tmp_path_factory, recipes.sanic(loop="asyncio", port=free_port()))


@pytest.fixture(scope="session")
def uvloop_no_io_uring_trace(tools_present, tmp_path_factory) -> Trace:
    return run_recipe(tmp_path_factory, recipes.sanic(loop="uvloop", io_uring=False, port=free_port()))


@pytest.fixture(scope="session", params=["uvloop", "asyncio"])
def sanic_trace(request) -> Trace:
    return request.getfixturevalue(f"{request.param}_trace")


@pytest.fixture(scope="session")
def c_trace(tools_present, tmp_path_factory) -> Trace:
    return run_recipe(tmp_path_factory, recipes.c(pool=False, port=free_port()))


@pytest.fixture(scope="session")
def c_pool_trace(tools_present, tmp_path_factory) -> Trace:
    return run_recipe(tmp_path_factory, recipes.c(pool=True, port=free_port()))


@pytest.fixture(scope="session")
def lessons_trace(tools_present, tmp_path_factory) -> Trace:
    return run_recipe(tmp_path_factory, recipes.sanic(scenario="lessons", port=free_port()))


@pytest.fixture(scope="session")
def c_load(tools_present, tmp_path_factory) -> Trace:
    if shutil.which("wrk") is None:
        pytest.fail("wrk is missing: run `make setup` (it installs wrk)")
    return run_recipe(tmp_path_factory, recipes.c(recipe="load", port=free_port()))


@pytest.fixture(scope="session")
def ltrace_present():
    if shutil.which("ltrace") is None:
        pytest.fail("ltrace is missing: run `make setup` (the suite must not skip live traces)")


@pytest.fixture(scope="session")
def sanic_ltrace(tools_present, ltrace_present, tmp_path_factory) -> Trace:
    return run_recipe(tmp_path_factory, recipes.sanic(loop="uvloop", tool="ltrace", port=free_port()))


@pytest.fixture(scope="session")
def c_pool_ltrace(tools_present, ltrace_present, tmp_path_factory) -> Trace:
    return run_recipe(tmp_path_factory, recipes.c(pool=True, tool="ltrace", port=free_port()))


@pytest.fixture(scope="session")
def c_ltrace(tools_present, ltrace_present, tmp_path_factory) -> Trace:
    return run_recipe(tmp_path_factory, recipes.c(pool=False, tool="ltrace", port=free_port()))


@contextlib.contextmanager
def serving(argv: list[str]):
    """Run `argv --port N` untraced until it accepts; yield N; stop it by PID (SIGINT first)."""
    port = free_port()
    proc = subprocess.Popen([*argv, "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode()
                time.sleep(0.05)
        yield port
    finally:
        proc.send_signal(2)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    out = proc.stdout.read().decode(errors="replace")
    assert "Traceback" not in out, f"{argv} printed a traceback:\n{out}"


@pytest.fixture(scope="session")
def sanic_server(tools_present):
    """The demo server, untraced, for route tests."""
    with serving([sys.executable, "-m", "server"]) as port:
        yield port


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
