"""epoll_create, epoll_ctl, the epoll waits, and the waits without an epoll fd
(poll, ppoll, select, pselect6): what is registered, what a wait returned and what filled it."""

from __future__ import annotations

import re

from .. import changes
from .. import fds as F
from ...names import OTHER_CAT, POLLABLE
from ...read.parse import close_paren, epoll_items, split_args, to_int
from .context import Ctx, Verdict, slept_text


def epoll_create(c: Ctx) -> Verdict:
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


def what_wakes(fd: F.Fd, events: str) -> str:
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


def epoll_ctl(c: Ctx) -> Verdict:
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
                 f"{what_wakes(target, events)}")


# The timeout, read from the end of the arguments: the ready array before it
# can be long, and splitting it all costs more than the rest of the line. Each
# pattern matches at one place at most, so it is first looked for in the last
# TAIL characters (a search from the start tries every comma of the array: 6% of
# live mode's annotating under load), then in the whole.
TAIL = 64
_TIMEOUT_AT_END = {
    "epoll_wait": re.compile(r",\s*(-?\d+)\s*$"),
    "epoll_pwait": re.compile(r",\s*(-?\d+),\s*(?:NULL|\[[^\]]*\]|0x[0-9a-f]+),\s*\d+\s*$"),
    "epoll_pwait2": re.compile(r",\s*(NULL|\{[^{}]*\}),\s*(?:NULL|\[[^\]]*\]|0x[0-9a-f]+),\s*\d+\s*$"),
}


def _timeout_text(c: Ctx) -> tuple[str, float | None]:
    args, pattern = c.ev.args, _TIMEOUT_AT_END[c.ev.syscall]
    m = pattern.search(args, len(args) - TAIL) if len(args) > TAIL else None
    m = m or pattern.search(args)
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


def epoll_wait(c: Ctx) -> Verdict:
    ep = c.arg_fd(0)
    c.m.saw_wait(c.ev.tid, ep.num if ep else None, lambda: c.ev.line)
    c.category = POLLABLE
    when, ms = _timeout_text(c)
    slept = slept_text(c)
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
    table, made = c.table, changes.made
    table_id = id(table)
    by_data = None
    # Only the ready array holds {events, data} items; no need to split it out.
    for events, data in epoll_items(c.ev.args):
        key = (table_id, epnum, data, events)
        got = _KNOWN.get(key)
        now = made[0]  # an item before this one may have changed the model
        if got is not None and got[0] is table and got[1] == now:
            # Nothing in the model has changed since this item was worked out: the same fd, the same
            # words, the same item (records share it; nothing changes an item once made).
            ready.append(got[2])
            texts.append(got[3])
            continue
        if by_data is None:
            by_data = _by_data(table, epnum, now)
        fd, how = table.resolve(epnum, data, events, by_data)
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
        text = _ready_text(c, fd, item, how)
        texts.append(text)
        if how in ("registered", "events") and made[0] == now and _plain_ready(c, fd, events):
            if len(_KNOWN) >= KNOWN_MOST:
                _KNOWN.clear()
            _KNOWN[key] = (table, now, item, text)
    t = c.m.thread(c.ev.tid)
    new = [f for f in (c.table.fds.get(r["fd"]) for r in ready
                       if r["fd"] not in t.ready or r["role"] == F.WAKEUP and r["fd"] not in t.notified)
           if f is not None]
    if new:
        c.m.saw_ready(c.ev.tid, new)
    c.ready = ready
    return c.say(f"{c.ev.syscall} on {epname} ({when}){slept} -> ready: {'; '.join(texts) or '?'}")


# Ready items worked out while the model stood still, and interest lists by data: a server
# under load returns the same clients wait after wait, with nothing changed in between.
# Each entry holds its fd table (the key's id is only valid while it lives) and the model's count.
KNOWN_MOST = 4096
_KNOWN: dict[tuple, tuple] = {}  # (table id, epoll fd, data, events) -> (table, count, ready item, text)
_BY_DATA: dict[tuple, tuple] = {}  # (table id, epoll fd) -> (table, count, data -> fds)


def _by_data(table: F.Table, epnum: int, now: int) -> dict[int, list[int]]:
    key = (id(table), epnum)
    got = _BY_DATA.get(key)
    if got is not None and got[0] is table and got[1] == now:
        return got[2]
    if len(_BY_DATA) >= 64:
        _BY_DATA.clear()
    made = table.by_data(epnum)
    _BY_DATA[key] = (table, now, made)
    return made


def _plain_ready(c: Ctx, fd: F.Fd, ev: str) -> bool:
    """Whether _ready_text's words for this fd and events came from the model alone (kept while
    it stands still), not from this line (a write that filled it, a connect that completed, a
    close it cites)."""
    if "HUP" in ev and c.m.closed.get(fd.other_end()) is not None:
        return False
    if "HUP" in ev and fd.role != F.LISTENING:
        return True
    if "IN" not in ev and "OUT" in ev:
        return fd.connecting is None
    return not (fd.role in (F.WAKEUP, F.PIPE, F.SOCKET) and "IN" in ev)


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


# poll/ppoll: `[{fd=3<TCP:[...]>, events=POLLIN}, ...]`, ready `([{fd=3, revents=POLLIN}])`;
# select/pselect6: fd sets `[3 4]`, ready `(in [3], out [], left {...})`.
_DECO = r"(?:<((?:->|[^<>]|<(?:->|[^<>])*>)*)>)?"  # -yy text, which may hold "->" and one nested <...>
_POLLFD = re.compile(r"\{fd=(-?\d{1,10})" + _DECO + r", (?:r?events)=([A-Za-z0-9_|]+)\}")
_SETFD = re.compile(r"(\d{1,10})" + _DECO)
_SETS = re.compile(r"\b(in|out|exc) \[([^\]]*)\]")
_TIMESPEC = re.compile(r"\{tv_sec=(\d{1,19}), tv_(n|u)sec=(\d{1,10})\}")
_SET_EVENTS = {"in": "readable", "out": "writable", "exc": "exception"}


def poll_wait(c: Ctx) -> Verdict:
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
    head = f"{name} on fds {fds} ({when}){slept_text(c)}"
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
