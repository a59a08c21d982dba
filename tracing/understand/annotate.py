"""Events to annotated records: the pipeline's driver, and its one cache.

parse (lines to events) -> handlers (one verdict per call, facts into the
model) -> roles (read off the model) -> records (the JSON Lines schema).
Thread roles are known for sure only after a thread has shown what it does
(a `loop` waits on an epoll fd, a `pool` thread wakes a loop), so
`annotate_file` reads a file twice: the first pass learns the facts, the
second writes records that use them from line 1.

A server under load repeats itself. A call is decided once per call key
(`tracing.read.scan`: its thread and text without time or duration) and kept
as a `Call` while the model has not changed since (`changes`): a later line
with that key is not parsed, and its record is the kept one with this line's
number, time, duration and text. Renderers keep their own form of each Call
(`Call.forms`), so nothing else in the lab caches a verdict.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from itertools import chain, islice
from typing import Callable, Iterable, Iterator

from . import asyncio_reports, records
from .changes import Dict, List, Set, made as _made
from . import roles as R
from ..read.inputs import open_text
from .handlers import HANDLERS
from .handlers.context import SAID_SLEEP, Ctx, Watched
from .handlers.described import SLEEPS, described
from .handlers.process import exit_note
from .handlers.signals import signal_delivered
from .model import Knowledge, Model
from ..names import (BLOCKING, CLIENT, CLONES, DEVICE, LOOP, LOST_CALLS, OTHER_CAT, PIPE, POLL_WAITS, POOL, READS,
                           RING_RECORDS, SOCKET, STDIO, TEACHING, WAITS, WAKEUP, WRITES)
from ..read.parse import STACK, Event, Parser, Started, first_fd
from ..read import scan as S
from ..read.scan import BREAK, FULL, NUMBER_IP, PID, scan, split_prefix
from ..log import Progress
from .snapshot import apply as apply_snapshot

STALL = 0.05  # seconds a waiting thread may spend outside its waits and syscalls before we say so
# How many calls are kept, and of what size (a server's requests and answers; not a 64 KB buffer).
KEEP_CALLS = 4096
KEEP_BYTES = 2 << 20  # about, of their arguments, notes and ready lists: a wait's is long
KEEP_ARGS = 2048
ONCE_MOST = 1 << 16  # calls remembered as seen once, by hash
COPIES_MOST = 512  # copied lines handed on together


@dataclass
class Step:
    """One scenario request, as the recipe timed it (same clock as strace -ttt)."""

    label: str
    start: float
    end: float


class Call:
    """A call decided once, kept while the model stands where it stood (`count`).

    `verdict` is what its handler said; `rec`, for a call that is one plain
    line, its record without the line's own fields (number, time, duration,
    text, file, request), which a line with the same key copies. `forms` is
    where each renderer keeps its own template of the record."""

    __slots__ = ("count", "verdict", "rec", "tid", "waits", "brief", "forms")

    def __init__(self, count: int, verdict: tuple, rec: dict | None, tid, waits: bool, brief: bool = False) -> None:
        self.count, self.verdict, self.rec, self.tid, self.waits = count, verdict, rec, tid, waits
        self.brief = brief  # it holds only for lines that slept under SAID_SLEEP
        self.forms: dict = {}


class Annotator:
    def __init__(self, prior: Knowledge | None = None, steps: Iterable[Step] = (),
                 check_reuse: bool = False, snapshot: dict | None = None) -> None:
        self.model = Model(prior)
        apply_snapshot(self.model, snapshot)  # what `trace --pid` saw there at attach
        self.steps = sorted(steps, key=lambda s: s.start)
        self._summary = records.Summary()
        self._summary.roles = self.model.prior.roles
        self.calls: dict[tuple, Call] = {}  # call key -> the call, decided
        self.live: dict[tuple, tuple] = {}  # call key -> (call, tid, flags, forms): one plain line's call, kept now
        self.hits: Counter = Counter()  # call -> lines copied from it, not yet in the summary
        self.live_at = _made[0]
        self.kept_bytes = 0  # the arguments and notes of the calls kept
        self.once: set[int] = set()  # hashes of the keys of calls seen, not kept (yet)
        self.check_reuse = check_reuse  # tests: work out every verdict, and fail where a kept one would differ
        # The first pass wants the model, not the notes: a call that changed nothing is skipped
        # when it comes again, whatever of its line's own (times) its note read.
        self.learning = False
        self.reused = 0  # calls that took a kept verdict rather than their handler's
        self.checked = 0  # check mode: the lines whose copied record was compared with the handler's

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

    @property
    def summary(self) -> records.Summary:
        """The counts so far, with the lines copied from kept calls."""
        for call, n in self.hits.items():
            self._summary.add_copies(call.rec, n)
        self.hits.clear()
        return self._summary

    def thread_role(self, tid) -> str:
        return R.thread_role(self.model, tid)

    def step_at(self, ts) -> str | None:
        return records.step_at(self.steps, ts) if self.steps else None

    # -- the pipeline ----------------------------------------------------
    def stream(self, items: Iterable[tuple], stacks: bool = False,
               skip: Callable[[tuple], bool] | None = None) -> Iterator[dict | records.Copies]:
        """Numbered raw lines, `(line, text[, source])`, to records in log order; a run of
        lines that repeat kept calls comes as one `Copies`.

        A line whose key names a call kept at the model's present count
        (`live`) is not parsed: `copy_lines` takes it. Every other line goes
        through the parser and `feed`, so a copy sees the model as the line
        before left it. While the parser holds a line cut by other output, and
        in a log with strace -k's stacks (each call waits for the lines after
        it), every line is parsed. At a BREAK item (live mode: nothing more has
        come yet) the copies so far are handed on. A line `skip` says to pass over (the learning
        pass's lines that cannot teach) is not parsed either, and its key is
        remembered in `live` as one to pass over while the model stands still."""
        parser = Parser(stacks)
        push, feed = parser.push, self.feed
        items = iter(items)
        last = self.model.last
        window = None if self.learning else STALL
        check = self.check_reuse
        predicted = None  # check mode: the row a copy would have made of the line being parsed
        while True:
            if parser.held is None and not stacks and not check:
                rows = None if self.learning else records.Copies()
                item = S.copy_lines(items, self.live, last, last.at, window, rows, COPIES_MOST, SAID_SLEEP)
                if rows:
                    self._took(rows)
                    yield rows
                if item is FULL or item is BREAK:
                    continue
                if item is None:
                    break
                if skip is not None and skip(item):
                    self.live[scan(item[1])[0]] = False
                    continue
            else:
                item = next(items, None)
                if item is None:
                    break
                if item is BREAK:
                    continue
                if skip is not None and skip(item):
                    continue
                if check and parser.held is None and not stacks:
                    predicted = self._predict(item)
            for ev in push(item):
                rec = feed(ev)
                if predicted is not None and ev.line == predicted[1] and ev.__class__ is Event:
                    self._compare(predicted, rec)
                    predicted = None
                yield rec
        for ev in parser.end():
            yield feed(ev)

    def lines(self, items: Iterable[tuple], stacks: bool = False) -> Iterator[dict]:
        """`stream`, every record a dict."""
        for got in self.stream(items, stacks):
            if got.__class__ is records.Copies:
                yield from got.records()
            else:
                yield got

    def _took(self, rows: records.Copies) -> None:
        """What feed would have done with the copied lines besides the verdict: count them,
        name each one's scenario request."""
        self.hits.update([row[0] for row in rows])
        if len(self.hits) > KEEP_CALLS:
            self.summary  # folds them in: memory follows the calls kept, not the log
        self.reused += len(rows)
        if self.steps:
            rows[:] = [(*row[:6], records.step_at(self.steps, row[2]), row[7]) for row in rows]

    def _predict(self, item: tuple) -> tuple | None:
        """Check mode: the row a copy would make of this line, changing nothing."""
        rows: list = []
        last = self.model.last
        S.copy_lines(iter([item]), self.live, {}, dict(last.at), None if self.learning else STALL, rows, 1,
                     SAID_SLEEP)
        if not rows:
            return None
        if self.steps:
            rows[0] = (*rows[0][:6], records.step_at(self.steps, rows[0][2]), rows[0][7])
        return rows[0]

    def _compare(self, row: tuple, rec: dict) -> None:
        """Check mode: a copied record must be the one the handler gave."""
        self.checked += 1
        want = {k: v for k, v in rec.items() if k != "call"}
        got = {k: v for k, v in next(records.Copies([row]).records()).items() if k != "call"}
        if want != got:
            raise AssertionError(f"line {rec['line']}: a copied record would differ from the handler's: "
                                 f"{got!r} != {want!r}")

    def run(self, items: Iterable[Event | Started]) -> Iterator[dict]:
        """Records of parsed events (a caller that parses, or tests)."""
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
        call = None
        stall, idle = "", None
        if kind == "syscall":
            (category, note, ready, fds, thread, evidence), call = self.verdict(item)
            if m.writes_started and tid in m.writes_started:
                m.writes_started.pop(tid, None)
            # A stall is time after the previous call ended, so at most the time since it
            # began; only its `resumed>` line's time (which -r makes relative) can say more
            # (a resumed call's `at` is -inf). io_uring records are moments inside a call or on a
            # kernel thread: time next to one is not known to be outside a wait (their `at` is None).
            # `copy_lines` asks the same before it copies a line.
            at = m.last.at.get(tid)
            if (not self.learning and at is not None and item.ts is not None and item.ts - at >= STALL
                    and item.syscall not in RING_RECORDS
                    and (thread == LOOP or m.threads[tid].first_wait is not None)):
                stall, cited, idle = _stall(item, m.last.get_quietly(tid), thread == LOOP)
                if stall:
                    note += stall
                    evidence = [*evidence, *cited]
            held = self._held(item, thread, category, idle if stall else None) if not self.learning else None
            if held is not None:
                note += held[0]
                evidence = [*evidence, held[1]]
            if item.syscall in WRITES and asyncio_reports.is_report(item.args):
                note += self._report(item)
        else:
            ready, fds, category = [], [], OTHER_CAT
            if kind == "signal":
                category, note, _, _ = signal_delivered(Ctx(m, item))
            elif kind == "exit":
                note = exit_note(item)
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
                    self._summary.lost += int(lost.group(1))
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
        if call is not None and call.rec is not None and note is call.verdict[1]:
            rec["call"] = call  # the record is its call's: a renderer may use its form
        self._summary.add(rec)
        if _made[0] != self.live_at:  # the model changed: no kept call holds any more
            self.live.clear()
            self.live_at = _made[0]
        return rec

    def _report(self, item: Event) -> str:
        """asyncio's debug report of a slow callback: kept (the first pass's, for the stall it
        explains, which comes before it) and said in the write's own note."""
        got = asyncio_reports.parse(item.args)
        if got is None:
            return (" [asyncio's debug report of a slow callback, cut short by strace's -s before it says how "
                    "long the callback took]")
        took, what = got
        if self.learning and item.ts is not None:
            reports = self.model.learned.slow_reports.setdefault(item.tid, List())
            reports.append(asyncio_reports.Report(item.line, item.tid, item.ts, took, what))
        return f" [asyncio's debug report: {what} took {took * 1000:.0f} ms]"

    def _held(self, item: Event, thread: str, category: str, idle: float | None) -> tuple[str, dict] | None:
        """A loop thread's stall (a gap from `idle`, or a sleep of its own) that a report of
        asyncio's, written after it, covers (its callback ran through the stall): what held the loop,
        and that report's line."""
        if thread != LOOP or item.ts is None:
            return None
        start = idle
        if start is None and category == BLOCKING and item.duration is not None and item.duration >= STALL:
            start = item.ts
        reports = self.model.prior.slow_reports.get(item.tid) if start is not None else None
        if not reports:
            return None
        got = asyncio_reports.covering(reports, item.line, start)
        if got is None:
            return None
        ahead = (start - got.began) * 1000
        when = "as this stall began" if ahead < 1 else f"{ahead:.0f} ms before this stall began"
        return (f" [asyncio's debug report at line {got.line}: {got.what} took {got.took * 1000:.0f} ms; it "
                f"started {when} and ran until the report: that callback held the loop]",
                {"claim": "held-loop", "line": got.line, "tid": item.tid})

    def _writing(self, item: Started) -> None:
        """A write printed `<unfinished ...>`: if it goes to a wakeup fd, a wait may return
        before strace prints its end; the write's start is then that wait's evidence."""
        got = first_fd(item.args)
        if got is None:
            return
        fd = self.model.procs.table(item.tid).fds.get(got[0])
        if fd is not None and fd.role in _WAKEABLE:
            self.model.writes_started[item.tid] = (item.line, got[0])

    def verdict(self, item: Event) -> tuple[tuple, Call | None]:
        """A call's (category, note, ready list, fds, thread role, evidence), and its Call if kept.

        Worked out by the call's handler, or taken from the kept Call of its
        key while the model has not changed since (see `changes`). A verdict
        whose handler read the line's own number or times, or the call before
        it, or that changed the model, is not kept.
        """
        plain = item.resumed_line is None and item.problem is None and item.stack is None
        key = (scan(item.text)[0] if plain else
               (item.tid, item.syscall, item.args, item.ret, item.errno, item.ret_detail, item.problem))
        call = self.calls.get(key)
        if call is not None and call.brief and item.duration is not None and item.duration >= SAID_SLEEP:
            call = None  # kept for the call's short sleeps; this one says how long it slept
        if call is not None and call.count == _made[0] and not self.check_reuse:
            self.reused += 1
            return call.verdict, call
        before = _made[0]
        m = self.model
        seen_by_handler = Watched(item)
        m.last.read = False
        ctx = Ctx(m, seen_by_handler)
        handler = HANDLERS.get(item.syscall or "", described)
        category, note, ready, evidence = handler(ctx)
        if item.problem:
            note = (note + f" [{item.problem}]").strip()
        thread = R.thread_role(m, item.tid)
        got = (category, note, ready, [{"fd": f.num, "role": f.role, "detail": f.detail} for f in ctx.fds],
               thread, evidence)
        if call is not None and call.count == before:
            if _made[0] != before or call.verdict != got:
                raise AssertionError(f"line {item.line}: a kept verdict would differ from the handler's: "
                                     f"{call.verdict!r} != {got!r}, or the handler changed the model")
            return call.verdict, call  # check mode: the kept one, so records share it as before
        if (_made[0] != before or not self.learning and (seen_by_handler.per_line or m.last.read)
                or len(item.args) > KEEP_ARGS):
            return got, None
        if call is None and seen_by_handler.brief and not self._again(key):
            return got, None  # a wait: kept from its second line on
        # What copy_lines must know of it: 1, the stall check applies to it; 2, its time starts no
        # gap; 4, it holds only for lines that slept under SAID_SLEEP (the learning pass says nothing).
        ring = item.syscall in RING_RECORDS
        waits = (thread == LOOP or m.threads[item.tid].first_wait is not None) and not ring
        brief = seen_by_handler.brief and not self.learning
        flags = (1 if waits else 0) | (2 if ring else 0) | (4 if brief else 0)
        rec = None
        if plain and not self.learning:  # the learning pass copies lines, but makes no records
            rec = records.record(item, None, thread, got[3], ready, category, note, evidence)
            rec["line"] = rec["ts"] = rec["duration"] = rec["text"] = None
        call = Call(before, got, rec, item.tid, waits, brief)
        self._keep(key, call, len(item.args) + len(note) + 200 * len(ready))
        # A line copies it only where feed would do nothing but take the verdict: the thread
        # placed, not to be said unplaced, no write printed unfinished to end.
        if (plain and item.tid in m.procs.process_of and not m.writes_started
                and not (m.unplaced and item.tid in m.unplaced)):
            self.live[key] = (call, item.tid, flags, call.forms)
        return got, call

    def _again(self, key: tuple) -> bool:
        """Whether this call was seen before (by its key's hash). Under load a wait's ready list
        is often new (on a C server's 10 s under wrk, 11,983 distinct waits in 43,752), and
        keeping each costs a record and each renderer's form, never used, and memory."""
        h = hash(key)
        if h in self.once:
            return True
        if len(self.once) >= ONCE_MOST:
            self.once.clear()
        self.once.add(h)
        return False

    def _keep(self, key: tuple, call: Call, size: int) -> None:
        """Keep a call; past KEEP_CALLS of them or KEEP_BYTES of their text, start again
        (a server's working set is a few hundred calls; what goes is decided again)."""
        self.kept_bytes += size
        if key not in self.calls and (len(self.calls) >= KEEP_CALLS or self.kept_bytes > KEEP_BYTES):
            self.calls.clear()
            self.live.clear()
            self.kept_bytes = size
        self.calls[key] = call


def _stall(item: Event, prev: Event, loop: bool) -> tuple[str, list, float | None]:
    """A waiting thread's time between two calls, outside any wait, from what the log
    shows, the evidence (the previous call's line), and when the idle time began. A loop
    thread serves nobody then.

    The previous call's end is its start plus its -T duration, or the time on
    its `resumed>` line. Without either, a wait may have slept all that time,
    so nothing is said; another call's own time is named as unknown.
    """
    if prev.duration is not None:
        end, known = prev.ts + prev.duration, True
    elif prev.resumed_text is not None and (resumed := split_prefix(prev.resumed_text)[1]) is not None:
        end, known = resumed, True
    elif prev.syscall in WAITS or prev.syscall in POLL_WAITS or prev.kind != "syscall":
        return "", [], None
    else:
        end, known = prev.ts, False
    idle = item.ts - end
    if idle < STALL:
        return "", [], None
    who = "the loop thread" if loop else "this thread, which waits for readiness elsewhere,"
    # Outside epoll and making no call: the thread is busy in Python or C
    # (time.sleep, a CPU loop); a loop's other clients all wait.
    busy = "blocked or computing, serving nobody" if loop else "blocked or computing between its waits"
    cited = [{"claim": "serving-nobody", "line": prev.line, "tid": prev.tid}] if loop else []
    if known:
        return (f" [before this {who} made no traced call for {idle * 1000:.0f} ms after line "
                f"{prev.line} ended, outside any wait: it was {busy}]"), cited, end
    return (f" [{idle * 1000:.0f} ms passed since {who} started {prev.syscall} (line {prev.line}), "
            "outside any wait; this log has no -T, so how much of it that call took is not shown: "
            f"in it or after it, it was {busy}]"), cited, end


# A call line's thread, name and (for a plain `name(fd` start) first fd, in one
# match: what the first pass needs to skip most lines unparsed.
_TEACH = re.compile(PID + r"? *(?:[\d:.]+ +)?" + NUMBER_IP + r"(?:<\.\.\. )?([a-z_][a-z0-9_]*)(?:\((\d{1,10})[<,]|[( ])")
_PLAIN = {CLIENT, STDIO, DEVICE}
_WAKEABLE = frozenset({WAKEUP, PIPE, SOCKET})
# What else the first pass must see: waits (loops, and which write a wait took), file
# opens (work a pool thread hands back), the kernel tracer's own records.
_LEARNING = TEACHING | WAITS | POLL_WAITS | SLEEPS | {"open", "openat", "io_uring_enter", "io_uring_sqe",
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

    def skip(item: tuple) -> bool:
        """A line that cannot teach: a call that changes no role or link, or the plain I/O
        of a client, device or stdio. asyncio's report of a slow callback (a write, to stderr
        say) always teaches: the stall before it is tied to it."""
        seen = _TEACH.match(item[1])
        if seen is None:
            return False
        if "Executing <" in item[1]:
            return False
        name = seen.group(3)
        if name in WRITES or name in READS:
            return _plain_io(m, *seen.group(1, 2, 4))
        return name not in _LEARNING

    for _ in ann.stream(items, skip=skip):
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
                   check_reuse: bool = False, snapshot: dict | None = None,
                   copies: bool = False) -> tuple[Iterator, Annotator]:
    """Two passes over an input that can be opened twice: learn roles, then stream records
    (with `copies`, runs of repeated lines as `Copies`, for renderers: see `stream`)."""
    prior = learn(open_items, snapshot)
    ann = Annotator(prior, steps, check_reuse, snapshot)
    items, stacks = with_stacks_known(open_items())
    return (ann.stream if copies else ann.lines)(items, stacks), ann


def with_stacks_known(items: Iterable[tuple], first: int = 200) -> tuple[Iterator[tuple], bool]:
    """The items again, and whether the log was made with strace -k (a stack after each call,
    from its first lines): its calls are parsed one line late, each waiting for its stack."""
    items = iter(items)
    head = list(islice(items, first))
    return chain(head, items), any(item[1].startswith(STACK) for item in head)


def annotate_file(path: str, steps: Iterable[Step] = (), check_reuse: bool = False,
                  progress: Progress | None = None, snapshot: dict | None = None,
                  copies: bool = False) -> tuple[Iterator, Annotator]:
    def numbered() -> Iterator[tuple]:
        # Lines are what "\n" ends, as sed and strace count them; a lone "\r"
        # is part of a line.
        with open_text(path) as f:
            yield from enumerate(f, 1)

    return annotate_items(progress.passes(numbered) if progress else numbered, steps, check_reuse, snapshot,
                          copies)
