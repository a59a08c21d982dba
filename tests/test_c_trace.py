"""The C server's textbook loop, checked on live traces (real strace, server, curl)."""

from __future__ import annotations

from tests.helpers import WAITS, assert_add_follows_each_accept, show
from tracing.read.parse import split_args


def test_one_epoll_instance_created_by_the_loop_thread(c_trace):
    creates = [r for r in c_trace.records if r["syscall"] in ("epoll_create", "epoll_create1")]
    assert len(creates) == 1, show(creates)
    assert creates[0]["tid"] == c_trace.loop_tid and creates[0]["thread"] == "loop", show(creates)


def test_the_listening_socket_is_registered_for_epollin(c_trace):
    adds = [r for r in c_trace.records if r["syscall"] == "epoll_ctl"
            and split_args(r["args"])[1] == "EPOLL_CTL_ADD" and r["fds"][1]["role"] == "listening-socket"]
    assert len(adds) == 1 and "events=EPOLLIN," in adds[0]["args"], show(adds)


def test_every_client_is_added_after_accept4_and_deleted_before_close(c_trace, c_pool_trace):
    assert_add_follows_each_accept(c_trace)
    assert_add_follows_each_accept(c_pool_trace)


def test_a_wait_reports_the_client_ready_before_each_request_is_read(c_trace):
    recs = [r for r in c_trace.records if r["tid"] == c_trace.loop_tid]
    reads = [i for i, r in enumerate(recs) if r["syscall"] == "read" and "GET /" in r["note"]]
    assert len(reads) >= 4, show(recs)
    for i in reads:
        fd = recs[i]["fds"][0]["fd"]
        prev_wait = next(r for r in reversed(recs[:i]) if r["syscall"] in WAITS)
        assert any(x["fd"] == fd and x["role"] == "client-connection" for x in prev_wait["ready"]), \
            show([prev_wait, recs[i]])


def test_ready_events_resolve_through_data_pointers(c_trace):
    # The C server puts a pointer in epoll's data, as nginx does: the fd comes
    # from the interest list, not from the number strace prints.
    ready = [x for r in c_trace.records if r["syscall"] in WAITS for x in r["ready"]]
    assert ready and all(x["fd"] is not None and "via" not in x for x in ready), ready[:5]


def test_file_is_read_on_the_loop_thread_and_blocks_it(c_trace):
    recs = c_trace.in_request("/file")
    reads = [r for r in recs if r["syscall"] == "read" and any(
        f["detail"].endswith("server/data/lab.txt") for f in r["fds"])]
    assert reads, show(recs)
    bad = [r for r in reads if r["tid"] != c_trace.loop_tid or r["category"] != "blocking"]
    assert not bad, show(bad)


def test_sleep_uses_a_timerfd_that_the_wait_reports_ready(c_trace):
    recs = c_trace.in_request("/sleep?ms=200")
    made = [r for r in recs if r["syscall"] == "timerfd_create"]
    assert made, show(recs)
    tfd = int(made[0]["ret"])
    added = [r for r in recs if r["syscall"] == "epoll_ctl" and r["fds"][1]["fd"] == tfd
             and split_args(r["args"])[1] == "EPOLL_CTL_ADD"]
    fired = [r for r in recs if r["syscall"] in WAITS
             and any(x["fd"] == tfd and x["role"] == "timer" for x in r["ready"])]
    assert added and fired, show(recs)
    woke_at = fired[0]["ts"] + fired[0]["duration"]
    assert woke_at - made[0]["ts"] >= 0.19, show([made[0], fired[0]])


def test_pool_mode_resolves_on_a_pool_thread_and_wakes_the_loop_with_an_eventfd(c_pool_trace):
    loop = c_pool_trace.loop_tid
    recs = c_pool_trace.in_request("/dns?host=localhost")
    hosts = [r for r in recs if r["syscall"] == "openat" and '"/etc/hosts"' in r["args"]]
    assert hosts and all(r["tid"] != loop and r["thread"] == "pool" for r in hosts), show(recs)
    wake = [r for r in recs if r["category"] == "wakeup"]
    assert wake and wake[0]["fds"][0]["detail"] == "eventfd", show(recs)
    woken = [r for r in recs if r["syscall"] in WAITS and r["tid"] == loop
             and any(x["role"] == "wakeup" for x in r["ready"])]
    assert woken, show(recs)
    blocking = [r for r in c_pool_trace.records if r["category"] == "blocking"]
    assert not blocking, show(blocking)
