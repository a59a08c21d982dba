"""The asyncio lessons, read from a live trace of `make trace-sanic
SCENARIO=lessons`: each lesson's request with a GET / fired 50 ms into it."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from tests.helpers import WAITS, show
from tracing.names import READS, WRITES
from tracing.read.parse import split_args


def pair(trace, path):
    """(the lesson's request, its probe) as curl timed them."""
    i = next(i for i, r in enumerate(trace.requests) if r["path"] == path)
    return trace.requests[i], trace.requests[i + 1]


def loop_records(trace, path):
    loop = trace.loop_tid
    return [r for r in trace.in_request(path) if r["tid"] == loop and r["kind"] == "syscall"]


def longest_gap(recs) -> tuple[float, dict, dict]:
    """The longest time the loop thread made no traced call at all."""
    best = (0.0, None, None)
    for a, b in zip(recs, recs[1:]):
        gap = b["ts"] - (a["ts"] + (a["duration"] or 0))
        if gap > best[0]:
            best = (gap, a, b)
    return best


def timeout_ms(rec) -> int:
    # epoll_wait(epfd, events, maxevents, timeout); epoll_pwait has sigmask, size after it.
    # events is a list, or a bare pointer when the wait failed (EINTR).
    return int(split_args(rec["args"])[3])


def test_time_sleep_in_a_handler_blocks_the_loop_and_the_concurrent_request_waits(lessons_trace):
    main, probe = pair(lessons_trace, "/block?ms=300")
    assert probe["end"] - main["start"] >= 0.28, "the probe could not be answered before the block ended"
    gap, before, after = longest_gap(loop_records(lessons_trace, "/block?ms=300"))
    assert gap >= 0.25, f"the loop made calls every {gap * 1000:.0f} ms at most"
    # A gap between two calls is time spent outside epoll: no wait covers it.
    assert before["syscall"] not in WAITS or before["duration"] < 0.05, show([before, after])
    accepts = [r for r in loop_records(lessons_trace, "/block?ms=300") if r["syscall"] == "accept4"
               and r["errno"] is None]
    assert accepts[-1]["ts"] >= after["ts"], "the probe was accepted only after the block"


def test_asyncio_sleep_keeps_the_loop_serving(lessons_trace):
    main, probe = pair(lessons_trace, "/sleep?ms=300")
    assert probe["end"] - main["start"] < 0.2 and main["end"] - main["start"] >= 0.29, (main, probe)
    waits = [r for r in loop_records(lessons_trace, "/sleep?ms=300") if r["syscall"] in WAITS]
    early = [r for r in waits if 200 <= timeout_ms(r) <= 300 and r["ret"] != "0"
             and any(x["role"] == "listening-socket" for x in r["ready"])]
    assert early, "a wait with the sleeper's timeout returned early for the probe's connection:\n" + show(waits)


def test_gather_takes_the_longest_timer_and_the_waits_step_through_the_timers(lessons_trace):
    main = next(r for r in lessons_trace.requests if r["path"].startswith("/gather"))
    body = json.loads(main["body"])
    assert main["end"] - main["start"] < 0.45 and body["elapsed_ms"] < 400, body
    waits = [r for r in loop_records(lessons_trace, main["path"]) if r["syscall"] in WAITS]
    timers = [r for r in waits if r["ret"] == "0" and timeout_ms(r) > 0]
    assert len(timers) >= 3, show(waits)
    ends = [r["ts"] + r["duration"] for r in timers[-3:]]
    steps = [b - a for a, b in zip(ends, ends[1:])]
    assert all(0.07 <= s <= 0.13 for s in steps), f"timer waits ended {steps} s apart\n{show(timers)}"


@pytest.mark.parametrize("path,served_during", [("/cpu?ms=300", False), ("/cpu?ms=300&yield=1", True)])
def test_a_cpu_loop_lets_others_through_only_if_it_yields(lessons_trace, path, served_during):
    main, probe = pair(lessons_trace, path)
    recs = loop_records(lessons_trace, path)
    polls = [r for r in recs if r["syscall"] in WAITS and timeout_ms(r) == 0]
    if served_during:
        assert probe["end"] < main["end"] - 0.1, (main, probe)
        assert len(polls) >= 10, f"only {len(polls)} zero-timeout polls while the CPU loop yielded"
    else:
        assert probe["end"] - main["start"] >= 0.28, (main, probe)
        assert longest_gap(recs)[0] >= 0.25


def test_asyncio_timeout_cancels_the_work_and_answers_504(lessons_trace):
    main = next(r for r in lessons_trace.requests if r["path"].startswith("/timeout"))
    body = json.loads(main["body"])
    assert main["status"] == 504 and "cancelled it after 100 ms" in body["reason"], body
    assert main["end"] - main["start"] < 0.3
    recs = loop_records(lessons_trace, main["path"])
    timed_out = [r for r in recs if r["syscall"] in WAITS and r["ret"] == "0" and 50 <= timeout_ms(r) <= 100]
    assert timed_out, show(recs)
    answer = [r for r in recs if r["note"].find("HTTP/1.1 504") >= 0]
    assert answer and answer[0]["ts"] > timed_out[-1]["ts"], show(recs)


def test_the_annotated_log_says_when_the_loop_served_nobody(lessons_trace):
    stalled = [r for r in lessons_trace.in_request("/block?ms=300") if "serving nobody" in r["note"]]
    assert stalled and stalled[0]["thread"] == "loop", show(lessons_trace.in_request("/block?ms=300"))
    calm = [r for r in lessons_trace.in_request("/sleep?ms=300") if "serving nobody" in r["note"]]
    assert not calm, show(calm)


def lesson_window(trace, path):
    """(the loop's calls in the lesson, when the loop read the request, its answer's write)."""
    recs = loop_records(trace, path)
    read = next(r for r in recs if r["syscall"] in READS and f"GET {path} " in r["note"])
    route = path.split("?")[0].lstrip("/")
    answer = next(r for r in recs if r["syscall"] in WRITES and f'\\"mechanism\\":\\"{route}' in r["args"])
    return recs, read["ts"], answer


def waits_after(trace, answer) -> list[dict]:
    """The loop's waits from the answer until it accepts the next connection: the timers left
    then are the lesson's leftovers. (Under load they may fall in the next request's window.)"""
    out = []
    for r in trace.records:
        if r["tid"] != trace.loop_tid or r["kind"] != "syscall" or r["ts"] <= answer["ts"]:
            continue
        if r["syscall"] in ("accept", "accept4") and r["errno"] is None:
            break
        if r["syscall"] in WAITS:
            out.append(r)
    return out


def timer_deadlines(waits, start) -> list[tuple[float, dict]]:
    """For each wait that counts down to a timer: when that timer is due, in s after `start`."""
    return [(r["ts"] + timeout_ms(r) / 1000 - start, r) for r in waits if timeout_ms(r) > 0]


@dataclass
class TimerLesson:
    """A timer lesson read back: curl's records, the answer's JSON, and the loop's waits
    before the answer and after it (until the next connection), with their timers' deadlines."""

    main: dict
    probe: dict
    body: dict
    start: float  # when the loop read the request
    answer: dict  # the loop's write of the answer
    before: list[dict]
    after: list[dict]

    @classmethod
    def read(cls, trace, path: str) -> "TimerLesson":
        main, probe = pair(trace, path)
        recs, start, answer = lesson_window(trace, path)
        before = [r for r in recs if r["syscall"] in WAITS and r["ts"] < answer["ts"]]
        return cls(main, probe, json.loads(main["body"]), start, answer, before, waits_after(trace, answer))

    def deadlines(self, waits) -> list[tuple[float, dict]]:
        return timer_deadlines(waits, self.start)


# Both loops drop a cancelled timer before they compute the next wait's timeout.
ON_BOTH_LOOPS = pytest.mark.parametrize("loop_trace", ["lessons_trace", "asyncio_lessons_trace"])


@ON_BOTH_LOOPS
def test_a_taskgroup_cancels_its_siblings_and_their_timers_leave_the_loop(request, loop_trace):
    got = TimerLesson.read(request.getfixturevalue(loop_trace), "/taskgroup?ms=100,200,300&fail=1")
    body = got.body
    assert got.main["status"] == 200 and body["failed"] == [0] and body["cancelled"] == [1, 2], body
    assert body["finished"] == [] and body["elapsed_ms"] < 200, body
    assert got.probe["end"] < got.main["end"], "the probe was served while the group's tasks slept"
    # Before the answer the loop counts down to the first task's 100 ms timer, and times out on it.
    due = [t for t, r in got.deadlines(got.before) if r["ret"] == "0"]
    assert due and 0.08 <= due[-1] <= 0.13, show(got.before)
    assert got.answer["ts"] - got.start < 0.2, f"answered {got.answer['ts'] - got.start:.3f} s in\n{show(got.before)}"
    # After it, no wait counts down to the siblings' 200 and 300 ms timers: cancelled, gone.
    assert got.after, "no wait between the answer and the next connection"
    late = [r for t, r in got.deadlines(got.after) if 0.15 <= t <= 0.35]
    assert not late, "a wait still counts down to a cancelled sibling's timer:\n" + show(late)


@ON_BOTH_LOOPS
def test_task_cancel_drops_the_tickers_timer_from_the_loops_waits(request, loop_trace):
    got = TimerLesson.read(request.getfixturevalue(loop_trace), "/cancel?every=50&after=175")
    # Ticks at 50, 100, 150 ms before the cancel at 175 (a late loop may let one more in).
    ticks = got.body["ticks"]
    assert got.main["status"] == 200 and got.body["cancelled"], got.body
    assert 3 <= ticks <= got.body["elapsed_ms"] // 50, got.body
    assert got.probe["end"] < got.main["end"], "the probe was served between the ticks"
    # Before the cancel the waits count down to the ticks (a loaded machine may fold two
    # timers into one late wakeup, so not every mark need have its own wait)...
    def near(t, mark):
        return abs(t - mark) <= 0.02

    counted = {k for t, _ in got.deadlines(got.before) for k in range(1, ticks + 1) if near(t, k * 0.05)}
    assert len(counted) >= 2, f"waits counted down to ticks {sorted(counted)}\n" + show(got.before)
    # ...and after the answer none counts down to the tick the cancel took away.
    assert got.after, "no wait between the answer and the next connection"
    dropped = (ticks + 1) * 0.05
    tick = [r for t, r in got.deadlines(got.after) if near(t, dropped)]
    assert not tick, f"a wait still counts down to the cancelled ticker's {dropped * 1000:.0f} ms timer:\n" + show(tick)
