"""The C io_uring server under the kernel tracer (`make trace-uring TRACER=kernel`, and
POOL=1): every operation the ring runs, decoded, with its fd and result; client fds born
from accept completions; the kernel's io-wq workers shown where they ran an operation;
and a completion loop that blocks anyway, flagged. Real tracer, real server, real curl."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from tests.helpers import PROGRAMS, ROOT, Trace, free_port, run_cli, show
from tracing.understand.claims import check_all
from tracing.read.sqe import sqe_fields

LAB_FILE = ROOT / "server" / "data" / "lab.txt"


def ring(records, kind: str, op: str | None = None) -> list[dict]:
    """io_uring_sqe ("sqe") or io_uring_cqe ("cqe") records, of one opcode if given."""
    return [r for r in records if r["syscall"] == f"io_uring_{kind}"
            and (op is None or r["args"].startswith(f"IORING_OP_{op},"))]


def field(rec: dict, key: str) -> str | None:
    return sqe_fields(rec["args"])["fields"].get(key)


def fd_of(rec: dict) -> int | None:
    got = field(rec, "fd")
    return int(re.match(r"-?\d+", got).group()) if got else None


def loop_tid(trace: Trace) -> int:
    roles = json.loads((trace.out / "summary.json").read_text())["roles"]
    loops = [int(t) for t, r in roles.items() if r["role"] == "loop"]
    assert len(loops) == 1, roles
    return loops[0]


def connection(records, fd: int, start: int) -> list[dict]:
    """The ring records of client fd `fd` from index `start` to its CLOSE completion."""
    life = []
    for r in records[start:]:
        if r["syscall"] in ("io_uring_sqe", "io_uring_cqe") and fd_of(r) == fd:
            life.append(r)
            if r["syscall"] == "io_uring_cqe" and r["args"].startswith("IORING_OP_CLOSE,"):
                break
    return life


def test_a_request_is_accept_recv_send_close_in_the_ring_each_with_its_fd_and_result(uring_kernel_trace):
    recs = uring_kernel_trace.records
    window = uring_kernel_trace.in_request("/")
    accepted = [r for r in ring(window, "cqe", "ACCEPT") if r["errno"] is None]
    assert accepted, show(window)
    fd = int(accepted[0]["ret"])
    life = connection(recs, fd, recs.index(accepted[0]))
    ops = [(r["syscall"][-3:], sqe_fields(r["args"])["name"]) for r in life]
    assert ops[:4] == [("sqe", "RECV"), ("cqe", "RECV"), ("sqe", "SEND"), ("cqe", "SEND")], show(life)
    assert ops[-2:] == [("sqe", "CLOSE"), ("cqe", "CLOSE")], show(life)
    recv, send = life[1], life[3]
    assert 'buf="GET / HTTP/1.1\\r\\n' in recv["args"] and int(recv["ret"]) > 0, show([recv])
    assert "GET / HTTP/1.1" in recv["note"], show([recv])
    # What the SEND asked for, it did: its length is its result, and the bytes are the answer.
    assert field(life[2], "len") == send["ret"] and field(life[2], "buf").startswith('"HTTP/1.1 200 OK'), show(life)
    # Every line of the connection names the client fd as the fd table knows it.
    assert all(r["fds"] and r["fds"][0]["fd"] == fd and r["fds"][0]["role"] == "client-connection"
               for r in life), show(life)


def test_the_client_fd_is_born_from_an_accept_completion_not_a_syscall(uring_kernel_trace):
    recs = uring_kernel_trace.records
    assert not [r for r in recs if r["syscall"] in ("accept", "accept4")], "accept4: the ring should accept"
    done = [r for r in ring(recs, "cqe", "ACCEPT") if r["errno"] is None and r["request"]]
    assert done, show(ring(recs, "cqe"))
    for r in done:
        born = [f for f in r["fds"] if f["fd"] == int(r["ret"])]
        assert born and born[0]["role"] == "client-connection" and "->" in born[0]["detail"], show([r])
        assert "born inside the ring" in r["note"] and "submitted at line" in r["note"], show([r])
        # It was submitted on the loop thread, on the listening socket, and completed there.
        sub = next(x for x in recs if x["line"] == r["evidence"][0]["line"])
        assert sub["syscall"] == "io_uring_sqe" and sub["fds"][0]["role"] == "listening-socket", show([sub, r])
        assert r["thread"] == "loop" and sub["tid"] == r["tid"], show([sub, r])


def test_the_file_is_opened_read_and_closed_by_the_ring(uring_kernel_trace):
    window = uring_kernel_trace.in_request("/file")
    opened = [r for r in ring(window, "cqe", "OPENAT") if 'lab.txt"' in r["args"]]
    assert len(opened) == 1, show(window)
    fd = int(opened[0]["ret"])
    # The fd it made is in the fd table from here on: a file, named by its path.
    born = [f for f in opened[0]["fds"] if f["fd"] == fd]
    assert [f["role"] for f in born] == ["file"] and born[0]["detail"] == str(LAB_FILE), show(opened)
    reads = [r for r in ring(window, "cqe", "READ") if fd_of(r) == fd]
    assert [int(r["ret"]) for r in reads] == [LAB_FILE.stat().st_size, 0], show(reads)
    assert reads[0]["args"].count("epoll-lab data file.") == 1, show(reads)
    closes = [r for r in ring(window, "cqe", "CLOSE") if fd_of(r) == fd]
    assert len(closes) == 1 and closes[0]["ret"] == "0", show(window)
    # No syscall of the loop touched the file: the ring did it all.
    assert not [r for r in window if r["syscall"] in ("openat", "read") and "lab.txt" in r["args"]], show(window)
    # Not pollable, wherever it ran: a file.
    assert all(r["category"] in ("other", "thread-pooled") for r in opened + reads + closes), show(opened + reads)


def test_the_loop_waits_for_completions_and_its_enters_say_what_they_carried(uring_kernel_trace):
    loop = loop_tid(uring_kernel_trace)
    roles = json.loads((uring_kernel_trace.out / "summary.json").read_text())["roles"]
    assert "completion loop" in roles[str(loop)]["why"] and "io_uring_cqe" in roles[str(loop)]["why"], roles
    enters = [r for r in uring_kernel_trace.records if r["syscall"] == "io_uring_enter" and r["request"]]
    assert enters and all(r["tid"] == loop and r["thread"] == "loop" for r in enters), show(enters)
    said = [r for r in enters if "the io_uring_sqe record(s) above" in r["note"]]
    assert said and all("strace does not decode" not in r["note"] for r in enters), show(enters)
    assert any("completions posted during it: RECV fd" in r["note"] for r in enters), show(enters)


def test_every_completion_names_its_submission_and_no_note_claims_without_evidence(uring_kernel_trace,
                                                                                    uring_pool_kernel_trace):
    for trace in (uring_kernel_trace, uring_pool_kernel_trace):
        assert not check_all(trace.records), "\n".join(check_all(trace.records)[:10])
        subs = {(r["line"]): r for r in ring(trace.records, "sqe")}
        for r in ring(trace.records, "cqe"):
            cited = [e["line"] for e in r["evidence"] if e["claim"] == "submission"]
            if not cited:
                assert "its submission is not in this log" in r["note"], show([r])
                continue
            sub = subs[cited[0]]
            assert sqe_fields(sub["args"])["user_data"] == sqe_fields(r["args"])["user_data"], show([sub, r])
            assert sub["line"] < r["line"] and sub["ret"] == r["ret"], show([sub, r])


def _workers(trace: Trace) -> list[dict]:
    return [r for r in ring(trace.records, "cqe") if field(r, "worker")]


def _check_worker(trace: Trace, r: dict) -> None:
    """A completion an io-wq worker posted: on its own thread, which the lab calls a pool
    thread, the kernel's; its note cites the loop's hand-off to io-wq."""
    loop = loop_tid(trace)
    assert r["tid"] != loop and field(r, "worker") == f'"iou-wrk-{loop}"', show([r])
    assert r["thread"] == "pool" and r["category"] == "thread-pooled", show([r])
    handoff = [e for e in r["evidence"] if e["claim"] == "io-wq"]
    assert handoff and handoff[0]["tid"] == loop, show([r])
    sub = next(x for x in trace.records if x["line"] == handoff[0]["line"])
    assert "async=io-wq" in sub["args"] and sub["tid"] == loop, show([sub, r])
    roles = json.loads((trace.out / "summary.json").read_text())["roles"]
    assert roles[str(r["tid"])]["role"] == "pool" and "io-wq worker" in roles[str(r["tid"])]["why"], roles


def test_where_io_wq_ran_an_operation_its_worker_thread_is_shown(uring_kernel_trace):
    # The kernel decides what goes to io-wq: a SHUTDOWN's prep always marks it async (the
    # lingering close after the start-up probe's HTTP/1.0 request makes one), while file
    # reads here complete inline. Whatever io-wq ran is shown on its worker.
    recs = uring_kernel_trace.records
    punted = [r for r in ring(recs, "sqe") if "async=io-wq" in r["args"]]
    assert punted and "SHUTDOWN" in {sqe_fields(r["args"])["name"] for r in punted}, show(ring(recs, "sqe"))
    for sub in punted:
        done = [r for r in ring(recs, "cqe") if any(e["claim"] == "io-wq" and e["line"] == sub["line"]
                                                     for e in r["evidence"])]
        assert len(done) == 1, show([sub, *done])
        _check_worker(uring_kernel_trace, done[0])


def test_with_pool_the_file_read_runs_on_an_iou_wrk_thread(uring_pool_kernel_trace):
    trace = uring_pool_kernel_trace
    window = trace.in_request("/file")
    reads = [r for r in ring(window, "cqe", "READ") if "lab.txt" in r["args"]]
    assert reads and int(reads[0]["ret"]) == LAB_FILE.stat().st_size, show(window)
    for r in reads:
        _check_worker(trace, r)
        assert "lab.txt" in r["fds"][0]["detail"], show([r])
    answer = json.loads(next(s for s in trace.requests if s["path"] == "/file")["body"])
    assert answer == {"mechanism": "io_uring-io-wq", "bytes": LAB_FILE.stat().st_size}, answer
    # The loop made no file syscall: the user-space side has no pool, only the ring.
    assert not [r for r in window if r["syscall"] in ("read", "openat") and "lab.txt" in r["args"]]


@pytest.fixture(scope="module")
def blocking_program(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("uring-blocking") / "uring_blocking"
    subprocess.run(["cc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(out),
                    str(PROGRAMS / "uring_blocking.c"), "-luring"], check=True)
    return str(out)


def _blocking_run(program: str, tmp_path, *tracer: str) -> Trace:
    port = free_port()
    out = tmp_path / "run"
    p = run_cli("trace", *tracer, "--out", str(out), "--port", str(port), "--request", "/file",
                "--request", "/dns", "--", program, str(port), str(LAB_FILE))
    assert p.returncode == 0, p.stderr
    return Trace.load(out)


def test_a_completion_loop_that_reads_a_file_or_resolves_on_its_thread_is_blocking(blocking_program,
                                                                                    kernel_ready, tmp_path):
    trace = _blocking_run(blocking_program, tmp_path, "--tracer", "kernel")
    loop = loop_tid(trace)
    work = [r for r in trace.records if (r["syscall"] == "read" and "lab.txt" in r["args"])
            or r["syscall"] == "getaddrinfo"]
    assert {r["syscall"] for r in work} == {"read", "getaddrinfo"}, show(trace.records)
    for r in work:
        assert r["tid"] == loop and r["category"] == "blocking", show([r])
        assert "BLOCKING the loop: this thread waits for completions" in r["note"], show([r])
        cited = {e["line"]: e for e in r["evidence"] if e["claim"] == "blocks-loop"}
        kinds = {next(x["syscall"] for x in trace.records if x["line"] == n) for n in cited}
        # Its first wait for completions, and the accept completion that shows it serves a client.
        assert kinds == {"io_uring_enter", "io_uring_cqe"}, (kinds, show([r]))
    assert not check_all(trace.records), check_all(trace.records)[:5]


def test_under_strace_the_same_read_is_not_called_blocking_and_the_note_says_why(blocking_program,
                                                                                 tools_present, tmp_path):
    trace = _blocking_run(blocking_program, tmp_path)
    reads = [r for r in trace.records if r["syscall"] == "read" and "lab.txt" in r["args"]]
    assert reads and all(r["category"] == "other" and r["thread"] == "loop" for r in reads), show(reads)
    assert all("strace cannot show" in r["note"] and "inside io_uring_enter" in r["note"] for r in reads), show(reads)
    assert not check_all(trace.records), check_all(trace.records)[:5]
