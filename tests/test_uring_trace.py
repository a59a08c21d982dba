"""The C io_uring server under the lab's strace recipe (`make trace-uring`): what
strace sees of a completion loop, read from the live trace, and what the annotator
makes of it: the thread that waits for completions is the loop, and its notes say
what strace cannot see inside io_uring_enter."""

from __future__ import annotations

import json

from tests.helpers import ROOT, show

SERVING = ("accept", "accept4", "read", "write", "recvfrom", "sendto", "recvmsg", "sendmsg", "readv",
           "writev", "openat", "open", "close", "shutdown", "epoll_wait", "epoll_ctl", "timerfd_create")
LAB_FILE = ROOT / "server" / "data" / "lab.txt"


def calls(records, name):
    return [r for r in records if r["syscall"] == name]


def test_the_usual_files_are_written(uring_trace):
    for name in ("raw.strace", "annotated.log", "events.jsonl", "timeline.html", "trace.json", "summary.json"):
        assert (uring_trace.out / name).stat().st_size > 0, name


def test_requests_are_served_by_io_uring_enter_alone(uring_trace):
    # Accept, recv, send, the file's open and read, the timer and the close are operations
    # in the ring: strace sees the io_uring_enter that submits them and waits, nothing else.
    for step in uring_trace.requests:
        if not step["path"].startswith("/"):
            continue
        recs = uring_trace.in_request(step["path"])
        assert calls(recs, "io_uring_enter"), show(recs)
        seen = [r for r in recs if r["syscall"] in SERVING]
        assert not seen, f"{step['path']}: calls the ring should have made\n{show(seen)}"


def test_one_thread_sets_up_one_ring_and_no_pool_thread_is_seen(uring_trace):
    setups = calls(uring_trace.records, "io_uring_setup")
    assert len(setups) == 1, show(setups)
    threads = {r["tid"] for r in uring_trace.records if r["tid"] is not None}
    clones = [r for r in uring_trace.records if r["syscall"] in ("clone", "clone3")]
    # The kernel's own io-wq workers (iou-wrk) are not made by a clone strace can see.
    assert threads == {setups[0]["tid"]} and not clones, show(clones)


def test_the_file_is_read_by_the_ring_not_by_a_syscall(uring_trace):
    opened = [r for r in uring_trace.records if r["syscall"] in ("open", "openat") and "lab.txt" in r["args"]]
    assert not opened, show(opened)
    answer = json.loads(next(s for s in uring_trace.requests if s["path"] == "/file")["body"])
    assert answer == {"mechanism": "io_uring", "bytes": LAB_FILE.stat().st_size}, answer


def test_etc_hosts_is_a_syscall_only_at_start_up(uring_trace):
    # Its names are read once (which /dns may answer); each /dns reads it again in the ring.
    opened = [r for r in uring_trace.records if r["syscall"] == "openat" and '"/etc/hosts"' in r["args"]]
    first_enter = calls(uring_trace.records, "io_uring_enter")[0]
    assert len(opened) == 1 and opened[0]["ts"] < first_enter["ts"], show(opened)
    answer = json.loads(next(s for s in uring_trace.requests if s["path"].startswith("/dns"))["body"])
    assert answer["mechanism"] == "io_uring" and answer["address"], answer


def test_the_sleep_is_one_io_uring_enter_that_sleeps_through_the_timeout(uring_trace):
    recs = uring_trace.in_request("/sleep?ms=200")
    slept = [r for r in calls(recs, "io_uring_enter") if (r["duration"] or 0) >= 0.19]
    assert len(slept) == 1, show(recs)
    assert not calls(uring_trace.records, "timerfd_create"), "a timerfd: the timer should be in the ring"


def test_the_thread_that_waits_for_completions_is_the_loop_and_its_notes_say_what_strace_cannot_see(uring_trace):
    enters = calls(uring_trace.records, "io_uring_enter")
    waits = [r for r in enters if "IORING_ENTER_GETEVENTS" in r["args"]]
    assert waits and {r["thread"] for r in waits} == {"loop"}, show(waits)
    assert all("strace does not decode" in r["note"] and "waited for at least 1 completion" in r["note"]
               for r in waits), show(waits)
    # No libuv here: nothing in the log loads it, so no note may name it.
    assert not [r for r in uring_trace.records if "libuv" in r["note"] or "uvloop" in r["note"]]
    roles = json.loads((uring_trace.out / "summary.json").read_text())["roles"]
    assert [r["role"] for r in roles.values()] == ["loop"] and "completion loop" in next(iter(roles.values()))["why"]
