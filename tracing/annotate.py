"""Events to annotated records: thread roles, fd roles, categories and notes.

A record is a plain dict (the JSON Lines schema of the lab). The annotator
keeps state per live fd and per thread only. Thread roles are known for sure
only after a thread has shown what it does (a `loop` waits on an epoll fd, a
`pool` thread wakes a loop), so `annotate_file` reads a file twice: the first
pass learns the roles, the second writes records that use them from line 1.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Iterable, Iterator

from tracing import fds as F
from tracing.parse import (Event, Started, epoll_items, fd_arg, first_fd,
                           numbered_events, peek, quoted, split_args)

LOOP, POOL, OTHER = "loop", "pool", "other"
POLLABLE, POOLED, BLOCKING, WAKEUP_CAT, OTHER_CAT = (
    "pollable", "thread-pooled", "blocking", "wakeup", "other")

WAITS = {"epoll_wait", "epoll_pwait", "epoll_pwait2"}
STALL = 0.05  # seconds a loop thread may spend outside epoll and syscalls before we say so
READS = {"read", "readv", "pread64", "preadv", "preadv2", "recvfrom", "recvmsg", "recv"}
WRITES = {"write", "writev", "pwrite64", "pwritev", "pwritev2", "sendto", "sendmsg", "send"}
CLONES = {"clone", "clone3", "fork", "vfork"}
POLLABLE_ROLES = {F.LISTENING, F.CLIENT, F.WAKEUP, F.PIPE, F.SOCKET, F.TIMER,
                  F.SIGNAL, F.EPOLL, F.IO_URING, F.PIDFD}


@dataclass
class Knowledge:
    """What a first pass learned, so the second can say it from the start."""

    loops: set = field(default_factory=set)
    pools: set = field(default_factory=set)
    wakeup_births: set = field(default_factory=set)  # (process, line that made the fd)


@dataclass
class Step:
    """One scenario request, as the recipe timed it (same clock as strace -ttt)."""

    label: str
    start: float
    end: float


class Annotator:
    def __init__(self, prior: Knowledge | None = None, steps: Iterable[Step] = ()) -> None:
        self.prior = prior or Knowledge()
        self.learned = Knowledge()
        self.procs = F.Processes()
        self.waited: set = set()  # tids that have made an epoll wait
        self.last: dict = {}  # tid -> last event (for "right after accept4")
        self.pending_clones: dict = {}  # parent tid -> flags of a clone not yet returned
        self.in_signal: set = set()  # tids handling a signal since their last wait
        self.accepted: set = set()  # processes that have accepted a connection
        self.steps = sorted(steps, key=lambda s: s.start)
        self.summary = Summary()

    # -- roles --------------------------------------------------------
    def thread_role(self, tid) -> str:
        if tid in self.prior.loops or tid in self.waited:
            return LOOP
        if tid in self.prior.pools or tid in self.learned.pools:
            return POOL
        return OTHER

    def process_has_loop(self, tid) -> bool:
        proc = self.procs.process_of.get(tid, tid)
        return any(self.procs.process_of.get(t, t) == proc
                   for t in (self.prior.loops | self.waited))

    def work_category(self, tid) -> str:
        """Category of non-pollable work (files, resolver) done by `tid`."""
        role = self.thread_role(tid)
        if role == LOOP:
            # Before the first accepted connection the loop is still starting
            # up (imports, config): slow, but no client is kept waiting yet.
            return BLOCKING if tid in self.waited and self.serving(tid) else OTHER_CAT
        if role == POOL or self.process_has_loop(tid):
            # Blocking work beside a loop is work done for it: this thread is
            # in its pool even if another pool thread did the wakeup (uvloop
            # skips the eventfd write when a wakeup is already pending).
            self.learned.pools.add(tid)
            return POOLED
        return OTHER_CAT

    def serving(self, tid) -> bool:
        return self.procs.process_of.get(tid, tid) in self.accepted

    def step_at(self, ts) -> str | None:
        if ts is None:
            return None
        for step in self.steps:
            if step.start <= ts <= step.end:
                return step.label
        return None

    # -- stream -------------------------------------------------------
    def run(self, items: Iterable[Event | Started]) -> Iterator[dict]:
        for item in items:
            yield self.feed(item)

    def feed(self, item: Event | Started) -> dict:
        if item.tid not in self.procs.process_of and self.pending_clones:
            # A new thread's first call can be printed before clone returns.
            parent, flags = next(iter(self.pending_clones.items()))
            self.procs.cloned(parent, item.tid, flags)
        if isinstance(item, Started):
            if item.syscall in CLONES:
                self.pending_clones[item.tid] = item.args
            return {"kind": "started", "line": item.line, "text": item.text, "tid": item.tid,
                    "ts": item.ts, "syscall": item.syscall, "thread": self.thread_role(item.tid),
                    "request": self.step_at(item.ts), "source": item.source}
        rec = {
            "line": item.line, "resumed_line": item.resumed_line, "tid": item.tid,
            "kind": item.kind, "syscall": item.syscall, "args": item.args, "ret": item.ret,
            "errno": item.errno, "duration": item.duration, "ts": item.ts,
            "thread": OTHER, "fds": [], "ready": [], "category": OTHER_CAT, "note": "",
            "request": self.step_at(item.ts),
            "text": item.text, "resumed_text": item.resumed_text, "source": item.source,
        }
        table = self.procs.table(item.tid)
        ctx = Ctx(self, item, table, rec)
        if item.kind == "syscall":
            handler = HANDLERS.get(item.syscall or "", _generic)
            handler(ctx)
            if item.problem:
                rec["note"] = (rec["note"] + f" [{item.problem}]").strip()
        elif item.kind == "signal":
            _signal(ctx)
        elif item.kind == "exit":
            rec["note"] = _exit_note(item)
            self.pending_clones.pop(item.tid, None)
            # Forget the thread's state: memory follows live threads, not the log.
            self.last.pop(item.tid, None)
            by = re.match(r"superseded by execve in pid (\d+)", item.args or "")
            if by:
                self.procs.superseded(item.tid, int(by.group(1)))
            else:
                self.procs.exited(item.tid)
        elif item.kind == "strace":
            rec["note"] = "strace's own message"
        else:
            rec["note"] = f"not understood, kept verbatim ({item.problem})"
        rec["thread"] = self.thread_role(item.tid)
        if item.kind == "syscall":
            rec["fds"] = [{"fd": f.num, "role": f.role, "detail": f.detail} for f in ctx.fds]
        prev = self.last.get(item.tid)
        if (rec["thread"] == LOOP and item.ts is not None and prev is not None and prev.ts is not None
                and item.kind == "syscall"):
            idle = item.ts - (prev.ts + (prev.duration or 0.0))
            if idle >= STALL:
                # Outside epoll and making no call: the loop is busy in Python or C
                # (time.sleep, a CPU loop), and every other client waits.
                rec["note"] += (f" [before this the loop thread made no traced call for {idle * 1000:.0f} ms "
                                "outside any wait: it was blocked or computing, serving nobody]")
        self.last[item.tid] = item
        self.summary.add(rec)
        return rec


_LEADING_FD = re.compile(r"\s*(\d+)(?:[<,]|$)")


class Ctx:
    """What a handler needs: the event, its process's fd table, the record."""

    def __init__(self, ann: Annotator, ev: Event, table: F.Table, rec: dict) -> None:
        self.ann, self.ev, self.table, self.rec = ann, ev, table, rec
        self.fds: list[F.Fd] = []

    @cached_property
    def args(self) -> list[str]:
        # Split only when a handler asks: buffers make this the costly part.
        return split_args(self.ev.args)

    @property
    def ok(self) -> bool:
        return self.ev.errno is None and self.ev.ret not in (None, "?")

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
        fd = self.table.get(*got)
        self.fds.append(fd)
        return fd

    def ret_int(self) -> int | None:
        try:
            return int(self.ev.ret, 0) if self.ev.ret not in (None, "?") else None
        except ValueError:
            return None

    def new_fd(self, num: int, role: str, detail: str = "") -> F.Fd:
        proc = self.ann.procs.process_of.get(self.ev.tid, self.ev.tid)
        if (proc, self.ev.line) in self.ann.prior.wakeup_births:
            role, detail = F.WAKEUP, detail or "self-pipe"
        fd = F.Fd(num, role, detail, born=self.ev.line, cloexec="CLOEXEC" in self.ev.args)
        self.table.open(fd)
        self.fds.append(fd)
        return fd

    def failed_note(self, what: str) -> str:
        if self.ev.errno is None:
            return f"{what}: no result seen"
        return f"{what} failed: {self.ev.errno} ({self.ev.ret_detail or ''})".replace(" ()", "")

    def note(self, text: str, category: str | None = None) -> None:
        self.rec["note"] = text
        if category:
            self.rec["category"] = category

    @property
    def role(self) -> str:
        return self.ann.thread_role(self.ev.tid)


# -- handlers -------------------------------------------------------------

def _epoll_create(c: Ctx) -> None:
    n = c.ret_int()
    if not c.ok or n is None:
        return c.note(c.failed_note(c.ev.syscall), POLLABLE)
    c.new_fd(n, F.EPOLL)
    c.note(f"{c.ev.syscall} made epoll instance fd {n}: the set of fds this loop will wait on", POLLABLE)


_WHY_WATCH = {
    F.LISTENING: "the loop will be told about new connections",
    F.CLIENT: "the loop will be told when this client sends data (or hangs up)",
    F.WAKEUP: "another thread can wake the loop by writing to it",
    F.PIPE: "the loop will read it when data arrives, without blocking",
    F.TIMER: "the timer's expiry becomes a readable event",
    F.SIGNAL: "signals become readable events",
}


# epoll_ctl's four arguments without the general splitter (a hot call in
# servers that register each connection).
_CTL_ARGS = re.compile(r"^\s*(-?\d+)(?:<(.*?)>)?,\s*(EPOLL_CTL_\w+|\d+),\s*(-?\d+)(?:<(.*?)>)?,\s*(.*)$", re.S)


def _epoll_ctl(c: Ctx) -> None:
    m = _CTL_ARGS.match(c.ev.args)
    if m and not m.group(1).startswith("-") and not m.group(4).startswith("-"):
        ep, target = c.table.get(int(m.group(1)), m.group(2)), c.table.get(int(m.group(4)), m.group(5))
        c.fds += [ep, target]
        op, event = m.group(3), m.group(6)
    else:
        ep, target = c.arg_fd(0), c.arg_fd(2)
        op = c.args[1] if len(c.args) > 1 else "?"
        event = c.args[3] if len(c.args) > 3 else ""
    c.rec["category"] = POLLABLE
    if ep is None or target is None:
        return c.note("epoll_ctl with arguments the lab could not read", POLLABLE)
    opname = op.replace("EPOLL_CTL_", "")
    if not c.ok:
        why = " (regular files are always ready, epoll refuses them)" if c.ev.errno == "EPERM" else ""
        return c.note(f"epoll_ctl {opname} fd {target.num} ({target.describe()}) on epoll {ep.num} "
                      f"failed: {c.ev.errno}{why}")
    watched = c.table.interest.setdefault(ep.num, {})
    if opname == "DEL":
        watched.pop(target.num, None)
        return c.note(f"epoll_ctl DEL fd {target.num} ({target.describe()}) from epoll {ep.num}: "
                      "the loop stops watching it")
    items = epoll_items(event)
    events, data = items[0] if items else ("?", target.num)
    watched[target.num] = F.Interest(target.num, events, data)
    why = _WHY_WATCH.get(target.role, "the loop will be told when it is ready")
    verb = "ADD" if opname == "ADD" else opname
    c.note(f"epoll_ctl {verb} fd {target.num} = {target.describe()} to epoll {ep.num} for {events}: {why}")


# The timeout, read from the end of the arguments: the ready array before it
# can be long, and splitting it all costs more than the rest of the line.
_TIMEOUT_AT_END = {
    "epoll_wait": re.compile(r",\s*(-?\d+)\s*$"),
    "epoll_pwait": re.compile(r",\s*(-?\d+),\s*(?:NULL|\[[^\]]*\]|0x[0-9a-f]+),\s*\d+\s*$"),
    "epoll_pwait2": re.compile(r",\s*(NULL|\{[^{}]*\}),\s*(?:NULL|\[[^\]]*\]|0x[0-9a-f]+),\s*\d+\s*$"),
}


def _timeout_text(c: Ctx) -> tuple[str, float | None]:
    m = _TIMEOUT_AT_END[c.ev.syscall].search(c.ev.args)
    raw = m.group(1) if m else (c.args[3] if len(c.args) > 3 else "?")
    if c.ev.syscall == "epoll_pwait2":
        m = re.search(r"tv_sec=(\d+),\s*tv_nsec=(\d+)", raw)
        ms = int(m.group(1)) * 1000 + int(m.group(2)) / 1e6 if m else (-1 if raw == "NULL" else None)
    else:
        try:
            ms = int(raw)
        except ValueError:
            ms = None
    if ms is None:
        return f"timeout {raw}", None
    if ms < 0:
        return "no timeout: sleep until an fd is ready (no timer due, or timers are timerfds)", ms
    if ms == 0:
        return "timeout 0: work is already queued, just poll", ms
    return f"timeout {ms:g} ms: the nearest timer is due then", ms


def _epoll_wait(c: Ctx) -> None:
    ep = c.arg_fd(0)
    c.ann.waited.add(c.ev.tid)
    c.ann.in_signal.discard(c.ev.tid)
    c.ann.learned.loops.add(c.ev.tid)
    c.rec["category"] = POLLABLE
    when, ms = _timeout_text(c)
    n = c.ret_int()
    slept = f", slept {c.ev.duration * 1000:.1f} ms" if c.ev.duration and c.ev.duration >= 0.001 else ""
    epname = f"epoll {ep.num}" if ep else "epoll"
    if not c.ok:
        if c.ev.errno is None:
            return c.note(f"{c.ev.syscall} on {epname}: no result seen{slept}")
        return c.note(f"{c.ev.syscall} on {epname} interrupted: {c.ev.errno}{slept}")
    if n == 0:
        if ms and ms > 0:
            return c.note(f"{c.ev.syscall} on {epname} timed out after {ms:g} ms{slept}: a timer came due "
                          "(an asyncio.sleep or call_later ends now)")
        return c.note(f"{c.ev.syscall} on {epname}: nothing ready ({when})")
    ready = []
    # Only the ready array holds {events, data} items; no need to split it out.
    for events, data in epoll_items(c.ev.args):
        fd, registered = c.table.resolve(ep.num if ep else -1, data)
        if fd is None:
            ready.append({"fd": None, "role": F.UNKNOWN, "events": events, "data": data})
            continue
        item = {"fd": fd.num, "role": fd.role, "detail": fd.detail, "events": events}
        if not registered and ep is not None:
            # Registered out of strace's sight (io_uring): remember it now.
            item["via"] = "data"
            c.table.interest.setdefault(ep.num, {})[fd.num] = F.Interest(fd.num, events, data)
        ready.append(item)
    c.rec["ready"] = ready
    names = "; ".join(_ready_text(r) for r in ready) or "?"
    c.note(f"{c.ev.syscall} on {epname} ({when}){slept} -> ready: {names}")


def _ready_text(r: dict) -> str:
    if r["fd"] is None:
        return f"data {r['data']} (fd unknown) {r['events']}"
    what = {
        F.LISTENING: "a new connection is waiting",
        F.CLIENT: "the client sent data or hung up",
        F.WAKEUP: "another thread woke the loop",
        F.PIPE: "data (or EOF) on a pipe",
        F.TIMER: "the timer fired",
        F.SIGNAL: "a signal arrived",
    }.get(r["role"], "ready")
    return f"fd {r['fd']} {r['role']} {r['events']} ({what})"


def _accept(c: Ctx) -> None:
    lst = c.arg_fd(0)
    c.rec["category"] = POLLABLE
    if lst is not None and lst.role in (F.SOCKET, F.UNKNOWN, F.LISTENING):
        lst.role = F.LISTENING
    name = f"the listening socket {lst.detail}".rstrip() if lst else "a socket"
    if not c.ok:
        if c.ev.errno == "EAGAIN":
            return c.note(f"{c.ev.syscall} on {name}: no more pending connections (EAGAIN), back to waiting")
        return c.note(c.failed_note(f"{c.ev.syscall} on {name}"))
    n = c.ret_int()
    deco = c.ev.ret_detail if c.ev.ret_detail and "->" in (c.ev.ret_detail or "") else ""
    detail = re.sub(r"^TCP(v6)?:\[(.*)\]$", r"\2", deco) if deco else ""
    c.new_fd(n, F.CLIENT, detail)
    c.ann.accepted.add(c.ann.procs.process_of.get(c.ev.tid, c.ev.tid))
    c.note(f"{c.ev.syscall} on {name} returned fd {n}, a new client connection {detail}".rstrip())


def _socket(c: Ctx) -> None:
    n = c.ret_int()
    if not c.ok or n is None:
        return c.note(c.failed_note("socket"))
    kind = " ".join(a for a in c.args[:2])
    c.new_fd(n, F.SOCKET, kind.split("|")[0])
    c.note(f"socket made fd {n} ({kind})")


_ADDR = re.compile(r'sin6?_port=htons\((\d+)\).*?(?:inet_addr|inet_pton\(AF_INET6,)\s*\(?"([^"]+)"')
_UNIX = re.compile(r'sun_path="([^"]*)"')


def _addr(args: list[str]) -> str:
    text = args[1] if len(args) > 1 else ""
    m = _ADDR.search(text)
    if m:
        return f"{m.group(2)}:{m.group(1)}"
    m = _UNIX.search(text)
    return m.group(1) if m else ""


def _bind(c: Ctx) -> None:
    fd = c.arg_fd(0)
    addr = _addr(c.args)
    if fd is not None and addr and c.ok:
        fd.detail = addr
    c.note(f"bind fd {fd.num if fd else '?'} to {addr or 'an address'}" if c.ok else c.failed_note("bind"))


def _listen(c: Ctx) -> None:
    fd = c.arg_fd(0)
    if fd is not None and c.ok:
        fd.role = F.LISTENING
        if c.args and (deco := fd_arg(c.args[0])) and deco[1]:
            fd.detail = re.sub(r"^TCP(v6)?:\[(.*)\]$", r"\2", deco[1])
    c.note(f"listen on fd {fd.num if fd else '?'}: it is now the listening socket {fd.detail if fd else ''}".rstrip()
           if c.ok else c.failed_note("listen"), POLLABLE)


def _connect(c: Ctx) -> None:
    fd = c.arg_fd(0)
    addr = _addr(c.args)
    if fd is not None and addr:
        fd.detail = f"-> {addr}"
    resolver = "nscd" in addr or c.ann.thread_role(c.ev.tid) == POOL
    text = f"connect fd {fd.num if fd else '?'} to {addr or 'a peer'}"
    if not c.ok:
        text += f": {c.ev.errno}"
    if "nscd" in addr:
        text += " (getaddrinfo asks the name service cache daemon first)"
    c.note(text, c.ann.work_category(c.ev.tid) if resolver else OTHER_CAT)


def _pair(c: Ctx, role: str, detail: str, arg_index: int) -> None:
    text = c.args[arg_index] if len(c.args) > arg_index else ""
    nums = [fd_arg(x) for x in split_args(text.strip("[]"))]
    if not c.ok or len(nums) != 2 or None in nums:
        return c.note(c.failed_note(c.ev.syscall) if not c.ok else f"{c.ev.syscall}: fds not readable")
    a = c.new_fd(nums[0][0], role, detail)
    b = c.new_fd(nums[1][0], role, detail)
    a.peer, b.peer = b.num, a.num
    if F.WAKEUP in (a.role, b.role):
        a.role = b.role = F.WAKEUP
        return c.note(f"{c.ev.syscall} made fds {a.num} and {b.num}: a self-pipe; another thread (or a "
                      f"signal handler) writes one end to wake the loop waiting on the other", POLLABLE)
    c.note(f"{c.ev.syscall} made fds {a.num} and {b.num}, two connected ends of a {detail or 'pipe'}")


def _pipe(c: Ctx) -> None:
    _pair(c, F.PIPE, "", 0)


def _socketpair(c: Ctx) -> None:
    _pair(c, F.PIPE, "socketpair", 3)


def _eventfd(c: Ctx) -> None:
    n = c.ret_int()
    if not c.ok or n is None:
        return c.note(c.failed_note(c.ev.syscall))
    c.new_fd(n, F.WAKEUP, "eventfd")
    c.note(f"{c.ev.syscall} made fd {n}, an eventfd: a counter other threads write to wake the loop", POLLABLE)


def _timerfd(c: Ctx) -> None:
    n = c.ret_int()
    if not c.ok or n is None:
        return c.note(c.failed_note("timerfd_create"))
    c.new_fd(n, F.TIMER, "timerfd")
    c.note(f"timerfd_create made fd {n}: a timer that epoll can watch like a socket", POLLABLE)


def _timerfd_settime(c: Ctx) -> None:
    fd = c.arg_fd(0)
    m = re.search(r"it_value=\{tv_sec=(\d+),\s*tv_nsec=(\d+)\}", c.ev.args)
    when = f" to fire in {int(m.group(1)) * 1000 + int(m.group(2)) / 1e6:g} ms" if m else ""
    c.note(f"arm timer fd {fd.num if fd else '?'}{when}", POLLABLE)


def _signalfd(c: Ctx) -> None:
    n = c.ret_int()
    if c.ok and n is not None:
        c.new_fd(n, F.SIGNAL, "signalfd")
    c.note(f"{c.ev.syscall} made fd {n}: signals become readable events" if c.ok
           else c.failed_note(c.ev.syscall), POLLABLE)


def _io_uring_setup(c: Ctx) -> None:
    n = c.ret_int()
    if not c.ok or n is None:
        return c.note(f"io_uring_setup refused ({c.ev.errno}): libuv falls back to plain epoll_ctl, "
                      "so every fd registration shows up in strace", POLLABLE)
    c.new_fd(n, F.IO_URING)
    c.note(f"io_uring_setup made fd {n}: libuv (1.45+) will register fds with epoll through io_uring, "
           "so strace will show io_uring_enter where you expect EPOLL_CTL_ADD", POLLABLE)


def _io_uring_enter(c: Ctx) -> None:
    c.arg_fd(0)
    prev = c.ann.last.get(c.ev.tid)
    after = ""
    if prev is not None and prev.syscall in ("accept", "accept4") and prev.errno is None:
        after = f" (here: client fd {prev.ret} that accept4 just returned)"
    n = c.args[1] if len(c.args) > 1 else "?"
    c.note(f"io_uring_enter submitted {n} request(s): libuv registers fds with epoll through io_uring "
           f"(IORING_OP_EPOLL_CTL), which strace cannot decode; this is the missing EPOLL_CTL_ADD{after}",
           POLLABLE)


def _open(c: Ctx) -> None:
    path_arg = c.args[1] if c.ev.syscall == "openat" and len(c.args) > 1 else (c.args[0] if c.args else "")
    path = quoted(path_arg) or path_arg
    resolver = path in F.RESOLVER_FILES
    cat = c.ann.work_category(c.ev.tid)
    if not c.ok:
        return c.note(f"open {path}: {c.ev.errno}", cat)
    n = c.ret_int()
    deco = fd_arg(f"{c.ev.ret}<{c.ev.ret_detail}>") if c.ev.ret_detail else None
    real = deco[1] if deco and deco[1] else path
    role = F.DEVICE if real.startswith("/dev/") else F.FILE
    if role == F.DEVICE:
        cat = OTHER_CAT
    c.new_fd(n, role, real.split("<", 1)[0])
    c.note(_file_note(f"open {path} as fd {n}", path, cat, resolver), cat)


def _file_note(what: str, path: str, cat: str, resolver: bool) -> str:
    why = ""
    if resolver:
        why = "getaddrinfo reads the resolver's files"
    if cat == POOLED:
        return f"{what}: {why + ', ' if why else ''}on a pool thread, so the loop is not blocked"
    if cat == BLOCKING:
        return (f"{what}: {why + ', ' if why else ''}BLOCKING on the loop thread: a regular file is always "
                "'ready', so no other client is served until this returns")
    if path.endswith((".py", ".pyc", ".so")) or ".so." in path:
        return f"{what} (loading code, start-up)"
    return f"{what}{': ' + why if why else ''}"


def _rw(c: Ctx) -> None:
    fd = c.arg_fd(0)
    name = c.ev.syscall
    nbytes = c.ret_int()
    is_write = name in WRITES
    if fd is None:
        return c.note(f"{name} on an fd the lab could not read")
    if fd.role in (F.FILE, F.DEVICE) or (fd.role == F.UNKNOWN and fd.detail.startswith("/")):
        cat = c.ann.work_category(c.ev.tid) if fd.role == F.FILE else OTHER_CAT
        resolver = fd.detail in F.RESOLVER_FILES
        verb = "write" if is_write else "read"
        amount = f"{nbytes} bytes" if nbytes is not None and c.ok else (c.ev.errno or "?")
        return c.note(_file_note(f"{verb} {amount} from {fd.detail or 'a file'}" if not is_write
                                 else f"{verb} {amount} to {fd.detail or 'a file'}",
                                 fd.detail, cat, resolver), cat)
    if is_write and c.ev.tid in c.ann.in_signal and fd.role not in (F.STDIO, F.CLIENT):
        # The kernel runs a signal handler on any thread; CPython's writes the
        # signal number to the loop's self-pipe (signal.set_wakeup_fd).
        c.ann.in_signal.discard(c.ev.tid)
        return c.note(f"{name} fd {fd.num} ({fd.describe()}) from the signal handler: the signal number "
                      "goes into the loop's self-pipe, so the signal arrives as readable data "
                      "(signals are pollable this way)", POLLABLE)
    if is_write and _is_wakeup_write(c, fd):
        return
    cat = POLLABLE if fd.role in POLLABLE_ROLES else OTHER_CAT
    if c.role != LOOP and fd.role not in (F.STDIO,) and c.ann.process_has_loop(c.ev.tid) and cat == POLLABLE:
        cat = OTHER_CAT
    c.rec["category"] = cat
    if not c.ok:
        if c.ev.errno == "EAGAIN":
            return c.note(f"{name} fd {fd.num} ({fd.describe()}): nothing more for now (EAGAIN), "
                          "back to epoll")
        return c.note(c.failed_note(f"{name} fd {fd.num} ({fd.describe()})"))
    if fd.role == F.CLIENT:
        if not is_write and nbytes == 0:
            return c.note(f"{name} fd {fd.num}: 0 bytes = the client closed its end (EOF)")
        text = _first_line(c)
        return c.note(f"{name} {nbytes} bytes {'to' if is_write else 'from'} client fd {fd.num}"
                      f"{': ' + text if text else ''}")
    if fd.role == F.WAKEUP and is_write and c.role == LOOP:
        return c.note(f"{name} to wakeup fd {fd.num} ({fd.detail}) by the loop itself: a callback was queued "
                      "thread-safely from the loop thread (in asyncio, when a pool job finished before the "
                      "loop chained its future, the loop wakes itself)", POLLABLE)
    if fd.role == F.WAKEUP and not is_write:
        return c.note(f"{name} drains wakeup fd {fd.num} ({fd.detail}): queued callbacks from other "
                      "threads run now", POLLABLE)
    c.note(f"{name} {nbytes} bytes {'to' if is_write else 'from'} fd {fd.num} ({fd.describe()})")


# The buffer (second argument) of a read or write on a client: its HTTP
# request or status line, found without splitting every argument.
_REQ_LINE = re.compile(r'^\s*-?\d+(?:<.*?>)?,\s*"((?:GET|HEAD|POST|PUT|DELETE|OPTIONS|PATCH) '
                       r'[^ ]+ HTTP/1\.[01]|HTTP/1\.[01] \d{3}[^\\"]*)', re.S)


def _first_line(c: Ctx) -> str:
    m = _REQ_LINE.match(c.ev.args)
    return m.group(1) if m else ""


def _is_wakeup_write(c: Ctx, fd: F.Fd) -> bool:
    """A write by a non-loop thread to an fd (or its peer) that a loop watches."""
    watched = fd.num if c.table.watchers(fd.num) else (
        fd.peer if fd.peer is not None and c.table.watchers(fd.peer) else None)
    if watched is None and fd.detail == "eventfd" and c.ann.process_has_loop(c.ev.tid):
        # libuv may have registered it through io_uring, out of strace's sight.
        watched = fd.num
    if watched is None or fd.role not in (F.WAKEUP, F.PIPE, F.SOCKET):
        return False
    if c.ev.tid in c.ann.waited or c.ev.tid in c.ann.prior.loops:
        return False
    proc = c.ann.procs.process_of.get(c.ev.tid, c.ev.tid)
    fd.role = F.WAKEUP
    if fd.peer is not None and fd.peer in c.table.fds:
        c.table.fds[fd.peer].role = F.WAKEUP
        c.ann.learned.wakeup_births.add((proc, c.table.fds[fd.peer].born))
    c.ann.learned.wakeup_births.add((proc, fd.born))
    c.ann.learned.pools.add(c.ev.tid)
    eps = ", ".join(str(e) for e in c.table.watchers(watched)) or "(registered via io_uring)"
    how = "eventfd" if fd.detail == "eventfd" else "self-pipe"
    c.note(f"{c.ev.syscall} to fd {fd.num} ({how}) that epoll {eps} watches: this thread wakes the loop, "
           "which then runs the finished job's callback", WAKEUP_CAT)
    return True


def _close(c: Ctx) -> None:
    fd = c.arg_fd(0)
    if fd is None:
        return c.note("close")
    what = fd.describe()
    cat = OTHER_CAT
    if fd.role == F.CLIENT:
        cat = POLLABLE
        what += ": the connection is done"
    elif fd.role == F.FILE:
        cat = c.ann.work_category(c.ev.tid)
    c.table.close(fd.num)
    c.note(f"close fd {fd.num} ({what})" if c.ok else c.failed_note(f"close fd {fd.num}"), cat)


def _dup(c: Ctx) -> None:
    old = c.arg_fd(0)
    n = c.ret_int()
    if not c.ok or old is None or n is None:
        return c.note(c.failed_note(c.ev.syscall) if not c.ok else c.ev.syscall)
    new = F.Fd(n, old.role, old.detail, born=c.ev.line, peer=old.peer)
    c.table.open(new)
    c.fds.append(new)
    std = {0: "stdin", 1: "stdout", 2: "stderr"}.get(n)
    c.note(f"{c.ev.syscall}: fd {n}{' (' + std + ')' if std else ''} is now a copy of fd {old.num} "
           f"({old.describe()})")


def _fcntl(c: Ctx) -> None:
    if len(c.args) > 1 and c.args[1].startswith("F_DUPFD"):
        return _dup(c)
    c.arg_fd(0)
    c.note(f"fcntl {c.args[1] if len(c.args) > 1 else ''}".strip())


def _clone(c: Ctx) -> None:
    c.ann.pending_clones.pop(c.ev.tid, None)
    n = c.ret_int()
    if not c.ok or not n:
        return c.note(c.failed_note(c.ev.syscall) if not c.ok else c.ev.syscall)
    flags = c.ev.args
    if c.ev.syscall in ("fork", "vfork"):
        flags = "CLONE_VM" if c.ev.syscall == "vfork" else ""
    if n not in c.ann.procs.process_of:  # else attached when its first call came early
        c.ann.procs.cloned(c.ev.tid, n, flags)
    if "CLONE_THREAD" in flags:
        c.note(f"{c.ev.syscall} started thread {n} in this process (e.g. a pool worker)")
    else:
        c.note(f"{c.ev.syscall} started child process {n} (its fd table is a copy)")


def _execve(c: Ctx) -> None:
    prog = quoted(c.args[0]) if c.args else None
    if c.ok:
        c.table.exec()
        return c.note(f"execve {prog}: this process now runs another program (close-on-exec fds are gone)")
    c.note(f"execve {prog}: {c.ev.errno}")


def _exit_group(c: Ctx) -> None:
    c.note(f"exit_group({c.args[0] if c.args else ''}): the process ends")


def _shutdown(c: Ctx) -> None:
    fd = c.arg_fd(0)
    c.note(f"shutdown fd {fd.num if fd else '?'} ({fd.describe() if fd else ''}) {c.args[1] if len(c.args) > 1 else ''}",
           POLLABLE if fd and fd.role == F.CLIENT else OTHER_CAT)


def _generic(c: Ctx) -> None:
    if c.args:
        c.arg_fd(0)
    c.note(c.ev.syscall + (f": {c.ev.errno}" if c.ev.errno else ""))


def _signal(c: Ctx) -> None:
    sig = c.ev.syscall
    c.ann.in_signal.add(c.ev.tid)
    why = {
        "SIGCHLD": "a child process ended; the loop learns it through its signal handler",
        "SIGINT": "interrupt (Ctrl-C, or the recipe stopping the server)",
        "SIGTERM": "asked to terminate",
        "SIGPIPE": "wrote to a closed pipe or socket",
    }.get(sig, "signal delivered")
    c.note(f"{sig}: {why}")


def _exit_note(ev: Event) -> str:
    if ev.ret is not None:
        return f"thread/process {ev.tid} exited with {ev.ret}"
    if ev.syscall:
        return f"thread/process {ev.tid} was killed by {ev.syscall}"
    return f"thread/process {ev.tid}: {ev.args}"


HANDLERS: dict[str, Callable[[Ctx], None]] = {
    "epoll_create": _epoll_create, "epoll_create1": _epoll_create, "epoll_ctl": _epoll_ctl,
    "accept": _accept, "accept4": _accept, "socket": _socket, "bind": _bind, "listen": _listen,
    "connect": _connect, "pipe": _pipe, "pipe2": _pipe, "socketpair": _socketpair,
    "eventfd": _eventfd, "eventfd2": _eventfd, "timerfd_create": _timerfd,
    "timerfd_settime": _timerfd_settime, "signalfd": _signalfd, "signalfd4": _signalfd,
    "io_uring_setup": _io_uring_setup, "io_uring_enter": _io_uring_enter,
    "open": _open, "openat": _open, "close": _close, "dup": _dup, "dup2": _dup, "dup3": _dup,
    "fcntl": _fcntl, "execve": _execve, "exit_group": _exit_group, "shutdown": _shutdown,
    **{w: _epoll_wait for w in WAITS}, **{r: _rw for r in READS | WRITES},
    **{k: _clone for k in CLONES},
}


class Summary:
    """Counts for the end of a run: per syscall, thread, category; unparsed lines."""

    def __init__(self) -> None:
        self.lines = 0
        self.syscalls: Counter = Counter()
        self.categories: Counter = Counter()
        self.kinds: Counter = Counter()
        self.threads: dict = {}
        self.unparsed = 0
        self.unparsed_lines: list[int] = []  # the first few, to look at

    def add(self, rec: dict) -> None:
        kind = rec["kind"]
        self.lines += 2 if rec["resumed_line"] else 1
        self.kinds[kind] += 1
        if kind == "syscall":
            self.syscalls[rec["syscall"]] += 1
            self.categories[rec["category"]] += 1
        elif kind == "unparsed":
            self.unparsed += 1
            if len(self.unparsed_lines) < 20:
                self.unparsed_lines.append(rec["line"])
        self.threads[rec["tid"]] = rec["thread"]

    def as_dict(self) -> dict:
        return {"lines": self.lines, "records": sum(self.kinds.values()),
                "kinds": dict(self.kinds), "syscalls": dict(self.syscalls.most_common()),
                "categories": dict(self.categories),
                "threads": {str(t): r for t, r in self.threads.items() if t is not None},
                "unparsed": self.unparsed, "unparsed_lines": self.unparsed_lines}


# The calls that can change what the first pass learns: fd births and deaths
# (so fd reuse is right), epoll registrations, writes (a wakeup names a pool
# thread), clones and execs. Reads, opens and the rest cannot; skipping them
# unparsed makes the first pass a fraction of the second.
TEACHING = ({"epoll_create", "epoll_create1", "epoll_ctl", "eventfd", "eventfd2", "pipe", "pipe2",
             "socketpair", "socket", "accept", "accept4", "close", "dup", "dup2", "dup3", "fcntl",
             "execve", "io_uring_setup"} | WRITES | CLONES)


_WRITE_FD = re.compile(r"(?:\[pid +\d+\] |\d+ +)? *(?:[\d:.]+ +)?\w+\((\d+)[<,]")
_PLAIN = {F.CLIENT, F.FILE, F.STDIO, F.DEVICE}


def _plain_write(ann: "Annotator", tid, text: str) -> bool:
    m = _WRITE_FD.match(text)
    if m is None:
        return False
    fd = ann.procs.table(tid).fds.get(int(m.group(1)))
    return fd is not None and fd.role in _PLAIN


def learn(items: Iterable[tuple]) -> Knowledge:
    """First pass over numbered lines: run the annotator on the teaching calls."""
    ann = Annotator()

    def teaching() -> Iterator[tuple]:
        for item in items:
            tid, name = peek(item[1])
            if name in WAITS:
                # A wait only teaches that its thread is a loop. This runs when
                # the parser asks for the line, after every earlier event.
                ann.waited.add(tid)
                ann.learned.loops.add(tid)
            elif name in WRITES and _plain_write(ann, tid, item[1]):
                continue  # a write to a client, a file or stdio wakes nobody
            elif name is None or name in TEACHING:
                yield item

    for _ in ann.run(numbered_events(teaching())):
        pass
    return Knowledge(ann.learned.loops, ann.learned.pools, ann.learned.wakeup_births)


def annotate_items(open_items: Callable[[], Iterator[tuple]], steps: Iterable[Step] = ()
                   ) -> tuple[Iterator[dict], Annotator]:
    """Two passes over an input that can be opened twice: learn roles, then stream records."""
    prior = learn(open_items())
    ann = Annotator(prior, steps)
    return ann.run(numbered_events(open_items())), ann


def annotate_file(path: str, steps: Iterable[Step] = ()) -> tuple[Iterator[dict], Annotator]:
    def numbered() -> Iterator[tuple]:
        with open(path, errors="replace") as f:
            yield from enumerate(f, 1)

    return annotate_items(numbered, steps)
