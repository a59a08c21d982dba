"""What every handler shares: the call in context (`Ctx`: the event, the model, its
process's fd table, the evidence a note cites), the verdict it returns, and how a
note says where file or resolver work runs."""

from __future__ import annotations

import re
from functools import cached_property

from .. import fds as F
from .. import roles as R
from ..changes import List
from ..model import Model
from ...names import BLOCKING, OTHER_CAT, POOLED
from ...read.parse import Event, fd_arg, first_fd, split_args, to_int


# What a handler returns: (category, note, ready fds, evidence). A plain tuple:
# one is made per line, and a NamedTuple's constructor costs a call more.
Verdict = tuple[str, str, list, list]


_LEADING_FD = re.compile(r"\s*(\d{1,10})(?:[<,]|$)")
_THIS = object()  # Ctx.cite: the line is this call's own thread's


class Ctx:
    """What a handler needs: the event, the model, its process's fd table."""

    def __init__(self, m: Model, ev: Event) -> None:
        self.m, self.ev = m, ev
        self.table = m.procs.table(ev.tid)
        self.fds: list[F.Fd] = []
        self.category = OTHER_CAT  # what say() uses when not told
        self.ready: list = []
        self.evidence: list = []

    @cached_property
    def args(self) -> list[str]:
        # Split only when a handler asks: buffers make this the costly part.
        return split_args(self.ev.args)

    @property
    def ok(self) -> bool:
        return self.ev.errno is None and self.ev.ret not in (None, "?")

    @property
    def role(self) -> str:
        return R.thread_role(self.m, self.ev.tid)

    def arg_fd(self, i: int = 0) -> F.Fd | None:
        if i == 0 and "args" not in self.__dict__:
            # Known fds need only their number; the decoration matters for new ones.
            m = _LEADING_FD.match(self.ev.args)
            if m is not None:
                fd = self.table.fds.get(int(m.group(1)))
                if fd is not None and fd.role != F.UNKNOWN:
                    self.fds.append(fd)
                    return fd
            got = first_fd(self.ev.args)
        elif i >= len(self.args):
            return None
        else:
            got = fd_arg(self.args[i])
        if got is None or got[0] < 0:
            return None
        fd = self.table.get(*got, line=lambda: self.ev.line)
        self.fds.append(fd)
        return fd

    def ret_int(self) -> int | None:
        return to_int(self.ev.ret)

    def new_fd(self, num: int, role: str, detail: str = "", obj: tuple[str, str] = ("", "")) -> F.Fd:
        wakes = self.m.born_wakeup(self.ev.tid, self.ev.line)
        if wakes:
            role, detail = F.WAKEUP, detail or "self-pipe"
        fd = F.Fd(num, role, detail, born=self.ev.line, cloexec="CLOEXEC" in self.ev.args, wakes=wakes,
                  obj=obj[0], peer_obj=obj[1])
        self.table.open(fd)
        self.fds.append(fd)
        return fd

    def cite(self, claim: str, line: int | None, tid=_THIS) -> str:
        """Name a line (of thread `tid`, this call's own by default) as the evidence of
        `claim`; returns how the note names it."""
        if line is None:
            return "a line before this log"
        if tid is _THIS:
            tid = self.ev.tid
        cited = {"claim": claim, "line": line, "tid": tid}
        if cited not in self.evidence:
            self.evidence.append(cited)
        return f"line {line}" if tid is None or tid == self.ev.tid else f"line {line} (thread {tid})"

    def failed_note(self, what: str) -> str:
        if self.ev.errno is None:
            return f"{what}: no result seen"
        return f"{what} failed: {self.ev.errno} ({self.ev.ret_detail or ''})".replace(" ()", "")

    def say(self, text: str, category: str | None = None) -> Verdict:
        return (category or self.category, text, self.ready, self.evidence)


def tids(tids) -> str:
    """Thread ids for a note; strace to stderr prints no pid on the first process's lines."""
    return " ".join(str(t) if t is not None else "(the one whose lines have no pid)"
                    for t in sorted(tids, key=str))


def whom(c: Ctx, tids) -> str:
    """One thread by its role: "loop thread 12" only where it is a loop."""
    tid = next(iter(tids))
    return f"loop thread {tid}" if c.m.is_loop(tid) else f"thread {tid}"


SAID_SLEEP = 0.001  # seconds: a wait's sleep is said from a millisecond up


def slept_text(c: Ctx) -> str:
    d = c.ev.slept() if c.ev.__class__ is Watched else c.ev.duration
    return f", slept {d * 1000:.1f} ms" if d and d >= SAID_SLEEP else ""


# An event's fields that are its line's own, not part of the call a kept verdict is keyed on.
PER_LINE = frozenset({"line", "text", "ts", "duration", "resumed_line", "resumed_text", "source"})


class Watched:
    """The event as a handler sees it while its verdict may yet be kept: notes whether the
    handler read anything that is this line's own (a handler's time, a wait's "slept").
    The call's own fields are plain attributes; the line's own come through __getattr__.

    A wait's sleep is the exception: under SAID_SLEEP nothing is said of it, so a verdict
    that read only that it was short (`brief`) holds for every line of the call that slept
    as little (or has no -T), and is kept for those."""

    __slots__ = ("_ev", "per_line", "brief", "kind", "tid", "syscall", "args", "ret", "ret_detail", "errno",
                 "problem", "stack")

    def __init__(self, ev: Event) -> None:
        self._ev = ev
        self.per_line = self.brief = False
        self.kind, self.tid, self.syscall, self.args, self.ret = ev.kind, ev.tid, ev.syscall, ev.args, ev.ret
        self.ret_detail, self.errno, self.problem, self.stack = ev.ret_detail, ev.errno, ev.problem, ev.stack

    def __getattr__(self, name: str):
        if name in PER_LINE:
            self.per_line = True
        return getattr(self._ev, name)

    def slept(self) -> float | None:
        """The call's -T duration, read as a wait's sleep."""
        d = self._ev.duration
        if d is not None and d >= SAID_SLEEP:
            self.per_line = True
        else:
            self.brief = True
        return d


def where(c: Ctx, cat: str, lookup: str = "") -> str:
    """Where a file or resolver call runs, and what that means for the loop, with its evidence."""
    lead = f": {lookup}" if lookup else ""
    if cat == POOLED:
        role = c.m.prior.roles.get(c.ev.tid)
        why = (f" ({role.said})" if role is not None and role.said
               else " (taken as one: it works beside a loop; read as a stream, its hand-back comes later)")
        return f"{lead}{', ' if lead else ': '}on pool thread {c.ev.tid}{why}, so the loop is not blocked"
    if cat == BLOCKING:
        t = c.m.thread(c.ev.tid)
        wait = c.cite("blocks-loop", t.first_wait)
        served = c.cite("blocks-loop", *(R.serving(c.m, c.ev.tid) or (None, None)))
        if t.completions and not t.epoll:
            # A completion loop: it could have submitted this to the ring instead.
            return (f"{lead}{', ' if lead else ': '}BLOCKING the loop: this thread waits for completions (first at "
                    f"{wait}) and serves clients (since {served}); this call runs on it, not as an operation in "
                    "the ring, so no completion is reaped and no other client is served until it returns")
        return (f"{lead}{', ' if lead else ': '}BLOCKING the loop: this thread waits for readiness (first at "
                f"{wait}) and serves clients (since {served}); a regular file is always 'ready', so no other "
                "client is served until this returns")
    shared = shared_wait(c, cat) or unseen_clients(c, cat)
    return (lead + shared) if (lead or shared) else ""


def unseen_clients(c: Ctx, cat: str) -> str:
    """File work on a completion loop, under strace: its clients, if any, are accepted inside
    io_uring_enter, where strace does not look; say so rather than call it start-up."""
    t = c.m.thread(c.ev.tid)
    if (cat != OTHER_CAT or not t.completions or t.epoll or t.first_wait is None
            or R.serving(c.m, c.ev.tid) is not None or c.m.proc(c.ev.tid) in c.m.ring_procs):
        return ""
    return (": on the completion loop thread, between its waits (first at line "
            f"{t.first_wait}); whether it serves clients yet, strace cannot show (a ring's accepts happen "
            "inside io_uring_enter), so whether this keeps one waiting is not known")


def shared_wait(c: Ctx, cat: str) -> str:
    """File work on a thread that shares its epoll fd blocks that thread only."""
    if cat != OTHER_CAT or not c.m.is_loop(c.ev.tid) or R.serving(c.m, c.ev.tid) is None:
        return ""
    others = R.fellow_waiters(c.m, c.ev.tid)
    if not others:
        return ""
    eps = ", ".join(str(e) for e in sorted(c.m.epolls_of(c.ev.tid)))
    cited = [c.cite("keep-serving", c.m.thread(t).first_wait, t) for t in sorted(others, key=str)
             if c.m.thread(t).first_wait is not None]
    return (f": blocks thread {c.ev.tid} only; threads {tids(others)} wait on the same epoll {eps} "
            f"({', '.join(cited) or 'their waits'}) and keep serving")


def work(c: Ctx) -> str:
    """Category of file or resolver work; the work is kept so a hand-back can name it."""
    c.m.saw_work(c.ev.tid, c.ev.line)
    return R.work_category(c.m, c.ev.tid)


def loopless(c: Ctx) -> bool:
    """Known (from the whole log) to have no loop thread in this process."""
    return c.m.prior.complete and not R.process_has_loop(c.m, c.ev.tid)


def resolver_step(c: Ctx, what: str) -> str:
    """A step a name lookup makes; with an earlier step on this thread since its last wait,
    the claim "name lookup", citing it. Reading /etc/hosts alone is no lookup."""
    steps = c.m.resolver_steps.setdefault(c.ev.tid, List())
    earlier = next((s for s in steps if s[1] != what), None)
    if len(steps) < 8 and all(s[1] != what for s in steps):
        steps.append((c.ev.line, what))
    if earlier is None:
        return ""
    return f"a name lookup's step (after {earlier[1]} at {c.cite('name-lookup', earlier[0])})"
