"""The kernel tracer (a BPF program): what strace cannot see, on live traces.

Live tests skip, with the reason printed, only where the tracer's own checks
fail (no root, no BTF, no tracefs, no build tools); the decoding and preflight
tests run everywhere.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import (PROGRAMS, ROOT, Live, Server, Trace, curl, free_port, run_cli,
                           sanic_server, show)
from tracing.run.tracers.kernel import records as kernel_records
from tracing.run.tracers.kernel.fds import Tables, read_snapshot
from tracing.read.sqe import decode_user_data, sqe_fields
from tracing.run.tracers.kernel.lines import convert
from tracing.read.parse import fd_arg, split_args, split_prefix
from tracing.run.procs import alive

FIXTURE = ROOT / "tests" / "fixtures" / "kernel" / "sanic-uvloop.records.gz"
FIXTURE_FDS = ROOT / "tests" / "fixtures" / "kernel" / "sanic-uvloop.fds.json"


def _fixture_lines() -> list[str]:
    """The recorded run's records as the tracer writes them into raw.kernel."""
    with gzip.open(FIXTURE) as f:
        return list(convert(kernel_records.read(f), 0.0, Tables(read_snapshot(FIXTURE_FDS))))


def _client_fds_accepted(trace):
    return [(i, int(r["ret"])) for i, r in enumerate(trace.records)
            if r["syscall"] == "accept4" and r["errno"] is None and r["request"]]


def _ctl(rec: dict) -> tuple[str, int] | None:
    """(op, fd) of a plain epoll_ctl or an io_uring EPOLL_CTL record."""
    if rec["syscall"] == "epoll_ctl" and rec["errno"] is None:
        args = split_args(rec["args"])
        return args[1].replace("EPOLL_CTL_", ""), fd_arg(args[2])[0]
    if rec["syscall"] == "io_uring_sqe":
        got = sqe_fields(rec["args"])
        if got and got["libuv"]:
            return got["op"], got["kernel"]["fd"] if "kernel" in got else got["fd"]
    return None


def test_uvloop_registers_each_client_fd_through_io_uring_before_its_wait(uvloop_kernel_trace):
    trace = uvloop_kernel_trace
    recs = trace.records
    accepts = _client_fds_accepted(trace)
    assert accepts, "no accept4 in any request window"
    for i, fd in accepts:
        rest = recs[i + 1:]
        ready_at = next((j for j, r in enumerate(rest) if r["syscall"] == "epoll_pwait"
                         and any(x.get("fd") == fd for x in r["ready"])), None)
        assert ready_at is not None, f"no wait reported client fd {fd} ready\n{show(rest)}"
        before = rest[:ready_at]
        adds = [r for r in before if r["syscall"] == "io_uring_sqe" and _ctl(r) == ("ADD", fd)]
        assert adds, f"client fd {fd}: no io_uring EPOLL_CTL_ADD before the wait that reports it\n{show(before)}"
        assert "through io_uring" in adds[0]["note"] and "user_data" in adds[0]["note"], show(adds)
        assert adds[0]["thread"] == "loop", show(adds)


def test_uvloop_removes_each_client_fd_before_its_close(uvloop_kernel_trace):
    recs = uvloop_kernel_trace.records
    for i, fd in _client_fds_accepted(uvloop_kernel_trace):
        rest = recs[i + 1:]
        close_at = next((j for j, r in enumerate(rest)
                         if r["syscall"] == "close" and r["fds"] and r["fds"][0]["fd"] == fd), None)
        if close_at is None:
            continue  # a keep-alive connection the shutdown closed out of the story's windows
        ops = [_ctl(r) for r in rest[:close_at] if _ctl(r) and _ctl(r)[1] == fd]
        assert ops and ops[0][0] == "ADD" and ops[-1][0] == "DEL", f"fd {fd}: {ops}\n{show(rest[:close_at])}"


def test_annotated_log_shows_the_add_right_after_accept4(uvloop_kernel_trace):
    text = (uvloop_kernel_trace.out / "annotated.log").read_text().splitlines()
    acc = [n for n, line in enumerate(text) if " accept4(" in line and ") = -1" not in line]
    assert acc
    for n in acc:
        fd = re.match(r"\d+", text[n].rsplit(") = ", 1)[1]).group()  # without its -yy name
        # libuv flushes its queued registrations just before the loop's next wait.
        wait = next(k for k in range(n + 1, len(text)) if " epoll_pwait(" in text[k])
        window = "\n".join(text[n:wait + 1])
        assert f"EPOLL_CTL_ADD fd {fd} = client connection" in window, window


def test_file_read_runs_on_a_pool_thread_and_a_wakeup_follows(uvloop_kernel_trace):
    loop = uvloop_kernel_trace.loop_tid
    recs = uvloop_kernel_trace.in_request("/file")
    reads = [i for i, r in enumerate(recs) if r["syscall"] == "read" and r["fds"]
             and r["fds"][0]["detail"].endswith("server/data/lab.txt")]
    assert reads, show(recs)
    bad = [recs[i] for i in reads if recs[i]["tid"] == loop or recs[i]["category"] != "thread-pooled"]
    assert not bad, f"file work not on a pool thread:\n{show(bad)}"
    # The eventfd write that wakes the loop: by the pool thread, or by the
    # loop itself when the job finished while it was busy (uvloop coalesces).
    after = recs[reads[-1]:]
    wakes = [r for r in after if r["syscall"] == "write" and r["fds"] and r["fds"][0]["role"] == "wakeup"]
    assert wakes, f"no wakeup write after the file read:\n{show(after)}"


def _gai(trace):
    return [r for r in trace.in_request("/dns?host=localhost") if r["syscall"] == "getaddrinfo"]


def test_getaddrinfo_runs_on_a_pool_thread_under_sanic(uvloop_kernel_trace):
    calls = _gai(uvloop_kernel_trace)
    assert calls, show(uvloop_kernel_trace.in_request("/dns?host=localhost"))
    assert all(r["thread"] == "pool" and r["tid"] != uvloop_kernel_trace.loop_tid for r in calls), show(calls)
    assert all('"localhost"' in r["args"] and r["duration"] is not None for r in calls), show(calls)


def test_getaddrinfo_runs_on_a_pool_thread_in_the_c_server_with_its_pool(c_pool_kernel_trace):
    calls = _gai(c_pool_kernel_trace)
    assert calls and all(r["thread"] == "pool" for r in calls), show(c_pool_kernel_trace.in_request("/dns?host=localhost"))


def _epoll_story(trace) -> tuple[int, list[dict]]:
    """epoll instances made, and per accepted connection (in order) its ADDs, DELs and the
    waits that reported it ready. Per connection, not per request window: when curl's close
    is seen (this request's window or the next one's) is timing, not the loop's sequence;
    so is whether one wait reports two fds or two waits one each."""
    creates = sum(1 for r in trace.records if r["syscall"] in ("epoll_create", "epoll_create1"))
    conns = []
    for i, fd in _client_fds_accepted(trace):
        got = Counter()
        for r in trace.records[i + 1:]:
            if r["syscall"] == "close" and r["fds"] and r["fds"][0]["fd"] == fd:
                break
            if _ctl(r) and _ctl(r)[1] == fd:
                got[_ctl(r)[0]] += 1
            if r["syscall"] == "epoll_wait" and any(x.get("fd") == fd for x in r["ready"]):
                got["reported ready"] += 1
        conns.append(dict(got))
    return creates, conns


def test_c_server_shows_the_same_epoll_sequence_under_both_tracers(c_trace, c_kernel_trace):
    # How many waits report a connection (its request and its hang-up in one wait, or two)
    # is timing: strace slows the server, so the hang-up is often there by the first wait.
    # The sequence is not: one epoll, and per connection one ADD, a wait that reports it, one DEL.
    def sequence(story):
        return story[0], [(c.get("ADD"), c.get("DEL"), bool(c.get("reported ready"))) for c in story[1]]
    strace, kernel = _epoll_story(c_trace), _epoll_story(c_kernel_trace)
    assert sequence(strace) == sequence(kernel), f"strace {strace}\nkernel {kernel}"
    assert kernel[0] == 1 and all(c.get("ADD") == 1 and c.get("DEL") == 1 and c.get("reported ready")
                                  for c in kernel[1]), kernel


def test_recorded_user_data_decodes_to_the_fd_the_kernel_prepared():
    lines = _fixture_lines()
    sqes = [line.split(" ", 2)[2] for line in lines if " io_uring_sqe(" in line]
    assert len(sqes) >= 5, "the fixture should hold the run's io_uring submissions"
    for text in sqes:
        got = sqe_fields(text[len("io_uring_sqe("):text.rindex(") = ")])
        assert got is not None and got["libuv"], text
        # libuv's packing and the kernel's own request agree, fd and op.
        assert got["fd"] == got["kernel"]["fd"], text
        assert ("", "ADD", "DEL", "MOD").index(got["op"]) == got["kernel"]["op"], text


def test_user_data_of_libuv_and_of_others():
    # Measured on this machine: EPOLL_CTL_ADD of fd 11 from ring slot 5.
    assert decode_user_data(0xB00000015, "IORING_OP_EPOLL_CTL") == {
        "libuv": True, "opcode": "IORING_OP_EPOLL_CTL", "op": "ADD", "slot": 5, "fd": 11}
    assert decode_user_data(0xE00000022, "IORING_OP_EPOLL_CTL")["op"] == "DEL"
    # Another io_uring user: a pointer as user_data, or another opcode: fd unknown, never guessed.
    for ud, op in ((0x7F12E4CB2C58, "IORING_OP_EPOLL_CTL"), (0xB00000015, "IORING_OP_READ"),
                   (0xB00000010, "IORING_OP_EPOLL_CTL")):
        assert decode_user_data(ud, op) == {"libuv": False, "opcode": op}, hex(ud)


def test_annotator_says_a_foreign_submission_has_no_known_fd():
    from tracing.understand.annotate import Annotator
    from tracing.read.parse import events
    line = "100 1.000000 io_uring_sqe(IORING_OP_READ, user_data=0x55d0c0ffee00) = 42 <0.000010>"
    rec = next(r for r in Annotator().run(events([line])) if r["kind"] == "syscall")
    assert "IORING_OP_READ" in rec["note"] and "fd is unknown" in rec["note"], rec["note"]


def _trace_cli(env: dict, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tracing", "trace", "c", "--tracer", "kernel",
                           "--port", str(free_port()), "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, **env}, timeout=60)


def test_preflight_without_tracefs_stops_with_one_line(tmp_path: Path):
    p = _trace_cli({"EPOLL_LAB_TRACEFS": str(tmp_path)}, tmp_path / "out")
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert p.returncode == 3, p.stderr
    assert len(lines) == 1 and "strace" in lines[0], p.stderr
    # The first missing thing is named: root where not root, else the empty tracefs.
    assert ("needs root" in lines[0] if os.geteuid() else
            "tracefs is not mounted" in lines[0] and "mount -t tracefs" in lines[0]), p.stderr


def test_preflight_without_btf_stops_with_one_line(tmp_path: Path):
    p = _trace_cli({"EPOLL_LAB_BTF": str(tmp_path / "no-vmlinux")}, tmp_path / "out")
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert p.returncode == 3, p.stderr
    assert len(lines) == 1, p.stderr
    assert ("needs root" in lines[0] if os.geteuid() else
            "no BTF" in lines[0] and "CONFIG_DEBUG_INFO_BTF" in lines[0] and "strace" in lines[0]), p.stderr


def test_compare_counts_every_client_add_strace_could_not_see(uvloop_trace, uvloop_kernel_trace):
    from tracing.modes import compare
    cmp = compare.build({"sanic": uvloop_trace.out, "sanic-kernel": uvloop_kernel_trace.out})
    accepts = sum(cmp["phases"]["accept"]["sanic-kernel"].values())
    seen = cmp["phases"]["register client"]["sanic-kernel"].get("io_uring EPOLL_CTL_ADD")
    assert accepts and seen == accepts, cmp["phases"]
    assert "io_uring EPOLL_CTL_ADD" not in cmp["phases"]["register client"]["sanic"], cmp["phases"]
    said = [d for d in cmp["differences"] if d.startswith("sanic-kernel:")]
    assert said and f"{seen} EPOLL_CTL_ADD of a client" in said[0] and "strace cannot see" in said[0], said


def test_live_mode_streams_the_kernel_tracers_lines(kernel_ready, tmp_path):
    live = Live(tmp_path, "--tracer", "kernel")
    try:
        tracer, server = live.pids(60)
        curl(live.port, "/file")
        live.wait_for(r"accept4\(.*client connection", 15)
        live.wait_for(r"epoll_ctl\(.*ADD fd \d+ = client connection", 15)
        live.wait_for(r"read\(.*GET /file HTTP/1.1", 15)
    finally:
        rc = live.stop()
    assert rc == 0, "".join(live.seen[-20:])
    assert not alive(server) and not alive(tracer), "server or the kernel tracer left behind"
    assert "GET /file" in (live.out / "annotated.log").read_text()
    assert (live.out / "raw.kernel").stat().st_size > 0
    # Streamed from the same ring buffer: its count of lost calls ends the run.
    assert any("calls lost: 0" in line for line in live.seen), "".join(live.seen[-10:])


def test_live_mode_shows_where_calls_were_lost_and_how_many(kernel_ready, tmp_path):
    """A 4 KiB ring under wrk (the load recipe): the screen shows each place calls were
    lost, with the count, as it happens, and the run ends saying it is incomplete."""
    live = Live(tmp_path, "--tracer", "kernel", "--recipe", "load", "--load-seconds", "2",
                env={"EPOLL_LAB_KERNEL_RING_KB": "4", "EPOLL_LAB_KERNEL_WAKE_KB": "0"})
    try:
        live.pids(60)
        shown = live.wait_for(r"\d+ calls? lost here: the kernel tracer's ring buffer was full", 30)
    finally:
        rc = live.stop()
    assert rc == 0, "".join(live.seen[-20:])
    lost = int(re.search(r"(\d+) calls? lost here", shown).group(1))
    assert lost > 0, shown
    end = [line for line in live.seen if "INCOMPLETE: the kernel tracer lost" in line]
    assert end, "".join(live.seen[-10:])
    raw = (live.out / "raw.kernel").read_text()
    total = sum(int(m) for m in re.findall(r"strace: (\d+) calls? lost here", raw))
    assert f"lost {total} calls" in end[0], (total, end[0])


def test_a_command_under_the_kernel_tracer_resolves_on_a_pool_thread(kernel_ready, tmp_path):
    out = tmp_path / "cmd"
    p = run_cli("trace", "--tracer", "kernel", "--out", str(out), "--", sys.executable,
                str(PROGRAMS / "pool_and_resolve.py"), str(ROOT / "server" / "data" / "lab.txt"))
    assert p.returncode == 0, p.stderr
    trace = Trace.load(out)
    calls = [r for r in trace.records if r["syscall"] == "getaddrinfo"]
    assert calls and all(r["thread"] == "pool" and '"localhost"' in r["args"] for r in calls), show(calls)


def test_pid_under_the_kernel_tracer_sees_the_hidden_adds_and_leaves_the_server_running(kernel_ready,
                                                                                        tmp_path):
    port = free_port()
    server = sanic_server(port)
    try:
        out = tmp_path / "pid"
        p = run_cli("trace", "--tracer", "kernel", "--pid", str(server.pid), "--port", str(port),
                    "--request", "/", "--out", str(out))
        assert p.returncode == 0, p.stderr
        assert f"detached from {server.pid}" in p.stderr, p.stderr
        assert alive(server.pid), "the traced server must keep running after the kernel tracer detaches"
        assert curl(port, "/")[0] == 200
        trace = Trace.load(out)
        accepted = {int(r["ret"]) for r in trace.records if r["syscall"] == "accept4" and r["errno"] is None}
        added = {_ctl(r)[1] for r in trace.records if r["syscall"] == "io_uring_sqe" and _ctl(r)
                 and _ctl(r)[0] == "ADD"}
        assert accepted and accepted <= added, show(trace.records)
    finally:
        server.stop()


def test_preflight_as_an_unprivileged_user_stops_with_one_line(tmp_path: Path):
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("setpriv is missing: run `make test` as root (it installs util-linux)")
    if os.geteuid() != 0:
        pytest.skip("needs root to become an unprivileged user")
    os.chmod(tmp_path, 0o777)
    p = subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
                        sys.executable, "-m", "tracing", "trace", "c", "--tracer", "kernel",
                        "--port", str(free_port()), "--out", str(tmp_path / "out")],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert p.returncode == 3, p.stderr
    assert len(lines) == 1 and "needs root or CAP_BPF+CAP_PERFMON" in lines[0] and "strace" in lines[0], p.stderr


def test_a_recorded_run_annotates_like_a_live_one_without_root():
    """The fixture's records, converted and annotated here: no root needed, so this
    holds where the live tests skip (a container)."""
    from tracing.understand.annotate import annotate_items
    lines = _fixture_lines()
    # Both passes, as `annotate` reads a file: a thread is a pool thread by its hand-back,
    # which comes after the getaddrinfo it hands back.
    recs = [r for r in annotate_items(lambda: enumerate(lines, 1))[0] if r["kind"] != "started"]
    assert not [r for r in recs if r["kind"] == "unparsed"], show(r for r in recs if r["kind"] == "unparsed")
    accepted = {int(r["ret"]) for r in recs if r["syscall"] == "accept4" and r["errno"] is None}
    adds = [r for r in recs if r["syscall"] == "io_uring_sqe" and "= client connection" in r["note"]]
    assert accepted and {_ctl(r)[1] for r in adds} == accepted, show(adds)
    assert all(r["note"].startswith("EPOLL_CTL_ADD fd") and "user_data" in r["note"] for r in adds), show(adds)
    gai = [r for r in recs if r["syscall"] == "getaddrinfo"]
    assert gai and all(r["thread"] == "pool" for r in gai), show(gai)


# -- what the BPF tracer adds: nothing lost silently, poll and select, vectors, fd names --

def test_a_full_ring_buffer_says_how_many_calls_it_lost_and_where(kernel_ready, tmp_path):
    """A 4 KiB ring (about 40 records) the loader empties only every 100 ms (no early
    wakeup), and a burst of 20,000 writes: calls are lost, and the summary, annotated.log
    (heading and the place) and trace.json all say how many."""
    out = tmp_path / "lossy"
    p = run_cli("trace", "--tracer", "kernel", "--out", str(out), "--", sys.executable,
                str(PROGRAMS / "many_calls.py"), "20000",
                env={**os.environ, "EPOLL_LAB_KERNEL_RING_KB": "4", "EPOLL_LAB_KERNEL_WAKE_KB": "0"})
    assert p.returncode == 0, p.stderr
    summary = json.loads((out / "summary.json").read_text())
    lost = summary["lost_calls"]
    assert lost > 0 and summary["complete"] is False, summary
    # Every call is either in the trace or counted as lost: 20,000 writes, none unaccounted.
    writes = summary["syscalls"].get("write", 0)
    assert writes + lost >= 20000, (writes, lost)
    assert f"INCOMPLETE: the kernel tracer lost {lost} calls" in p.stdout, p.stdout
    # At the places it happened: raw.kernel lines in time order, and annotated.log keeps them.
    raw = (out / "raw.kernel").read_text().splitlines()
    places = summary["lost_at"]
    assert places and sum(x["calls"] for x in places) == lost, places
    for place in places:
        line = raw[place["line"] - 1]
        assert f"strace: {place['calls']} call" in line and "lost here" in line, line
        # (a loss at the very end, reported by the loader as it stops, is the last line)
        around = [split_prefix(x)[1] for x in raw[max(0, place["line"] - 2):place["line"] + 1]]
        assert around == sorted(around), raw[place["line"] - 2:place["line"] + 1]
    text = (out / "annotated.log").read_text()
    assert f"# INCOMPLETE: the kernel tracer lost {lost} calls" in text.splitlines()[2], text[:600]
    shown = [line for line in text.splitlines() if re.search(r"^ +\d+ .* strace: \d+ calls? lost here", line)]
    assert len(shown) == len(places), shown
    # Each place's note says what is missing, and the annotator counts the same number.
    recs = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
    notes = [r for r in recs if r["kind"] == "strace" and "calls are missing here" in r["note"]]
    assert len(notes) == len(places) and summary["lost_in_log"] == lost, (notes[:3], summary.get("lost_in_log"))
    trace = json.loads((out / "trace.json").read_text())
    assert trace["otherData"]["lost_calls"] == lost, trace["otherData"]
    marks = [e for e in trace["traceEvents"] if e.get("cat") == "lost"]
    assert sum(int(e["name"].split()[0]) for e in marks) == lost, marks


def test_a_run_that_lost_nothing_says_so(kernel_ready, tmp_path):
    out = tmp_path / "whole"
    p = run_cli("trace", "--tracer", "kernel", "--out", str(out), "--", sys.executable,
                str(PROGRAMS / "many_calls.py"), "2000")
    assert p.returncode == 0, p.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["lost_calls"] == 0 and summary["complete"] is True, summary
    assert summary["syscalls"]["write"] >= 2000, summary["syscalls"]
    assert "calls lost: 0" in p.stdout, p.stdout
    assert "lost here" not in (out / "raw.kernel").read_text()


@pytest.fixture(scope="module")
def waits_trace(kernel_ready, tmp_path_factory) -> Trace:
    out = tmp_path_factory.mktemp("waits") / "run"
    p = run_cli("trace", "--tracer", "kernel", "--out", str(out), "--", sys.executable,
                str(PROGRAMS / "waits_and_vectors.py"))
    assert p.returncode == 0, p.stderr
    return Trace.load(out)


@pytest.mark.parametrize("wait", ["poll", "ppoll", "select", "pselect6"])
def test_poll_and_select_show_the_fd_they_watch_and_the_one_ready(waits_trace, wait):
    """Each waits on the pipe's read end until another thread writes: the kernel tracer
    names the fd in the arguments and the ready one in the result, as strace does."""
    recs = [r for r in waits_trace.records if r["syscall"] == wait]
    assert len(recs) == 1, show(recs)
    rec = recs[0]
    assert rec["category"] == "pollable" and rec["ret"] == "1", show(recs)
    watched = re.search(r"\[\{?(?:fd=)?(\d+)<pipe:\[\d+\]>", rec["args"])
    assert watched, rec["args"]
    # The fd it reports ready is the pipe's read end it watched (the annotator's role for it
    # is its own business: another thread's write makes it a wakeup fd).
    assert [x["fd"] for x in rec["ready"]] == [int(watched.group(1))], rec
    assert "-> ready: fd" in rec["note"] and "slept" in rec["note"], rec["note"]
    # It slept until the write (50 ms), not until its 1 s timeout.
    assert 0.03 < rec["duration"] < 0.9, rec["duration"]


def test_writev_and_readv_show_the_bytes_of_each_iovec(waits_trace):
    got = {r["syscall"]: r for r in waits_trace.records if r["syscall"] in ("writev", "readv")}
    assert '[{iov_base="GET /vectors", iov_len=12}, {iov_base=" HTTP/1.1\\r\\n", iov_len=11}]' in \
        got["writev"]["args"], got["writev"]["args"]
    # A read fills the buffers in turn: 4 bytes, then the rest of what came.
    assert '[{iov_base="GET ", iov_len=4}, {iov_base="/vectors HTTP/1.1\\r\\n", iov_len=64}]' in \
        got["readv"]["args"], got["readv"]["args"]
    assert got["readv"]["ret"] == "23", got["readv"]


def test_fds_the_program_made_are_named_as_strace_yy_names_them(waits_trace):
    """pipe2 returns both ends named pipe:[inode], the same inode; later calls carry it."""
    pipes = [r for r in waits_trace.records if r["syscall"] == "pipe2"]
    assert pipes, show(waits_trace.records)
    m = re.search(r"\[(\d+)<pipe:\[(\d+)\]>, (\d+)<pipe:\[(\d+)\]>\]", pipes[-1]["args"])
    assert m and m.group(2) == m.group(4), pipes[-1]["args"]
    writes = [r for r in waits_trace.records if r["syscall"] == "write" and r["args"].startswith(f"{m.group(3)}<")]
    assert writes and all(f"<pipe:[{m.group(2)}]>" in r["args"] for r in writes), show(writes)


def test_an_attached_server_s_older_fds_are_named_from_proc(kernel_ready, tmp_path):
    """--pid: the listening socket and the epoll fd were made before the trace began; the
    /proc snapshot names them, so accept4 and the wait show what they are (strace -yy's way)."""
    port = free_port()
    server = Server([str(ROOT / "cdemo/bin/epoll_server"), "--data", str(ROOT / "server/data/lab.txt"),
                     "--port", str(port)], port)
    try:
        out = tmp_path / "pid"
        p = run_cli("trace", "--tracer", "kernel", "--pid", str(server.proc.pid), "--port", str(port),
                    "--request", "/", "--out", str(out))
        assert p.returncode == 0, p.stderr
        assert json.loads((out / "kernel.fds.json").read_text())["fds"], "no /proc snapshot"
        trace = Trace.load(out)
        accepts = [r for r in trace.records if r["syscall"] == "accept4" and r["errno"] is None]
        assert accepts, show(trace.records)
        assert re.match(rf"\d+<TCP:\[127\.0\.0\.1:{port}\]>, ", accepts[0]["args"]), accepts[0]["args"]
        assert f"the listening socket 127.0.0.1:{port}" in accepts[0]["note"], accepts[0]["note"]
        waits = [r for r in trace.records if r["syscall"] == "epoll_wait"]
        assert waits and all("<anon_inode:[eventpoll]>" in r["args"] for r in waits), show(waits)
        client = re.search(rf"127\.0\.0\.1:{port}->127\.0\.0\.1:\d+", accepts[0]["note"])
        assert client, accepts[0]["note"]
    finally:
        server.stop()
