"""io_uring_setup and io_uring_enter, as strace shows them (the kernel tracer's own
io_uring records: kernel.py)."""

from __future__ import annotations

from .. import fds as F
from ...names import POLLABLE
from ...read.parse import to_int
from .context import Ctx, Verdict, slept_text


def _libuv(c: Ctx) -> str:
    """uvloop's or node's libuv, if the log shows its code loaded: "(line N)" cited, else ""."""
    got = c.m.libuv.get(c.m.proc(c.ev.tid))
    return c.cite("libuv", *got) if got is not None else ""


def io_uring_setup(c: Ctx) -> Verdict:
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


def io_uring_enter(c: Ctx) -> Verdict:
    c.arg_fd(0)
    n = c.args[1] if len(c.args) > 1 else "?"
    wanted = to_int(c.args[2]) if len(c.args) > 2 else None
    waits = len(c.args) > 3 and "IORING_ENTER_GETEVENTS" in c.args[3] and (wanted or 0) >= 1
    if waits:
        # Waiting for completions: a completion loop's wait, as epoll_wait is a readiness loop's.
        c.m.saw_completion_wait(c.ev.tid, c.ev.line)
    seen = c.m.uring.pop(c.ev.tid, None)
    if seen or c.m.proc(c.ev.tid) in c.m.ring_procs:
        # The kernel tracer showed what this call carried (handlers/kernel.py).
        return c.say(_ring_enter(c, seen or (), n, wanted if waits else None), POLLABLE)
    if waits:
        took = f"the kernel took {c.ev.ret}" if c.ok else f"{c.ev.errno}"
        text = (f"io_uring_enter submitted {n} request(s) ({took}) and waited for at least {wanted} "
                f"completion(s){slept_text(c)}: which operations were submitted and which completed, and on which "
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
        text += f" and waited for at least {wanted} completion(s){slept_text(c)}"
    if during:
        text += f"; completions posted during it: {', '.join(during)}"
    elif wanted is not None and c.ok:
        text += "; no completion was posted during it: what it returned for was in the completion queue already"
    if before:
        text += f"; posted before it began: {', '.join(before)}"
    return text
