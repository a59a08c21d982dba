"""`python -m tracing trace -- CMD` and `--pid PID`: the lab on a user's own
program, with the same files and summary as the demo targets, and one-line
errors with documented exit codes when it cannot."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.helpers import (PROGRAMS, ROOT, Server, Trace, curl, fd_roles, free_port, run_cli, sanic_server, show,
                           still_alive_after_a_while, wait_for)
from tracing.errors import EXIT_NOT_FOUND, EXIT_PID, EXIT_START
from tracing.run.procs import alive, child_pids

FILES = ("raw.strace", "annotated.log", "events.jsonl", "timeline.html", "trace.json", "summary.json")
DATA = ROOT / "server" / "data" / "lab.txt"


def assert_one_line_error(p: subprocess.CompletedProcess, code: int, words: str) -> None:
    errors = [line for line in p.stderr.splitlines() if line.startswith("epoll-lab: error:")]
    assert p.returncode == code, p.stderr
    assert len(errors) == 1 and words in errors[0], p.stderr
    assert "Traceback" not in p.stderr, p.stderr


@pytest.fixture(scope="module")
def program_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("program")
    p = run_cli("trace", "--out", str(out), "--", sys.executable, str(PROGRAMS / "pool_and_resolve.py"),
                str(DATA))
    assert p.returncode == 0, p.stderr
    return p, Trace.load(out)


def test_a_command_is_traced_into_the_same_files_and_summary_as_the_demo_targets(program_run):
    p, trace = program_run
    for name in FILES:
        assert (trace.out / name).stat().st_size > 0, name
    assert re.search(r"^threads: \d+ \(loop \d+; .*pool \d+", p.stdout, re.M), p.stdout
    assert "categories:" in p.stdout and "busiest syscalls:" in p.stdout
    assert "read 322 bytes; localhost is 127.0.0.1" in (trace.out / "server.log").read_text()


def test_the_programs_file_read_runs_on_a_pool_thread(program_run):
    _, trace = program_run
    reads = [r for r in trace.records if r["syscall"] == "read" and "lab.txt" in (r["args"] or "")]
    assert reads and all(r["thread"] == "pool" and r["category"] == "thread-pooled" for r in reads), \
        show(reads)


def test_the_programs_lookup_of_localhost_reads_etc_hosts_on_a_pool_thread(program_run):
    _, trace = program_run
    hosts = [r for r in trace.records if r["syscall"] == "openat" and '"/etc/hosts"' in r["args"]]
    assert hosts and all(r["thread"] == "pool" for r in hosts), show(hosts)


def test_the_pool_wakes_the_loop_through_its_self_pipe(program_run):
    _, trace = program_run
    wake = [r for r in trace.records if r["category"] == "wakeup"]
    assert wake and all("self-pipe" in r["note"] for r in wake), show(wake)
    # The file read's and the lookup's hand-backs are the pool thread's; asyncio's shutdown
    # thread also writes the self-pipe, with no work before it, and is said to be no pool.
    handbacks = [r for r in wake if "hands back" in r["note"]]
    assert len(handbacks) >= 2 and all(r["thread"] == "pool" for r in handbacks), show(wake)
    woken = [r for r in trace.records if r["thread"] == "loop"
             for x in r["ready"] if x["role"] == "wakeup"]
    assert woken, "the loop's wait returns the wakeup socket"


def test_a_program_that_waits_in_poll_has_its_waits_traced_and_decoded(tools_present, tmp_path):
    # http.server waits in poll(), not epoll: a recipe that left poll out showed no wait at all.
    port, out = free_port(), tmp_path / "http"
    p = run_cli("trace", "--out", str(out), "--port", str(port), "--",
                sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path))
    assert p.returncode == 0, p.stderr
    polls = [r for r in Trace.load(out).records if r["syscall"] == "poll"]
    ready = [r for r in polls if r["ready"] and r["ready"][0]["role"] == "listening-socket"]
    assert ready and all(r["category"] == "pollable" for r in ready), show(polls)
    # Its thread polls only its listening socket and starts a thread per connection: no loop,
    # and the index says why; the start-up section says what the run saw, not "epoll set-up".
    roles = json.loads((out / "summary.json").read_text())["roles"]
    (tid,) = {str(r["tid"]) for r in polls}
    assert roles[tid]["role"] == "other" and "on one fd at a time: it multiplexes nothing" in roles[tid]["why"], roles
    text = (out / "annotated.log").read_text()
    assert "epoll set-up" not in text and f"==== start-up: from the program's start until 127.0.0.1:{port} " \
        "answered GET /" in text


def test_pid_attaches_to_a_running_server_while_curl_hits_it_and_detaches(tools_present, tmp_path):
    port = free_port()
    server = sanic_server(port)
    try:
        out = tmp_path / "pid"
        p = run_cli("trace", "--pid", str(server.pid), "--port", str(port), "--request", "/file",
                    "--request", "/dns?host=localhost", "--out", str(out))
        assert p.returncode == 0, p.stderr
        assert f"detached from {server.pid}" in p.stderr
        assert alive(server.pid), "the traced server must keep running after strace detaches"
        assert curl(port, "/")[0] == 200
        trace = Trace.load(out)
        assert {r["tid"] for r in trace.records if r["thread"] == "loop"} == {server.pid}
        reads = [r for r in trace.in_request("/file") if "lab.txt" in str(r["fds"])]
        assert reads and all(r["thread"] == "pool" for r in reads), show(trace.in_request("/file"))
        assert [r for r in trace.in_request("/file") if r["category"] == "wakeup"], \
            show(trace.in_request("/file"))
        assert p.stdout.startswith("lines traced:") or "lines traced:" in p.stdout
    finally:
        server.stop()


def test_pid_for_some_seconds_sees_requests_sent_by_someone_else(tools_present, tmp_path):
    port = free_port()
    server = sanic_server(port)
    stop = threading.Event()

    def hit():
        while not stop.wait(0.2):
            subprocess.run(["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{port}/"])

    hitter = threading.Thread(target=hit)
    hitter.start()
    try:
        p = run_cli("trace", "--pid", str(server.pid), "--seconds", "2", "--out", str(tmp_path / "o"))
        assert p.returncode == 0, p.stderr
        trace = Trace.load(tmp_path / "o")
        accepts = [r for r in trace.records if r["syscall"] == "accept4" and r["errno"] is None]
        assert accepts and all(r["thread"] == "loop" for r in accepts), show(trace.records)
        assert alive(server.pid)
    finally:
        stop.set()
        hitter.join()
        server.stop()


def test_a_command_that_is_not_found_is_one_line_and_exit_127(tmp_path):
    p = run_cli("trace", "--out", str(tmp_path / "o"), "--", "no-such-program-here", "--flag")
    assert_one_line_error(p, EXIT_NOT_FOUND, "command not found: no-such-program-here")


def test_a_pid_that_does_not_exist_is_one_line_and_exit_6(tmp_path):
    gone = subprocess.Popen(["true"])
    gone.wait()  # a PID that surely is not running now
    p = run_cli("trace", "--pid", str(gone.pid), "--out", str(tmp_path / "o"))
    assert_one_line_error(p, EXIT_PID, f"no process with PID {gone.pid}")


def _child_named(parent: int, name: str) -> int | None:
    # strace forks short-lived probes of its own before the program: wait for the program.
    for pid in child_pids(parent):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == name:
                return pid
        except OSError:
            pass
    return None


def test_a_pid_another_tracer_holds_cannot_be_traced_one_line_and_exit_6(tools_present, tmp_path):
    held = subprocess.Popen(["strace", "-o", "/dev/null", "sleep", "60"])
    sleeper = None
    try:
        assert wait_for(lambda: _child_named(held.pid, "sleep"), 10)
        sleeper = _child_named(held.pid, "sleep")
        p = run_cli("trace", "--pid", str(sleeper), "--out", str(tmp_path / "o"))
        assert_one_line_error(p, EXIT_PID, f"cannot trace PID {sleeper}")
        assert "Operation not permitted" in p.stderr
        assert alive(sleeper), "the refused attach must not hurt the process"
    finally:
        held.kill()  # a killed strace detaches its tracee: the sleep would run on for a minute
        held.wait()
        if sleeper:
            try:
                os.kill(sleeper, signal.SIGKILL)
            except ProcessLookupError:
                pass
        assert not still_alive_after_a_while([held.pid, sleeper] if sleeper else [held.pid])


def test_a_port_that_never_answers_is_one_line_exit_4_and_the_program_is_stopped(tools_present, tmp_path):
    port = free_port()
    p = run_cli("trace", "--port", str(port), "--wait", "2", "--out", str(tmp_path / "o"), "--",
                "sleep", "300")
    assert_one_line_error(p, EXIT_START, f"nothing answered HTTP on 127.0.0.1:{port} within 2 s")
    started = re.search(r"the program runs as PID (\d+)", p.stderr)
    assert started, p.stderr
    assert not still_alive_after_a_while([int(started.group(1))]), "the program must be stopped"


def test_pid_attached_after_the_pool_exists_shows_the_pool_its_wakeup_and_the_loops_ready_fd(tools_present, tmp_path):
    """The issue's own case: the pool thread and the loop's self-pipe predate the log. The
    snapshot trace --pid saves beside raw.strace (fds, epoll interest lists, threads) lets the
    annotator name them from the first line."""
    port = free_port()
    server = Server([sys.executable, str(PROGRAMS / "asyncio_pool_server.py"), str(port),
                     str(ROOT / "server" / "data" / "lab.txt")], port)
    try:
        assert curl(port, "/")[0] == 200  # the pool's thread now exists
        out = tmp_path / "pid"
        p = run_cli("trace", "--pid", str(server.pid), "--port", str(port), "--request", "/file",
                    "--out", str(out))
        assert p.returncode == 0, p.stderr
        snap = json.loads((out / "snapshot.json").read_text())
        assert len(snap["threads"]) >= 2 and snap["epoll"], snap
        trace = Trace.load(out)
        loop = server.pid
        roles = {r["tid"]: r["thread"] for r in trace.records}
        assert roles[loop] == "loop", roles
        reads = [r for r in trace.records if r["syscall"] == "read" and "lab.txt" in str(r["fds"])]
        assert reads and {roles[r["tid"]] for r in reads} == {"pool"}, show(trace.records)
        pool = reads[0]["tid"]
        wakes = [r for r in trace.records if r["tid"] == pool and r["category"] == "wakeup"]
        assert wakes and fd_roles(wakes[0]) == {"wakeup"}, show(wakes or trace.records)
        woken = [r for r in trace.records if r["tid"] == loop and r["ready"]
                 and {"claim": "woken-by", "line": wakes[0]["line"], "tid": pool} in r["evidence"]]
        assert woken and woken[0]["ready"][0]["role"] == "wakeup", show(woken or trace.records)
        # The first wait's ready fd is named from the snapshot's interest list, not "unknown".
        first = next(r for r in trace.records if r["tid"] == loop and r["ready"])
        assert all(x["role"] != "unknown" for x in first["ready"]), show([first])
    finally:
        server.stop()
