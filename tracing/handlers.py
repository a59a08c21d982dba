"""Per-call handlers: each reads one event against the model and returns a
verdict (category, note, ready fds) for its record.

Handlers update the model with what the call did (an fd born or closed, an
epoll registration, a thread that waited) and ask the role stage (`roles`)
what that means; they never touch the record itself.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Callable

from tracing import fds as F
from tracing import roles as R
from tracing.model import Model
from tracing.names import (BLOCKING, CLONES, LOOP, OTHER_CAT, POLLABLE, POLLABLE_ROLES, POOL,
                           POLL_WAITS, POOLED, READS, SIGRETURNS, WAITS, WAKEUP_CAT, WRITES)
from tracing.parse import (Event, close_paren, epoll_items, fd_arg, first_fd, quoted, split_args,
                           to_int)


# What a handler returns: (category, note, ready fds). A plain tuple: one is
# made per line, and a NamedTuple's constructor costs a call more.
Verdict = tuple[str, str, list]


_LEADING_FD = re.compile(r"\s*(\d{1,10})(?:[<,]|$)")


class Ctx:
    """What a handler needs: the event, the model, its process's fd table."""

    def __init__(self, m: Model, ev: Event) -> None:
        self.m, self.ev = m, ev
        self.table = m.procs.table(ev.tid)
        self.fds: list[F.Fd] = []
        self.category = OTHER_CAT  # what say() uses when not told
        self.ready: list = []

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
        fd = self.table.get(*got)
        self.fds.append(fd)
        return fd

    def ret_int(self) -> int | None:
        return to_int(self.ev.ret)

    def new_fd(self, num: int, role: str, detail: str = "") -> F.Fd:
        wakes = self.m.born_wakeup(self.ev.tid, self.ev.line)
        if wakes:
            role, detail = F.WAKEUP, detail or "self-pipe"
        fd = F.Fd(num, role, detail, born=self.ev.line, cloexec="CLOEXEC" in self.ev.args, wakes=wakes)
        self.table.open(fd)
        self.fds.append(fd)
        return fd

    def failed_note(self, what: str) -> str:
        if self.ev.errno is None:
            return f"{what}: no result seen"
        return f"{what} failed: {self.ev.errno} ({self.ev.ret_detail or ''})".replace(" ()", "")

    def say(self, text: str, category: str | None = None) -> Verdict:
        return (category or self.category, text, self.ready)


def _epoll_create(c: Ctx) -> Verdict:
    n = c.ret_int()
    if not c.ok or n is None:
        return c.say(c.failed_note(c.ev.syscall), POLLABLE)
    c.new_fd(n, F.EPOLL)
    waited = c.m.epoll_is_waited(c.ev.tid, c.ev.line)
    made = f"{c.ev.syscall} made epoll instance fd {n}"
    if waited:
        return c.say(f"{made}: the set of fds this loop will wait on", POLLABLE)
    if waited is None:  # one pass: what comes later is not known yet
        return c.say(f"{made}: a set of fds a thread can wait on", POLLABLE)
    return c.say(f"{made}; no thread waits on it anywhere in this log, so it is no loop's "
                 "(a library probing for epoll, or set up and never used)", OTHER_CAT)


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
_CTL_ARGS = re.compile(r"^\s*(-?\d{1,10})(?:<(.*?)>)?,\s*(EPOLL_CTL_\w+|\d+),\s*(-?\d{1,10})(?:<(.*?)>)?,\s*(.*)$",
                       re.S)


def _epoll_ctl(c: Ctx) -> Verdict:
    m = _CTL_ARGS.match(c.ev.args)
    if m and not m.group(1).startswith("-") and not m.group(4).startswith("-"):
        ep, target = c.table.get(int(m.group(1)), m.group(2)), c.table.get(int(m.group(4)), m.group(5))
        c.fds += [ep, target]
        op, event = m.group(3), m.group(6)
    else:
        ep, target = c.arg_fd(0), c.arg_fd(2)
        op = c.args[1] if len(c.args) > 1 else "?"
        event = c.args[3] if len(c.args) > 3 else ""
    c.category = POLLABLE
    if ep is None or target is None:
        return c.say("epoll_ctl with arguments the lab could not read", POLLABLE)
    opname = op.replace("EPOLL_CTL_", "")
    if not c.ok:
        why = " (regular files are always ready, epoll refuses them)" if c.ev.errno == "EPERM" else ""
        return c.say(f"epoll_ctl {opname} fd {target.num} ({target.describe()}) on epoll {ep.num} "
                      f"failed: {c.ev.errno}{why}")
    watched = c.table.watched(ep.num)
    if opname == "DEL":
        watched.pop(target.num, None)
        return c.say(f"epoll_ctl DEL fd {target.num} ({target.describe()}) from epoll {ep.num}: "
                      "the loop stops watching it")
    items = epoll_items(event)
    events, data = items[0] if items else ("?", target.num)
    watched[target.num] = F.Interest(target.num, events, data)
    why = _WHY_WATCH.get(target.role, "the loop will be told when it is ready")
    verb = "ADD" if opname == "ADD" else opname
    return c.say(f"epoll_ctl {verb} fd {target.num} = {target.describe()} to epoll {ep.num} for {events}: {why}")


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
        m = re.search(r"tv_sec=(\d{1,19}),\s*tv_nsec=(\d{1,10})", raw)
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


def _epoll_wait(c: Ctx) -> Verdict:
    ep = c.arg_fd(0)
    c.m.saw_wait(c.ev.tid, ep.num if ep else None)
    c.category = POLLABLE
    when, ms = _timeout_text(c)
    n = c.ret_int()
    slept = f", slept {c.ev.duration * 1000:.1f} ms" if c.ev.duration and c.ev.duration >= 0.001 else ""
    epname = f"epoll {ep.num}" if ep else "epoll"
    if not c.ok:
        if c.ev.errno is None:
            return c.say(f"{c.ev.syscall} on {epname}: no result seen{slept}")
        return c.say(f"{c.ev.syscall} on {epname} interrupted: {c.ev.errno}{slept}")
    if n == 0:
        if ms and ms > 0:
            return c.say(f"{c.ev.syscall} on {epname} timed out after {ms:g} ms{slept}: a timer came due "
                         "(in asyncio: an asyncio.sleep or call_later ends now)")
        return c.say(f"{c.ev.syscall} on {epname}: nothing ready ({when})")
    ready, wakes = [], []
    by_data = c.table.by_data(ep.num if ep else -1)  # one pass over the interest list per wait
    # Only the ready array holds {events, data} items; no need to split it out.
    for events, data in epoll_items(c.ev.args):
        fd, registered = c.table.resolve(ep.num if ep else -1, data, by_data)
        wakes.append(fd.wakes if fd is not None else "")
        if fd is None:
            ready.append({"fd": None, "role": F.UNKNOWN, "events": events, "data": data})
            continue
        item = {"fd": fd.num, "role": fd.role, "detail": fd.detail, "events": events}
        if not registered and ep is not None:
            # Registered out of strace's sight (io_uring): remember it now.
            item["via"] = "data"
            watched = c.table.watched(ep.num)
            if fd.num in watched:
                by_data = None  # a registration replaced: look afresh
            watched[fd.num] = F.Interest(fd.num, events, data)
            if by_data is not None:
                by_data.setdefault(data, fd.num)
        ready.append(item)
    c.ready = ready
    names = "; ".join(_ready_text(r, w) for r, w in zip(ready, wakes)) or "?"
    return c.say(f"{c.ev.syscall} on {epname} ({when}){slept} -> ready: {names}")


def _ready_text(r: dict, wakes: str = "") -> str:
    if r["fd"] is None:
        return f"data {r['data']} (fd unknown) {r['events']}"
    if wakes == "signal":
        return f"fd {r['fd']} {r['role']} {r['events']} (a signal arrived: its handler wrote the self-pipe)"
    ev = r["events"]
    if ev == "writable" or ("OUT" in ev and "IN" not in ev and "HUP" not in ev):
        return f"fd {r['fd']} {r['role']} {ev} (there is room to write without blocking)"
    return f"fd {r['fd']} {r['role']} {r['events']} ({_READY_WHY.get(r['role'], 'ready')})"


_READY_WHY = {
    F.LISTENING: "a new connection is waiting",
    F.CLIENT: "the client sent data or hung up",
    F.WAKEUP: "another thread woke the loop",
    F.PIPE: "data (or EOF) on a pipe",
    F.TIMER: "the timer fired",
    F.SIGNAL: "a signal arrived",
}


# poll/ppoll: `[{fd=3<TCP:[...]>, events=POLLIN}, ...]`, ready `([{fd=3, revents=POLLIN}])`;
# select/pselect6: fd sets `[3 4]`, ready `(in [3], out [], left {...})`.
_DECO = r"(?:<((?:->|[^<>]|<(?:->|[^<>])*>)*)>)?"  # -yy text, which may hold "->" and one nested <...>
_POLLFD = re.compile(r"\{fd=(-?\d{1,10})" + _DECO + r", (?:r?events)=([A-Za-z0-9_|]+)\}")
_SETFD = re.compile(r"(\d{1,10})" + _DECO)
_SETS = re.compile(r"\b(in|out|exc) \[([^\]]*)\]")
_TIMESPEC = re.compile(r"\{tv_sec=(\d{1,19}), tv_(n|u)sec=(\d{1,10})\}")
_SET_EVENTS = {"in": "readable", "out": "writable", "exc": "exception"}


def _poll_wait(c: Ctx) -> Verdict:
    """poll, ppoll, select, pselect6: a wait on a list of fds (no epoll fd)."""
    name, args = c.ev.syscall, c.ev.args
    c.category = POLLABLE
    watched: list[F.Fd] = []
    if name in ("poll", "ppoll"):
        end = close_paren(args[1:], 0) + 1 if args.startswith("[") else -1
        head, rest = (args[:end + 1], args[end + 1:]) if end > 0 else ("", args)
        for m in _POLLFD.finditer(head):
            if not m.group(1).startswith("-"):
                watched.append(c.table.get(int(m.group(1)), m.group(2)))
        tail = split_args(rest)
        raw = tail[2] if len(tail) > 2 else "?"
        ready = [(int(m.group(1)), m.group(3)) for m in _POLLFD.finditer(c.ev.ret_detail or "")]
    else:
        sets = split_args(args)
        for i in (1, 2, 3):
            if i < len(sets) and sets[i].startswith("["):
                for m in _SETFD.finditer(sets[i]):
                    watched.append(c.table.get(int(m.group(1)), m.group(2)))
        raw = sets[4] if len(sets) > 4 else "?"
        ready = [(int(n), _SET_EVENTS[kind]) for kind, nums in _SETS.findall(c.ev.ret_detail or "")
                 for n in nums.split() if n.isdigit() and len(n) <= 10]
    seen: dict[int, F.Fd] = {}
    for fd in watched:
        seen.setdefault(fd.num, fd)
    c.fds.extend(seen.values())
    ms = _poll_timeout_ms(name, raw)
    when = ("no timeout: sleep until an fd is ready" if ms is not None and ms < 0 else
            "timeout 0: just poll" if ms == 0 else f"timeout {ms:g} ms" if ms is not None else f"timeout {raw}")
    slept = f", slept {c.ev.duration * 1000:.1f} ms" if c.ev.duration and c.ev.duration >= 0.001 else ""
    fds = ", ".join(f"{f.num} ({f.describe()})" for f in seen.values()) or "none"
    head = f"{name} on fds {fds} ({when}){slept}"
    if not c.ok:
        return c.say(f"{head}: {c.ev.errno or 'no result seen'}")
    if c.ret_int() == 0:
        return c.say(f"{head}: nothing ready, timed out")
    items = []
    for num, events in ready:
        fd = seen.get(num) or c.table.fds.get(num)
        items.append({"fd": num, "role": fd.role if fd else F.UNKNOWN,
                      "detail": fd.detail if fd else "", "events": events})
    c.ready = items
    names = "; ".join(_ready_text(r) for r in items) or "?"
    return c.say(f"{head} -> ready: {names}")


def _poll_timeout_ms(name: str, raw: str) -> float | None:
    if raw == "NULL":
        return -1
    m = _TIMESPEC.search(raw)
    if m:
        frac = int(m.group(3)) / (1e6 if m.group(2) == "n" else 1e3)
        return int(m.group(1)) * 1000 + frac
    return to_int(raw) if name == "poll" else None


def _accept(c: Ctx) -> Verdict:
    lst = c.arg_fd(0)
    c.category = POLLABLE
    if lst is not None and lst.role in (F.SOCKET, F.UNKNOWN, F.LISTENING):
        lst.role = F.LISTENING
    name = f"the listening socket {lst.detail}".rstrip() if lst else "a socket"
    if not c.ok:
        if c.ev.errno == "EAGAIN":
            return c.say(f"{c.ev.syscall} on {name}: no more pending connections (EAGAIN), back to waiting")
        return c.say(c.failed_note(f"{c.ev.syscall} on {name}"))
    n = c.ret_int()
    deco = c.ev.ret_detail if c.ev.ret_detail and "->" in (c.ev.ret_detail or "") else ""
    detail = re.sub(r"^TCP(v6)?:\[(.*)\]$", r"\2", deco) if deco else ""
    if n is None:
        return c.say(f"{c.ev.syscall} on {name} returned {c.ev.ret}, not an fd")
    c.new_fd(n, F.CLIENT, detail)
    proc = c.m.proc(c.ev.tid)
    c.m.accepted.add(proc)
    said = f"{c.ev.syscall} on {name} returned fd {n}, a new client connection {detail}".rstrip()
    if _loopless(c) and proc not in c.m.loopless_said:
        c.m.loopless_said.add(proc)
        said += (" [no thread of this process waits on an epoll fd anywhere in this log: there is no "
                 "event loop; each connection is served by blocking calls]")
    return c.say(said)


def _loopless(c: Ctx) -> bool:
    """Known (from the whole log) to have no thread waiting on an epoll fd."""
    return c.m.prior.complete and not R.process_has_loop(c.m, c.ev.tid)


def _socket(c: Ctx) -> Verdict:
    n = c.ret_int()
    if not c.ok or n is None:
        return c.say(c.failed_note("socket"))
    kind = " ".join(a for a in c.args[:2])
    c.new_fd(n, F.SOCKET, kind.split("|")[0])
    return c.say(f"socket made fd {n} ({kind})")


_ADDR = re.compile(r'sin6?_port=htons\((\d+)\).*?(?:inet_addr|inet_pton\(AF_INET6,)\s*\(?"([^"]+)"')
_UNIX = re.compile(r'sun_path="([^"]*)"')


def _addr(args: list[str]) -> str:
    text = args[1] if len(args) > 1 else ""
    m = _ADDR.search(text)
    if m:
        return f"{m.group(2)}:{m.group(1)}"
    m = _UNIX.search(text)
    return m.group(1) if m else ""


def _bind(c: Ctx) -> Verdict:
    fd = c.arg_fd(0)
    addr = _addr(c.args)
    if fd is not None and addr and c.ok:
        fd.detail = addr
    return c.say(f"bind fd {fd.num if fd else '?'} to {addr or 'an address'}" if c.ok else c.failed_note("bind"))


def _listen(c: Ctx) -> Verdict:
    fd = c.arg_fd(0)
    if fd is not None and c.ok:
        fd.role = F.LISTENING
        if c.args and (deco := fd_arg(c.args[0])) and deco[1]:
            fd.detail = re.sub(r"^TCP(v6)?:\[(.*)\]$", r"\2", deco[1])
    return c.say(f"listen on fd {fd.num if fd else '?'}: it is now the listening socket {fd.detail if fd else ''}".rstrip()
           if c.ok else c.failed_note("listen"), POLLABLE)


def _connect(c: Ctx) -> Verdict:
    fd = c.arg_fd(0)
    addr = _addr(c.args)
    if fd is not None and addr:
        fd.detail = f"-> {addr}"
    resolver = "nscd" in addr or R.thread_role(c.m, c.ev.tid) == POOL
    text = f"connect fd {fd.num if fd else '?'} to {addr or 'a peer'}"
    if not c.ok:
        text += f": {c.ev.errno}"
    if "nscd" in addr:
        text += " (getaddrinfo asks the name service cache daemon first)"
    return c.say(text, _work(c) if resolver else OTHER_CAT)


def _pair(c: Ctx, role: str, detail: str, arg_index: int) -> Verdict:
    text = c.args[arg_index] if len(c.args) > arg_index else ""
    nums = [fd_arg(x) for x in split_args(text.strip("[]"))]
    if not c.ok or len(nums) != 2 or None in nums:
        return c.say(c.failed_note(c.ev.syscall) if not c.ok else f"{c.ev.syscall}: fds not readable")
    a = c.new_fd(nums[0][0], role, detail)
    b = c.new_fd(nums[1][0], role, detail)
    a.peer, b.peer = b.num, a.num
    if F.WAKEUP in (a.role, b.role):
        a.role = b.role = F.WAKEUP
        return c.say(f"{c.ev.syscall} made fds {a.num} and {b.num}: a self-pipe; another thread (or a "
                      f"signal handler) writes one end to wake the loop waiting on the other", POLLABLE)
    return c.say(f"{c.ev.syscall} made fds {a.num} and {b.num}, two connected ends of a {detail or 'pipe'}")


def _pipe(c: Ctx) -> Verdict:
    return _pair(c, F.PIPE, "", 0)


def _socketpair(c: Ctx) -> Verdict:
    return _pair(c, F.PIPE, "socketpair", 3)


def _eventfd(c: Ctx) -> Verdict:
    n = c.ret_int()
    if not c.ok or n is None:
        return c.say(c.failed_note(c.ev.syscall))
    c.new_fd(n, F.WAKEUP, "eventfd")
    return c.say(f"{c.ev.syscall} made fd {n}, an eventfd: a counter other threads write to wake the loop", POLLABLE)


def _timerfd(c: Ctx) -> Verdict:
    n = c.ret_int()
    if not c.ok or n is None:
        return c.say(c.failed_note("timerfd_create"))
    c.new_fd(n, F.TIMER, "timerfd")
    return c.say(f"timerfd_create made fd {n}: a timer that epoll can watch like a socket", POLLABLE)


def _timerfd_settime(c: Ctx) -> Verdict:
    fd = c.arg_fd(0)
    m = re.search(r"it_value=\{tv_sec=(\d{1,19}),\s*tv_nsec=(\d{1,10})\}", c.ev.args)
    when = f" to fire in {int(m.group(1)) * 1000 + int(m.group(2)) / 1e6:g} ms" if m else ""
    return c.say(f"arm timer fd {fd.num if fd else '?'}{when}", POLLABLE)


def _signalfd(c: Ctx) -> Verdict:
    n = c.ret_int()
    if c.ok and n is not None:
        c.new_fd(n, F.SIGNAL, "signalfd")
    return c.say(f"{c.ev.syscall} made fd {n}: signals become readable events" if c.ok
           else c.failed_note(c.ev.syscall), POLLABLE)


def _io_uring_setup(c: Ctx) -> Verdict:
    n = c.ret_int()
    if not c.ok or n is None:
        return c.say(f"io_uring_setup refused ({c.ev.errno}): libuv falls back to plain epoll_ctl, "
                      "so every fd registration shows up in strace", POLLABLE)
    c.new_fd(n, F.IO_URING)
    return c.say(f"io_uring_setup made fd {n}: libuv (1.45+) will register fds with epoll through io_uring, "
           "so strace will show io_uring_enter where you expect EPOLL_CTL_ADD", POLLABLE)


def _io_uring_enter(c: Ctx) -> Verdict:
    c.arg_fd(0)
    seen = c.m.uring.pop(c.ev.tid, None)
    if seen:
        # The kernel tracer showed what this call carried, just above it.
        return c.say(f"io_uring_enter submitted {', '.join(seen)} (the io_uring_sqe record(s) above): "
                     "libuv registers fds with epoll through io_uring", POLLABLE)
    prev = c.m.last.get(c.ev.tid)
    after = ""
    if prev is not None and prev.syscall in ("accept", "accept4") and prev.errno is None:
        after = f" (here: client fd {prev.ret} that accept4 just returned)"
    n = c.args[1] if len(c.args) > 1 else "?"
    return c.say(f"io_uring_enter submitted {n} request(s): libuv registers fds with epoll through io_uring "
           f"(IORING_OP_EPOLL_CTL), which strace cannot decode; this is the missing EPOLL_CTL_ADD{after}",
           POLLABLE)


def _open(c: Ctx) -> Verdict:
    path_arg = c.args[1] if c.ev.syscall == "openat" and len(c.args) > 1 else (c.args[0] if c.args else "")
    path = quoted(path_arg) or path_arg
    resolver = path in F.RESOLVER_FILES
    cat = _work(c)
    if not c.ok:
        return c.say(f"open {path}: {c.ev.errno}", cat)
    n = c.ret_int()
    if n is None:
        return c.say(f"open {path}: returned {c.ev.ret}, not an fd", cat)
    deco = fd_arg(f"{c.ev.ret}<{c.ev.ret_detail}>") if c.ev.ret_detail else None
    real = deco[1] if deco and deco[1] else path
    role = F.DEVICE if real.startswith("/dev/") else F.FILE
    if role == F.DEVICE:
        cat = OTHER_CAT
    c.new_fd(n, role, real.split("<", 1)[0])
    return c.say(_file_note(f"open {path} as fd {n}", path, cat, resolver) + _shared_wait(c, cat), cat)


def _shared_wait(c: Ctx, cat: str) -> str:
    """File work on a thread that shares its epoll fd blocks that thread only."""
    if cat != OTHER_CAT or not c.m.is_loop(c.ev.tid) or not R.serving(c.m, c.ev.tid):
        return ""
    others = R.fellow_waiters(c.m, c.ev.tid)
    if not others:
        return ""
    eps = ", ".join(str(e) for e in sorted(c.m.epolls_of(c.ev.tid)))
    return (f": blocks thread {c.ev.tid} only; threads {_tids(others)} "
            f"wait on the same epoll {eps} and keep serving")


def _work(c: Ctx) -> str:
    """Category of file or resolver work; done beside a loop, it makes the thread a pool thread."""
    cat = R.work_category(c.m, c.ev.tid)
    if cat == POOLED:
        # uvloop skips the eventfd write when a wakeup is already pending, so a
        # pool thread may never write it: its work is what shows it.
        c.m.saw_pool_work(c.ev.tid)
    return cat


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


def _rw(c: Ctx) -> Verdict:
    fd = c.arg_fd(0)
    name = c.ev.syscall
    nbytes = c.ret_int()
    is_write = name in WRITES
    if fd is None:
        return c.say(f"{name} on an fd the lab could not read")
    if fd.role in (F.FILE, F.DEVICE) or (fd.role == F.UNKNOWN and fd.detail.startswith("/")):
        cat = _work(c) if fd.role == F.FILE else OTHER_CAT
        resolver = fd.detail in F.RESOLVER_FILES
        verb = "write" if is_write else "read"
        amount = f"{nbytes} bytes" if nbytes is not None and c.ok else (c.ev.errno or "?")
        return c.say(_file_note(f"{verb} {amount} from {fd.detail or 'a file'}" if not is_write
                                else f"{verb} {amount} to {fd.detail or 'a file'}",
                                fd.detail, cat, resolver) + _shared_wait(c, cat), cat)
    if is_write and fd.role not in (F.STDIO, F.CLIENT):
        verdict = _wakeup_write(c, fd)
        if verdict is not None:
            return verdict
    cat = POLLABLE if fd.role in POLLABLE_ROLES else OTHER_CAT
    if c.role != LOOP and fd.role not in (F.STDIO,) and R.process_has_loop(c.m, c.ev.tid) and cat == POLLABLE:
        cat = OTHER_CAT
    if fd.role == F.CLIENT and _loopless(c):
        return _blocking_client_io(c, fd, nbytes, is_write)
    c.category = cat
    if not c.ok:
        if c.ev.errno == "EAGAIN":
            return c.say(f"{name} fd {fd.num} ({fd.describe()}): nothing more for now (EAGAIN), "
                          "back to epoll")
        return c.say(c.failed_note(f"{name} fd {fd.num} ({fd.describe()})"))
    if fd.role == F.CLIENT:
        if not is_write and nbytes == 0:
            return c.say(f"{name} fd {fd.num}: 0 bytes = the client closed its end (EOF)")
        text = _first_line(c)
        return c.say(f"{name} {nbytes} bytes {'to' if is_write else 'from'} client fd {fd.num}"
                      f"{': ' + text if text else ''}")
    if fd.role == F.WAKEUP and not is_write:
        others = R.fellow_waiters(c.m, c.ev.tid)
        if others:
            eps = ", ".join(str(e) for e in sorted(c.m.epolls_of(c.ev.tid)))
            return c.say(f"{name} drains wakeup fd {fd.num} ({fd.detail}): the wakeup written for the "
                         f"threads sharing epoll {eps} is used up", POLLABLE)
        if fd.wakes == "signal":
            return c.say(f"{name} drains wakeup fd {fd.num} ({fd.detail}): the signal number its handler "
                         "wrote; the loop runs the signal's callback now", POLLABLE)
        return c.say(f"{name} drains wakeup fd {fd.num} ({fd.detail}): queued callbacks from other "
                     "threads run now", POLLABLE)
    return c.say(f"{name} {nbytes} bytes {'to' if is_write else 'from'} fd {fd.num} ({fd.describe()})")


def _blocking_client_io(c: Ctx, fd: F.Fd, nbytes: int | None, is_write: bool) -> Verdict:
    """Socket I/O in a process with no loop: the call blocks its thread until done."""
    name, why = c.ev.syscall, "blocking I/O on a thread of its own, no event loop"
    if not c.ok:
        return c.say(c.failed_note(f"{name} fd {fd.num} ({fd.describe()})") + f": {why}", OTHER_CAT)
    if not is_write and nbytes == 0:
        return c.say(f"{name} fd {fd.num}: 0 bytes = the client closed its end (EOF): {why}", OTHER_CAT)
    text = _first_line(c)
    return c.say(f"{name} {nbytes} bytes {'to' if is_write else 'from'} client fd {fd.num}"
                 f"{': ' + text if text else ''}: {why}", OTHER_CAT)


# The buffer (second argument) of a read or write on a client: its HTTP
# request or status line, found without splitting every argument.
_REQ_LINE = re.compile(r'^\s*-?\d+(?:<.*?>)?,\s*"((?:GET|HEAD|POST|PUT|DELETE|OPTIONS|PATCH) '
                       r'[^ ]+ HTTP/1\.[01]|HTTP/1\.[01] \d{3}[^\\"]*)', re.S)
# Else the start of the buffer (or of sendmsg's first iov_base) for a text protocol.
_BUFFER = re.compile(r'^\s*-?\d+(?:<.*?>)?,\s*(?:\{msg_name=.*?iov_base=)?"((?:[^"\\]|\\.){1,240})', re.S)
_TEXT_LINE = re.compile(r"[A-Za-z][\x20-\x5b\x5d-\x7e]{0,119}")  # printable, no backslash
_RESP = re.compile(r"\*(\d{1,4})\\r\\n((?:\$\d{1,9}\\r\\n[^\\]*\\r\\n)+)")
_RESP_WORD = re.compile(r"\$\d{1,9}\\r\\n([^\\]*)\\r\\n")
_RESP_REPLY = re.compile(r"[+\-:]([\x20-\x5b\x5d-\x7e]{1,80})\\r\\n|\$(-?\d{1,9})\\r\\n")


def _first_line(c: Ctx) -> str:
    m = _REQ_LINE.match(c.ev.args)
    if m:
        return m.group(1)
    m = _BUFFER.match(c.ev.args)
    return _protocol_line(m.group(1)) if m else ""


def _protocol_line(buf: str) -> str:
    """The request or reply line of a text protocol, as strace printed the buffer.

    RESP (redis): `*1\\r\\n$4\\r\\nPING\\r\\n` -> `PING (RESP)`; a line protocol
    (memcached, SMTP, redis inline): the text before the first `\\r\\n`.
    """
    m = _RESP.match(buf)
    if m:
        words = _RESP_WORD.findall(m.group(2))
        more = " ..." if len(words) < int(m.group(1)) else ""
        return " ".join(words) + more + " (RESP)"
    line, sep, _ = buf.partition("\\r\\n")
    if not sep and not buf.endswith("\\n"):
        return ""
    line = line.removesuffix("\\n")
    if _TEXT_LINE.fullmatch(line):
        return line
    m = _RESP_REPLY.match(buf)
    if m:
        return (f"{buf[0]}{m.group(1)}" if m.group(1) else f"${m.group(2)}") + " (RESP)"
    return ""


def _wakeup_write(c: Ctx, fd: F.Fd) -> Verdict | None:
    """A write that wakes a wait: a signal's self-pipe, a pool thread waking
    its loop, one loop waking another; None for any other write."""
    tid, name = c.ev.tid, c.ev.syscall
    wake = R.wake_of(c.m, tid, fd)
    sig, shown = _in_handler(c)
    if sig is not None and (wake is not None or R.process_has_loop(c.m, tid)):
        # The kernel runs a signal handler on any thread; CPython's and
        # uvloop's write the signal number to the loop's self-pipe (which
        # libuv may have registered through io_uring, out of sight).
        _mark_wakeup(c, fd, "signal")
        return c.say(f"{name} fd {fd.num} ({fd.describe()}) from the {sig} signal handler: the signal number "
                     "goes into the loop's self-pipe, so the signal arrives as readable data "
                     f"(signals are pollable this way){shown}", POLLABLE)
    if wake is None or (wake.by_loop_itself and fd.role != F.WAKEUP):
        return None
    _mark_wakeup(c, fd)
    if wake.by_loop_itself:
        return c.say(f"{name} to wakeup fd {fd.num} ({fd.detail}) by the loop itself: a callback was "
                     "queued thread-safely from the loop thread (in asyncio, when a pool job finished "
                     "before the loop chained its future, the loop wakes itself)", POLLABLE)
    how = "eventfd" if fd.detail == "eventfd" else "self-pipe"
    eps = ", ".join(str(e) for e in wake.epolls) or "(registered via io_uring)"
    head = f"{name} to fd {fd.num} ({how}) that epoll {eps} watches"
    woken = _tids(wake.woken)
    if c.m.is_loop(tid):
        if len(wake.woken) == 1:
            return c.say(f"{head}: loop thread {tid} wakes loop thread {woken}, which waits on epoll "
                         f"{eps}: one loop hands work to another", WAKEUP_CAT)
        return c.say(f"{head}: thread {tid} wakes one of the threads {woken}, which all wait on epoll "
                     f"{eps} (one epoll fd shared by several threads)", WAKEUP_CAT)
    c.m.saw_pool_work(tid)
    if len(wake.woken) > 1:
        return c.say(f"{head}: this thread wakes one of the threads {woken}, which all wait on epoll "
                     f"{eps} (one epoll fd shared by several threads)", WAKEUP_CAT)
    whom = f"loop thread {woken}" if woken else "the loop"
    return c.say(f"{head}: this thread wakes {whom}, which then runs what this thread "
                 "queued (for a pool thread, the finished job's callback)",
                 WAKEUP_CAT)


SIGNAL_WINDOW = 0.01  # seconds after delivery a call is still taken as the handler's, without rt_sigreturn


def _in_handler(c: Ctx) -> tuple[str | None, str]:
    """The signal whose handler this thread is running, and how the log shows it.

    With rt_sigreturn traced, a handler runs from delivery to its return.
    Without it, the log cannot show the return: a call soon after delivery
    (no wait between, within SIGNAL_WINDOW) is taken as the handler's, and the
    note says so.
    """
    got = c.m.in_signal.pop(c.ev.tid, None)
    if got is None:
        return None, ""
    sig, at = got
    if c.m.sigreturns_traced():
        return sig, ""
    if at is not None and c.ev.ts is not None:
        gap = c.ev.ts - at
        if gap > SIGNAL_WINDOW:
            return None, ""
        return sig, (f" (this log does not trace rt_sigreturn; {gap * 1000:.1f} ms after {sig} with no "
                     "wait between, so taken as its handler's)")
    return sig, " (this log does not trace rt_sigreturn or times, so its handler's is an inference)"


def _tids(tids) -> str:
    """Thread ids for a note; strace to stderr prints no pid on the first process's lines."""
    return " ".join(str(t) if t is not None else "(the one whose lines have no pid)"
                    for t in sorted(tids, key=str))


def _mark_wakeup(c: Ctx, fd: F.Fd, by: str = "thread") -> None:
    """An fd (and its peer) written to wake a wait is a wakeup fd, whatever made it."""
    fd.role, fd.wakes = F.WAKEUP, by
    peer = c.table.fds.get(fd.peer) if fd.peer is not None else None
    if peer is not None:
        peer.role, peer.wakes = F.WAKEUP, by
    c.m.saw_wakeup_fd(c.ev.tid, by, fd.born, peer.born if peer is not None else None)


def _close(c: Ctx) -> Verdict:
    fd = c.arg_fd(0)
    if fd is None:
        return c.say("close")
    what = fd.describe()
    cat = OTHER_CAT
    if fd.role == F.CLIENT:
        cat = POLLABLE
        what += ": the connection is done"
    elif fd.role == F.FILE:
        cat = _work(c)
    c.table.close(fd.num)
    return c.say(f"close fd {fd.num} ({what})" if c.ok else c.failed_note(f"close fd {fd.num}"), cat)


def _dup(c: Ctx) -> Verdict:
    old = c.arg_fd(0)
    n = c.ret_int()
    if not c.ok or old is None or n is None:
        return c.say(c.failed_note(c.ev.syscall) if not c.ok else c.ev.syscall)
    new = F.Fd(n, old.role, old.detail, born=c.ev.line, peer=old.peer)
    c.table.open(new)
    c.fds.append(new)
    std = {0: "stdin", 1: "stdout", 2: "stderr"}.get(n)
    return c.say(f"{c.ev.syscall}: fd {n}{' (' + std + ')' if std else ''} is now a copy of fd {old.num} "
           f"({old.describe()})")


def _fcntl(c: Ctx) -> Verdict:
    if len(c.args) > 1 and c.args[1].startswith("F_DUPFD"):
        return _dup(c)
    c.arg_fd(0)
    return c.say(f"fcntl {c.args[1] if len(c.args) > 1 else ''}".strip())


def _clone(c: Ctx) -> Verdict:
    c.m.pending_clones.pop(c.ev.tid, None)
    n = c.ret_int()
    if not c.ok or not n:
        return c.say(c.failed_note(c.ev.syscall) if not c.ok else c.ev.syscall)
    flags = c.ev.args
    if c.ev.syscall in ("fork", "vfork"):
        flags = "CLONE_VM" if c.ev.syscall == "vfork" else ""
    if n not in c.m.procs.process_of:  # else attached when its first call came early
        c.m.procs.cloned(c.ev.tid, n, flags)
    if "CLONE_THREAD" in flags:
        return c.say(f"{c.ev.syscall} started thread {n} in this process (e.g. a pool worker)")
    return c.say(f"{c.ev.syscall} started child process {n} (its fd table is a copy)")


def _execve(c: Ctx) -> Verdict:
    prog = quoted(c.args[0]) if c.args else None
    if c.ok:
        c.table.exec()
        return c.say(f"execve {prog}: this process now runs another program (close-on-exec fds are gone)")
    return c.say(f"execve {prog}: {c.ev.errno}")


def _exit_group(c: Ctx) -> Verdict:
    return c.say(f"exit_group({c.args[0] if c.args else ''}): the process ends")


def _shutdown(c: Ctx) -> Verdict:
    fd = c.arg_fd(0)
    return c.say(f"shutdown fd {fd.num if fd else '?'} ({fd.describe() if fd else ''}) {c.args[1] if len(c.args) > 1 else ''}",
           POLLABLE if fd and fd.role == F.CLIENT else OTHER_CAT)


def _generic(c: Ctx) -> Verdict:
    if c.args:
        c.arg_fd(0)
    return c.say(c.ev.syscall + (f": {c.ev.errno}" if c.ev.errno else ""))


def _sigreturn(c: Ctx) -> Verdict:
    c.m.learned.sigreturns = True
    sig = c.m.in_signal.pop(c.ev.tid, (None, None))[0]
    if sig is None:
        return c.say(f"{c.ev.syscall}: a signal handler returns (its signal came before this log shows)")
    return c.say(f"{c.ev.syscall}: the {sig} handler returns; the thread goes on where {sig} "
                 "interrupted it")


def _signal(c: Ctx) -> Verdict:
    sig = c.ev.syscall
    c.m.in_signal[c.ev.tid] = (sig, c.ev.ts)
    why = {
        "SIGCHLD": "a child process ended; the loop learns it through its signal handler",
        "SIGINT": "interrupt (Ctrl-C, or the recipe stopping the server)",
        "SIGTERM": "asked to terminate",
        "SIGPIPE": "wrote to a closed pipe or socket",
    }.get(sig, "signal delivered")
    return c.say(f"{sig}: {why}")


def _exit_note(ev: Event) -> str:
    if ev.ret is not None:
        return f"thread/process {ev.tid} exited with {ev.ret}"
    if ev.syscall:
        return f"thread/process {ev.tid} was killed by {ev.syscall}"
    return f"thread/process {ev.tid}: {ev.args}"


HANDLERS: dict[str, Callable[[Ctx], Verdict]] = {
    "epoll_create": _epoll_create, "epoll_create1": _epoll_create, "epoll_ctl": _epoll_ctl,
    "accept": _accept, "accept4": _accept, "socket": _socket, "bind": _bind, "listen": _listen,
    "connect": _connect, "pipe": _pipe, "pipe2": _pipe, "socketpair": _socketpair,
    "eventfd": _eventfd, "eventfd2": _eventfd, "timerfd_create": _timerfd,
    "timerfd_settime": _timerfd_settime, "signalfd": _signalfd, "signalfd4": _signalfd,
    "io_uring_setup": _io_uring_setup, "io_uring_enter": _io_uring_enter,
    "open": _open, "openat": _open, "close": _close, "dup": _dup, "dup2": _dup, "dup3": _dup,
    "fcntl": _fcntl, "execve": _execve, "exit_group": _exit_group, "shutdown": _shutdown,
    **{w: _epoll_wait for w in WAITS}, **{w: _poll_wait for w in POLL_WAITS}, **{r: _rw for r in READS | WRITES},
    **{k: _clone for k in CLONES}, **{k: _sigreturn for k in SIGRETURNS},
}


