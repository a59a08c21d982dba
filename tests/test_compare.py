"""The comparison's claims, on live traces of the five runs (the session's
shared traces plus Sanic/uvloop with io_uring_setup refused by strace)."""

from __future__ import annotations

import warnings

import pytest

from tests.helpers import assert_add_follows_each_accept, show
from tracing.modes import compare


@pytest.fixture(scope="module")
def runs(c_trace, c_pool_trace, uvloop_trace, uvloop_no_io_uring_trace, asyncio_trace):
    return {"c": c_trace, "c-pool": c_pool_trace, "sanic": uvloop_trace,
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
    assert "| phase | c | c-pool | sanic | sanic-no-io_uring | sanic-asyncio |" in text
    assert "## What differs and why" in text and len(table["differences"]) >= 4
    assert js.exists()
