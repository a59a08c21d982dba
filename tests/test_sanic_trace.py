"""The lab's claims about Sanic, each checked on a live trace (real strace, server, curl).

`sanic_trace` runs once per loop (uvloop and the stdlib asyncio loop); the
claims that hold for both are checked on both.
"""

from __future__ import annotations

import re

from tests.helpers import WAITS, assert_add_follows_each_accept, fd_roles, show
from tracing.read.parse import split_args


def waits_on(trace, tid):
    return [r for r in trace.records if r["syscall"] in WAITS and r["tid"] == tid]


def test_loop_thread_creates_the_epoll_instance(sanic_trace):
    loop = sanic_trace.loop_tid
    wait_fds = {r["fds"][0]["fd"] for r in waits_on(sanic_trace, loop)}
    assert len(wait_fds) == 1, f"the loop waits on several epoll fds: {wait_fds}"
    epfd = wait_fds.pop()
    first_wait = waits_on(sanic_trace, loop)[0]["line"]
    creates = [r for r in sanic_trace.records if r["line"] < first_wait
               and r["syscall"] in ("epoll_create", "epoll_create1") and r["ret"] == str(epfd)]
    assert creates, f"no epoll_create returned fd {epfd} before the loop's first wait"
    last = creates[-1]  # fds are reused: the latest creation before the waits
    assert last["tid"] == loop and last["thread"] == "loop", show([last])


def test_the_listening_socket_is_watched(sanic_trace):
    loop = sanic_trace.loop_tid
    ready = [r for r in waits_on(sanic_trace, loop)
             if any(x["role"] == "listening-socket" for x in r["ready"])]
    assert ready, "no epoll wait on the loop thread reported the listening socket ready"
    accepts = [r for r in sanic_trace.records if r["syscall"] == "accept4" and r["errno"] is None]
    assert accepts and all("listening-socket" in fd_roles(a) for a in accepts), show(accepts)


def test_each_requests_socket_io_happens_on_the_loop_thread(sanic_trace):
    loop = sanic_trace.loop_tid
    for req in sanic_trace.requests:
        if not req["path"].startswith("/"):
            continue
        recs = sanic_trace.in_request(req["path"])
        client_io = [r for r in recs if "client-connection" in fd_roles(r)]
        assert any(r["syscall"] == "accept4" for r in client_io), \
            f"{req['path']}: no accept4 in its window\n{show(recs)}"
        reads = [r for r in client_io if r["syscall"] in ("read", "recvfrom") and
                 f"GET {req['path']}" in r["note"]]
        assert reads, f"{req['path']}: the request line was never read\n{show(client_io)}"
        off_loop = [r for r in client_io if r["tid"] != loop]
        assert not off_loop, f"{req['path']}: client socket I/O off the loop thread\n{show(off_loop)}"


def test_sleep_is_a_wait_whose_timeout_is_the_timer(sanic_trace):
    loop = sanic_trace.loop_tid
    recs = sanic_trace.in_request("/sleep?ms=200")
    timed = [r for r in recs if r["syscall"] in WAITS and r["tid"] == loop
             and 150 <= int(split_args(r["args"])[3]) <= 201]
    assert timed, f"no wait with a ~200 ms timeout on the loop thread:\n{show(r for r in recs if r['syscall'] in WAITS)}"
    slept = [r for r in timed if (r["duration"] or 0) >= 0.15]
    assert slept, f"the ~200 ms wait did not sleep:\n{show(timed)}"
    threads = {r["tid"] for r in recs if r["syscall"] in ("clone", "clone3")}
    assert not threads, "a timer needs no thread, yet one was started"


def test_file_read_runs_on_a_pool_thread(sanic_trace):
    loop = sanic_trace.loop_tid
    recs = sanic_trace.in_request("/file")
    reads = [r for r in recs if r["syscall"] == "read"
             and any(f["detail"].endswith("server/data/lab.txt") for f in r["fds"])]
    opens = [r for r in recs if r["syscall"] == "openat" and "server/data/lab.txt" in r["args"]]
    assert reads and opens, f"the data file was not opened and read:\n{show(recs)}"
    bad = [r for r in reads + opens if r["tid"] == loop or r["thread"] != "pool"
           or r["category"] != "thread-pooled"]
    assert not bad, f"file work not on a pool thread:\n{show(bad)}"


def test_dns_resolver_work_runs_on_a_pool_thread(sanic_trace):
    loop = sanic_trace.loop_tid
    recs = sanic_trace.in_request("/dns?host=localhost")
    resolver = [r for r in recs if r["syscall"] == "openat"
                and any(p in r["args"] for p in ('"/etc/hosts"', '"/etc/nsswitch.conf"'))]
    assert any('"/etc/hosts"' in r["args"] for r in resolver), \
        f"getaddrinfo never opened /etc/hosts:\n{show(recs)}"
    bad = [r for r in resolver if r["tid"] == loop or r["thread"] != "pool"]
    assert not bad, f"resolver work on the loop thread:\n{show(bad)}"
    blocking = [r for r in recs if r["category"] == "blocking"]
    assert not blocking, f"blocking work on the loop during /dns:\n{show(blocking)}"


def test_pool_wakes_the_loop_through_a_wakeup_fd_it_watches(sanic_trace):
    loop = sanic_trace.loop_tid
    for path in ("/file", "/dns?host=localhost"):
        recs = sanic_trace.in_request(path)
        pokes = [r for r in recs if r["syscall"] in ("write", "sendto") and r["fds"]
                 and r["fds"][0]["role"] == "wakeup"]
        assert pokes, f"{path}: nothing wrote a wakeup fd:\n{show(recs)}"
        w = pokes[0]
        if w["tid"] == loop:
            # asyncio's run_in_executor race: the job finished before the loop
            # chained its future, so the loop queued the callback and woke
            # itself. Then the pool's work must be over before that write.
            work = [r for r in recs if r["thread"] == "pool" and r["category"] == "thread-pooled"]
            assert work and work[-1]["ts"] <= w["ts"], show(work + [w])
            assert "so it wakes itself" in w["note"], show([w])
            assert [e["tid"] for e in w["evidence"] if e["claim"] == "itself"] == [loop], show([w])
        else:
            assert w["category"] == "wakeup" and w["thread"] == "pool", show([w])
        later = [r for r in recs if r["syscall"] in WAITS and r["tid"] == loop
                 and r["ts"] >= w["ts"] - 0.5
                 and any(x["role"] == "wakeup" for x in r["ready"])]
        assert later, f"{path}: no wait on the loop returned the wakeup fd after\n{show([w])}"


def test_child_stdout_pipe_is_pollable(sanic_trace):
    loop = sanic_trace.loop_tid
    recs = sanic_trace.in_request("/subprocess")
    child_exec = [r for r in recs if r["syscall"] == "execve" and "/bin/echo" in r["args"]]
    assert child_exec and child_exec[0]["tid"] != loop, show(recs)
    reads = [r for r in recs if r["syscall"] in ("read", "recvfrom") and r["tid"] == loop
             and "hello from a child process" in r["args"]]
    assert reads, f"the loop never read the child's output:\n{show(recs)}"
    fd = reads[0]["fds"][0]["fd"]
    assert reads[0]["fds"][0]["role"] == "pipe", show(reads)
    ready = [r for r in recs if r["syscall"] in WAITS and r["tid"] == loop
             and r["line"] < reads[0]["line"] and any(x["fd"] == fd for x in r["ready"])]
    assert ready, f"no epoll wait reported pipe fd {fd} ready before the read:\n{show(reads)}"


def test_annotated_log_keeps_every_raw_line_and_heads_each_request(sanic_trace):
    raw = (sanic_trace.out / "raw.strace").read_text().splitlines()
    text = (sanic_trace.out / "annotated.log").read_text()
    # The start-up file calls are one counted line (tests/test_annotated_log.py); all else is there.
    folded = [range(int(a), int(b) + 1) for a, b in re.findall(r"folded .*?raw lines (\d+)-(\d+)", text)]
    missing = [line for n, line in enumerate(raw, 1)
               if line not in text and not any(n in f for f in folded)]
    assert not missing, "raw lines missing from annotated.log:\n" + "\n".join(missing[:10])
    for req in sanic_trace.requests:
        if req["path"].startswith("/"):
            assert f"GET {req['path']}: " in text, f"no header for {req['path']}"
    covered = set()
    for r in sanic_trace.records:
        covered.add(r["line"])
        if r["resumed_line"]:
            covered.add(r["resumed_line"])
    assert covered == set(range(1, len(raw) + 1)), "events.jsonl does not cover each raw line once"


def test_uvloop_registers_clients_through_io_uring(uvloop_trace):
    """libuv >= 1.45: after accept4 comes io_uring_enter, not EPOLL_CTL_ADD."""
    loop = uvloop_trace.loop_tid
    setup = [r for r in uvloop_trace.records if r["syscall"] == "io_uring_setup"]
    if not setup or setup[-1]["errno"]:
        # io_uring refused (a container's seccomp profile): the fallback is plain epoll_ctl.
        assert_add_follows_each_accept(uvloop_trace)
        return
    recs = [r for r in uvloop_trace.records if r["tid"] == loop]
    accepts = [i for i, r in enumerate(recs) if r["syscall"] == "accept4" and r["errno"] is None]
    assert accepts
    for i in accepts:
        # libuv flushes its queued registrations just before the loop's next wait, whatever
        # else the loop does between (a run once tore down a socketpair first).
        fd = int(recs[i]["ret"])
        wait = next(k for k in range(i + 1, len(recs)) if recs[k]["syscall"] in WAITS)
        between = recs[i + 1:wait]
        enters = [r for r in between if r["syscall"] == "io_uring_enter"]
        # The note names its evidence: the accept4 that made the fd, and a later wait that
        # returns it with no epoll_ctl between.
        returns = {r["line"] for r in recs[wait:] if any(x["fd"] == fd for x in r["ready"])}
        assert enters and all("registered here, through the ring" in r["note"]
                              and recs[i]["line"] in {e["line"] for e in r["evidence"]}
                              and {e["line"] for e in r["evidence"]} & returns
                              for r in enters), show(recs[i:wait + 1])
        adds = [r for r in between if r["syscall"] == "epoll_ctl" and "EPOLL_CTL_ADD" in r["args"]
                and r["fds"][1]["fd"] == fd]
        assert not adds, f"client fd {fd} was added with plain epoll_ctl:\n{show(adds)}"


def test_stdlib_loop_adds_each_client_after_accept4_and_deletes_it_before_close(asyncio_trace):
    assert_add_follows_each_accept(asyncio_trace)
