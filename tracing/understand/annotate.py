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

from tracing.understand import records
from tracing.understand.changes import Dict, Set, made as _made
from tracing.understand import roles as R
from tracing.read.inputs import open_text
from tracing.understand.handlers import HANDLERS, Ctx, _exit_note, _generic, _signal
from tracing.understand.model import Knowledge, Model
from tracing.names import (BLOCKING, CLIENT, CLONES, DEVICE, LOOP, LOST_CALLS, OTHER, OTHER_CAT, PIPE,  # noqa: F401
                           POLLABLE, POLL_WAITS, POOL, POOLED, READS, RING_RECORDS, SOCKET, STDIO, TEACHING, WAITS,
                           WAKEUP, WAKEUP_CAT, WRITES)
from tracing.read.parse import Event, Started, first_fd, numbered_events, split_prefix
from tracing.log import Progress
from tracing.understand.snapshot import apply as apply_snapshot
from tracing.understand.records import Summary  # noqa: F401 (re-exported)
from tracing.understand.uring import HANDLERS as KERNEL_HANDLERS

# The kernel tracer's records (io_uring submissions, getaddrinfo) beside the syscalls.
ALL_HANDLERS = {**HANDLERS, **KERNEL_HANDLERS}

STALL = 0.05  # seconds a waiting thread may spend outside its waits and syscalls before we say so


@dataclass
class Step:
    """One scenario request, as the recipe timed it (same clock as strace -ttt)."""

    label: str
    start: float
    end: float


class Annotator:
    def __init__(self, prior: Knowledge | None = None, steps: Iterable[Step] = (),
                 check_reuse: bool = False, snapshot: dict | None = None) -> None:
        self.model = Model(prior)
        apply_snapshot(self.model, snapshot)  # what `trace --pid` saw there at attach
        self.steps = sorted(steps, key=lambda s: s.start)
        self.summary = records.Summary()
        self.summary.roles = self.model.prior.roles
        self.reuse: dict[tuple, tuple[int, tuple]] = {}  # call -> (tracing.understand.changes.count(), verdict)
        self.check_reuse = check_reuse  # tests: work out every verdict, and fail where a reuse would differ
        # The first pass wants the model, not the notes: a call that changed nothing is skipped
        # when it comes again, whatever of its line's own (times) its note read.
        self.learning = False
        self.reused = 0  # verdicts reused rather than worked out again
        self.kept: tuple[int, tuple] | None = None  # the last call's (count, verdict), if it may be reused
        self.repeated = 0  # lines tracing.render.repeats' compiled core wrote from a kept record (counted in reused)
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
        tid = item.tid
        joined = ""
        if tid not in m.procs.process_of:
            if m.pending_clones:
                # A new thread's first call can be printed before clone returns.
                parent, (flags, at) = next(iter(m.pending_clones.items()))
                m.procs.cloned(parent, tid, flags)
                m.made(tid, parent, at)
            elif tid in m.prior.joins:
                leader, why = m.prior.joins[tid]
                m.procs.joined(tid, leader)
                joined = why
            elif m.procs.process_of and tid is not None:
                m.unplaced.add(tid)  # not the first thread, and no clone made it
        if tid not in m.threads:
            m.thread(tid)
        if item.__class__ is Started:
            name = item.syscall
            if name in CLONES:
                m.pending_clones[tid] = (item.args, item.line)
            elif name in WAITS:
                # Asleep in its wait from here on: a loop, on this epoll fd.
                got = first_fd(item.args)
                m.saw_wait(tid, got[0] if got else None, item.line)
            elif name in WRITES:
                self._writing(item)
            elif name == "close":
                # A close that has begun ends its pipe end for a wait that returns meanwhile.
                got = first_fd(item.args)
                fd = m.procs.table(tid).fds.get(got[0]) if got else None
                if fd is not None:
                    m.closed_fd(tid, fd, item.line)
            return records.started(item, R.thread_role(m, tid), self.step_at(item.ts))
        kind = item.kind
        evidence = ()
        if kind == "syscall":
            category, note, ready, fds, thread, evidence = self.verdict(item)
            if m.writes_started and tid in m.writes_started:
                m.writes_started.pop(tid, None)
            prev = m.last.peek(tid)
            # A stall is time after the previous call ended, so at most the time since it
            # began; only its `resumed>` line's time (which -r makes relative) can say more.
            # _repeats.c's may_stall asks the same before it writes a repeat (test_repeats).
            # (io_uring records are moments inside a call or on a kernel thread: time next to one
            # is not known to be outside a wait)
            if (not self.learning and (thread == LOOP or m.threads[tid].first_wait is not None) and prev is not None
                    and item.ts is not None and prev.ts is not None
                    and item.syscall not in RING_RECORDS and prev.syscall not in RING_RECORDS
                    and (item.ts - prev.ts >= STALL or prev.resumed_text is not None)):
                stall, cited = _stall(item, prev, thread == LOOP)
                if stall:
                    note += stall
                    evidence = [*evidence, *cited]
        else:
            ready, fds, category = [], [], OTHER_CAT
            if kind == "signal":
                category, note, _, _ = _signal(Ctx(m, item))
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
                lost = LOST_CALLS.search(item.text or "")
                if lost:
                    # The tracer's ring was full: what those calls did is not in this log.
                    m.lost = (item.line, int(lost.group(1)))
                    self.summary.lost += int(lost.group(1))
                    note = (f"{lost.group(1)} calls are missing here: the kernel tracer's ring buffer was full, "
                            "so what they did is not in this log")
                else:
                    note = "strace's own message"
            else:
                note = f"not understood, kept verbatim ({item.problem})"
            thread = R.thread_role(m, tid)
        if joined:
            note += f" [{joined}]"
        elif m.unplaced and tid in m.unplaced:
            m.unplaced.discard(tid)
            note += (f" [thread {tid} first shows here without the clone that made it: which "
                     "process it belongs to, and so which fds it shares, this log does not show]")
        m.last[tid] = item
        rec = records.record(item, self.step_at(item.ts) if self.steps else None,
                             thread, fds, ready, category, note, evidence)
        self.summary.add(rec)
        return rec

    def _writing(self, item: Started) -> None:
        """A write printed `<unfinished ...>`: if it goes to a wakeup fd, a wait may return
        before strace prints its end; the write's start is then that wait's evidence."""
        got = first_fd(item.args)
        if got is None:
            return
        fd = self.model.procs.table(item.tid).fds.get(got[0])
        if fd is not None and fd.role in _WAKEABLE:
            self.model.writes_started[item.tid] = (item.line, got[0])

    def verdict(self, item: Event) -> tuple[str, str, list, list, str, list]:
        """A call's category, note, ready list, fds, thread role and evidence.

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
        category, note, ready, evidence = handler(ctx)
        if item.problem:
            note = (note + f" [{item.problem}]").strip()
        got = (category, note, ready, [{"fd": f.num, "role": f.role, "detail": f.detail} for f in ctx.fds],
               R.thread_role(m, item.tid), evidence)
        if seen is not None and seen[0] == before and (_made[0] != before or seen[1] != got):
            raise AssertionError(f"line {item.line}: a reused verdict would differ from the handler's: "
                                 f"{seen[1]!r} != {got!r}, or the handler changed the model")
        if (_made[0] == before and (self.learning or not seen_by_handler.per_line and not m.last.read)
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


def _stall(item: Event, prev: Event, loop: bool) -> tuple[str, list]:
    """A waiting thread's time between two calls, outside any wait, from what the log
    shows, and the evidence: the previous call's line. A loop thread serves nobody then.

    The previous call's end is its start plus its -T duration, or the time on
    its `resumed>` line. Without either, a wait may have slept all that time,
    so nothing is said; another call's own time is named as unknown.
    """
    if prev.duration is not None:
        end, known = prev.ts + prev.duration, True
    elif prev.resumed_text is not None and (resumed := split_prefix(prev.resumed_text)[1]) is not None:
        end, known = resumed, True
    elif prev.syscall in WAITS or prev.syscall in POLL_WAITS or prev.kind != "syscall":
        return "", []
    else:
        end, known = prev.ts, False
    idle = item.ts - end
    if idle < STALL:
        return "", []
    who = "the loop thread" if loop else "this thread, which waits for readiness elsewhere,"
    # Outside epoll and making no call: the thread is busy in Python or C
    # (time.sleep, a CPU loop); a loop's other clients all wait.
    busy = "blocked or computing, serving nobody" if loop else "blocked or computing between its waits"
    cited = [{"claim": "serving-nobody", "line": prev.line, "tid": prev.tid}] if loop else []
    if known:
        return (f" [before this {who} made no traced call for {idle * 1000:.0f} ms after line "
                f"{prev.line} ended, outside any wait: it was {busy}]"), cited
    return (f" [{idle * 1000:.0f} ms passed since {who} started {prev.syscall} (line {prev.line}), "
            "outside any wait; this log has no -T, so how much of it that call took is not shown: "
            f"in it or after it, it was {busy}]"), cited


# A call line's thread, name and (for a plain `name(fd` start) first fd, in one
# match: what the first pass needs to skip most lines unparsed.
_TEACH = re.compile(r"(?:\[pid +(\d{1,10})\] |(\d{1,10}) +)? *(?:[\d:.]+ +)?(?:<\.\.\. )?"
                    r"([a-z_][a-z0-9_]*)(?:\((\d{1,10})[<,]|[( ])")
_PLAIN = {CLIENT, STDIO, DEVICE}
_WAKEABLE = frozenset({WAKEUP, PIPE, SOCKET})
# What else the first pass must see: waits (loops, and which write a wait took), file
# opens (work a pool thread hands back), the kernel tracer's own records.
_LEARNING = TEACHING | WAITS | POLL_WAITS | {"open", "openat", "io_uring_enter", "io_uring_sqe",
                                             "getaddrinfo", "rt_sigreturn", "sigreturn"}


def _plain_io(m: Model, pid: str | None, pid2: str | None, fd: str | None) -> bool:
    """A read or write of a client, a device or stdio: it wakes nobody and is no pool's work."""
    if fd is None:
        return False
    pid = pid or pid2
    tid = int(pid) if pid else None
    table = m.procs.known(tid)  # not made here: the annotator places a new thread when it first sees it
    got = table.fds.get(int(fd)) if table is not None else None
    # A client's I/O on a thread that is no loop (yet) is work a pool thread may hand back.
    return got is not None and got.role in _PLAIN and (got.role != CLIENT or tid in m.waited)


def learn(items: Callable[[], Iterable[tuple]] | Iterable[tuple], snapshot: dict | None = None) -> Knowledge:
    """First pass over numbered lines: run the annotator on the calls that teach roles and
    links, then decide each thread's role over the whole log.

    A log that starts late (`strace -p`) shows fds made before it, named only by
    -yy, and threads no clone made; if those threads use the same fds (same numbers,
    same pipe or socket), they are one process's. Such a log is read a second time,
    fds and threads placed from the start."""
    opener = items if callable(items) else None
    got = _learn_once(opener() if opener else items, Knowledge(), snapshot)
    if opener is not None and (got.joins or got.seeds and got.missed):
        again = Knowledge(seeds=got.seeds, joins=got.joins)
        got = _learn_once(opener(), again, snapshot)
        got.seeds, got.joins = again.seeds, again.joins
    return got


def _learn_once(items: Iterable[tuple], start: Knowledge, snapshot: dict | None) -> Knowledge:
    ann = Annotator(start, snapshot=snapshot)
    ann.learning = True
    m = ann.model

    plain: dict = {}  # (pid, pid, fd) -> is that thread's fd plain, while the model stands still
    stamp = [-1]

    def teaching() -> Iterator[tuple]:
        for item in items:
            seen = _TEACH.match(item[1])
            if seen is None:
                yield item
                continue
            name = seen.group(3)
            if name in WRITES or name in READS:
                if _made[0] != stamp[0]:
                    plain.clear()
                    stamp[0] = _made[0]
                key = seen.group(1, 2, 4)
                got = plain.get(key)
                if got is None:
                    got = plain[key] = _plain_io(m, *key)
                if not got:
                    yield item
            elif name in _LEARNING:
                yield item

    for _ in ann.run(numbered_events(teaching())):
        pass
    got = m.learned
    got.roles = Dict(R.decide(m))
    got.loops = Set(t for t, r in got.roles.items() if r.role == LOOP)
    got.pools = Set(t for t, r in got.roles.items() if r.role == POOL)
    got.seeds = Dict({tid: Dict(t.firsts) for tid, t in m.procs.origins.items() if t.firsts})
    got.joins = Dict(_joins(m, got.seeds))
    got.complete = True
    return got


# What in a decoration names one kernel object: a pipe's or socket's inode, an address.
_OBJECT = re.compile(r"\[(\d+)|(\d+)\]|(\d+\.\d+\.\d+\.\d+:\d+|\[[0-9a-f:]+\]:\d+)")


def _objects(seeds: dict) -> dict:
    """object -> (fd, decoration, line) for every kernel object a thread's first-seen fds name."""
    out = {}
    for num, (deco, line) in seeds.items():
        for m in _OBJECT.finditer(deco):
            out.setdefault(next(g for g in m.groups() if g), (num, deco, line))
    return out


def _joins(m: Model, seeds: dict) -> dict:
    """Threads the log never saw made, joined into one process with the others they share fds
    with: the same pipe, socket or address named in both (the same fd or the other end of
    one pipe), or the same fd number with the same -yy text, and no fd number naming two
    different pipes or unix sockets. Each group goes under the thread seen first; the
    others' seeds are merged into its own."""
    joins: dict = dict(m.prior.joins)
    origins = [tid for tid in m.procs.origins if tid is not None and tid not in joins]
    leader = {tid: tid for tid in origins}

    def top(tid):
        while leader[tid] != tid:
            tid = leader[tid]
        return tid

    why = {}
    for i, tid in enumerate(origins):
        mine = seeds.get(tid, {})
        for other in origins[:i]:
            theirs = seeds.get(other, {})
            if top(tid) == top(other) or any(
                    n in theirs and theirs[n][0] != deco and deco.startswith(("pipe:", "UNIX"))
                    and theirs[n][0].startswith(("pipe:", "UNIX")) for n, (deco, _) in mine.items()):
                continue  # one group already; or one number, two pipes: another process
            shared = set(_objects(mine)) & set(_objects(theirs))
            same = sorted(n for n, (deco, _) in mine.items() if n in theirs and theirs[n][0] == deco)
            if shared:
                (a, adeco, aline), (b, bdeco, bline) = _objects(mine)[min(shared)], _objects(theirs)[min(shared)]
            elif same:
                a = b = same[0]
                adeco, aline, bdeco, bline = mine[a][0], mine[a][1], theirs[b][0], theirs[b][1]
            else:
                continue
            why.setdefault(tid, f"its fd {a} ({adeco}, line {aline}) names what thread {other}'s fd {b} "
                                f"({bdeco}, line {bline}) names")
            why.setdefault(other, f"its fd {b} ({bdeco}, line {bline}) names what thread {tid}'s fd {a} "
                                  f"({adeco}, line {aline}) names")
            a_top, b_top = top(tid), top(other)
            first, second = sorted((a_top, b_top), key=origins.index)
            leader[second] = first
    for tid in origins:
        head = top(tid)
        if head != tid:
            joins[tid] = (head, f"thread {tid} first shows here without the clone that made it; {why[tid]}, "
                                f"so it is taken as a thread of {head}'s process")
            merged = seeds.setdefault(head, Dict())
            for num, seed in seeds.pop(tid, {}).items():
                merged.setdefault(num, seed)
    return joins


def annotate_items(open_items: Callable[[], Iterator[tuple]], steps: Iterable[Step] = (),
                   check_reuse: bool = False, snapshot: dict | None = None) -> tuple[Iterator[dict], Annotator]:
    """Two passes over an input that can be opened twice: learn roles, then stream records."""
    prior = learn(open_items, snapshot)
    ann = Annotator(prior, steps, check_reuse, snapshot)
    return ann.run(numbered_events(open_items(), stacks=True)), ann  # -k frames go with their call


def annotate_file(path: str, steps: Iterable[Step] = (), check_reuse: bool = False,
                  progress: Progress | None = None, snapshot: dict | None = None) -> tuple[Iterator[dict], Annotator]:
    def numbered() -> Iterator[tuple]:
        # Lines are what "\n" ends, as sed and strace count them; a lone "\r"
        # is part of a line.
        with open_text(path) as f:
            yield from enumerate(f, 1)

    return annotate_items(progress.passes(numbered) if progress else numbered, steps, check_reuse, snapshot)
