"""asyncio's own word on what held its loop.

With PYTHONASYNCIODEBUG=1 (`trace --asyncio-debug`), asyncio times every callback
it runs and, for one that takes its slow_callback_duration (0.1 s) or more, logs
from the loop thread, right after the callback returns:

    Executing <Task pending name='Task-4' coro=<serve() running at /app.py:32> ...> took 0.201 seconds

That write is in the trace. A stall of the loop thread (a gap outside any wait,
or a sleep of its own) is tied to the first report the same thread writes after
it when that report's callback, as asyncio timed it (the report's time less the
seconds it gives), began no later than the stall did: the stall lies inside the
callback's run (a callback runs between two waits, never across one). The
report then names the coroutine or callback (and where it stood); where no
report covers a stall, nothing is named.

A leaf module: text in, facts out.
"""

from __future__ import annotations

import re
from typing import NamedTuple

_REPORT = re.compile(r"Executing (<.*>) took (\d+(?:\.\d+)?) seconds")
_CORO = re.compile(r"coro=<([\w.<>]+)\(\) (running at|done, defined at) ([^>]*?):(\d+)>")
_HANDLE = re.compile(r"<(?:Timer)?Handle (?:when=\S+ )?([\w.<>]+)\(\) at ([^ >]*?):(\d+)")
SLACK = 0.005  # asyncio's clock (monotonic) and strace's (-ttt, real time): the same intervals, read apart
CALLBACK_LEAST = 0.1  # asyncio's default slow_callback_duration: shorter callbacks are not reported


class Report(NamedTuple):  # a tuple: immutable, so the model's change counting need not watch it
    line: int  # the write's line
    tid: int | None
    ts: float  # when the write began: just after the callback returned
    took: float  # the callback's time, as asyncio measured it
    what: str  # the callback as the report names it, in a few words

    @property
    def began(self) -> float:
        return self.ts - self.took


def is_report(args: str) -> bool:
    return "Executing <" in args


def parse(args: str) -> tuple[float, str] | None:
    """(seconds, what) from a write's arguments, or None: not a report, or cut short by strace's -s
    before its "took" (then how long the callback took is not in the log)."""
    got = _REPORT.search(args)
    if got is None:
        return None
    return float(got.group(2)), named(got.group(1))


def named(handle: str) -> str:
    """The callback a report names: a Task's coroutine (and where it stood when the step returned,
    or where it is defined if it is done), or a plain callback and where it is defined."""
    coro = _CORO.search(handle)
    if coro:
        name, how, path, line = coro.groups()
        where = "where it stood when the step returned" if how == "running at" else "where it is defined; it finished"
        return f"the Task running {name}() ({path}:{line}, {where})"
    cb = _HANDLE.search(handle)
    if cb:
        name, path, line = cb.groups()
        return f"the callback {name}() (defined at {path}:{line})"
    return f"the callback {handle[:120]}"


def covering(reports: list[Report], line: int, start: float) -> Report | None:
    """The report of the callback that ran through a stall starting at `start` (strace's clock),
    seen at `line`: the thread's first report from that line on, if its callback began no
    later than the stall did."""
    for r in reports:
        if r.line >= line:
            return r if r.began <= start + SLACK else None
    return None
