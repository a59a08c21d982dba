"""Handlers for the kernel tracer's own records: io_uring submissions
(`io_uring_sqe`) and libc's getaddrinfo. strace never prints these; the
annotator looks them up beside the syscall handlers."""

from __future__ import annotations

from typing import Callable

from tracing.understand import fds as F
from tracing.understand.handlers.context import Ctx, Verdict, where, work
from tracing.understand.handlers.epoll import what_wakes
from tracing.understand.changes import List
from tracing.read.sqe import sqe_fields
from tracing.names import BLOCKING, OTHER_CAT, POLLABLE, POOLED
from tracing.read.parse import epoll_items, quoted


def _io_uring_sqe(c: Ctx) -> Verdict:
    got = sqe_fields(c.ev.args)
    if got is None:
        return c.say("io_uring submission with arguments the lab could not read")
    ud = got["user_data"]
    res = "" if c.ev.ret in (None, "?") else (
        f"; result {c.ev.ret}{' ' + c.ev.errno if c.ev.errno else ''} from io_uring_complete")
    if not got["libuv"]:
        return c.say(f"io_uring submission {got['opcode']} (user_data {ud:#x}): not libuv's epoll_ctl "
                     f"layout (op | slot<<2 | fd<<32), so its fd is unknown{res}", OTHER_CAT)
    op, fd_num, kernel = got["op"], got["fd"], got.get("kernel")
    checked = ""
    ep = None
    if kernel is not None:
        ep = c.table.get(kernel["epfd"])
        c.fds.append(ep)
        if kernel["fd"] != fd_num:
            checked = f"; the kernel's request names fd {kernel['fd']}, not {fd_num}: that one counts"
            fd_num = kernel["fd"]
    target = c.table.get(fd_num)
    c.fds.append(target)
    c.cite("libuv", c.ev.line)  # this record's user_data has libuv's layout: the evidence is itself
    how = (f"through io_uring (IORING_OP_EPOLL_CTL inside io_uring_enter, which strace cannot decode): "
           f"decoded from libuv's user_data {ud:#x} = op {op} | slot {got['slot']}<<2 | fd {fd_num}<<32"
           f"{res}{checked}")
    epname = f"epoll {ep.num}" if ep else "the loop's epoll (its fd was not recorded)"
    c.m.uring.setdefault(c.ev.tid, List()).append(f"EPOLL_CTL_{op} fd {fd_num}")
    events = epoll_items(kernel["event"]) if kernel else []
    if ep is not None and c.ok:
        # The interest list changes as with a plain epoll_ctl.
        watched = c.table.watched(ep.num)
        if op == "DEL":
            watched.pop(fd_num, None)
        else:
            ev, data = events[0] if events else ("?", fd_num)
            watched[fd_num] = F.Interest(fd_num, ev, data)
    if op == "DEL":
        return c.say(f"EPOLL_CTL_DEL fd {fd_num} ({target.describe()}) from {epname}: the loop stops "
                     f"watching it; {how}", POLLABLE)
    mask = f" for {events[0][0]}" if events else ""
    why = what_wakes(target, events[0][0] if events else "EPOLLIN")
    return c.say(f"EPOLL_CTL_{op} fd {fd_num} = {target.describe()} to {epname}{mask}: {why}; {how}",
                 POLLABLE)


def _getaddrinfo(c: Ctx) -> Verdict:
    node = quoted(c.args[0]) if c.args else None
    cat = work(c)
    took = f" took {c.ev.duration * 1000:.1f} ms" if c.ev.duration is not None else ""
    return c.say(f"getaddrinfo({node}){took} (libc, seen by a uprobe){where(c, cat)}", cat)


HANDLERS: dict[str, Callable[[Ctx], Verdict]] = {"io_uring_sqe": _io_uring_sqe,
                                                 "getaddrinfo": _getaddrinfo}
