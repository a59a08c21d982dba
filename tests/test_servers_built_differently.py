"""The annotator on real servers built unlike the lab's own (issue 15): several
loops in one process (memcached), one epoll fd shared by idle threads (Go's
netpoller), a signal's self-pipe (uvloop), no event loop at all (python -m
http.server), logs without -T (redis and an asyncio callback that sleeps,
-tt), text protocols (memcached, redis). fixtures/kinds/record.sh made each log with real strace; the line
numbers and expectations below come from reading those logs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import fd_roles, show
from tracing.understand.annotate import annotate_file

KINDS = Path(__file__).parent / "fixtures" / "kinds"


@pytest.fixture(scope="module")
def log():
    cache: dict[str, dict[int, dict]] = {}

    def read(name: str) -> dict[int, dict]:
        """Records of fixtures/kinds/NAME.strace by the line their result is on."""
        if name not in cache:
            recs = [r for r in annotate_file(str(KINDS / f"{name}.strace"))[0] if r["kind"] != "started"]
            cache[name] = {r["resumed_line"] or r["line"]: r for r in recs}
        return cache[name]

    return read


def roles_of(recs: dict[int, dict]) -> dict[int, set]:
    out: dict[int, set] = {}
    for r in recs.values():
        out.setdefault(r["tid"], set()).add(r["thread"])
    return out


# -- 1. several loops in one process: memcached ---------------------------

def test_memcached_main_thread_and_each_worker_are_loops_with_their_own_epoll(log):
    recs = log("memcached")
    roles = roles_of(recs)
    # 9902 waits on epoll 3 (line 79); workers 9904-9907 on epolls 7, 12, 16, 20 (lines 64-74).
    assert all(roles[t] == {"loop"} for t in (9902, 9904, 9905, 9906, 9907)), roles
    waits = {(r["tid"], r["fds"][0]["fd"]) for r in recs.values() if r["syscall"] == "epoll_wait"}
    assert {(9902, 3), (9904, 7), (9905, 12), (9906, 16), (9907, 20)} <= waits, waits
    # Each worker's interest list holds its own eventfd (lines 45, 49, 53, 57).
    adds = {(r["fds"][0]["fd"], r["fds"][1]["fd"]) for r in recs.values()
            if r["syscall"] == "epoll_ctl" and "ADD" in r["args"] and r["fds"][1]["role"] == "wakeup"}
    assert adds == {(7, 6), (12, 11), (16, 15), (20, 19)}, adds


@pytest.mark.parametrize("line,fd,woken,epoll", [(103, 6, 9904, 7), (112, 11, 9905, 12), (145, 15, 9906, 16)])
def test_memcached_main_loop_hands_each_connection_to_a_worker_loop_by_its_eventfd(log, line, fd, woken, epoll):
    rec = log("memcached")[line]
    assert rec["syscall"] == "write" and rec["tid"] == 9902 and rec["fds"][0]["fd"] == fd, show([rec])
    assert rec["category"] == "wakeup", show([rec])
    assert f"wakes loop thread {woken}" in rec["note"] and f"epoll {epoll}" in rec["note"], show([rec])
    assert "wakes itself" not in rec["note"]


def test_memcached_worker_wakes_on_its_eventfd_and_drains_it(log):
    recs = log("memcached")
    # line 104: 9904's epoll_wait on epoll 7 returns eventfd 6; lines 106/108: it reads 8 bytes.
    woke = recs[104]
    assert woke["tid"] == 9904 and woke["ready"][0]["fd"] == 6 and woke["ready"][0]["role"] == "wakeup"
    assert "drains wakeup fd 6" in recs[108]["note"], show([recs[108]])


# -- 2. idle threads share one epoll fd: Go's netpoller --------------------

GO_WAITERS = (13023, 13024, 13026, 13027)  # each calls epoll_pwait(5, ...)


def test_go_threads_that_wait_on_the_shared_epoll_are_loops(log):
    roles = roles_of(log("go"))
    assert all(roles[t] == {"loop"} for t in GO_WAITERS), roles


def test_go_netpoll_break_is_a_wakeup_of_the_threads_sharing_the_epoll_not_a_signal_handler(log):
    recs = log("go")
    # line 97: SIGURG to 13027, line 98: its rt_sigreturn; line 108: 13027 writes "\0" to pipe 7,
    # whose other end 6 epoll 5 watches (line 21).
    assert recs[98]["syscall"] == "rt_sigreturn" and "SIGURG handler returns" in recs[98]["note"]
    breaks = [r for r in recs.values() if r["syscall"] == "write" and r["args"].startswith("7<pipe")]
    assert len(breaks) == 8, show(breaks)  # lines 108, 196, 214, 234, 254, 272, 292, 335
    bad = [r for r in breaks if "signal handler" in r["note"] or r["category"] != "wakeup"
           or fd_roles(r) != {"wakeup"} or "epoll 5" not in r["note"]]
    assert not bad, show(bad)
    # The writer is one of the waiters; the note names the others.
    first = recs[108]
    assert "13023 13024 13026" in first["note"] and "shared" in first["note"], show([first])


def test_go_reads_of_the_netpoll_pipe_drain_a_wakeup(log):
    reads = [r for r in log("go").values() if r["syscall"] == "read" and r["args"].startswith("6<pipe")]
    assert reads and all(r["category"] == "pollable" and "drains wakeup fd 6" in r["note"] for r in reads), show(reads)


def test_go_file_read_blocks_its_thread_only(log):
    recs = log("go")
    # lines 79-84: thread 13023 opens and reads /tmp/WORK/data.txt; three others wait on epoll 5.
    work = [recs[n] for n in (79, 82, 83)]
    assert all(r["category"] != "blocking" and "BLOCKING" not in r["note"] for r in work), show(work)
    assert all("keep serving" in r["note"] and "epoll 5" in r["note"] for r in work), show(work)


# -- 3. wakeup fds by behaviour: uvloop's signal socketpair ----------------

def test_uvloop_signal_socketpair_is_a_wakeup_from_birth(log):
    recs = log("uvloop-signal")
    # line 566: socketpair [11, 12]; line 574: SIGINT; line 575: write(12, "\2");
    # line 576: epoll_pwait returns fd 11; line 577: recvfrom(11) = 1.
    made = recs[566]
    assert fd_roles(made) == {"wakeup"} and "self-pipe" in made["note"], show([made])
    write = recs[575]
    assert fd_roles(write) == {"wakeup"} and "SIGINT signal handler" in write["note"], show([write])
    assert "does not trace rt_sigreturn" in write["note"], "the log cannot show the handler's return"
    ready = recs[576]["ready"]
    assert [(x["fd"], x["role"]) for x in ready] == [(11, "wakeup")], ready
    assert "signal" in recs[577]["note"] and "drains wakeup fd 11" in recs[577]["note"], show([recs[577]])


# -- 4. no event loop: python -m http.server -------------------------------

def test_http_server_has_no_loop_thread(log):
    recs = log("http-server")
    assert "loop" not in {r["thread"] for r in recs.values()}, roles_of(recs)


def test_http_server_probe_epoll_is_not_called_a_loops_set(log):
    # lines 281-282: epoll_create1 = 3, then close(3) at once.
    made = log("http-server")[281]
    assert made["syscall"] == "epoll_create1" and "loop will wait" not in made["note"], show([made])
    assert "no thread waits on it" in made["note"] and made["category"] == "other", show([made])


def test_http_server_poll_on_the_listener_is_decoded_like_an_epoll_wait(log):
    recs = log("http-server")
    # line 507: poll([{fd=3<TCP:[127.0.0.1:21013]>, events=POLLIN}], 1, 500) = 1 ([{fd=3, revents=POLLIN}])
    wait = recs[507]
    assert [(f["fd"], f["role"]) for f in wait["fds"]] == [(3, "listening-socket")], show([wait])
    assert [(x["fd"], x["role"], x["events"]) for x in wait["ready"]] == [(3, "listening-socket", "POLLIN")]
    assert "timeout 500 ms" in wait["note"], show([wait])
    # line 561: the last poll, interrupted by SIGTERM.
    assert recs[561]["ready"] == [] and "ERESTART_RESTARTBLOCK" in recs[561]["note"]


def test_select_reports_the_fds_it_watches_and_the_ones_ready_by_set(log):
    recs = log("select")
    # line 250/252: pselect6(4, [3<UNIX-STREAM:[..]>], NULL, NULL, {tv_sec=1, ..}) = 1 (in [3], ...)
    # after thread 11360's sendto on fd 4 (line 251); line 254: = 1 (out [4]); line 257: = 0 (Timeout).
    first, both, none = recs[252], recs[254], recs[257]
    # Thread 11360's sendto into the other end (line 251) is what the wait at 250 returns:
    # fd 3 is a wakeup fd, and the note names that write.
    assert [(f["fd"], f["role"]) for f in first["fds"]] == [(3, "wakeup")], show([first])
    assert {"claim": "woken-by", "line": 251, "tid": 11360} in first["evidence"], show([first])
    assert [(x["fd"], x["events"]) for x in first["ready"]] == [(3, "readable")], show([first])
    assert "timeout 1000 ms" in first["note"] and "slept 50.2 ms" in first["note"], show([first])
    assert [f["fd"] for f in both["fds"]] == [3, 4] and [(x["fd"], x["events"]) for x in both["ready"]] == [(4, "writable")]
    assert "room to write" in both["note"], show([both])
    assert none["ready"] == [] and "nothing ready, timed out" in none["note"], show([none])


def test_http_server_says_once_there_is_no_event_loop(log):
    said = [r for r in log("http-server").values() if "there is no event loop" in r["note"]]
    assert len(said) == 1 and said[0]["line"] == 508 and said[0]["syscall"] == "accept4", show(said)


def test_http_server_per_connection_threads_block_in_socket_io(log):
    recs = log("http-server")
    # line 519: thread 10148 recvfrom "GET / HTTP/1.1"; line 535: its sendto "HTTP/1.0 200 OK".
    io = [r for r in recs.values() if r["syscall"] in ("recvfrom", "sendto") and "client-connection" in fd_roles(r)]
    assert io and all(r["category"] == "other" and r["note"].endswith("blocking I/O on a thread of its own, "
                                                                          "no event loop") for r in io), show(io)
    assert "GET / HTTP/1.1" in recs[519]["note"] and "HTTP/1.0 200 OK" in recs[535]["note"]


# -- 5. timestamps without durations: redis with -tt -----------------------

def test_without_durations_a_loop_asleep_in_epoll_wait_is_not_called_stalled(log):
    recs = log("redis-tt")
    # line 121: epoll_wait(...) = 1 with no <duration>; line 122, 74 ms later: accept4.
    assert recs[121]["duration"] is None and recs[122]["syscall"] == "accept4"
    stalls = [r for r in recs.values() if "no traced call" in r["note"] or "passed since" in r["note"]]
    assert not stalls, show(stalls)


def test_without_durations_the_gap_after_a_call_is_named_with_what_the_log_cannot_show(log):
    recs = log("stall-tt")
    # line 522: epoll_wait(..., 50) = 0 at .072066; line 523: write "before" at .122410;
    # line 524: write "after" at .322713 (time.sleep(0.2) between); line 525: epoll_wait(..., 100);
    # line 526: epoll_ctl at .427396.
    assert "passed since" not in recs[523]["note"] and "no traced call" not in recs[523]["note"], show([recs[523]])
    assert "no traced call" not in recs[526]["note"] and "passed since" not in recs[526]["note"], show([recs[526]])
    note = recs[524]["note"]
    # The thread waits only on timers (lines 522, 525): no loop by the lab's rule, but it
    # waits for readiness, so time outside its waits is still said.
    assert "200 ms passed since this thread, which waits for readiness elsewhere, started write (line 523)" in note, \
        show([recs[524]])
    assert "no -T" in note and "not shown" in note, show([recs[524]])


# -- 6. text protocols get their first line --------------------------------

@pytest.mark.parametrize("name,line,first", [
    ("memcached", 131, "set k1 0 0 5"), ("memcached", 134, "STORED"), ("memcached", 137, "VALUE k1 0 5"),
    ("redis-tt", 146, "ping (RESP)"), ("redis-tt", 147, "+PONG (RESP)"), ("redis-tt", 169, "set lab epoll (RESP)"),
])
def test_text_protocol_requests_and_replies_get_their_first_line(log, name, line, first):
    rec = log(name)[line]
    assert rec["note"].endswith(f"client fd {rec['fds'][0]['fd']}: {first}"), show([rec])
