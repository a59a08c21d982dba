"""The model of the traced processes: what the log has shown so far.

Fd tables and epoll interest lists (per process, in `fds`), and the facts
about threads that roles are made of: which thread waits on which epoll fd,
which thread is handling a signal, who did file work, which processes have
accepted a client. Handlers write facts here; the role stage (`roles`) reads
them and nothing else.

`Knowledge` is what a first pass over a file learned, handed to the second
pass so that a thread's role, or a wakeup fd, is known from line 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tracing.changes import Dict, Set, Tracked
from tracing.fds import Processes


@dataclass
class Knowledge(Tracked):
    """Facts of a whole log (first pass), keyed so a second pass can use them early."""

    loops: set = field(default_factory=Set)  # tids that wait on an epoll fd
    pools: set = field(default_factory=Set)  # tids that wake a loop or work for one
    wakeup_births: dict = field(default_factory=Dict)  # (process, line that made the fd) -> who writes it
    waits_on: dict = field(default_factory=Dict)  # tid -> {epoll fd numbers it waited on}
    waited_epolls: set = field(default_factory=Set)  # (process, line that made the epoll fd)
    sigreturns: bool = False  # the log traces rt_sigreturn: a handler's end is visible
    complete: bool = False  # learned from the whole log (False: one pass, as it streams)


_NONE: frozenset = frozenset()


class LastCalls(dict):
    """tid -> the thread's last event. It changes with every line, so it does not count
    as a change; instead it says when it was read (`read`), and a verdict that read it
    is not kept for reuse."""

    __slots__ = ("read",)

    def __init__(self) -> None:
        super().__init__()
        self.read = False

    # The stall check's look at the call before: the annotator's, not a handler's.
    peek = dict.get

    def get(self, key, default=None):
        self.read = True
        return dict.get(self, key, default)

    def __getitem__(self, key):
        self.read = True
        return dict.__getitem__(self, key)

    def __contains__(self, key) -> bool:
        self.read = True
        return dict.__contains__(self, key)


class Model(Tracked):
    """Everything the log has shown, as the stream goes.

    Its containers count their changes (`changes`), all but `last`, which
    changes with every line: a verdict that reads it is never reused.
    """

    PER_LINE = ("last",)

    def __init__(self, prior: Knowledge | None = None) -> None:
        self.prior = prior or Knowledge()
        self.learned = Knowledge()
        self.procs = Processes()
        self.waited: set = Set()  # tids that have made an epoll wait in this pass
        self.last = LastCalls()  # tid -> last event (for "right after accept4", stalls)
        self.pending_clones: dict = Dict()  # parent tid -> flags of a clone not yet returned
        self.in_signal: dict = Dict()  # tid -> signal delivered and not yet returned from
        self.accepted: set = Set()  # processes that have accepted a connection
        self.loopless_said: set = Set()  # processes already told they have no loop
        self.unplaced: set = Set()  # threads first seen without a clone in the log, not yet said
        self.uring: dict = Dict()  # tid -> io_uring submissions seen inside its io_uring_enter (kernel tracer)
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

    # -- facts handlers report ------------------------------------------
    def saw_wait(self, tid, epfd: int | None) -> None:
        """`tid` waits (or starts waiting) on epoll fd `epfd`."""
        self.waited.add(tid)
        self.learned.loops.add(tid)
        self.in_signal.pop(tid, None)
        if epfd is not None:
            self.learned.waits_on.setdefault(tid, Set()).add(epfd)
            self.waits_on.setdefault(tid, Set()).add(epfd)
            self._waits(tid, epfd)
            fd = self.procs.table(tid).fds.get(epfd)
            if fd is not None and fd.born is not None:
                self.learned.waited_epolls.add((self.proc(tid), fd.born))

    def saw_pool_work(self, tid) -> None:
        self.learned.pools.add(tid)

    def saw_wakeup_fd(self, tid, by: str, *born: int | None) -> None:
        proc = self.proc(tid)
        for line in born:
            if line is not None:
                self.learned.wakeup_births[(proc, line)] = by

    def sigreturns_traced(self) -> bool:
        """Does this log show where signal handlers return?"""
        return self.prior.sigreturns or self.learned.sigreturns

    # -- questions roles ask --------------------------------------------
    def is_loop(self, tid) -> bool:
        return tid in self.waited or tid in self.prior.loops

    def loop_threads(self) -> set:
        return self.waited | self.prior.loops

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
        return self.prior.wakeup_births.get((self.proc(tid), line), "")

    def epoll_is_waited(self, tid, line: int | None) -> bool | None:
        """Does any thread ever wait on the epoll fd born at `line`? None: not known (one pass)."""
        if not self.prior.complete:
            return None
        return (self.proc(tid), line) in self.prior.waited_epolls
