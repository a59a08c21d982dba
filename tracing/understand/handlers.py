"""Per-call handlers: each reads one event against the model and returns a
verdict (category, note, ready fds, evidence) for its record.

Handlers update the model with what the call did (an fd born or closed, an
epoll registration, a thread that waited, a write that fills a wakeup fd) and
ask the role stage (`roles`) what that means; they never touch the record
itself. A note makes a causal claim ("woken by", "inside the SIGTERM
handler", "blocks the loop"...) only with the line that proves it, cited
through `Ctx.cite` (the claims and what each needs: `tracing.understand.claims`).
"""

from __future__ import annotations

import re
import signal as _signal_module
from functools import cached_property
from typing import Callable

from tracing.understand import fds as F
from tracing.understand import roles as R
from tracing.understand.changes import List
from tracing.understand.model import Model
from tracing.names import (BLOCKING, CLONES, LOOP, OTHER_CAT, POLLABLE, POLLABLE_ROLES, POOL,
                           POLL_WAITS, POOLED, READS, RESOLVER_FILES, SIGRETURNS, WAITS, WAKEUP_CAT,
                           WRITES)
from tracing.read.parse import (Event, close_paren, epoll_items, fd_arg, first_fd, quoted, split_args,
                           to_int)


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
        fd = self.table.get(*got, line=self.ev.line)
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


def _tids(tids) -> str:
    """Thread ids for a note; strace to stderr prints no pid on the first process's lines."""
    return " ".join(str(t) if t is not None else "(the one whose lines have no pid)"
                    for t in sorted(tids, key=str))


def _whom(c: Ctx, tids) -> str:
    """One thread by its role: "loop thread 12" only where it is a loop."""
    tid = next(iter(tids))
    return f"loop thread {tid}" if c.m.is_loop(tid) else f"thread {tid}"


def _slept(c: Ctx) -> str:
    return f", slept {c.ev.duration * 1000:.1f} ms" if c.ev.duration and c.ev.duration >= 0.001 else ""


# -- epoll ----------------------------------------------------------------------

def _epoll_create(c: Ctx) -> Verdict:
    n = c.ret_int()
    if not c.ok or n is None:
        return c.say(c.failed_note(c.ev.syscall), POLLABLE)
    c.new_fd(n, F.EPOLL)
    made = f"{c.ev.syscall} made epoll instance fd {n}"
    waited = c.m.epoll_is_waited(c.ev.tid, c.ev.line)
    if waited:
        first = c.m.prior.first_waits.get((c.m.proc(c.ev.tid), c.ev.line))
        who = f": thread {first[1]} waits on it, first at line {first[0]}" if first else ""
        return c.say(f"{made}, the set of fds a wait watches{who}", POLLABLE)
    if waited is None:  # one pass: what comes later is not known yet
        return c.say(f"{made}: a set of fds a thread can wait on", POLLABLE)
    return c.say(f"{made}; no thread waits on it anywhere in this log, so it serves no loop", OTHER_CAT)


def _what_wakes(fd: F.Fd, events: str) -> str:
    """What makes a watched fd ready, from its kind and the events asked for: definitions, not causes."""
    if "IN" not in events and "OUT" in events:
        return "room to write makes it writable"
    if fd.role == F.LISTENING:
        return "a pending connection makes it readable"
    if fd.role == F.CLIENT:
        return "data or a hang-up from the client makes it readable"
    if fd.detail == "eventfd":
        return "a write to the eventfd makes it readable"
    if fd.role == F.TIMER:
        return "it becomes readable when the timer expires"
    if fd.role == F.SIGNAL:
        return "a pending signal makes it readable"
    if fd.peer is not None or fd.role in (F.PIPE, F.WAKEUP):
        return "data written to its other end makes it readable"
    return "its wait reports it when it is ready"


# epoll_ctl's four arguments without the general splitter (a hot call in
# servers that register each connection).
_CTL_ARGS = re.compile(r"^\s*(-?\d{1,10})(?:<(.*?)>)?,\s*(EPOLL_CTL_\w+|\d+),\s*(-?\d{1,10})(?:<(.*?)>)?,\s*(.*)$",
                       re.S)


def _epoll_ctl(c: Ctx) -> Verdict:
    m = _CTL_ARGS.match(c.ev.args)
    if m and not m.group(1).startswith("-") and not m.group(4).startswith("-"):
        ep = c.table.get(int(m.group(1)), m.group(2), c.ev.line)
        target = c.table.get(int(m.group(4)), m.group(5), c.ev.line)
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
                     "its waits stop watching it")
    items = epoll_items(event)
    events, data = items[0] if items else ("?", target.num)
    old = watched.get(target.num)
    if old is None or old.events != events or old.data != data:
        watched[target.num] = F.Interest(target.num, events, data, c.ev.line)
    return c.say(f"epoll_ctl {opname} fd {target.num} = {target.describe()} to epoll {ep.num} for {events}: "
                 f"{_what_wakes(target, events)}")


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
    return _timeout_words(ms, raw), ms


def _timeout_words(ms: float | None, raw: str) -> str:
    if ms is None:
        return f"timeout {raw}"
    if ms < 0:
        return "no timeout: sleeps until an fd is ready"
    if ms == 0:
        return "timeout 0: returns at once, a poll"
    return f"timeout {ms:g} ms"


def _epoll_wait(c: Ctx) -> Verdict:
    ep = c.arg_fd(0)
    c.m.saw_wait(c.ev.tid, ep.num if ep else None, c.ev.line)
    c.category = POLLABLE
    when, ms = _timeout_text(c)
    slept = _slept(c)
    epname = f"epoll {ep.num}" if ep else "epoll"
    if not c.ok:
        if c.ev.errno is None:
            return c.say(f"{c.ev.syscall} on {epname}: no result seen{slept}")
        return c.say(f"{c.ev.syscall} on {epname} interrupted: {c.ev.errno}{slept}")
    n = c.ret_int()
    if n == 0:
        if ms and ms > 0:
            c.m.timed_out(c.ev.tid, c.ev.line)
            return c.say(f"{c.ev.syscall} on {epname} timed out after {ms:g} ms{slept}: nothing became ready")
        return c.say(f"{c.ev.syscall} on {epname}: nothing ready ({when})")
    ready, texts = [], []
    epnum = ep.num if ep else -1
    by_data = c.table.by_data(epnum)  # one pass over the interest list per wait
    # Only the ready array holds {events, data} items; no need to split it out.
    for events, data in epoll_items(c.ev.args):
        fd, how = c.table.resolve(epnum, data, events, by_data)
        if fd is None:
            ready.append({"fd": None, "role": F.UNKNOWN, "events": events, "data": data})
            texts.append(_unresolved(c, epnum, data, events, how, by_data))
            continue
        item = {"fd": fd.num, "role": fd.role, "detail": fd.detail, "events": events}
        if how == "data" and ep is not None:
            # Registered out of strace's sight (io_uring, or before the log): remember it now.
            item["via"] = "data"
            c.table.watched(ep.num)[fd.num] = F.Interest(fd.num, events, data)
            by_data = None
            c.m.registered_unseen(c.ev.tid, fd, c.ev.line)
        ready.append(item)
        texts.append(_ready_text(c, fd, item, how))
    t = c.m.thread(c.ev.tid)
    new = [f for f in (c.table.fds.get(r["fd"]) for r in ready
                       if r["fd"] not in t.ready or r["role"] == F.WAKEUP and r["fd"] not in t.notified)
           if f is not None]
    if new:
        c.m.saw_ready(c.ev.tid, new)
    c.ready = ready
    return c.say(f"{c.ev.syscall} on {epname} ({when}){slept} -> ready: {'; '.join(texts) or '?'}")


def _unresolved(c: Ctx, epnum: int, data: int, events: str, how: str, by_data) -> str:
    if how != "ambiguous" and not c.m.learned.missed:
        c.m.learned.missed = True  # a second first pass, from the fds seen before the log, may name it
    if how == "ambiguous":
        nums = (by_data if by_data is not None else c.table.by_data(epnum)).get(data, [])
        return (f"data {data} {events}: registered for fds {' and '.join(str(n) for n in nums)}, and these "
                "events could be either's")
    return (f"data {data} (names no fd this log knows: registered before the log began, or through a call "
            f"strace does not decode) {events}")


def _ready_text(c: Ctx, fd: F.Fd, item: dict, how: str) -> str:
    """One ready fd: what its events mean for its kind, and for a pipe, socketpair or
    eventfd the write that filled it (the evidence of "woken by")."""
    ev = item["events"]
    head = f"fd {fd.num} {fd.role}{' ' + fd.detail if fd.detail and fd.role != F.CLIENT else ''} {ev}"
    if how == "events":
        head += " (one of several fds registered with the same data; only it can raise these events)"
    elif how == "data":
        head += " (no epoll_ctl in this log registers it; data holds its number)"
    closed = c.m.closed.get(fd.other_end()) if "HUP" in ev else None
    if closed is not None:
        return f"{head} (its other end was closed at {c.cite('peer-closed', *closed)})"
    if "HUP" in ev and fd.role != F.LISTENING:
        return f"{head} (hung up: no close of its other end appears in this log before this)"
    if "IN" not in ev and "OUT" in ev:
        if fd.connecting is not None:
            at, by = fd.connecting
            c.m.connected(c.ev.tid, fd, c.ev.line)
            return f"{head} (the connect at {c.cite('connected', at, by)} has completed: connection completed)"
        return f"{head} (room to write)"
    if fd.role in (F.WAKEUP, F.PIPE, F.SOCKET) and "IN" in ev:
        filled = _filled(c, fd)
        if item["role"] != fd.role:  # the write that filled it makes it a wakeup fd
            item["role"] = fd.role
            head = head.replace(f"fd {fd.num} {F.PIPE}", f"fd {fd.num} {fd.role}", 1).replace(
                f"fd {fd.num} {F.SOCKET}", f"fd {fd.num} {fd.role}", 1)
        return f"{head} ({filled})"
    return f"{head} ({_READY_MEANS.get(fd.role, 'ready')})"


_READY_MEANS = {
    F.LISTENING: "a connection is pending",
    F.CLIENT: "readable: data or EOF from the client",
    F.TIMER: "the timer expired",
    F.SIGNAL: "a signal is pending",
}


def _filled(c: Ctx, fd: F.Fd) -> str:
    """Which write (since a wait last returned this fd) filled it: the evidence, named."""
    ev = c.ev
    span = (ev.ts, ev.ts + ev.duration) if ev.ts is not None and ev.duration is not None else None
    writes, before = c.m.returned(ev.tid, fd, ev.line, span)
    if not writes and ev.line in c.m.prior.woken_by:
        writes = [c.m.prior.woken_by[ev.line]]  # printed after this wait (a merge of -ff files)
    if not writes:
        gap = (f"; {c.m.lost[1]} calls were lost at line {c.m.lost[0]}: a write may be among them"
               if c.m.lost is not None else "")
        if before is not None:
            return f"nothing written to it since the wait at line {before} returned it: still unread{gap}"
        return ("no write to it appears in this log before this: made readable before the log began, or by an "
                f"untraced writer{gap}")
    line, tid, sig, delivered, _ = writes[0]
    if fd.role != F.WAKEUP and (sig or c.m.proc(tid) == c.m.proc(c.ev.tid)):
        fd.role, fd.wakes = F.WAKEUP, "signal" if sig else "thread"  # written to wake this process's wait
    said = [_one_write(c, w) for w in writes[:4]]
    more = f", and {len(writes) - 4} more write(s)" if len(writes) > 4 else ""
    return " and ".join(said) + more


def _one_write(c: Ctx, write: tuple) -> str:
    """One write that filled a ready fd, cited: "woken by the write at line N (thread T)"."""
    line, tid, sig, delivered, _ = write
    if sig:
        c.cite("signal-handler", delivered, tid)
        return (f"woken by the write at {c.cite('woken-by', line, tid)}, inside the {sig} signal handler "
                f"(delivered at line {delivered})")
    if tid == c.ev.tid:
        return f"its own write at {c.cite('itself', line, tid)}"
    return f"woken by the write at {c.cite('woken-by', line, tid)}"


# -- poll, ppoll, select, pselect6 ---------------------------------------------

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
        end = close_paren(args[1:]) + 1 if args.startswith("[") else -1  # the list's own "]"
        head, rest = (args[:end + 1], args[end + 1:]) if end > 0 else ("", args)
        for m in _POLLFD.finditer(head):
            if not m.group(1).startswith("-"):
                watched.append(c.table.get(int(m.group(1)), m.group(2), c.ev.line))
        tail = split_args(rest)
        raw = tail[2] if len(tail) > 2 else "?"
        ready = [(int(m.group(1)), m.group(3)) for m in _POLLFD.finditer(c.ev.ret_detail or "")]
    else:
        sets = split_args(args)
        for i in (1, 2, 3):
            if i < len(sets) and sets[i].startswith("["):
                for m in _SETFD.finditer(sets[i]):
                    watched.append(c.table.get(int(m.group(1)), m.group(2), c.ev.line))
        raw = sets[4] if len(sets) > 4 else "?"
        ready = [(int(n), _SET_EVENTS[kind]) for kind, nums in _SETS.findall(c.ev.ret_detail or "")
                 for n in nums.split() if n.isdigit() and len(n) <= 10]
    seen: dict[int, F.Fd] = {}
    for fd in watched:
        seen.setdefault(fd.num, fd)
    c.fds.extend(seen.values())
    c.m.saw_poll(c.ev.tid, len(seen), c.ev.line)
    ms = _poll_timeout_ms(name, raw)
    when = _timeout_words(ms, raw)
    fds = ", ".join(f"{f.num} ({f.describe()})" for f in seen.values()) or "none"
    head = f"{name} on fds {fds} ({when}){_slept(c)}"
    if not c.ok:
        return c.say(f"{head}: {c.ev.errno or 'no result seen'}")
    if c.ret_int() == 0:
        if ms is not None and ms > 0:
            c.m.timed_out(c.ev.tid, c.ev.line)
        return c.say(f"{head}: nothing ready, timed out")
    items, texts = [], []
    for num, events in ready:
        fd = seen.get(num) or c.table.fds.get(num)
        item = {"fd": num, "role": fd.role if fd else F.UNKNOWN, "detail": fd.detail if fd else "", "events": events}
        items.append(item)
        if fd is None:
            texts.append(f"fd {num} {events} (not known)")
        else:
            as_epoll = {**item, "events": _poll_events(events)}
            texts.append(_ready_text(c, fd, as_epoll, "registered"))
            item["role"] = as_epoll["role"]
    c.m.saw_ready(c.ev.tid, [f for f in (seen.get(n) for n, _ in ready) if f])
    c.ready = items
    return c.say(f"{head} -> ready: {'; '.join(texts) or '?'}")


def _poll_events(events: str) -> str:
    """poll's and select's words in epoll's, for `_ready_text`."""
    if events in ("readable", "POLLIN") or "POLLIN" in events:
        return "EPOLLIN" + ("|EPOLLHUP" if "HUP" in events else "")
    if events in ("writable", "POLLOUT") or "POLLOUT" in events:
        return "EPOLLOUT"
    return events


def _poll_timeout_ms(name: str, raw: str) -> float | None:
    if raw == "NULL":
        return -1
    m = _TIMESPEC.search(raw)
    if m:
        frac = int(m.group(3)) / (1e6 if m.group(2) == "n" else 1e3)
        return int(m.group(1)) * 1000 + frac
    return to_int(raw) if name == "poll" else None


# -- sockets --------------------------------------------------------------------

def _accept(c: Ctx) -> Verdict:
    lst = c.arg_fd(0)
    c.category = POLLABLE
    if lst is not None and lst.role in (F.SOCKET, F.UNKNOWN, F.LISTENING):
        if lst.role != F.LISTENING:
            lst.role = F.LISTENING
            if lst.born is None and lst.seen is not None:
                # Made before the log: a second pass knows it is a listener from its first sight.
                c.m.learned.seed_roles[(c.m.proc(c.ev.tid), lst.num, lst.seen)] = F.LISTENING
        c.m.accepting(c.ev.tid)
    name = f"the listening socket {lst.detail}".rstrip() if lst else "a socket"
    if not c.ok:
        if c.ev.errno == "EAGAIN":
            took = _taken_by(c, lst)
            return c.say(f"{c.ev.syscall} on {name}: no connection pending (EAGAIN){took}")
        return c.say(c.failed_note(f"{c.ev.syscall} on {name}"))
    n = c.ret_int()
    deco = c.ev.ret_detail if c.ev.ret_detail and "->" in (c.ev.ret_detail or "") else ""
    detail = re.sub(r"^TCP(v6)?:\[(.*)\]$", r"\2", deco) if deco else ""
    if n is None:
        return c.say(f"{c.ev.syscall} on {name} returned {c.ev.ret}, not an fd")
    c.new_fd(n, F.CLIENT, detail)
    proc = c.m.proc(c.ev.tid)
    if proc not in c.m.accepted:
        c.m.accepted[proc] = (c.ev.line, c.ev.tid)
    said = f"{c.ev.syscall} on {name} returned fd {n}, a new client connection {detail}".rstrip()
    if _loopless(c) and proc not in c.m.loopless_said:
        c.m.loopless_said.add(proc)
        said += (" [no thread of this process waits for readiness on several fds anywhere in this log: there "
                 "is no event loop; each connection is served by blocking calls]")
    return c.say(said)


def _taken_by(c: Ctx, lst: F.Fd | None) -> str:
    """EAGAIN after a wait said a connection was pending: another thread's accept, named."""
    if lst is None:
        return ""
    mine = c.m.last.get(c.ev.tid)
    since = mine.line if mine is not None else 0
    proc = c.m.proc(c.ev.tid)
    for tid, prev in c.m.last.items():
        if (tid != c.ev.tid and c.m.proc(tid) == proc and prev.syscall in ("accept", "accept4")
                and prev.errno is None and prev.line > since and first_fd(prev.args)
                and first_fd(prev.args)[0] == lst.num):
            return (f": the {prev.syscall} at {c.cite('took-it', prev.line, tid)} took the connection "
                    "(both threads wait for this listening socket)")
    return ""


def _loopless(c: Ctx) -> bool:
    """Known (from the whole log) to have no loop thread in this process."""
    return c.m.prior.complete and not R.process_has_loop(c.m, c.ev.tid)


def _socket(c: Ctx) -> Verdict:
    n = c.ret_int()
    if not c.ok or n is None:
        return c.say(c.failed_note("socket"))
    kind = " ".join(a for a in c.args[:2])
    c.new_fd(n, F.SOCKET, kind.split("|")[0])
    if "AF_NETLINK" in kind:
        _resolver_step(c, "a netlink socket")
    return c.say(f"socket made fd {n} ({kind})")


_ADDR = re.compile(r'sin6?_port=htons\((\d+)\).*?(?:inet_addr|inet_pton\(AF_INET6,)\s*\(?"([^"]+)"')
_UNIX_PATH = re.compile(r'sun_path="([^"]*)"')


def _addr(args: list[str]) -> str:
    text = args[1] if len(args) > 1 else ""
    m = _ADDR.search(text)
    if m:
        return f"{m.group(2)}:{m.group(1)}"
    m = _UNIX_PATH.search(text)
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
        if c.args and (deco := fd_arg(c.args[0])) and deco[1] and "[" in deco[1]:
            fd.detail = re.sub(r"^TCP(v6)?:\[(.*)\]$", r"\2", deco[1])
        port = fd.detail.rsplit(":", 1)[-1]
        if port.isdigit():
            c.m.listening_ports.add(port)
    return c.say(f"listen on fd {fd.num if fd else '?'}: it is now the listening socket {fd.detail if fd else ''}".rstrip()
                 if c.ok else c.failed_note("listen"), POLLABLE)


def _connect(c: Ctx) -> Verdict:
    fd = c.arg_fd(0)
    addr = _addr(c.args)
    if fd is not None and addr and fd.role != F.CLIENT:
        fd.detail = f"outbound to {addr}"
    text = f"connect fd {fd.num if fd else '?'} to {addr or 'a peer'}"
    if "nscd" in addr:
        # glibc asks nscd first for hosts, users and groups alike: which, the call does not say.
        _resolver_step(c, "nscd's socket")
        text += " (nscd, glibc's name-service cache"
        text += ", not running)" if c.ev.errno == "ENOENT" else ")"
        return c.say(text if c.ok or c.ev.errno == "ENOENT" else f"{text}: {c.ev.errno}", _work(c))
    if "htons(53)" in c.ev.args:
        _resolver_step(c, "a DNS server")
        return c.say(f"{text}: a DNS query's socket" + (f": {c.ev.errno}" if not c.ok else ""), _work(c))
    if c.ev.errno == "EINPROGRESS":
        if fd is not None:
            fd.connecting = (c.ev.line, c.ev.tid)
        at = c.m.prior.writable_at.get((c.m.proc(c.ev.tid), fd.born if fd is not None else None))
        then = (f"; the wait at {c.cite('connected', *at)} reports it writable: the connection completed"
                if at is not None else "; a wait reports it writable (EPOLLOUT) when it completes")
        cat = POLLABLE if c.role == LOOP else OTHER_CAT
        return c.say(f"{text}: EINPROGRESS, a non-blocking connect{then}", cat)
    if not c.ok:
        text += f": {c.ev.errno}"
    return c.say(text, OTHER_CAT)


def _pair(c: Ctx, role: str, detail: str, arg_index: int) -> Verdict:
    text = c.args[arg_index] if len(c.args) > arg_index else ""
    nums = [fd_arg(x) for x in split_args(text.strip("[]"))]
    if not c.ok or len(nums) != 2 or None in nums:
        return c.say(c.failed_note(c.ev.syscall) if not c.ok else f"{c.ev.syscall}: fds not readable")
    a = c.new_fd(nums[0][0], role, detail, F.unix_objects(nums[0][1]))
    b = c.new_fd(nums[1][0], role, detail, F.unix_objects(nums[1][1]))
    a.peer, b.peer, b.end = b.num, a.num, 1
    if F.WAKEUP in (a.role, b.role):
        a.role = b.role = F.WAKEUP
        first = c.m.prior.wakeup_births.get((c.m.proc(c.ev.tid), c.ev.line))
        how = ""
        if first is not None:
            by, line, tid, delivered = first
            how = f": written at line {line} (thread {tid}) to wake a wait on the other end"
            if by == "signal":
                how += f", inside the handler of the signal delivered at {c.cite('signal-handler', delivered, tid)}"
        return c.say(f"{c.ev.syscall} made fds {a.num} and {b.num}, a self-pipe{how}", POLLABLE)
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
    first = c.m.prior.wakeup_births.get((c.m.proc(c.ev.tid), c.ev.line))
    how = f": first written at line {first[1]} (thread {first[2]})" if first is not None else ""
    return c.say(f"{c.ev.syscall} made fd {n}, an eventfd: a counter that a write makes readable{how}", POLLABLE)


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


# -- io_uring ---------------------------------------------------------------------

def _libuv(c: Ctx) -> str:
    """uvloop's or node's libuv, if the log shows its code loaded: "(line N)" cited, else ""."""
    got = c.m.libuv.get(c.m.proc(c.ev.tid))
    return c.cite("libuv", *got) if got is not None else ""


def _io_uring_setup(c: Ctx) -> Verdict:
    n = c.ret_int()
    uv = _libuv(c)
    if not c.ok or n is None:
        then = (f": libuv (loaded at {uv}) falls back to plain epoll_ctl, so every registration shows in strace"
                if uv else "")
        return c.say(f"io_uring_setup refused ({c.ev.errno}){then}", POLLABLE)
    c.new_fd(n, F.IO_URING)
    then = (f": libuv (loaded at {uv}) registers fds with epoll through it (IORING_OP_EPOLL_CTL), so strace "
            "shows io_uring_enter where EPOLL_CTL_ADD would be" if uv else ": a submission and completion ring")
    return c.say(f"io_uring_setup made fd {n}{then}", POLLABLE)


def _io_uring_enter(c: Ctx) -> Verdict:
    c.arg_fd(0)
    n = c.args[1] if len(c.args) > 1 else "?"
    wanted = to_int(c.args[2]) if len(c.args) > 2 else None
    waits = len(c.args) > 3 and "IORING_ENTER_GETEVENTS" in c.args[3] and (wanted or 0) >= 1
    if waits:
        # Waiting for completions: a completion loop's wait, as epoll_wait is a readiness loop's.
        c.m.saw_completion_wait(c.ev.tid, c.ev.line)
    seen = c.m.uring.pop(c.ev.tid, None)
    if seen or c.m.proc(c.ev.tid) in c.m.ring_procs:
        # The kernel tracer showed what this call carried (tracing.uring).
        return c.say(_ring_enter(c, seen or (), n, wanted if waits else None), POLLABLE)
    if waits:
        took = f"the kernel took {c.ev.ret}" if c.ok else f"{c.ev.errno}"
        text = (f"io_uring_enter submitted {n} request(s) ({took}) and waited for at least {wanted} "
                f"completion(s){_slept(c)}: which operations were submitted and which completed, and on which "
                "fds, strace does not decode (the kernel tracer does)")
    else:
        text = (f"io_uring_enter submitted {n} request(s): which operations, and on which fds, strace does not "
                "decode")
    uv = _libuv(c)
    if uv:
        text += f"; libuv (loaded at {uv}) submits its epoll_ctl calls this way (IORING_OP_EPOLL_CTL)"
    prev = c.m.last.get(c.ev.tid)
    if prev is not None and prev.syscall in ("accept", "accept4") and prev.errno is None:
        fd = c.table.fds.get(to_int(prev.ret) or -1)
        at = c.m.prior.registered_late.get(c.m.reader_key(c.ev.tid, fd)) if fd is not None else None
        if at is not None:
            text += (f"; no epoll_ctl registers client fd {fd.num} (accept4 at {c.cite('ring-registration', prev.line)}), "
                     f"yet the wait at {c.cite('ring-registration', *at)} returns it: it was registered here, "
                     "through the ring")
    return c.say(text, POLLABLE)


def _ring_enter(c: Ctx, seen, n: str, wanted: int | None) -> str:
    """io_uring_enter with the kernel tracer's records of what it submitted, and of the
    completions posted since this thread's last io_uring_enter."""
    subs = [text for kind, text, _ in seen if kind == "sub"]
    start = c.ev.ts if c.ev.ts is not None else float("-inf")
    during = [text for kind, text, ts in seen if kind == "done" and (ts is None or ts >= start)]
    before = [text for kind, text, ts in seen if kind == "done" and ts is not None and ts < start]
    text = (f"io_uring_enter submitted {', '.join(subs)} (the io_uring_sqe record(s) above)" if subs
            else f"io_uring_enter submitted {n} request(s)")
    if wanted is not None:
        text += f" and waited for at least {wanted} completion(s){_slept(c)}"
    if during:
        text += f"; completions posted during it: {', '.join(during)}"
    elif wanted is not None and c.ok:
        text += "; no completion was posted during it: what it returned for was in the completion queue already"
    if before:
        text += f"; posted before it began: {', '.join(before)}"
    return text


# -- files ----------------------------------------------------------------------

_LIBUV = re.compile(r"/uvloop/loop\.[^/\"]*\.so|libuv\.so")


def _open(c: Ctx) -> Verdict:
    path_arg = c.args[1] if c.ev.syscall == "openat" and len(c.args) > 1 else (c.args[0] if c.args else "")
    path = quoted(path_arg) or path_arg
    if c.ok and _LIBUV.search(path) and c.m.proc(c.ev.tid) not in c.m.libuv:
        c.m.libuv[c.m.proc(c.ev.tid)] = (c.ev.line, c.ev.tid)
    lookup = _resolver_step(c, path) if path in RESOLVER_FILES else ""
    cat = _work(c)
    if not c.ok:
        return c.say(f"open {path}: {c.ev.errno}" + _where(c, cat, lookup), cat)
    n = c.ret_int()
    if n is None:
        return c.say(f"open {path}: returned {c.ev.ret}, not an fd", cat)
    deco = fd_arg(f"{c.ev.ret}<{c.ev.ret_detail}>") if c.ev.ret_detail else None
    real = deco[1] if deco and deco[1] else path
    role = F.DEVICE if real.startswith("/dev/") else F.FILE
    if role == F.DEVICE:
        cat = OTHER_CAT
    c.new_fd(n, role, real.split("<", 1)[0])
    what = f"open {path} as fd {n}"
    if cat == OTHER_CAT and not lookup and (path.endswith((".py", ".pyc", ".so")) or ".so." in path):
        return c.say(f"{what} (loading code)", cat)
    return c.say(what + _where(c, cat, lookup), cat)


def _resolver_step(c: Ctx, what: str) -> str:
    """A step a name lookup makes; with an earlier step on this thread since its last wait,
    the claim "name lookup", citing it. Reading /etc/hosts alone is no lookup."""
    steps = c.m.resolver_steps.setdefault(c.ev.tid, List())
    earlier = next((s for s in steps if s[1] != what), None)
    if len(steps) < 8 and all(s[1] != what for s in steps):
        steps.append((c.ev.line, what))
    if earlier is None:
        return ""
    return f"a name lookup's step (after {earlier[1]} at {c.cite('name-lookup', earlier[0])})"


def _where(c: Ctx, cat: str, lookup: str = "") -> str:
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
    shared = _shared_wait(c, cat) or _unseen_clients(c, cat)
    return (lead + shared) if (lead or shared) else ""


def _unseen_clients(c: Ctx, cat: str) -> str:
    """File work on a completion loop, under strace: its clients, if any, are accepted inside
    io_uring_enter, where strace does not look; say so rather than call it start-up."""
    t = c.m.thread(c.ev.tid)
    if (cat != OTHER_CAT or not t.completions or t.epoll or t.first_wait is None
            or R.serving(c.m, c.ev.tid) is not None or c.m.proc(c.ev.tid) in c.m.ring_procs):
        return ""
    return (": on the completion loop thread, between its waits (first at line "
            f"{t.first_wait}); whether it serves clients yet, strace cannot show (a ring's accepts happen "
            "inside io_uring_enter), so whether this keeps one waiting is not known")


def _shared_wait(c: Ctx, cat: str) -> str:
    """File work on a thread that shares its epoll fd blocks that thread only."""
    if cat != OTHER_CAT or not c.m.is_loop(c.ev.tid) or R.serving(c.m, c.ev.tid) is None:
        return ""
    others = R.fellow_waiters(c.m, c.ev.tid)
    if not others:
        return ""
    eps = ", ".join(str(e) for e in sorted(c.m.epolls_of(c.ev.tid)))
    cited = [c.cite("keep-serving", c.m.thread(t).first_wait, t) for t in sorted(others, key=str)
             if c.m.thread(t).first_wait is not None]
    return (f": blocks thread {c.ev.tid} only; threads {_tids(others)} wait on the same epoll {eps} "
            f"({', '.join(cited) or 'their waits'}) and keep serving")


def _work(c: Ctx) -> str:
    """Category of file or resolver work; the work is kept so a hand-back can name it."""
    c.m.saw_work(c.ev.tid, c.ev.line)
    return R.work_category(c.m, c.ev.tid)


def _rw(c: Ctx) -> Verdict:
    fd = c.arg_fd(0)
    name = c.ev.syscall
    nbytes = c.ret_int()
    is_write = name in WRITES
    if fd is None:
        return c.say(f"{name} on an fd the lab could not read")
    if fd.role in (F.FILE, F.DEVICE) or (fd.role == F.UNKNOWN and fd.detail.startswith("/")):
        lookup = _resolver_step(c, fd.detail) if fd.detail in RESOLVER_FILES else ""
        cat = _work(c) if fd.role == F.FILE else OTHER_CAT
        verb = "write" if is_write else "read"
        amount = f"{nbytes} bytes" if nbytes is not None and c.ok else (c.ev.errno or "?")
        text = f"{verb} {amount} {'to' if is_write else 'from'} {fd.detail or 'a file'}"
        return c.say(text + _where(c, cat, lookup), cat)
    if "SCM_RIGHTS" in c.ev.args:
        return _passed_fds(c, fd, is_write)
    if is_write and fd.role not in (F.STDIO, F.CLIENT):
        verdict = _wakeup_write(c, fd)
        if verdict is not None:
            return verdict
    cat = POLLABLE if fd.role in POLLABLE_ROLES else OTHER_CAT
    if c.role != LOOP and fd.role != F.STDIO and cat == POLLABLE and R.process_has_loop(c.m, c.ev.tid):
        cat = OTHER_CAT
    if fd.role == F.CLIENT and _loopless(c):
        return _blocking_client_io(c, fd, nbytes, is_write)
    if fd.role == F.CLIENT and c.role != LOOP:
        c.m.saw_work(c.ev.tid, c.ev.line)  # a connection served off the loop: work a pool thread hands back
    c.category = cat
    if not c.ok:
        if c.ev.errno == "EAGAIN":
            return c.say(f"{name} fd {fd.num} ({fd.describe()}): nothing more for now (EAGAIN)")
        return c.say(c.failed_note(f"{name} fd {fd.num} ({fd.describe()})"))
    if fd.role == F.CLIENT:
        if not is_write and nbytes == 0:
            return c.say(f"{name} fd {fd.num}: 0 bytes = the client closed its end (EOF)")
        text = _first_line(c)
        return c.say(f"{name} {nbytes} bytes {'to' if is_write else 'from'} client fd {fd.num}"
                     f"{': ' + text if text else ''}")
    if fd.role == F.WAKEUP and not is_write:
        return c.say(_drain(c, fd, nbytes), POLLABLE)
    return c.say(f"{name} {nbytes} bytes {'to' if is_write else 'from'} fd {fd.num} ({fd.describe()})")


def _drain(c: Ctx, fd: F.Fd, nbytes: int | None) -> str:
    """A read of a wakeup fd: it empties what a write put there, named where the log shows it."""
    name = c.ev.syscall
    text = f"{name} drains wakeup fd {fd.num} ({fd.detail or fd.describe()}): {nbytes} byte{'' if nbytes == 1 else 's'}"
    key = c.m.reader_key(c.ev.tid, fd)
    before = c.m.ready_at.get(key)
    if before is not None:
        text += f", which the wait at line {before} returned"
        fill = c.m.last_fill.get(key)
        if fill is not None:
            line, tid, sig, delivered, _ = fill
            text += f"; the write at line {line}{f' (thread {tid})' if tid != c.ev.tid else ''} put it there"
            if sig:
                text += f", inside the {sig} signal handler (delivered at {c.cite('signal-handler', delivered, tid)})"
    others = R.fellow_waiters(c.m, c.ev.tid)
    if others:
        eps = ", ".join(str(e) for e in sorted(c.m.epolls_of(c.ev.tid)))
        text += f"; threads {_tids(others)} share epoll {eps} with this one"
    return text


def _scm_fds(args: str) -> list:
    """The fds in `cmsg_type=SCM_RIGHTS, cmsg_data=[5<...>, 6<...>]`."""
    at = args.find("cmsg_type=SCM_RIGHTS, cmsg_data=[")
    if at < 0:
        return []
    body = args[at + len("cmsg_type=SCM_RIGHTS, cmsg_data=["):]
    end = close_paren(body)
    return [fd_arg(x) for x in split_args(body[:end] if end >= 0 else body)]


def _passed_fds(c: Ctx, fd: F.Fd, is_write: bool) -> Verdict:
    """sendmsg/recvmsg with SCM_RIGHTS: fds passed to another process (a connection born without accept)."""
    got = _scm_fds(c.ev.args)
    nums = []
    for item in got:
        if item is None:
            continue
        num, deco = item
        if is_write:
            passed = c.table.get(num, deco, c.ev.line)
            c.fds.append(passed)
            if deco:
                c.m.passed[deco] = (passed.role, passed.detail, c.ev.line, c.ev.tid)
        else:
            sent = c.m.passed.get(deco or "")
            base = F.from_decoration(num, deco, c.m.listening_ports)
            role, detail = (sent[0], sent[1]) if sent else (base.role, base.detail)
            new = c.new_fd(num, role, detail)
            if sent is not None:
                nums.append(f"fd {num}: the {new.describe()} sent at {c.cite('passed', sent[2], sent[3])}")
                if role == F.CLIENT and c.m.proc(c.ev.tid) not in c.m.accepted:
                    c.m.accepted[c.m.proc(c.ev.tid)] = (c.ev.line, c.ev.tid)
                continue
            if role == F.CLIENT and c.m.proc(c.ev.tid) not in c.m.accepted:
                c.m.accepted[c.m.proc(c.ev.tid)] = (c.ev.line, c.ev.tid)
        nums.append(f"fd {num} ({c.fds[-1].describe()})")
    where = "to" if is_write else "from"
    if is_write:
        c.m.hands_off(c.ev.tid)
    cat = POLLABLE if c.role == LOOP else OTHER_CAT
    verb = "passes" if is_write else "receives"
    return c.say(f"{c.ev.syscall} {where} fd {fd.num} ({fd.describe()}) {verb} fds with SCM_RIGHTS: "
                 f"{'; '.join(nums) or '?'}" + ("; born here without accept" if not is_write and any(
                     f.role == F.CLIENT for f in c.fds[1:]) else ""), cat)


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
    """A write into an fd a wait watches (or its other end): a signal's self-pipe, a pool
    thread handing back its work, one loop waking another, a loop waking itself. None for
    any other write."""
    tid, name = c.ev.tid, c.ev.syscall
    if fd.role not in (F.WAKEUP, F.PIPE, F.SOCKET):
        return None
    wake = R.wake_of(c.m, tid, fd)
    woke = c.m.prior.woke.get(c.ev.line)
    reader = fd if fd.detail == "eventfd" else c.table.fds.get(fd.peer) if fd.peer is not None else None
    # What the write fills: the eventfd itself, or the other end of the pipe or socketpair,
    # named by its object (the same in a forked child that writes its copy).
    filled = fd.object(c.m.proc(tid)) if fd.detail == "eventfd" else (
        fd.other_end() or (reader.object(c.m.proc(tid)) if reader is not None else None))
    sig, shown, delivered = _in_handler(c)
    job = None
    if filled is None and not c.m.learned.missed:
        c.m.learned.missed = True  # a pipe end whose other end the log has not shown yet
    if filled is not None:
        # Whether or not a wait is known to watch it yet: a later wait may return it.
        job = None if sig or c.m.is_loop(tid) else c.m.ends_job(tid)
        c.m.filled_by(tid, filled, c.ev.line, sig or "", delivered, job, c.ev.ts)
    if wake is None and woke is None and sig is None:
        return None
    if woke is not None and c.m.proc(woke[1]) != c.m.proc(tid) and sig is None:
        # Another process's wait takes it: data on a pipe (a child's output), not a wakeup fd.
        c.cite("wakes", woke[0], woke[1])
        return c.say(f"{name} {c.ret_int()} bytes to fd {fd.num} ({fd.describe()}): it wakes thread {woke[1]} of "
                     f"another process, whose wait at line {woke[0]} returns the other end", OTHER_CAT)
    _mark_wakeup(c, fd, ("signal", delivered) if sig else ("thread", None))
    how = "eventfd" if fd.detail == "eventfd" else "self-pipe"
    if reader is None or reader is fd:
        where = f"fd {fd.num} ({how})"
    else:
        where = f"fd {fd.num} ({how}; its other end is fd {reader.num})"
    eps = ", ".join(str(e) for e in wake.epolls) if wake is not None and wake.epolls else ""
    head = f"{name} to {where}" + (f", watched by epoll {eps}" if eps else "")
    woken = set(wake.woken) if wake is not None else set()
    if woke is not None and woke[1] != tid:
        woken.add(woke[1])
    then = _then(c, woke)
    if woken and sig is None:
        c.m.hands_off(tid)
    if sig is not None:
        text = (f"{head}, inside the {sig} signal handler (delivered at "
                f"{c.cite('signal-handler', delivered, tid)}){shown}")
        number = _signal_number(sig)
        byte = _first_byte(c.ev.args)
        if number is not None and byte == number:
            c.cite("signal-number", delivered, tid)
            text += f": it writes the signal number ({number})"
        elif byte is not None:
            text += f": it writes {_show_byte(byte)}"
        # The signal arrives as readable data on the waiting thread's fd: signals are pollable
        # this way. Written for another thread's wait, it wakes that thread.
        others = woken if woke is not None else set()
        return c.say(text + then, WAKEUP_CAT if others else POLLABLE)
    if not woken:
        if wake is not None and tid in wake.waiting or woke is not None:
            mine = woke[0] if woke is not None else c.m.thread(tid).first_wait
            return c.say(f"{head}: the writer waits there itself (its wait at {c.cite('itself', mine, tid)}), "
                         f"so it wakes itself; nobody else is woken", POLLABLE)
        return c.say(f"{head}: no thread waits there yet{then}", POLLABLE)
    if woke is None:
        # Someone waits where this write lands, but no wait of theirs is seen to return it.
        who = f"{_whom(c, woken)} waits" if len(woken) == 1 else f"threads {_tids(woken)} wait"
        return c.say(f"{head}: {who} there{then}", WAKEUP_CAT)
    if c.m.is_loop(tid):
        if len(woken) == 1:
            return c.say(f"{head}: loop thread {tid} wakes {_whom(c, woken)}{then}", WAKEUP_CAT)
        return c.say(f"{head}: thread {tid} wakes one of the threads {_tids(woken)}, which share epoll "
                     f"{eps} (one epoll fd shared by several threads){then}", WAKEUP_CAT)
    if job is not None and woke is not None:
        job = f"; it hands back the work it did since its last such write (first at {c.cite('finished-job', job)})"
    else:
        job = ""
    if len(woken) > 1:
        return c.say(f"{head}: thread {tid} wakes one of the threads {_tids(woken)}, which share epoll "
                     f"{eps}{then}{job}", WAKEUP_CAT)
    return c.say(f"{head}: thread {tid} wakes {_whom(c, woken)}{then}{job}", WAKEUP_CAT)


def _then(c: Ctx, woke) -> str:
    """The wait that returned the fd this write filled (known from the first pass)."""
    if woke is None:
        return (": no wait in this log returns it after this" if c.m.prior.complete
                else " (read as a stream: whether a wait returns it comes later)")
    line, tid = woke
    if tid == c.ev.tid:
        return f" (its own wait at {c.cite('itself', line, tid)} returns it)"
    c.cite("wakes", line, tid)
    return f" (woke its wait at line {line}, which returns it)"


def _first_byte(args: str) -> int | None:
    """The first byte of a write's buffer, as strace printed it (escapes included)."""
    m = re.search(r',\s*(?:\[\{iov_base=)?"((?:[^"\\]|\\.)*)', args)
    if not m or not m.group(1):
        return None
    s = m.group(1)
    if s[0] != "\\":
        return ord(s[0])
    esc = re.match(r"\\(x[0-9a-fA-F]{2}|[0-7]{1,3}|[ntrvfab\\\"'])", s)
    if not esc:
        return None
    code = esc.group(1)
    if code[0] == "x":
        return int(code[1:], 16)
    if code[0].isdigit():
        return int(code, 8)
    return {"n": 10, "t": 9, "r": 13, "v": 11, "f": 12, "a": 7, "b": 8, "\\": 92, '"': 34, "'": 39}[code]


def _show_byte(b: int) -> str:
    return f'"{chr(b)}"' if 32 < b < 127 else f"byte {b}"


def _signal_number(sig: str) -> int | None:
    try:
        return int(_signal_module.Signals[sig])
    except (KeyError, ValueError):
        return None


SIGNAL_WINDOW = 0.01  # seconds after delivery a call is still taken as the handler's, without rt_sigreturn


def _in_handler(c: Ctx) -> tuple[str | None, str, int | None]:
    """The signal whose handler this thread is running, how the log shows it, and the
    delivery's line.

    With rt_sigreturn traced, a handler runs from delivery to its return.
    Without it, the log cannot show the return: a call soon after delivery
    (no wait between, within SIGNAL_WINDOW) is taken as the handler's, and the
    note says so.
    """
    got = c.m.in_signal.get(c.ev.tid)
    if got is None:
        return None, "", None
    sig, at, line = got
    if c.m.sigreturns_traced():
        return sig, "", line  # the handler runs until its rt_sigreturn, which ends it
    c.m.in_signal.pop(c.ev.tid, None)
    if at is not None and c.ev.ts is not None:
        gap = c.ev.ts - at
        if gap > SIGNAL_WINDOW:
            return None, "", None
        return sig, (f" (this log does not trace rt_sigreturn; {gap * 1000:.1f} ms after {sig} with no "
                     "wait between, so taken as its handler's)"), line
    return sig, " (this log does not trace rt_sigreturn or times, so its handler's is an inference)", line


def _mark_wakeup(c: Ctx, fd: F.Fd, by: tuple) -> None:
    """An fd (and its peer) written to wake a wait is a wakeup fd, whatever made it.
    `by`: ("thread", None) or ("signal", the delivery's line)."""
    who = by[0]
    if fd.role != F.WAKEUP or fd.wakes != who:
        fd.role, fd.wakes = F.WAKEUP, who
    peer = c.table.fds.get(fd.peer) if fd.peer is not None else None
    if peer is not None and (peer.role != F.WAKEUP or peer.wakes != who):
        peer.role, peer.wakes = F.WAKEUP, who
    c.m.saw_wakeup_fd(c.ev.tid, (who, c.ev.line, c.ev.tid, by[1]), fd.born, peer.born if peer is not None else None)


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
    c.m.closed_fd(c.ev.tid, fd, c.ev.line)
    c.table.close(fd.num, c.ev.line)
    return c.say(f"close fd {fd.num} ({what})" if c.ok else c.failed_note(f"close fd {fd.num}"), cat)


def _dup(c: Ctx) -> Verdict:
    old = c.arg_fd(0)
    n = c.ret_int()
    if not c.ok or old is None or n is None:
        return c.say(c.failed_note(c.ev.syscall) if not c.ok else c.ev.syscall)
    # The copy names the same object: keep its birth, so a write through it fills the same pipe.
    new = F.Fd(n, old.role, old.detail, born=old.born, peer=old.peer, obj=old.obj, peer_obj=old.peer_obj,
               end=old.end, wakes=old.wakes, how=old.how, seen=old.seen)
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
    c.m.made(n, c.ev.tid, c.ev.line)
    c.m.hands_off(c.ev.tid)
    if "CLONE_THREAD" in flags:
        return c.say(f"{c.ev.syscall} started thread {n} in this process")
    return c.say(f"{c.ev.syscall} started child process {n} (its fd table is a copy)")


def _execve(c: Ctx) -> Verdict:
    prog = quoted(c.args[0]) if c.args else None
    if c.ok:
        c.table.exec()
        if prog and re.search(r"(?:^|/)node(?:js)?$", prog) and c.m.proc(c.ev.tid) not in c.m.libuv:
            c.m.libuv[c.m.proc(c.ev.tid)] = (c.ev.line, c.ev.tid)  # node links libuv in
        return c.say(f"execve {prog}: this process now runs another program (close-on-exec fds are gone)")
    return c.say(f"execve {prog}: {c.ev.errno}")


def _exit_group(c: Ctx) -> Verdict:
    return c.say(f"exit_group({c.args[0] if c.args else ''}): the process ends")


def _shutdown(c: Ctx) -> Verdict:
    fd = c.arg_fd(0)
    return c.say(f"shutdown fd {fd.num if fd else '?'} ({fd.describe() if fd else ''}) {c.args[1] if len(c.args) > 1 else ''}",
                 POLLABLE if fd and fd.role == F.CLIENT else OTHER_CAT)


def _generic(c: Ctx) -> Verdict:
    fd = c.arg_fd(0) if c.args else None
    text = c.ev.syscall + (f": {c.ev.errno}" if c.ev.errno else "")
    if fd is not None and fd.role == F.FILE:
        # fstat, lseek, fsync, utimensat... on a file: file work like a read, where it runs is what matters.
        cat = _work(c)
        return c.say(f"{text} on fd {fd.num} ({fd.describe()})" + _where(c, cat), cat)
    return c.say(text)


def _sigreturn(c: Ctx) -> Verdict:
    c.m.learned.sigreturns = True
    got = c.m.in_signal.pop(c.ev.tid, None)
    if got is None:
        return c.say(f"{c.ev.syscall}: returns from a signal's handler; the signal came before this log shows")
    sig, _, delivered = got
    return c.say(f"{c.ev.syscall}: the {sig} handler returns (delivered at "
                 f"{c.cite('signal-handler', delivered, c.ev.tid)}); the thread goes on where {sig} interrupted it")


def _signal(c: Ctx) -> Verdict:
    sig = c.ev.syscall
    c.m.in_signal[c.ev.tid] = (sig, c.ev.ts, c.ev.line)
    why = {
        "SIGCHLD": "a child process ended",
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
