"""Events to annotated records: the pipeline's driver.

parse (lines to events) -> handlers (one verdict per call, facts into the
model) -> roles (read off the model) -> records (the JSON Lines schema).
Thread roles are known for sure only after a thread has shown what it does
(a `loop` waits on an epoll fd, a `pool` thread wakes a loop), so
`annotate_file` reads a file twice: the first pass learns the facts, the
second writes records that use them from line 1. A call identical to one
already annotated, while the model has not changed since, reuses its
verdict (`changes`): a server under load repeats itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from tracing import records
from tracing.changes import made as _made
from tracing import roles as R
from tracing.fds import CLIENT, DEVICE, FILE, STDIO
from tracing.inputs import open_text
from tracing.handlers import HANDLERS, Ctx, _exit_note, _generic, _signal
from tracing.model import Knowledge, Model
from tracing.names import (BLOCKING, CLONES, LOOP, OTHER, OTHER_CAT, POLLABLE,  # noqa: F401 (re-exported)
                           POLL_WAITS, POOL, POOLED, READS, TEACHING, WAITS, WAKEUP_CAT, WRITES)
from tracing.parse import Event, Started, first_fd, numbered_events, split_prefix
from tracing.progress import Progress
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
    def __init__(self, prior: Knowledge | None = None, steps: Iterable[Step] = (),
                 check_reuse: bool = False) -> None:
        self.model = Model(prior)
        self.steps = sorted(steps, key=lambda s: s.start)
        self.summary = records.Summary()
        self.reuse: dict[tuple, tuple[int, tuple]] = {}  # call -> (tracing.changes.count(), verdict)
        self.check_reuse = check_reuse  # tests: work out every verdict, and fail where a reuse would differ
        self.reused = 0  # verdicts reused rather than worked out again
        self.kept: tuple[int, tuple] | None = None  # the last call's (count, verdict), if it may be reused
        self.repeated = 0  # lines tracing.repeats' compiled core wrote from a kept record (counted in reused)
        self.checked: list[int] = []  # check mode there: the lines the core's answer was compared on

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
        if item.__class__ is Started:
            if item.syscall in CLONES:
                m.pending_clones[item.tid] = item.args
            elif item.syscall in WAITS:
                # Asleep in its wait from here on: a loop, on this epoll fd.
                got = first_fd(item.args)
                m.saw_wait(item.tid, got[0] if got else None)
            return records.started(item, R.thread_role(m, item.tid), self.step_at(item.ts))
        tid, kind = item.tid, item.kind
        if kind == "syscall":
            category, note, ready, fds, thread = self.verdict(item)
            prev = m.last.peek(tid)
            # A stall is time after the previous call ended, so at most the time since it
            # began; only its `resumed>` line's time (which -r makes relative) can say more.
            # _repeats.c's may_stall asks the same before it writes a repeat (test_repeats).
            if (thread == LOOP and prev is not None and item.ts is not None and prev.ts is not None
                    and (item.ts - prev.ts >= STALL or prev.resumed_text is not None)):
                note += _stall(item, prev)
        else:
            ready, fds, category = [], [], OTHER_CAT
            if kind == "signal":
                category, note, _ = _signal(Ctx(m, item))
            elif kind == "exit":
                note = _exit_note(item)
                m.pending_clones.pop(tid, None)
                # Forget the thread's state: memory follows live threads, not the log.
                m.last.pop(tid, None)
                by = re.match(r"superseded by execve in pid (\d{1,10})", item.args or "")
                if by:
                    m.procs.superseded(tid, int(by.group(1)))
                else:
                    m.procs.exited(tid)
            elif kind == "strace":
                note = "strace's own message"
            else:
                note = f"not understood, kept verbatim ({item.problem})"
            thread = R.thread_role(m, tid)
        if m.unplaced and tid in m.unplaced:
            m.unplaced.discard(tid)
            note += (f" [thread {tid} first shows here without the clone that made it: which "
                     "process it belongs to, and so which fds it shares, this log does not show]")
        m.last[tid] = item
        rec = records.record(item, self.step_at(item.ts) if self.steps else None,
                             thread, fds, ready, category, note)
        self.summary.add(rec)
        return rec

    def verdict(self, item: Event) -> tuple[str, str, list, list, str]:
        """A call's category, note, ready list, fds and thread role.

        Worked out by the call's handler, or reused: an identical call (same
        thread, same text but its time) while the model has not changed since
        gets the same answer (see `changes`). A verdict whose handler read the
        line's own number or times, or the call before it, is not kept.
        """
        key = (item.tid, item.syscall, item.args, item.ret, item.errno, item.ret_detail, item.problem)
        seen = self.reuse.get(key)
        if seen is not None and seen[0] == _made[0] and not self.check_reuse:
            self.reused += 1
            self.kept = seen
            return seen[1]
        before = _made[0]
        m = self.model
        seen_by_handler = _Watched(item)
        m.last.read = False
        ctx = Ctx(m, seen_by_handler)
        handler = ALL_HANDLERS.get(item.syscall or "", _generic)
        category, note, ready = handler(ctx)
        if item.problem:
            note = (note + f" [{item.problem}]").strip()
        got = (category, note, ready, [{"fd": f.num, "role": f.role, "detail": f.detail} for f in ctx.fds],
               R.thread_role(m, item.tid))
        if seen is not None and seen[0] == before and (_made[0] != before or seen[1] != got):
            raise AssertionError(f"line {item.line}: a reused verdict would differ from the handler's: "
                                 f"{seen[1]!r} != {got!r}, or the handler changed the model")
        if (_made[0] == before and not seen_by_handler.per_line and not m.last.read
                and len(item.args) <= REUSE_ARGS):
            if len(self.reuse) >= REUSE_KEEP:
                self.reuse.clear()
            self.reuse[key] = self.kept = (before, got)
        else:
            self.kept = None
        return got


# How many verdicts are kept for reuse, and for calls of what size (a
# server's requests and answers; not a 64 KB buffer).
REUSE_KEEP = 4096
REUSE_ARGS = 2048
# An event's fields that are its line's own, not part of the call a reuse is keyed on.
PER_LINE = frozenset({"line", "text", "ts", "duration", "resumed_line", "resumed_text", "source"})


class _Watched:
    """The event as a handler sees it while its verdict may yet be kept: notes whether the
    handler read anything that is this line's own (a wait's "slept", a handler's time)."""

    __slots__ = ("_ev", "per_line")

    def __init__(self, ev: Event) -> None:
        self._ev = ev
        self.per_line = False

    def __getattr__(self, name: str):
        if name in PER_LINE:
            self.per_line = True
        return getattr(self._ev, name)


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


def annotate_items(open_items: Callable[[], Iterator[tuple]], steps: Iterable[Step] = (),
                   check_reuse: bool = False) -> tuple[Iterator[dict], Annotator]:
    """Two passes over an input that can be opened twice: learn roles, then stream records."""
    prior = learn(open_items())
    ann = Annotator(prior, steps, check_reuse)
    return ann.run(numbered_events(open_items())), ann


def annotate_file(path: str, steps: Iterable[Step] = (), check_reuse: bool = False,
                  progress: Progress | None = None) -> tuple[Iterator[dict], Annotator]:
    def numbered() -> Iterator[tuple]:
        # Lines are what "\n" ends, as sed and strace count them; a lone "\r"
        # is part of a line.
        with open_text(path) as f:
            yield from enumerate(f, 1)

    return annotate_items(progress.passes(numbered) if progress else numbered, steps, check_reuse)
