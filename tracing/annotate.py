"""Events to annotated records: the pipeline's driver.

parse (lines to events) -> handlers (one verdict per call, facts into the
model) -> roles (read off the model) -> records (the JSON Lines schema).
Thread roles are known for sure only after a thread has shown what it does
(a `loop` waits on an epoll fd, a `pool` thread wakes a loop), so
`annotate_file` reads a file twice: the first pass learns the facts, the
second writes records that use them from line 1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from tracing import records
from tracing import roles as R
from tracing.fds import CLIENT, DEVICE, FILE, STDIO
from tracing.inputs import open_text
from tracing.handlers import HANDLERS, Ctx, Verdict, _exit_note, _generic, _signal
from tracing.model import Knowledge, Model
from tracing.names import (BLOCKING, CLONES, LOOP, OTHER, OTHER_CAT, POLLABLE,  # noqa: F401 (re-exported)
                           POLL_WAITS, POOL, POOLED, READS, TEACHING, WAITS, WAKEUP_CAT, WRITES)
from tracing.parse import Event, Started, first_fd, numbered_events, split_prefix
from tracing.records import Summary  # noqa: F401 (re-exported)
from tracing.uring import HANDLERS as KERNEL_HANDLERS

# The kernel tracer's records (io_uring submissions, getaddrinfo) beside the syscalls.
ALL_HANDLERS = {**HANDLERS, **KERNEL_HANDLERS}

STALL = 0.05  # seconds a loop thread may spend outside epoll and syscalls before we say so


@dataclass
class Step:
    """One scenario request, as the recipe timed it (same clock as strace -ttt)."""

    label: str
    start: float
    end: float


class Annotator:
    def __init__(self, prior: Knowledge | None = None, steps: Iterable[Step] = ()) -> None:
        self.model = Model(prior)
        self.steps = sorted(steps, key=lambda s: s.start)
        self.summary = records.Summary()

    # Kept for callers that ask the annotator: the answers come from the role stage.
    @property
    def prior(self) -> Knowledge:
        return self.model.prior

    @property
    def learned(self) -> Knowledge:
        return self.model.learned

    @property
    def procs(self):
        return self.model.procs

    def thread_role(self, tid) -> str:
        return R.thread_role(self.model, tid)

    def step_at(self, ts) -> str | None:
        return records.step_at(self.steps, ts) if self.steps else None

    # -- stream -------------------------------------------------------
    def run(self, items: Iterable[Event | Started]) -> Iterator[dict]:
        return map(self.feed, items)  # lazy like a generator, one layer less per line

    def feed(self, item: Event | Started) -> dict:
        m = self.model
        if item.tid not in m.procs.process_of:
            if m.pending_clones:
                # A new thread's first call can be printed before clone returns.
                parent, flags = next(iter(m.pending_clones.items()))
                m.procs.cloned(parent, item.tid, flags)
            elif m.procs.process_of and item.tid is not None:
                m.unplaced.add(item.tid)  # not the first thread, and no clone made it
        if isinstance(item, Started):
            if item.syscall in CLONES:
                m.pending_clones[item.tid] = item.args
            elif item.syscall in WAITS:
                # Asleep in its wait from here on: a loop, on this epoll fd.
                got = first_fd(item.args)
                m.saw_wait(item.tid, got[0] if got else None)
            return records.started(item, R.thread_role(m, item.tid), self.step_at(item.ts))
        rec = records.record(item, self.step_at(item.ts))
        ctx = None
        if item.kind == "syscall":
            ctx = Ctx(m, item)
            verdict: Verdict = ALL_HANDLERS.get(item.syscall or "", _generic)(ctx)
            rec["category"], rec["note"], rec["ready"] = verdict
            if item.problem:
                rec["note"] = (rec["note"] + f" [{item.problem}]").strip()
        elif item.kind == "signal":
            rec["category"], rec["note"], _ = _signal(Ctx(m, item))
        elif item.kind == "exit":
            rec["note"] = _exit_note(item)
            m.pending_clones.pop(item.tid, None)
            # Forget the thread's state: memory follows live threads, not the log.
            m.last.pop(item.tid, None)
            by = re.match(r"superseded by execve in pid (\d{1,10})", item.args or "")
            if by:
                m.procs.superseded(item.tid, int(by.group(1)))
            else:
                m.procs.exited(item.tid)
        elif item.kind == "strace":
            rec["note"] = "strace's own message"
        else:
            rec["note"] = f"not understood, kept verbatim ({item.problem})"
        rec["thread"] = R.thread_role(m, item.tid)
        if ctx is not None:
            rec["fds"] = [{"fd": f.num, "role": f.role, "detail": f.detail} for f in ctx.fds]
            prev = m.last.get(item.tid)
            if rec["thread"] == LOOP and item.ts is not None and prev is not None and prev.ts is not None:
                rec["note"] += _stall(item, prev)
        if m.unplaced and item.tid in m.unplaced:
            m.unplaced.discard(item.tid)
            rec["note"] += (f" [thread {item.tid} first shows here without the clone that made it: which "
                            "process it belongs to, and so which fds it shares, this log does not show]")
        m.last[item.tid] = item
        self.summary.add(rec)
        return rec


def _stall(item: Event, prev: Event) -> str:
    """A loop thread's time between two calls, outside any wait, from what the log shows.

    The previous call's end is its start plus its -T duration, or the time on
    its `resumed>` line. Without either, a wait may have slept all that time,
    so nothing is said; another call's own time is named as unknown.
    """
    if prev.duration is not None:
        end, known = prev.ts + prev.duration, True
    elif prev.resumed_text is not None and (resumed := split_prefix(prev.resumed_text)[1]) is not None:
        end, known = resumed, True
    elif prev.syscall in WAITS or prev.syscall in POLL_WAITS or prev.kind != "syscall":
        return ""
    else:
        end, known = prev.ts, False
    idle = item.ts - end
    if idle < STALL:
        return ""
    # Outside epoll and making no call: the loop is busy in Python or C
    # (time.sleep, a CPU loop), and every other client waits.
    if known:
        return (f" [before this the loop thread made no traced call for {idle * 1000:.0f} ms "
                "outside any wait: it was blocked or computing, serving nobody]")
    return (f" [{idle * 1000:.0f} ms passed since the loop thread started {prev.syscall} (line {prev.line}), "
            "outside any wait; this log has no -T, so how much of it that call took is not shown: "
            "in it or after it, the loop was blocked or computing, serving nobody]")


# A call line's thread, name and (for a plain `name(fd` start) first fd, in one
# match: what the first pass needs to skip most lines unparsed.
_TEACH = re.compile(r"(?:\[pid +(\d{1,10})\] |(\d{1,10}) +)? *(?:[\d:.]+ +)?(?:<\.\.\. )?"
                    r"([a-z_][a-z0-9_]*)(?:\((\d{1,10})[<,]|[( ])")
_PLAIN = {CLIENT, FILE, STDIO, DEVICE}


def _plain_write(m: Model, seen: re.Match) -> bool:
    """A write to a client, a file or stdio: it wakes nobody."""
    fd = seen.group(4)
    if fd is None:
        return False
    pid = seen.group(1) or seen.group(2)
    got = m.procs.table(int(pid) if pid else None).fds.get(int(fd))
    return got is not None and got.role in _PLAIN


def learn(items: Iterable[tuple]) -> Knowledge:
    """First pass over numbered lines: run the annotator on the teaching calls."""
    ann = Annotator()
    m = ann.model

    def teaching() -> Iterator[tuple]:
        for item in items:
            seen = _TEACH.match(item[1])
            if seen is None:
                yield item
                continue
            name = seen.group(3)
            if name in WAITS:
                # A wait only teaches that its thread is a loop, on which epoll
                # fd. This runs when the parser asks for the line, after every
                # earlier event.
                got = _WAIT_FD.search(item[1])
                pid = seen.group(1) or seen.group(2)
                m.saw_wait(int(pid) if pid else None, int(got.group(1)) if got else None)
            elif name in WRITES:
                if not _plain_write(m, seen):
                    yield item
            elif name in TEACHING:
                yield item

    for _ in ann.run(numbered_events(teaching())):
        pass
    got = m.learned
    got.complete = True
    return got


_WAIT_FD = re.compile(r"epoll_p?wait2?\((\d{1,10})")


def annotate_items(open_items: Callable[[], Iterator[tuple]], steps: Iterable[Step] = ()
                   ) -> tuple[Iterator[dict], Annotator]:
    """Two passes over an input that can be opened twice: learn roles, then stream records."""
    prior = learn(open_items())
    ann = Annotator(prior, steps)
    return ann.run(numbered_events(open_items())), ann


def annotate_file(path: str, steps: Iterable[Step] = ()) -> tuple[Iterator[dict], Annotator]:
    def numbered() -> Iterator[tuple]:
        # Lines are what "\n" ends, as sed and strace count them; a lone "\r"
        # is part of a line.
        with open_text(path) as f:
            yield from enumerate(f, 1)

    return annotate_items(numbered, steps)
