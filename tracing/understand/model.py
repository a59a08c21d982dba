"""The model of the traced processes: what the log has shown so far.

Fd tables and epoll interest lists (per process, in `fds`), and the facts
about threads that roles are made of: which thread waits on which epoll fd,
which thread is handling a signal, who did work and handed it back, which
write filled the fd a wait returned. Handlers write facts here; the role
stage (`roles`) reads them and nothing else.

`Knowledge` is what a first pass over a file learned, handed to the second
pass so that a thread's role, or the wait a write woke, is known from line 1.
Every fact is kept with the line that shows it: that line is the evidence a
note names (see `claims`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from .changes import Dict, List, Set, Tracked
from .fds import Fd, Processes
from ..names import RING_RECORDS
from ..read.parse import Event, parse_line


@dataclass
class Thread(Tracked):
    """What one thread did, as far as roles go; each fact with its line."""

    first_wait: int | None = None  # its first wait for readiness
    watched: int = 0  # the most fds one of its waits watched (an epoll's interest list, a poll set)
    ready: set = field(default_factory=Set)  # fds its waits reported ready (by number)
    notified: set = field(default_factory=Set)  # of them, the wakeup fds (eventfds, self-pipes)
    timer: int | None = None  # the first of its waits that returned because its timeout expired
    epoll: bool = False  # it waits on an epoll instance (a set it registers fds in)
    jobs: int = 0  # work other threads handed back to its waits (counted to 2: "several")
    completions: int = 0  # its waits for io_uring completions (counted to 2: a completion loop)
    accepts: bool = False  # it accepts connections on a listening socket
    dispatches: bool = False  # and after one, hands work to another thread or process (clone, wakeup, SCM_RIGHTS)
    epolls: tuple = ()  # the first few epoll fds (their birth lines) its waits were on
    epoll_waits: int = 0  # its first few epoll waits (counted to 3)
    work: int | None = None  # its first call of file or resolver work since its last hand-back
    handbacks: list = field(default_factory=List)  # (write line, first work line) of its hand-backs
    made_by: int | None = None  # the thread that started it
    made_at: int | None = None  # and the line
    # The kernel tracer's io_uring records: the first completion of an operation it submitted;
    # for an io-wq worker, the first operation it ran: (completion line, submission line,
    # submitting thread, opcode, the worker's name).
    ring_done: int | None = None
    ring_worker: tuple | None = None


@dataclass
class Role(Tracked):
    """A thread's role, why, and the lines that show it."""

    role: str
    why: str
    evidence: tuple = ()
    said: str = ""  # how a note names it, in a few words


@dataclass
class Knowledge(Tracked):
    """Facts of a whole log (first pass), keyed so a second pass can use them early."""

    loops: set = field(default_factory=Set)  # tids that wait on an epoll fd
    pools: set = field(default_factory=Set)  # tids that hand work back to a loop
    roles: dict = field(default_factory=Dict)  # tid -> Role, decided over the whole log
    wakeup_births: dict = field(default_factory=Dict)  # (process, line that made the fd) -> who writes it
    waits_on: dict = field(default_factory=Dict)  # tid -> {epoll fd numbers it waited on}
    waited_epolls: set = field(default_factory=Set)  # (process, line that made the epoll fd)
    woke: dict = field(default_factory=Dict)  # write line -> (wait line, waiting tid) that returned its fd
    # wait line -> the write that filled the fd it returned, where the log prints the write
    # later (a merge of -ff files orders lines by their start): (line, tid, signal, delivered, work)
    woken_by: dict = field(default_factory=Dict)
    first_waits: dict = field(default_factory=Dict)  # (process, epoll fd's line) -> (first wait line, tid)
    writable_at: dict = field(default_factory=Dict)  # (process, line that made a socket) -> first EPOLLOUT wait line
    seeds: dict = field(default_factory=Dict)  # tid -> {fd: (decoration, line)}: its process's fds made before the log
    registered_late: dict = field(default_factory=Dict)  # reader key -> line of the wait that returned it unregistered
    seed_roles: dict = field(default_factory=Dict)  # (process, fd, line first seen) -> role the log showed later
    joins: dict = field(default_factory=Dict)  # tid never seen made -> the thread whose process it shares fds with
    threads: dict = field(default_factory=Dict)  # tid -> Thread
    slow_reports: dict = field(default_factory=Dict)  # tid -> [asyncio_reports.Report] the loop thread wrote
    sigreturns: bool = False  # the log traces rt_sigreturn: a handler's end is visible
    missed: bool = False  # something the fds seen before the log may explain: data no fd names, a lone pipe end
    complete: bool = False  # learned from the whole log (False: one pass, as it streams)


_NONE: frozenset = frozenset()


class LastCalls(dict):
    """tid -> the thread's last event. It changes with every line, so it does not count
    as a change; instead it says when it was read (`read`), and a verdict that read it
    is not kept for reuse.

    A line the annotator copied from a kept call is stored as it came, its item `(line,
    text[, source])` (tracing.read.scan.copy_lines), and parsed only if someone asks for it. `at` keeps each last
    call's time for the stall check (-inf after a resumed call: its own time is not the
    start of the gap; None where the log has no times, or after an io_uring record)."""

    __slots__ = ("read", "at")

    def __init__(self) -> None:
        super().__init__()
        self.read = False
        self.at: dict = {}

    def __setitem__(self, tid, ev: Event) -> None:
        dict.__setitem__(self, tid, ev)
        self.at[tid] = (None if ev.ts is None or ev.syscall in RING_RECORDS
                        else -math.inf if ev.resumed_text is not None else ev.ts)

    def pop(self, tid, *default):
        self.at.pop(tid, None)
        return dict.pop(self, tid, *default)

    def get_quietly(self, tid):
        """The stall check's look at the call before: the annotator's, not a handler's."""
        got = dict.get(self, tid)
        return _parsed(self, tid, got) if got.__class__ is tuple else got

    def get(self, key, default=None):
        self.read = True
        got = dict.get(self, key, default)
        return _parsed(self, key, got) if got.__class__ is tuple else got

    def __getitem__(self, key):
        self.read = True
        got = dict.__getitem__(self, key)
        return _parsed(self, key, got) if got.__class__ is tuple else got

    def __contains__(self, key) -> bool:
        self.read = True
        return dict.__contains__(self, key)

    def items(self):
        self.read = True
        return [(tid, _parsed(self, tid, got) if got.__class__ is tuple else got)
                for tid, got in dict.items(self)]


def _parsed(last: LastCalls, tid, stored: tuple) -> Event:
    ev = parse_line(stored[0], stored[1].rstrip("\n"))
    ev.source = stored[2] if len(stored) > 2 else None
    dict.__setitem__(last, tid, ev)
    return ev


class Model(Tracked):
    """Everything the log has shown, as the stream goes.

    Its containers count their changes (`changes`), all but `last`, which
    changes with every line: a verdict that reads it is never reused.
    """

    PER_LINE = ("last",)

    def __init__(self, prior: Knowledge | None = None) -> None:
        self.prior = prior or Knowledge()
        self.learned = Knowledge()
        self.procs = Processes(self.prior.seeds, self.prior.seed_roles)
        self.waited: set = Set()  # tids that have made an epoll wait in this pass
        self.last = LastCalls()  # tid -> last event (for "right after accept4", stalls)
        self.pending_clones: dict = Dict()  # parent tid -> (flags, line) of a clone not yet returned
        self.in_signal: dict = Dict()  # tid -> (signal, time, line) delivered and not yet returned from
        self.accepted: dict = Dict()  # process -> (line, tid) of its first accepted (or received) client
        self.loopless_said: set = Set()  # processes already told they have no loop
        self.unplaced: set = Set()  # threads first seen without a clone in the log, not yet said
        self.uring: dict = Dict()  # tid -> io_uring submissions and completions seen since its last io_uring_enter
        # (kernel tracer): ("sub" or "done", text, time)
        self.ring: dict = Dict()  # user_data -> io_uring operations in flight: [(line, tid, process, opcode, fd, punted)]
        self.ring_procs: set = Set()  # processes whose io_uring submissions the log shows (the kernel tracer's)
        self.libuv: dict = Dict()  # process -> line that loaded libuv's code (uvloop's .so, libuv.so, node)
        # Writes that may wake a wait, not yet seen returned by one: reader key -> [(line, tid, signal)]
        self.filled: dict = Dict()
        self.ready_at: dict = Dict()  # reader key -> line of the last wait that returned it
        self.closed: dict = Dict()  # object -> (line, tid) of the last close of an fd naming it
        self.unexplained: dict = Dict()  # reader key -> (wait line, tid, start, end): returned, no write seen yet
        self.last_fill: dict = Dict()  # reader key -> the write a wait last took as its evidence
        self.lost: tuple | None = None  # (line, count) of the last place the tracer lost calls
        self.writes_started: dict = Dict()  # tid -> (line, fd) of a write to a wakeup fd printed <unfinished ...>
        self.taken: set = Set()  # lines of such writes a wait already took as its evidence
        self.resolver_steps: dict = Dict()  # tid -> [(line, what)]: name-lookup steps since its last wait
        self.passed: dict = Dict()  # -yy text of an fd sent with SCM_RIGHTS -> (role, detail, line, tid)
        self.listening_ports: set = Set()  # ports some traced process listens on
        self.threads: dict = Dict()  # tid -> Thread (this pass)
        # Who waits on what, from the first pass and this one: tid -> epoll
        # fds, and epoll fd -> tids (any process; filtered when asked).
        self.waits_on: dict = Dict({tid: Set(eps) for tid, eps in self.prior.waits_on.items()})
        self.by_epoll: dict = Dict()
        self.shared: set = Set()  # epoll fds more than one thread waits on
        for tid, eps in self.waits_on.items():
            for ep in eps:
                self._waits(tid, ep)

    def _waits(self, tid, ep: int) -> None:
        waiting = self.by_epoll.setdefault(ep, Set())
        waiting.add(tid)
        if len(waiting) > 1:
            self.shared.add(ep)

    def proc(self, tid) -> int | None:
        return self.procs.process_of.get(tid, tid)

    def thread(self, tid) -> Thread:
        got = self.threads.get(tid)
        if got is None:
            got = self.threads[tid] = Thread()
        return got

    # -- facts handlers report ------------------------------------------
    def saw_wait(self, tid, epfd: int | None, line: int | Callable[[], int] | None = None) -> None:
        """`tid` waits (or starts waiting) on epoll fd `epfd`. `line` may be a function that
        gives it: read only where it is kept, so a wait that changes nothing reads no line."""
        self.waited.add(tid)
        self.learned.loops.add(tid)
        self.in_signal.pop(tid, None)
        self.resolver_steps.pop(tid, None)
        t = self.thread(tid)
        if t.first_wait is None and line is not None:
            t.first_wait = line = line() if callable(line) else line
        if epfd is not None:
            if not t.epoll:
                t.epoll = True
            if t.epoll_waits < 3:
                t.epoll_waits += 1
                born = self.procs.table(tid).fds.get(epfd)
                key = born.born if born is not None and born.born is not None else epfd
                if key not in t.epolls:
                    t.epolls = (*t.epolls, key)
            self.learned.waits_on.setdefault(tid, Set()).add(epfd)
            self.waits_on.setdefault(tid, Set()).add(epfd)
            self._waits(tid, epfd)
            table = self.procs.table(tid)
            n = len(table.interest.get(epfd, ()))
            if n > t.watched:
                t.watched = n
            fd = table.fds.get(epfd)
            if fd is not None and fd.born is not None:
                key = (self.proc(tid), fd.born)
                self.learned.waited_epolls.add(key)
                if line is not None and key not in self.learned.first_waits:
                    self.learned.first_waits[key] = (line() if callable(line) else line, tid)

    def saw_poll(self, tid, watched: int, line: int) -> None:
        """`tid` waits in poll or select on `watched` fds: a loop's wait if it watches several."""
        self.in_signal.pop(tid, None)
        self.resolver_steps.pop(tid, None)
        t = self.thread(tid)
        if t.first_wait is None:
            t.first_wait = line
        if watched > t.watched:
            t.watched = watched
        if watched >= 2:
            self.waited.add(tid)
            self.learned.loops.add(tid)

    def saw_completion_wait(self, tid, line: int) -> None:
        """`tid` waits in io_uring_enter for completions (IORING_ENTER_GETEVENTS)."""
        self.in_signal.pop(tid, None)
        self.resolver_steps.pop(tid, None)
        t = self.thread(tid)
        if t.first_wait is None:
            t.first_wait = line
        if t.completions < 2:
            t.completions += 1
            if t.completions == 2:
                self.waited.add(tid)
                self.learned.loops.add(tid)

    def accepting(self, tid) -> None:
        t = self.thread(tid)
        if not t.accepts:
            t.accepts = True

    def hands_off(self, tid) -> None:
        """`tid` starts a thread or process, wakes another thread or passes an fd: after an
        accept, the connection is served elsewhere (an acceptor dispatching it)."""
        t = self.thread(tid)
        if t.accepts and not t.dispatches:
            t.dispatches = True

    def made(self, tid, parent, line: int) -> None:
        """Thread or process `tid` was started by `parent` at `line`."""
        t = self.thread(tid)
        if t.made_by is None:
            t.made_by, t.made_at = parent, line

    def connected(self, tid, fd: Fd, line: int) -> None:
        """A wait at `line` reports a non-blocking connect's socket writable: it is up."""
        key = (self.proc(tid), fd.born)
        if key not in self.learned.writable_at:
            self.learned.writable_at[key] = (line, tid)
        fd.connecting = None

    def registered_unseen(self, tid, fd: Fd, line: int) -> None:
        """A wait returned `fd` though no epoll_ctl in the log registered it."""
        key = self.reader_key(tid, fd)
        if key not in self.learned.registered_late:
            self.learned.registered_late[key] = (line, tid)

    def timed_out(self, tid, line: int) -> None:
        """A wait of `tid` returned at its timeout: a timer it serves."""
        t = self.thread(tid)
        if t.timer is None:
            t.timer = line

    def saw_ready(self, tid, fds: list[Fd]) -> None:
        t = self.thread(tid)
        for fd in fds:
            t.ready.add(fd.num)
            if fd.role == "wakeup":
                t.notified.add(fd.num)

    def saw_work(self, tid, line: int) -> None:
        """File or resolver work: a pool thread's job, or the loop blocking. Work before
        any thread of the process has waited is start-up, no job a loop handed out."""
        t = self.thread(tid)
        if t.work is None and (tid in self.waited or self._proc_waited(tid)):
            t.work = line

    def _proc_waited(self, tid) -> bool:
        proc = self.proc(tid)
        return any(self.proc(w) == proc for w in self.waited)

    def saw_pool_work(self, tid) -> None:
        self.learned.pools.add(tid)

    def ends_job(self, tid) -> int | None:
        """`tid` wrote an fd a wait may return: what it did since its last such write is one
        job, handed back if a loop's wait takes the write (`returned`). Returns the job's first line."""
        t = self.thread(tid)
        work = t.work
        if work is not None:
            t.work = None
        self.resolver_steps.pop(tid, None)
        return work

    def saw_wakeup_fd(self, tid, by: tuple, *born: int | None) -> None:
        """The fds born at `born` lines are written to wake a wait: `by` = (who, line, tid)
        of the first such write ("thread" or "signal")."""
        proc = self.proc(tid)
        for line in born:
            if line is not None and (proc, line) not in self.learned.wakeup_births:
                self.learned.wakeup_births[(proc, line)] = by

    def sigreturns_traced(self) -> bool:
        """Does this log show where signal handlers return?"""
        return self.prior.sigreturns or self.learned.sigreturns

    # -- wakeups: which write filled the fd a wait returned ---------------
    def reader_key(self, tid, fd: Fd) -> tuple:
        return fd.object(self.proc(tid))

    def closed_fd(self, tid, fd: Fd, line: int) -> None:
        key = fd.object(self.proc(tid))
        if key[0] == "made":
            self.closed[key] = (line, tid)

    def filled_by(self, tid, reader: tuple, line: int, signal: str = "", delivered: int | None = None,
                  work: int | None = None, ts: float | None = None) -> None:
        """A write (its first line) that makes the object `reader` readable, with the work its
        thread did before it (a hand-back, if a loop's wait takes it)."""
        if line in self.taken:  # its start was already taken by the wait it woke
            self.taken.discard(line)
            return
        waiting = self.unexplained.get(reader)
        if waiting is not None and ts is not None and waiting[2] <= ts <= waiting[3]:
            # A wait printed before this write returned while it was being written: its evidence.
            self.unexplained.pop(reader)
            wait, waiter = waiting[0], waiting[1]
            self.learned.woke.setdefault(line, (wait, waiter))
            self.learned.woken_by.setdefault(wait, (line, tid, signal, delivered, work))
            if waiter != tid and not signal and work is not None and self.proc(waiter) == self.proc(tid):
                self.handed_back(tid, line, work)
                w = self.thread(waiter)
                if w.jobs < 2:
                    w.jobs += 1
            return
        got = self.filled.setdefault(reader, List())
        if all(w[0] != line for w in got) and len(got) < 16:
            got.append((line, tid, signal, delivered, work))

    def returned(self, tid, fd: Fd, line: int, span: tuple | None = None) -> tuple[list, int | None]:
        """A wait at `line` returned `fd` ready: the writes that filled it since a wait last
        returned it (taken: each is evidence once), and the line of that last wait.

        A write still in progress counts (strace printed its start, `<unfinished ...>`,
        before the wait's result): the write began, then the wait returned. A write by
        another thread of this process, after work and outside a signal handler, hands
        that work back: the writer is a pool thread."""
        key = self.reader_key(tid, fd)
        writes = list(self.filled.pop(key, None) or [])
        proc = self.proc(tid)
        for writer, (start, num) in list(self.writes_started.items()):
            if self.proc(writer) == proc and num in (fd.num, fd.peer) and all(w[0] != start for w in writes):
                sig = self.in_signal.get(writer)
                writes.append((start, writer, sig[0] if sig else "", sig[2] if sig else None,
                               self.thread(writer).work))
                self.taken.add(start)
        writes.sort()
        if not writes and span is not None:
            self.unexplained[key] = (line, tid, *span)
        elif key in self.unexplained:
            self.unexplained.pop(key)
        before = self.ready_at.get(key)
        self.ready_at[key] = line
        if writes:
            self.last_fill[key] = writes[0]
        for start, writer, sig, _, work in writes:
            if start not in self.learned.woke:
                self.learned.woke[start] = (line, tid)
            if writer != tid and not sig and work is not None and self.proc(writer) == proc:
                self.handed_back(writer, start, work)
                waiter = self.thread(tid)
                if waiter.jobs < 2:
                    waiter.jobs += 1
        return writes, before

    def handed_back(self, tid, line: int, work: int) -> None:
        t = self.thread(tid)
        self.learned.pools.add(tid)
        if len(t.handbacks) < 8 and all(h[0] != line for h in t.handbacks):
            t.handbacks.append((line, work))

    # -- questions roles ask --------------------------------------------
    def is_loop(self, tid) -> bool:
        """A loop by the whole log's behaviour (roles.decide), or, read as a stream, a
        thread that has waited on an epoll fd (or on several fds)."""
        if self.prior.complete:
            return tid in self.prior.loops
        return tid in self.waited

    def loop_threads(self) -> set:
        return self.prior.loops if self.prior.complete else self.waited

    def epolls_of(self, tid) -> set:
        """The epoll fds `tid` waits on (this pass, or the whole log if known)."""
        return self.waits_on.get(tid, _NONE)

    def waiters(self, tid, epfd: int) -> set:
        """Threads of `tid`'s process that wait on epoll fd `epfd`."""
        proc = self.proc(tid)
        return {t for t in self.by_epoll.get(epfd, ()) if self.proc(t) == proc}

    def born_wakeup(self, tid, line: int | None) -> str:
        """Who writes the fd born at `line` to wake a wait ("" if nobody does)."""
        if not self.prior.wakeup_births:
            return ""
        got = self.prior.wakeup_births.get((self.proc(tid), line))
        return got[0] if got else ""

    def epoll_is_waited(self, tid, line: int | None) -> bool | None:
        """Does any thread ever wait on the epoll fd born at `line`? None: not known (one pass)."""
        if not self.prior.complete:
            return None
        return (self.proc(tid), line) in self.prior.waited_epolls
