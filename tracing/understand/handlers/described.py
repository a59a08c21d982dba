"""Calls the annotator has no rule of its own for (what `--syscalls` adds: futex,
clock_nanosleep, fcntl, sendfile, mmap...): kept, and described by what is known
of them: what the call does in general, the fds it names (with their roles), how
long it took (-T), and on which thread. A sleep is work like a file read: on a
pool thread it is the pool's job, on a loop that serves clients it holds the
loop (the category says so, and the note names its evidence, as for files).
"""

from __future__ import annotations

import re

from .. import fds as F
from .. import roles as R
from .context import Ctx, Verdict, where, work
from ...names import BLOCKING, LOOP, OTHER_CAT, POOLED

SLEEPS = frozenset({"clock_nanosleep", "nanosleep"})

# What a call does, in general: words about the call, never about why this one was made.
DOES = {
    "futex": "a lock or condition shared by threads",
    "clock_nanosleep": "sleeps", "nanosleep": "sleeps",
    "sendfile": "copies from one fd to another inside the kernel",
    "splice": "moves bytes between fds inside the kernel",
    "fcntl": "reads or sets an fd's flags",
    "ioctl": "a device- or socket-specific request",
    "mmap": "maps memory", "munmap": "unmaps memory", "mprotect": "changes memory protection",
    "brk": "grows or shrinks the heap", "madvise": "advises the kernel on memory use",
    "getrandom": "reads random bytes",
    "sched_yield": "gives up the CPU to another runnable thread",
    "rt_sigprocmask": "changes the thread's blocked signals", "rt_sigaction": "sets a signal's handler",
    "fstat": "reads an fd's metadata", "newfstatat": "reads a file's metadata", "statx": "reads a file's metadata",
    "lseek": "moves a file offset", "fsync": "flushes a file to disk", "fdatasync": "flushes a file's data to disk",
    "getdents64": "lists a folder", "setsockopt": "sets a socket option", "getsockopt": "reads a socket option",
    "getsockname": "reads a socket's own address", "getpeername": "reads a socket's peer address",
    "prctl": "sets a process attribute", "set_robust_list": "registers the thread's robust futex list",
    "rseq": "registers restartable sequences",
    "wait4": "waits for a child process", "kill": "sends a signal", "tgkill": "sends a signal to a thread",
}
# Calls whose first argument is an fd even when strace does not decorate it (no -yy); a
# bare number first is a PID, a uid, a count... for any other call.
FD_FIRST = frozenset({"fcntl", "ioctl", "fstat", "fstatfs", "lseek", "fsync", "fdatasync", "syncfs", "getdents64",
                      "sendfile", "setsockopt", "getsockopt", "getsockname", "getpeername", "ftruncate", "fchmod",
                      "fchown", "fchdir", "flock", "fadvise64", "fallocate", "readahead", "sync_file_range",
                      "splice", "tee", "copy_file_range", "fgetxattr", "fsetxattr", "flistxattr", "fremovexattr",
                      "newfstatat", "fstatat64", "statx", "readlinkat", "utimensat", "faccessat", "faccessat2",
                      "fchmodat", "fchownat", "mkdirat", "unlinkat", "renameat", "renameat2", "linkat",
                      "symlinkat", "mknodat"})
NO_RESULT = frozenset({"exit", "exit_group"})  # they do not return
_TIMESPEC = re.compile(r"\{tv_sec=(\d+), tv_nsec=(\d+)\}")
_DECORATED = re.compile(r"^-?\d+<")


def described(c: Ctx) -> Verdict:
    """The note for a call no handler knows: what is known, and no more."""
    name = c.ev.syscall or "?"
    if name in SLEEPS:
        return _sleep(c)
    if name == "futex":
        return c.say(_futex(c))
    fds, first = _fds(c)
    does = DOES.get(name)
    text = name + (f" ({does})" if does else "")
    if c.ev.errno is not None:
        text = c.failed_note(text)
    elif c.ok and c.ev.ret != "0" and name not in NO_RESULT:
        text += f" = {c.ev.ret}"
    if fds:
        text += " on " + ", ".join(f"fd {f.num} ({f.describe()})" for f in fds)
    if first is not None and first.role == F.FILE:
        # Work on a file its first argument names (fstat, lseek, fsync, sendfile from a file...):
        # where it runs is what matters. A file an fd further on names (mmap's) is not the call's work.
        cat = work(c)
        return c.say(text + where(c, cat), cat)
    # No duration here: the raw line has it (-T), the latency table sums it, and a note that
    # read it could not be reused for the same call again (a server repeats these).
    return c.say(text)


def _fds(c: Ctx) -> tuple[list, object]:
    """The fds a call names (every argument -yy decorated; without -yy, the first argument of the
    calls in FD_FIRST), and the first argument's, if it is one."""
    out, first = [], None
    for i, arg in enumerate(c.args[:6]):
        if _DECORATED.match(arg) or (i == 0 and arg.isdigit() and c.ev.syscall in FD_FIRST):
            fd = c.arg_fd(i)
            if fd is not None:
                out.append(fd)
                if i == 0:
                    first = fd
    return out, first


def _sleep(c: Ctx) -> Verdict:
    asked = _TIMESPEC.search(c.ev.args)
    absolute = "TIMER_ABSTIME" in c.ev.args
    text = f"{c.ev.syscall}: sleeps"
    if asked and not absolute:
        text += f" {int(asked.group(1)) * 1000 + int(asked.group(2)) / 1e6:.1f} ms (asked)"
    elif absolute:
        text += " until a set time (TIMER_ABSTIME)"
    if c.ev.duration is not None:
        text += f", slept {c.ev.duration * 1000:.1f} ms"
    if not c.ok:
        text += f": {c.ev.errno}" + (" (a signal cut it short)" if c.ev.errno in ("EINTR", "ERESTART_RESTARTBLOCK")
                                      else "")
    # A sleep that returned is work done (a pool's job, or the loop held); one cut short or
    # never ended (a thread idle until it was killed) is no job.
    cat = work(c) if c.ok else R.work_category(c.m, c.ev.tid)
    if cat == BLOCKING:
        return c.say(text + where(c, cat).replace(
            "; a regular file is always 'ready', so no other client is served until this returns",
            "; no other client is served until this sleep returns"), cat)
    if cat == POOLED:
        return c.say(text + where(c, cat), cat)
    if c.role == LOOP:
        return c.say(text + " on the loop thread, outside its waits", OTHER_CAT)
    return c.say(text, OTHER_CAT)


def _futex(c: Ctx) -> str:
    args = c.args
    op = args[1] if len(args) > 1 else ""
    addr = args[0] if args else "?"
    if "WAKE" in op:
        woke = c.ret_int()
        return (f"futex {op}: releases the threads waiting on futex {addr}"
                + (f" ({woke} released)" if woke is not None and c.ok else ""))
    if "WAIT" in op or "LOCK" in op:
        if c.ev.errno == "EAGAIN":
            return f"futex {op} on {addr}: the value had changed already, so no wait (EAGAIN)"
        if c.ev.errno == "ETIMEDOUT":
            return f"futex {op} on {addr}: waited for {DOES['futex']} until its timeout"
        # How long it waited is what matters here (the lock's holder, the pool's queue).
        took = f"; waited {c.ev.duration * 1000:.1f} ms" if c.ev.duration is not None else ""
        return (f"futex {op} on {addr}: waits for {DOES['futex']}, until another thread releases it "
                f"(FUTEX_WAKE){took}")
    return f"futex {op or ''} on {addr}: {DOES['futex']}"
