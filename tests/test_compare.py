"""The comparison's claims, on live traces of the six runs (the session's
shared traces plus Sanic/uvloop with io_uring_setup refused by strace, and the
C io_uring server), and the io_uring server under the kernel tracer."""

from __future__ import annotations

import socket
import warnings

import pytest

from tests.helpers import assert_add_follows_each_accept, run_cli, show
from tracing.modes import compare


@pytest.fixture(scope="module")
def runs(c_trace, c_pool_trace, uring_trace, uvloop_trace, uvloop_no_io_uring_trace, asyncio_trace):
    return {"c": c_trace, "c-pool": c_pool_trace, "uring": uring_trace, "sanic": uvloop_trace,
            "sanic-no-io_uring": uvloop_no_io_uring_trace, "sanic-asyncio": asyncio_trace}


@pytest.fixture(scope="module")
def table(runs):
    return compare.build({name: t.out for name, t in runs.items()})


def test_uvloop_waits_with_epoll_pwait_and_the_stdlib_loop_with_epoll_wait(table):
    assert set(table["waits"]["sanic"]) == {"epoll_pwait"}, table["waits"]
    assert set(table["waits"]["sanic-no-io_uring"]) == {"epoll_pwait"}
    assert set(table["waits"]["sanic-asyncio"]) == {"epoll_wait"}
    assert set(table["waits"]["c"]) == {"epoll_wait"}


def io_uring_ready(trace) -> bool:
    setup = [r for r in trace.records if r["syscall"] == "io_uring_setup"]
    return any(r["errno"] is None for r in setup)


def test_uvloop_registers_clients_through_io_uring_where_it_can(runs, table):
    uv = runs["sanic"]
    cell = table["phases"]["register client"]["sanic"]
    if not io_uring_ready(uv):
        warnings.warn("io_uring is not available here: checking uvloop's epoll_ctl fallback instead")
        assert_add_follows_each_accept(uv)
        return
    assert cell.get("io_uring_enter") and not cell.get("epoll_ctl ADD"), cell
    assert any("io_uring_enter" in d and d.startswith("sanic:") for d in table["differences"])


def test_with_io_uring_refused_uvloops_epoll_ctl_add_follows_each_accept(runs, table):
    no = runs["sanic-no-io_uring"]
    refused = [r for r in no.records if r["syscall"] == "io_uring_setup"]
    assert refused and all(r["errno"] == "ENOSYS" for r in refused), show(refused)
    assert not [r for r in no.records if r["syscall"] == "io_uring_enter"]
    assert_add_follows_each_accept(no)
    ph = table["phases"]
    assert ph["register client"]["sanic-no-io_uring"]["epoll_ctl ADD"] == ph["accept"]["sanic-no-io_uring"]["accept4"]


def test_the_stdlib_loop_adds_and_deletes_each_client(runs, table):
    assert_add_follows_each_accept(runs["sanic-asyncio"])
    ph = table["phases"]
    accepts = ph["accept"]["sanic-asyncio"]["accept4"]
    assert ph["register client"]["sanic-asyncio"]["epoll_ctl ADD"] == accepts
    assert ph["deregister"]["sanic-asyncio"]["epoll_ctl DEL"] == accepts


@pytest.mark.parametrize("run,mechanism", [("sanic", "eventfd"), ("sanic-no-io_uring", "eventfd"),
                                           ("sanic-asyncio", "socketpair"), ("c-pool", "eventfd")])
def test_each_pool_wakes_its_loop_through_the_mechanism_the_table_names(runs, table, run, mechanism):
    assert table["wakeup_mechanism"][run] == mechanism
    trace = runs[run]
    wakes = [r for r in trace.records if r["category"] == "wakeup"]
    # A write that hands back work is a pool thread's; one with no traced work before it
    # (asyncio's child-watcher thread in /subprocess) makes no such claim.
    assert wakes and any(r["thread"] == "pool" for r in wakes), show(wakes)
    assert all(r["thread"] == "pool" for r in wakes if "hands back" in r["note"]), show(wakes)
    assert all("hands back" not in r["note"] for r in wakes if r["thread"] != "pool"), show(wakes)
    fds = {f["fd"] for r in wakes for f in r["fds"] if f["role"] == "wakeup"}
    # The loop is woken on that fd (or, for a socketpair, on its other end).
    woken = [x for r in trace.records if r["thread"] == "loop"
             for x in r["ready"] if x["role"] == "wakeup"]
    assert woken, f"the loop never woke on the {mechanism}"
    if mechanism == "eventfd":
        assert {x["fd"] for x in woken} & fds


def test_the_c_servers_file_read_blocks_the_loop_while_sanics_is_pooled(table):
    per = table["requests"]["/file"]
    assert per["c"]["served"] == "blocking in loop" and per["c"]["work_threads"] == ["loop"]
    for run in ("sanic", "sanic-asyncio", "c-pool"):
        assert per[run]["served"] == "thread-pooled" and per[run]["work_threads"] == ["pool"], (run, per[run])


def test_the_markdown_names_every_phase_and_run(table, tmp_path):
    md, js = compare.write(table, tmp_path)
    text = md.read_text()
    for phase, _ in compare.PHASES:
        assert f"| {phase} (" in text
    assert "| phase | c | c-pool | uring | sanic | sanic-no-io_uring | sanic-asyncio |" in text
    assert "## Calls per request: what each tracer sees" in text
    assert "## What differs and why" in text and len(table["differences"]) >= 4
    assert js.exists()


def test_the_io_uring_server_waits_in_io_uring_enter_and_registers_nothing(runs, table):
    ph = table["phases"]
    enters = [r for r in runs["uring"].records if r["syscall"] == "io_uring_enter" and r["thread"] == "loop"]
    assert table["waits"]["uring"] == {"io_uring_enter": len(enters)} and enters, table["waits"]["uring"]
    assert ph["wait"]["uring"] == {"io_uring_enter": len(enters)}, ph["wait"]
    for phase in ("create epoll", "register listener", "register client", "deregister", "accept", "read",
                  "respond", "close"):
        assert ph[phase]["uring"] == {}, (phase, ph[phase]["uring"])
    assert ph["create io_uring"]["uring"] == {"io_uring_setup": 1}, ph["create io_uring"]
    # libuv's io_uring_enter calls stay its registrations: its thread waits in epoll.
    assert "io_uring_enter" not in ph["wait"]["sanic"], ph["wait"]["sanic"]


def test_strace_sees_only_io_uring_enter_in_the_io_uring_servers_requests(runs, table):
    said = [d for d in table["differences"] if d.startswith("uring:")]
    assert said and "strace shows nothing else of its requests" in said[0], table["differences"]
    served = {p: per["uring"] for p, per in table["requests"].items() if per["uring"]}
    assert set(served) == {"/", "/file", "/dns", "/sleep"}, served
    for path, got in served.items():
        shown = [r for r in runs["uring"].records if r["kind"] == "syscall"
                 and compare._request_path(r.get("request")) == path]
        assert got["syscalls"] == len(shown) == got["io_uring_enter"] > 0, (path, got, show(shown))
        assert got["ring_ops"] == {} and got["served"] == "not shown (io_uring_enter only)", (path, got)


@pytest.fixture(scope="module")
def kernel_table(uring_trace, uring_kernel_trace):
    return compare.build({"uring": uring_trace.out, "uring-kernel": uring_kernel_trace.out})


def test_the_kernel_tracer_shows_each_requests_ring_operations(uring_kernel_trace, kernel_table):
    ph, per = kernel_table["phases"], kernel_table["requests"]
    accepts = [r for r in uring_kernel_trace.records if r["syscall"] == "io_uring_cqe"
               and r["args"].startswith("IORING_OP_ACCEPT,") and r["errno"] is None]
    assert ph["accept"]["uring-kernel"] == {"io_uring ACCEPT": len(accepts)} and accepts, ph["accept"]
    for phase, op in (("read", "RECV"), ("respond", "SEND"), ("close", "CLOSE")):
        assert ph[phase]["uring-kernel"].get(f"io_uring {op}", 0) >= len(per), (phase, ph[phase])
    assert set(per) == {"/", "/file", "/dns", "/sleep"}, per
    for path, cells in per.items():
        ops = cells["uring-kernel"]["ring_ops"]
        assert ops.get("RECV") and ops.get("SEND"), (path, ops)
        # The same syscalls strace shows (io_uring_enter only), and the operations behind them.
        assert cells["uring-kernel"]["syscalls"] == cells["uring-kernel"]["io_uring_enter"], (path, cells)
    assert {"OPENAT", "READ", "CLOSE"} <= set(per["/file"]["uring-kernel"]["ring_ops"]), per["/file"]
    assert per["/file"]["uring-kernel"]["served"] in ("io_uring, inline", "io-wq (the kernel's pool)")
    assert per["/sleep"]["uring-kernel"]["ring_ops"].get("TIMEOUT") == 1, per["/sleep"]
    said = [d for d in kernel_table["differences"] if d.startswith("uring-kernel:")]
    assert said and f"{len(accepts)} ACCEPT" in said[0] and "born in an ACCEPT's completion" in said[0], said


def test_compare_traces_on_the_port_it_is_given(tools_present, tmp_path):
    # It traced on the servers' fixed ports (8080, 8000), whatever else ran there: now --port.
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        p = run_cli("compare", "--fresh", "--port", str(port), "--traces", str(tmp_path))
    assert p.returncode == 3 and f"port {port} on 127.0.0.1 is in use" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr
