"""asyncio's own word on what held its loop.

With PYTHONASYNCIODEBUG=1 (`trace --asyncio-debug`), asyncio times every callback
it runs and, for one that takes its slow_callback_duration (0.1 s) or more, logs
from the loop thread, right after the callback returns:

    Executing <Task pending name='Task-4' coro=<serve() running at /app.py:32> ...> took 0.201 seconds

That write is in the trace. A stall of the loop thread (a gap outside any wait,
or a sleep of its own) is tied to a report when the report is written by the
same thread, in the same wait-serve cycle (no wait of that thread between the
stall and the report: a callback never spans a wait), and the callback's time
as asyncio measured it covers the stall: it began no later than the stall did.
The report then names the coroutine or callback (and where it stood); where no
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
    cycle: int | None  # the thread's last wait before the report (line)

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


def covering(reports: list[Report], line: int, cycle: int | None, start: float) -> Report | None:
    """The report of the callback that ran a stall starting at `start` (strace's clock) before
    `line`: written later in the same cycle, and begun no later than the stall."""
    for r in reports:
        if r.line > line and r.cycle == cycle:
            return r if r.began <= start + SLACK else None
    return None
