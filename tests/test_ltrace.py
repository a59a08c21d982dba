"""ltrace shows what strace cannot: getaddrinfo is a library call. Live runs
of the recipes under ltrace, and the parser on recorded ltrace output
(fixtures/ltrace/record.sh)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import show
from tracing.run.tracers import ltrace

FIXTURES = Path(__file__).parent / "fixtures" / "ltrace"


def calls(trace, name: str) -> list[dict]:
    return [r for r in trace.records if r["kind"] == "syscall" and r["syscall"] == name]


@pytest.mark.parametrize("which", ["sanic_ltrace", "c_pool_ltrace"])
def test_getaddrinfo_runs_on_a_thread_other_than_the_loop(request, which):
    trace = request.getfixturevalue(which)
    resolve = calls(trace, "getaddrinfo")
    loops = {r["tid"] for r in trace.records if r["syscall"] in ("epoll_wait", "epoll_pwait")}
    assert resolve, f"no getaddrinfo in {trace.out / 'raw.ltrace'}"
    assert loops and all(r["tid"] not in loops for r in resolve), show(resolve)
    assert all(r["thread"] == "pool" and r["category"] == "thread-pooled" for r in resolve), show(resolve)
    assert all(r["request"] and "/dns" in r["request"] for r in resolve), show(resolve)


def test_without_its_pool_the_c_server_resolves_on_the_loop_thread(c_ltrace):
    resolve = calls(c_ltrace, "getaddrinfo")
    assert resolve and all(r["thread"] == "loop" and r["category"] == "blocking" for r in resolve), show(resolve)


@pytest.mark.parametrize("which,wait", [("sanic_ltrace", "epoll_pwait"), ("c_pool_ltrace", "epoll_wait")])
def test_the_epoll_wrappers_run_on_the_loop_thread(request, which, wait):
    trace = request.getfixturevalue(which)
    waits = calls(trace, wait)
    assert waits and {r["thread"] for r in waits} == {"loop"}, show(waits)
    assert all(r["category"] == "pollable" for r in waits)


@pytest.mark.parametrize("which", ["sanic_ltrace", "c_pool_ltrace"])
def test_the_pool_wakes_the_loop_with_an_eventfd_write(request, which):
    trace = request.getfixturevalue(which)
    wakes = [r for r in trace.records if r["category"] == "wakeup"]
    assert wakes and all(r["thread"] == "pool" for r in wakes), show(wakes)


@pytest.mark.parametrize("log", sorted(FIXTURES.glob("*.ltrace")), ids=lambda p: p.name)
def test_every_line_of_a_recorded_ltrace_log_is_kept_once(log):
    lines = log.read_text().splitlines()
    recs = [r for r in ltrace.annotate_file(str(log))[0] if r["kind"] != "started"]
    seen = sorted([r["line"] for r in recs] + [r["resumed_line"] for r in recs if r["resumed_line"]])
    assert seen == list(range(1, len(lines) + 1))
    assert not [r for r in recs if r["kind"] == "unparsed"], "every ltrace line is understood"
    by_line = {r["line"]: r for r in recs}
    assert all(by_line[n]["text"] == lines[n - 1] for n in by_line), "records keep ltrace's own text"


def test_a_call_cut_by_ltraces_error_message_is_joined():
    recs = [r for r in ltrace.annotate_file(str(FIXTURES / "c-pool-tt.ltrace"))[0] if r["kind"] != "started"]
    cut = [r for r in recs if r["resumed_text"] and r["resumed_text"].startswith(", ")]
    assert cut and all(r["syscall"] == "read" and r["ret"] == "-1" for r in cut), show(cut)
    assert any(r["kind"] == "strace" and r["text"].startswith("error: ") for r in recs)


def test_interrupted_waits_are_named_as_ltraces_doing():
    recs = list(ltrace.annotate_file(str(FIXTURES / "c-pool-tt.ltrace"))[0])
    eintr = [r for r in recs if r.get("syscall") == "epoll_wait" and r.get("ret") == "0xffffffff"]
    assert eintr and all("EINTR" in r["note"] and "ltrace" in r["note"] for r in eintr)
