"""Calls that make fds: sockets, accept, bind, listen, connect, pipes, socketpairs,
eventfds, timerfds, signalfds."""

from __future__ import annotations

import re

from .. import fds as F
from ...names import LOOP, OTHER_CAT, POLLABLE
from ...read.parse import fd_arg, first_fd, split_args
from .context import Ctx, Verdict, loopless, resolver_step, work


def accept(c: Ctx) -> Verdict:
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
    if loopless(c) and proc not in c.m.loopless_said:
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


def socket(c: Ctx) -> Verdict:
    n = c.ret_int()
    if not c.ok or n is None:
        return c.say(c.failed_note("socket"))
    kind = " ".join(a for a in c.args[:2])
    c.new_fd(n, F.SOCKET, kind.split("|")[0])
    if "AF_NETLINK" in kind:
        resolver_step(c, "a netlink socket")
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


def bind(c: Ctx) -> Verdict:
    fd = c.arg_fd(0)
    addr = _addr(c.args)
    if fd is not None and addr and c.ok:
        fd.detail = addr
    return c.say(f"bind fd {fd.num if fd else '?'} to {addr or 'an address'}" if c.ok else c.failed_note("bind"))


def listen(c: Ctx) -> Verdict:
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


def connect(c: Ctx) -> Verdict:
    fd = c.arg_fd(0)
    addr = _addr(c.args)
    if fd is not None and addr and fd.role != F.CLIENT:
        fd.detail = f"outbound to {addr}"
    text = f"connect fd {fd.num if fd else '?'} to {addr or 'a peer'}"
    if "nscd" in addr:
        # glibc asks nscd first for hosts, users and groups alike: which, the call does not say.
        resolver_step(c, "nscd's socket")
        text += " (nscd, glibc's name-service cache"
        text += ", not running)" if c.ev.errno == "ENOENT" else ")"
        return c.say(text if c.ok or c.ev.errno == "ENOENT" else f"{text}: {c.ev.errno}", work(c))
    if "htons(53)" in c.ev.args:
        resolver_step(c, "a DNS server")
        return c.say(f"{text}: a DNS query's socket" + (f": {c.ev.errno}" if not c.ok else ""), work(c))
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


def pipe(c: Ctx) -> Verdict:
    return _pair(c, F.PIPE, "", 0)


def socketpair(c: Ctx) -> Verdict:
    return _pair(c, F.PIPE, "socketpair", 3)


def eventfd(c: Ctx) -> Verdict:
    n = c.ret_int()
    if not c.ok or n is None:
        return c.say(c.failed_note(c.ev.syscall))
    c.new_fd(n, F.WAKEUP, "eventfd")
    first = c.m.prior.wakeup_births.get((c.m.proc(c.ev.tid), c.ev.line))
    how = f": first written at line {first[1]} (thread {first[2]})" if first is not None else ""
    return c.say(f"{c.ev.syscall} made fd {n}, an eventfd: a counter that a write makes readable{how}", POLLABLE)


def timerfd(c: Ctx) -> Verdict:
    n = c.ret_int()
    if not c.ok or n is None:
        return c.say(c.failed_note("timerfd_create"))
    c.new_fd(n, F.TIMER, "timerfd")
    return c.say(f"timerfd_create made fd {n}: a timer that epoll can watch like a socket", POLLABLE)


def timerfd_settime(c: Ctx) -> Verdict:
    fd = c.arg_fd(0)
    m = re.search(r"it_value=\{tv_sec=(\d{1,19}),\s*tv_nsec=(\d{1,10})\}", c.ev.args)
    when = f" to fire in {int(m.group(1)) * 1000 + int(m.group(2)) / 1e6:g} ms" if m else ""
    return c.say(f"arm timer fd {fd.num if fd else '?'}{when}", POLLABLE)


def signalfd(c: Ctx) -> Verdict:
    n = c.ret_int()
    if c.ok and n is not None:
        c.new_fd(n, F.SIGNAL, "signalfd")
    return c.say(f"{c.ev.syscall} made fd {n}: signals become readable events" if c.ok
                 else c.failed_note(c.ev.syscall), POLLABLE)
