"""A process's fds and threads: close, dup, fcntl, clone, execve, exit, shutdown;
any call without a handler of its own; a thread's exit."""

from __future__ import annotations

import re

from .. import fds as F
from ...names import OTHER_CAT, POLLABLE
from ...read.parse import Event, quoted
from .context import Ctx, Verdict, work


def close(c: Ctx) -> Verdict:
    fd = c.arg_fd(0)
    if fd is None:
        return c.say("close")
    what = fd.describe()
    cat = OTHER_CAT
    if fd.role == F.CLIENT:
        cat = POLLABLE
        what += ": the connection is done"
    elif fd.role == F.FILE:
        cat = work(c)
    c.m.closed_fd(c.ev.tid, fd, c.ev.line)
    c.table.close(fd.num, c.ev.line)
    return c.say(f"close fd {fd.num} ({what})" if c.ok else c.failed_note(f"close fd {fd.num}"), cat)


def dup(c: Ctx) -> Verdict:
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


def fcntl(c: Ctx) -> Verdict:
    if len(c.args) > 1 and c.args[1].startswith("F_DUPFD"):
        return dup(c)
    c.arg_fd(0)
    return c.say(f"fcntl {c.args[1] if len(c.args) > 1 else ''}".strip())


def clone(c: Ctx) -> Verdict:
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


def execve(c: Ctx) -> Verdict:
    prog = quoted(c.args[0]) if c.args else None
    if c.ok:
        c.table.exec()
        if prog and re.search(r"(?:^|/)node(?:js)?$", prog) and c.m.proc(c.ev.tid) not in c.m.libuv:
            c.m.libuv[c.m.proc(c.ev.tid)] = (c.ev.line, c.ev.tid)  # node links libuv in
        return c.say(f"execve {prog}: this process now runs another program (close-on-exec fds are gone)")
    return c.say(f"execve {prog}: {c.ev.errno}")


def exit_group(c: Ctx) -> Verdict:
    return c.say(f"exit_group({c.args[0] if c.args else ''}): the process ends")


def shutdown(c: Ctx) -> Verdict:
    fd = c.arg_fd(0)
    return c.say(f"shutdown fd {fd.num if fd else '?'} ({fd.describe() if fd else ''}) {c.args[1] if len(c.args) > 1 else ''}",
                 POLLABLE if fd and fd.role == F.CLIENT else OTHER_CAT)


def exit_note(ev: Event) -> str:
    if ev.ret is not None:
        return f"thread/process {ev.tid} exited with {ev.ret}"
    if ev.syscall:
        return f"thread/process {ev.tid} was killed by {ev.syscall}"
    return f"thread/process {ev.tid}: {ev.args}"
