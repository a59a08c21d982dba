"""`--syscalls` adds to the traced set (`+futex,clock_nanosleep`) or replaces it, in
strace's own syntax; calls the annotator has no rule for are kept and described by
what is known. A pool thread's sleep, invisible before, is its work; the loop's own
sleep holds the loop, with its evidence named."""

from __future__ import annotations

import re
import sys

import pytest

from tests.helpers import PROGRAMS, Trace, free_port, run_cli, show
from tracing.understand.claims import check_all

PY = sys.executable


@pytest.fixture(scope="module")
def sleeps(tools_present, tmp_path_factory):
    out, port = tmp_path_factory.mktemp("sleeps"), free_port()
    p = run_cli("trace", "--out", str(out), "--port", str(port), "--syscalls", "+futex,clock_nanosleep",
                "--request", "/pool", "--request", "/block", "--", PY, str(PROGRAMS / "own_server.py"), str(port))
    assert p.returncode == 0, p.stderr
    return Trace.load(out)


def test_the_added_calls_are_traced(sleeps):
    raw = (sleeps.out / "raw.strace").read_text()
    assert "trace=epoll_create," in (sleeps.out / "server.log").read_text() or " futex(" in raw
    assert " futex(" in raw and " clock_nanosleep(" in raw
    assert " epoll_wait(" in raw, "added to the lab's set, not in its place"


def test_the_pools_sleep_is_shown_as_its_work_and_handed_back(sleeps):
    mine = sleeps.in_request("/pool")
    naps = [r for r in mine if r["syscall"] == "clock_nanosleep" and r["thread"] == "pool"]
    assert naps, show(mine)
    nap = naps[0]
    assert nap["category"] == "thread-pooled" and nap["duration"] >= 0.09, show([nap])
    assert re.search(r"slept (9\d|1\d\d)\.\d ms", nap["note"]) and "on pool thread" in nap["note"], show([nap])
    handed = [r for r in sleeps.records if r["category"] == "wakeup" and r["tid"] == nap["tid"]]
    assert handed and {"claim": "finished-job", "line": nap["line"], "tid": nap["tid"]} in handed[0]["evidence"], \
        show(handed or mine)


def test_the_loops_own_sleep_holds_the_loop_with_its_evidence(sleeps):
    mine = sleeps.in_request("/block")
    naps = [r for r in mine if r["syscall"] == "clock_nanosleep" and r["thread"] == "loop"]
    assert naps and naps[0]["category"] == "blocking" and naps[0]["duration"] >= 0.19, show(mine)
    assert [e for e in naps[0]["evidence"] if e["claim"] == "blocks-loop"], show(naps)


def test_a_call_with_no_rule_of_its_own_is_described_not_left_bare(sleeps):
    futexes = [r for r in sleeps.records if r["syscall"] == "futex" and r["kind"] == "syscall"]
    assert futexes and all(r["note"].startswith("futex FUTEX_") for r in futexes), show(futexes)
    waits = [r for r in futexes if "WAIT" in r["args"] and r["duration"] and r["duration"] > 0.001]
    assert waits and all("waited" in r["note"] for r in waits if r["errno"] is None), show(waits)


def test_no_note_makes_a_claim_without_its_evidence(sleeps):
    assert not check_all(sleeps.records), check_all(sleeps.records)[:5]


def test_a_set_without_plus_replaces_the_labs(tools_present, tmp_path):
    out = tmp_path / "o"
    p = run_cli("trace", "--out", str(out), "--syscalls", "openat,close", "--", "sh", "-c", "cat /etc/hostname")
    assert p.returncode == 0, p.stderr
    calls = {r["syscall"] for r in Trace.load(out).records if r["kind"] == "syscall"}
    assert calls == {"openat", "close", "execve"}, calls


def test_a_call_that_began_in_an_earlier_step_stays_in_the_logs_order(sleeps):
    # The pool thread's idle futex wait begins in /pool's window and ends at the shutdown: its
    # end is printed where the log has it, not under a second "request 1" header.
    text = (sleeps.out / "annotated.log").read_text()
    headers = [line for line in text.splitlines() if line.startswith("==== ")]
    assert len(headers) == len(set(headers)), headers
