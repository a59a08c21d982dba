"""Handlers for the kernel tracer's own records: io_uring submissions (`io_uring_sqe`) and
completions (`io_uring_cqe`), and libc's getaddrinfo. strace never prints these; the
annotator looks them up beside the syscall handlers.

A completion loop hands operations to the kernel and reaps their results: a submission
names its fd, length or path; its completion comes later, on the submitting thread (inline,
or in its task work), or on an io-wq worker (`iou-wrk-N`), the kernel's own thread pool,
which the kernel makes without a clone and which makes no syscall: the submission it
completes places it in its process. An accept's completion is where a client fd is born.
A completion names its submission (the same user_data, oldest first): that line is its
evidence (claim `submission`); a worker's, the submission the kernel handed to io-wq
(claim `io-wq`).
"""

from __future__ import annotations

import re
from typing import Callable

from .. import fds as F
from ..changes import List
from .context import Ctx, Verdict, where, work
from .epoll import what_wakes
from .io import protocol_line
from ...read.sqe import sqe_fields
from ...names import OTHER_CAT, POLLABLE, POOLED
from ...read.parse import epoll_items, fd_arg, quoted, to_int

# Operations on files: not pollable, whatever runs them (the kernel, inline or on io-wq).
FILE_OPS = frozenset({"OPENAT", "OPENAT2", "STATX", "FSYNC", "FADVISE", "FALLOCATE", "SYNC_FILE_RANGE",
                      "RENAMEAT", "UNLINKAT", "MKDIRAT", "SYMLINKAT", "LINKAT", "FTRUNCATE"})
_IN_FLIGHT = re.compile(r"^\d+\.\d+$")


def _fd(c: Ctx, text: str | None) -> F.Fd | None:
    got = fd_arg(text) if text else None
    if got is None or got[0] < 0:
        return None
    fd = c.table.get(*got, line=c.ev.line)
    c.fds.append(fd)
    return fd


def _named(fd: F.Fd | None) -> str:
    if fd is None:
        return "an fd the record does not name"
    if fd.role == F.CLIENT:
        return f"client fd {fd.num}" + (f" ({fd.detail})" if fd.detail else "")
    if fd.role == F.LISTENING:
        return f"the listening socket {fd.detail} (fd {fd.num})".replace("  ", " ")
    return f"fd {fd.num} ({fd.describe()})"


def _category(name: str, fd: F.Fd | None) -> str:
    """A file's open, read or close is not pollable work, wherever it runs; a socket's,
    a timer's, a signalfd's are (the kernel polls them for the ring)."""
    if name in FILE_OPS or (fd is not None and fd.role in (F.FILE, F.DEVICE)):
        return OTHER_CAT
    return POLLABLE


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds >= 0.0001 else f"{seconds * 1e6:.0f} µs"


# -- submissions ----------------------------------------------------------------

def _io_uring_sqe(c: Ctx) -> Verdict:
    got = sqe_fields(c.ev.args)
    if got is None:
        return c.say("io_uring submission with arguments the lab could not read")
    if got["libuv"] or got["name"] == "EPOLL_CTL" and "kernel" in got:
        return _epoll_ctl(c, got)
    ud, name, fields = got["user_data"], got["name"], got["fields"]
    res = "" if c.ev.ret in (None, "?") else (
        f"; result {c.ev.ret}{' ' + c.ev.errno if c.ev.errno else ''} from io_uring_complete")
    if not fields:
        # A record without the request's fields (written before the tracer decoded them).
        return c.say(f"io_uring submission {got['opcode']} (user_data {ud:#x}): not libuv's epoll_ctl "
                     f"layout (op | slot<<2 | fd<<32), so its fd is unknown{res}", OTHER_CAT)
    proc = c.m.proc(c.ev.tid)
    if proc not in c.m.ring_procs:
        c.m.ring_procs.add(proc)
    target = _fd(c, fields.get("fd"))
    punted = fields.get("async") == "io-wq"
    c.m.ring.setdefault(ud, List()).append((c.ev.line, c.ev.tid, proc, name, target.num if target else None,
                                            punted))
    c.m.uring.setdefault(c.ev.tid, List()).append(("sub", _short(name, target, fields), c.ev.ts))
    text = f"submits {_asked(c, name, target, fields)}"
    if punted:
        why = ("marked REQ_F_FORCE_ASYNC (the program's IOSQE_ASYNC, or the kernel's own choice for this "
               "operation), so the kernel" if "REQ_F_FORCE_ASYNC" in fields.get("req_flags", "")
               else "the kernel could not run it here without blocking, so it")
        text += (f"; {why} handed it to io-wq, its own worker threads (io_uring_queue_async_work): a worker "
                 "runs it and posts the completion")
    if c.ev.ret in (None, "?"):
        text += "; its completion is not in this log"
    return c.say(text, _category(name, target))


def _short(name: str, fd: F.Fd | None, fields: dict) -> str:
    if name == "OPENAT":
        return f"OPENAT {quoted(fields.get('path', '')) or '?'}"
    if name == "TIMEOUT":
        return f"TIMEOUT {_timeout_ms(fields)}"
    return f"{name} fd {fd.num}" if fd is not None else name


def _line(buf: str) -> str:
    """The request or reply line of the bytes a record shows (strace's quoting)."""
    text = quoted(buf)
    return protocol_line(text) if text else ""


def _timeout_ms(fields: dict) -> str:
    m = re.match(r"\{tv_sec=(-?\d+), tv_nsec=(-?\d+)\}", fields.get("ts", ""))
    return f"{int(m.group(1)) * 1000 + int(m.group(2)) / 1e6:g} ms" if m else "(its time not recorded)"


def _asked(c: Ctx, name: str, fd: F.Fd | None, fields: dict) -> str:
    """What a submission asks the kernel to do, in words."""
    size = fields.get("len")
    if name == "ACCEPT":
        return (f"ACCEPT on {_named(fd)}: it completes when a client connects, and its completion "
                "brings the new connection's fd")
    if name == "RECV":
        return f"RECV of up to {size} bytes from {_named(fd)}: it completes when bytes, or the client's EOF, come"
    if name == "SEND":
        line = _line(fields.get("buf", ""))
        return f"SEND of {size} bytes to {_named(fd)}" + (f": {line}" if line else "")
    if name in ("READ", "WRITE"):
        verb = "from" if name == "READ" else "to"
        return f"{name} of {'up to ' if name == 'READ' else ''}{size} bytes at offset {fields.get('off')} {verb} {_named(fd)}"
    if name == "OPENAT":
        return (f"OPENAT of {quoted(fields.get('path', '')) or '?'} ({fields.get('flags', '?')}): the kernel "
                "opens it and its completion brings the fd")
    if name == "CLOSE":
        return f"CLOSE of {_named(fd)}"
    if name == "SHUTDOWN":
        return f"SHUTDOWN {fields.get('how', '')} of {_named(fd)}".replace("  ", " ")
    if name == "TIMEOUT":
        return (f"TIMEOUT of {_timeout_ms(fields)}: a timer as an operation (no timerfd), which completes "
                "with ETIME when it expires")
    if name == "POLL_ADD":
        return f"POLL_ADD on {_named(fd)} for {fields.get('events', '?')}: it completes when the fd is ready"
    if name == "ASYNC_CANCEL":
        return f"ASYNC_CANCEL of {_target(c, fields.get('target'))}"
    return f"IORING_OP_{name}" + (f" on {_named(fd)}" if fd is not None else "")


def _target(c: Ctx, text: str | None) -> str:
    """The request a cancel names: its submission, where the log holds it."""
    ud = to_int(text)
    waiting = c.m.ring.get(ud) if ud is not None else None
    mine = [w for w in waiting or () if w[2] == c.m.proc(c.ev.tid)]
    if not mine:
        return f"the request with user_data {text} (not in flight in this log)"
    line, tid, _, name, fd, _ = mine[0]
    return f"the {name}{f' of fd {fd}' if fd is not None else ''} submitted at {c.cite('submission', line, tid)}"


# -- completions ------------------------------------------------------------------

def _io_uring_cqe(c: Ctx) -> Verdict:
    got = sqe_fields(c.ev.args)
    if got is None:
        return c.say("io_uring completion with arguments the lab could not read")
    ud, name, fields = got["user_data"], got["name"], got["fields"]
    worker = quoted(fields["worker"]) if "worker" in fields else None
    sub = _submission(c, ud, "IORING_CQE_F_MORE" in fields.get("cflags", ""))
    joined = ""
    if sub is not None and worker is not None and c.m.proc(c.ev.tid) != sub[2]:
        # An io-wq worker: no clone made it, the submission it completes says whose it is.
        c.m.procs.joined(c.ev.tid, sub[1])
        c.table = c.m.procs.table(c.ev.tid)
        c.m.unplaced.discard(c.ev.tid)
        joined = (f" [thread {c.ev.tid} ({worker}) is a thread the kernel made without a clone: it is "
                  f"in thread {sub[1]}'s process, whose submission it completes]")
    if sub is not None and sub[2] not in c.m.ring_procs:
        c.m.ring_procs.add(sub[2])
    target = _fd(c, fields.get("fd"))
    if target is None and sub is not None and sub[4] is not None:
        target = c.table.get(sub[4], line=c.ev.line)
        c.fds.append(target)
    text = _done(c, name, target, fields)
    if sub is not None:
        flight = fields.get("in_flight", "")
        after = f", {_ms(float(flight))} earlier" if _IN_FLIGHT.match(flight) else ""
        text += f" (the {sub[3]} submitted at {c.cite('submission', sub[0], sub[1])}{after})"
    else:
        text += " (its submission is not in this log)"
    cat = _category(name, target)
    sub_tid = sub[1] if sub is not None else c.ev.tid
    short = f"{_short(name, target, fields)} = {c.ev.errno or c.ev.ret} (line {c.ev.line}"
    if worker is not None:
        # The kernel's own threads: io-wq's workers (iou-wrk-N), or an SQPOLL ring's poller (iou-sqp-N).
        kind = "io-wq worker" if worker.startswith("iou-wrk") else "kernel"
        short += f", {kind} thread {c.ev.tid}"
        text += f", on {kind} thread {c.ev.tid} ({worker})"
        if sub is not None and sub[5]:
            text += f": the kernel handed it to io-wq at {c.cite('io-wq', sub[0], sub[1])} and a worker ran it"
        t = c.m.thread(c.ev.tid)
        if sub is not None and t.ring_worker is None:
            t.ring_worker = (c.ev.line, sub[0], sub[1], sub[3], worker)
        if sub is not None and c.m.is_loop(sub[1]):
            c.m.saw_pool_work(c.ev.tid)
            cat = POOLED
            text += f", not the loop; the result goes to loop thread {sub[1]}'s completion queue"
    elif sub is not None:
        t = c.m.thread(sub_tid)
        if t.ring_done is None:
            t.ring_done = c.ev.line
    c.m.uring.setdefault(sub_tid, List()).append(("done", short + ")", c.ev.ts))
    return c.say(text + joined, cat)


def _submission(c: Ctx, ud: int, more: bool) -> tuple | None:
    """The operation this completion ends (its submission's line, thread, process, opcode, fd,
    whether it went to io-wq): the oldest in flight with this user_data in this process, or,
    for a thread not placed yet (an io-wq worker), in any process."""
    waiting = c.m.ring.get(ud)
    if not waiting:
        return None
    proc = c.m.proc(c.ev.tid)
    placed = proc != c.ev.tid or any(w[2] == proc for w in waiting)
    at = next((i for i, w in enumerate(waiting) if w[2] == proc or not placed), None)
    if at is None:
        return None
    sub = waiting[at]
    if not more:  # a multishot request (IORING_CQE_F_MORE) completes again
        del waiting[at]
        if not waiting:
            del c.m.ring[ud]
    return sub


def _done(c: Ctx, name: str, fd: F.Fd | None, fields: dict) -> str:
    """What a completion says, and what it did to the fd table (an accept or an open made an
    fd, a close ended one)."""
    n = c.ret_int()
    if not c.ok:
        if name == "TIMEOUT" and c.ev.errno == "ETIME":
            return f"TIMEOUT expired (ETIME): the timer of {_timeout_ms(fields)} ran out"
        if c.ev.errno == "ECANCELED":
            return f"{name} on {_named(fd)} cancelled (ECANCELED)" if fd is not None else f"{name} cancelled (ECANCELED)"
        return c.failed_note(f"{name}" + (f" on {_named(fd)}" if fd is not None else ""))
    if name == "ACCEPT" and n is not None:
        if fd is not None and fd.role in (F.SOCKET, F.UNKNOWN):
            fd.role = F.LISTENING
        deco = c.ev.ret_detail if c.ev.ret_detail and "->" in c.ev.ret_detail else ""
        detail = re.sub(r"^TCP(v6)?:\[(.*)\]$", r"\2", deco) if deco else ""
        c.new_fd(n, F.CLIENT, detail)
        proc = c.m.proc(c.ev.tid)
        if proc not in c.m.accepted:
            c.m.accepted[proc] = (c.ev.line, c.ev.tid)
        c.m.accepting(c.ev.tid)
        return (f"ACCEPT on {_named(fd)} completed: fd {n}, a new client connection {detail}, born inside the "
                "ring: no accept4 call, the kernel made the fd").replace("connection ,", "connection,")
    if name == "RECV":
        if n == 0:
            return f"RECV from {_named(fd)} completed: 0 bytes = the client closed its end (EOF)"
        line = _line(fields.get("buf", ""))
        return f"RECV from {_named(fd)} completed: {n} bytes" + (f": {line}" if line else "")
    if name == "SEND":
        return f"SEND to {_named(fd)} completed: {n} bytes sent"
    if name == "OPENAT" and n is not None:
        path = (c.ev.ret_detail or quoted(fields.get("path", "")) or "?").split("<", 1)[0]
        c.new_fd(n, F.DEVICE if path.startswith("/dev/") else F.FILE, path)
        return f"OPENAT of {quoted(fields.get('path', '')) or path} completed: fd {n}"
    if name == "READ":
        if n == 0:
            return f"READ from {_named(fd)} completed: 0 bytes, the end of the file"
        return f"READ from {_named(fd)} completed: {n} bytes"
    if name == "CLOSE":
        if fd is not None:
            c.m.closed_fd(c.ev.tid, fd, c.ev.line)
            c.table.close(fd.num, c.ev.line)
        return f"CLOSE of {_named(fd)} completed" + (": the connection is done" if fd and fd.role == F.CLIENT else "")
    if name == "SHUTDOWN":
        return f"SHUTDOWN of {_named(fd)} completed: the server's FIN is sent"
    if name == "ASYNC_CANCEL":
        return "ASYNC_CANCEL completed: it found the request and cancelled it (that request completes on its own)"
    if name == "POLL_ADD":
        return f"POLL_ADD on {_named(fd)} completed: the fd is ready ({c.ev.ret})"
    return f"{name}" + (f" on {_named(fd)}" if fd is not None else "") + f" completed: {c.ev.ret}"


# -- libuv's epoll_ctl through the ring ---------------------------------------------------

def _epoll_ctl(c: Ctx, got: dict) -> Verdict:
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
    c.m.uring.setdefault(c.ev.tid, List()).append(("sub", f"EPOLL_CTL_{op} fd {fd_num}", c.ev.ts))
    c.m.ring.setdefault(ud, List()).append((c.ev.line, c.ev.tid, c.m.proc(c.ev.tid), f"EPOLL_CTL_{op}",
                                            fd_num, False))
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


RECORDS: dict[str, Callable[[Ctx], Verdict]] = {"io_uring_sqe": _io_uring_sqe, "io_uring_cqe": _io_uring_cqe,
                                                "getaddrinfo": _getaddrinfo}
