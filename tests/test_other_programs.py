"""The annotator on real strace logs of event loops that are not the lab's:
nginx, redis, node and a plain asyncio server. The logs were recorded on
this machine by fixtures/others/record.sh (the lab's strace flags, a few
curl or redis-cli requests, then a signal)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import fd_roles, show
from tracing.understand.annotate import annotate_file

OTHERS = Path(__file__).parent / "fixtures" / "others"


@pytest.fixture(scope="module", params=["nginx", "redis", "node", "asyncio"])
def program(request):
    records, ann = annotate_file(str(OTHERS / f"{request.param}.strace"))
    return request.param, [r for r in records if r["kind"] != "started"], ann


def annotated(name: str) -> list[dict]:
    return [r for r in annotate_file(str(OTHERS / f"{name}.strace"))[0] if r["kind"] != "started"]


def loops(recs) -> set[int]:
    return {r["tid"] for r in recs if r["thread"] == "loop"}


def test_every_program_has_a_loop_and_each_thread_whose_waits_serve_several_fds_is_one(program):
    name, recs, ann = program
    waits = [r for r in recs if r["syscall"] in ("epoll_wait", "epoll_pwait")]
    served: dict = {}
    for r in waits:
        served.setdefault(r["tid"], set()).update(x["fd"] for x in r["ready"])
    several = {tid for tid, fds in served.items() if len(fds) >= 2}
    assert several and all(r["thread"] == "loop" for r in recs if r["tid"] in several), show(waits)
    assert ann.summary.as_dict()["unparsed"] == 0


def test_every_ready_event_resolves_to_a_known_fd(program):
    name, recs, _ = program
    ready = [(r, x) for r in recs for x in r["ready"]]
    assert ready
    unknown = [r for r, x in ready if x["fd"] is None or x["role"] == "unknown"]
    assert not unknown, show(unknown)


def test_each_accepted_client_is_registered_with_epoll_before_it_is_read(program):
    name, recs, _ = program
    accepts = [i for i, r in enumerate(recs) if r["syscall"] == "accept4" and r["errno"] is None]
    assert accepts
    for i in accepts:
        fd = int(recs[i]["ret"])
        life = []
        for r in recs[i + 1:]:
            if r["syscall"] == "close" and r["fds"] and r["fds"][0]["fd"] == fd:
                break
            life.append(r)
        uses = [r["syscall"] for r in life if any(f["fd"] == fd for f in r["fds"])
                and (r["syscall"] == "epoll_ctl" or r["syscall"].startswith(("read", "recv")))]
        assert uses and uses[0] == "epoll_ctl", f"fd {fd}: {uses}\n{show(life)}"


def test_nginx_stores_pointers_in_epoll_data_and_they_still_resolve_to_clients():
    recs = annotated("nginx")
    adds = [r for r in recs if r["syscall"] == "epoll_ctl" and "ADD" in r["args"]
            and "client-connection" in fd_roles(r)]
    assert adds and all("u64=4," not in r["args"] for r in adds), "data is a pointer, not the fd"
    client_ready = [x for r in recs for x in r["ready"] if x["role"] == "client-connection"]
    assert client_ready and all("via" not in x for x in client_ready), client_ready


def test_nginx_reads_the_static_file_on_its_loop_thread_blocking():
    recs = annotated("nginx")
    reads = [r for r in recs if r["syscall"] == "pread64" and "index.html" in r["args"]]
    assert reads and all(r["thread"] == "loop" and r["category"] == "blocking" for r in reads), show(reads)
    master = {r["tid"] for r in recs} - loops(recs)
    assert master, "the master process does not wait on epoll, so it is not a loop"


def test_redis_serves_on_one_loop_thread_and_its_helper_threads_are_not_loops():
    recs = annotated("redis")
    assert len(loops(recs)) == 1
    helpers = {r["tid"] for r in recs if r["syscall"] == "clone3"}
    started = {int(r["ret"]) for r in recs if r["syscall"] == "clone3" and r["errno"] is None}
    assert started and not (started & loops(recs)), helpers
    ping = [r for r in recs if r["syscall"] == "read" and "ping" in r["args"]]
    assert ping and all(r["category"] == "pollable" and r["thread"] == "loop" for r in ping)


def test_node_reads_files_on_libuv_pool_threads_which_wake_the_loop_by_eventfd():
    recs = annotated("node")
    host = [r for r in recs if r["syscall"] in ("openat", "read") and "/etc/hostname" in r["args"] + str(r["fds"])]
    assert host and all(r["thread"] == "pool" and r["category"] == "thread-pooled" for r in host), show(host)
    wake = [r for r in recs if r["category"] == "wakeup" and r["thread"] == "pool"]
    assert wake and all("eventfd" in r["note"] and "loop thread 14328" in r["note"] for r in wake), show(wake)
    woken = [x for r in recs if r["thread"] == "loop" for x in r["ready"] if x["role"] == "wakeup"]
    assert woken, "the loop's wait returns the eventfd"


def test_node_main_loop_wakes_its_platform_thread_and_names_the_wait_it_ends():
    # node.strace line 289: the main loop (14328) writes eventfd 13 at exit;
    # line 99 (resumed at 290): thread 14331's only wait, on epoll 9, returns fd 13.
    # That thread waits once in the whole log and serves one fd: it is no loop here.
    recs = annotated("node")
    write = next(r for r in recs if r["line"] == 289)
    assert write["thread"] == "loop" and write["category"] == "wakeup", show([write])
    assert "wakes thread 14331" in write["note"] and "epoll 9" in write["note"], show([write])
    assert {"claim": "wakes", "line": 99, "tid": 14331} in write["evidence"], write["evidence"]
    assert {r["thread"] for r in recs if r["tid"] == 14331} == {"other"}


def test_node_resolves_names_on_a_pool_thread():
    recs = annotated("node")
    hosts = [r for r in recs if r["syscall"] == "openat" and '"/etc/hosts"' in r["args"]]
    assert hosts and all(r["thread"] == "pool" for r in hosts), show(hosts)


def test_asyncio_pool_threads_wake_the_loop_through_a_socketpair():
    recs = annotated("asyncio")
    wake = [r for r in recs if r["category"] == "wakeup"]
    assert wake and all("self-pipe" in r["note"] for r in wake), show(wake)
    # Every hand-back after file or resolver work is a pool thread's; line 764 is the
    # thread asyncio starts at shutdown, which writes the self-pipe after no work at all.
    assert all(r["thread"] == "pool" for r in wake if "hands back" in r["note"]), show(wake)
    assert {r["tid"]: r["thread"] for r in wake if r["line"] == 764} == {14369: "other"}, show(wake)
    hosts = [r for r in recs if r["syscall"] == "openat" and '"/etc/hosts"' in r["args"]
             and r["tid"] in {w["tid"] for w in wake}]
    assert hosts, "getaddrinfo read /etc/hosts on a pool thread"


def test_asyncio_signal_arrives_through_the_self_pipe():
    recs = annotated("asyncio")
    i = next(i for i, r in enumerate(recs) if r["kind"] == "signal" and r["syscall"] == "SIGINT")
    after = recs[i + 1]
    assert after["syscall"] == "write" and "signal handler" in after["note"], show(recs[i:i + 3])
