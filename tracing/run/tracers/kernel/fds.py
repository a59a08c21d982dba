"""What each fd is, for the kernel tracer's lines: strace -yy's decorations.

strace asks the kernel what an fd is each time it prints one; the kernel
tracer's lines are written after the run, so the answer is kept here: a
table per process, started from a /proc snapshot taken when the tracer
starts (`snapshot`, through tracing.understand.snapshot), then changed by the calls
that follow as they return (openat, socket, accept, bind, connect, pipe2,
dup, close, execve, fork).
What a call the tracer does not follow made (fcntl's F_DUPFD, say) stays
undecorated: a bare number, as strace without -yy prints it.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ....understand import snapshot as proc_snapshot
from .records import Sock

AF_UNIX, AF_INET, AF_INET6, AF_NETLINK = 1, 2, 10, 16
UNIX_TYPES = {1: "UNIX-STREAM", 2: "UNIX-DGRAM", 5: "UNIX-SEQPACKET"}
ANON = {"epoll_create": "eventpoll", "epoll_create1": "eventpoll", "eventfd2": "eventfd",
        "timerfd_create": "timerfd", "signalfd4": "signalfd", "io_uring_setup": "io_uring"}
O_CLOEXEC = 0o2000000


@dataclass
class Fd:
    text: str  # the decoration, without the angle brackets
    cloexec: bool = False


# -- the start ------------------------------------------------------------------

def snapshot(pid: int, stdin_devnull: bool = False) -> dict:
    """What `pid`'s fds are now, named as -yy names them (tracing.understand.snapshot reads /proc for
    the annotator too), with what the line writer needs besides: which are close-on-exec
    (an execve drops them) and the working folder (a relative path's base).
    `stdin_devnull`: its stdin will be /dev/null (the start gate's `exec "$@" </dev/null`)."""
    proc = Path(f"/proc/{pid}")
    fds = {}
    for num, text in proc_snapshot.take(pid)["fds"].items():
        try:
            flags = int(next(line.split()[1] for line in (proc / "fdinfo" / num).read_text().splitlines()
                             if line.startswith("flags:")), 8)
        except (OSError, StopIteration, ValueError):
            flags = 0
        fds[num] = {"text": device_text(text) if text.startswith("/dev/") else text,
                    "cloexec": bool(flags & O_CLOEXEC)}
    if stdin_devnull:
        fds["0"] = {"text": device_text("/dev/null"), "cloexec": False}
    try:
        cwd = os.readlink(proc / "cwd")
    except OSError:
        cwd = None
    return {"pid": pid, "cwd": cwd, "fds": fds}


def write_snapshot(path: Path, pid: int, stdin_devnull: bool = False) -> None:
    path.write_text(json.dumps(snapshot(pid, stdin_devnull)) + "\n")


def read_snapshot(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@functools.lru_cache(maxsize=256)
def device_text(path: str) -> str:
    """`/dev/null<char 1:3>`, as strace -yy names a device."""
    try:
        st = os.stat(path)
    except OSError:
        return path
    if stat.S_ISCHR(st.st_mode):
        return f"{path}<char {os.major(st.st_rdev)}:{os.minor(st.st_rdev)}>"
    if stat.S_ISBLK(st.st_mode):
        return f"{path}<block {os.major(st.st_rdev)}:{os.minor(st.st_rdev)}>"
    return path


@functools.lru_cache(maxsize=4096)
def file_text(path: str) -> str:
    """The path strace -yy shows for an opened file: resolved, as /proc/PID/fd links are."""
    real = os.path.realpath(path)
    return device_text(real) if real.startswith("/dev/") else real


def sock_text(s: Sock | None) -> str | None:
    """struct el_sock as strace -yy writes it."""
    if s is None or not s.ino:
        return None
    if s.family == 0:
        return f"pipe:[{s.ino}]"
    if s.family == AF_UNIX:
        kind = UNIX_TYPES.get(s.type, "UNIX")
        return f"{kind}:[{s.ino}->{s.peer_ino}]" if s.peer_ino else f"{kind}:[{s.ino}]"
    if s.family in (AF_INET, AF_INET6):
        proto = {1: "TCP", 2: "UDP"}.get(s.type)
        if proto is None:
            return f"socket:[{s.ino}]"
        if s.family == AF_INET6:
            proto += "v6"
            local = f"[{ipaddress.IPv6Address(s.saddr)}]:{s.sport}"
            remote = f"[{ipaddress.IPv6Address(s.daddr)}]:{s.dport}"
        else:
            local = f"{ipaddress.IPv4Address(s.saddr[:4])}:{s.sport}"
            remote = f"{ipaddress.IPv4Address(s.daddr[:4])}:{s.dport}"
        if s.dport:
            return f"{proto}:[{local}->{remote}]"
        if s.sport:
            return f"{proto}:[{local}]"
        return f"{proto}:[{s.ino}]"
    if s.family == AF_NETLINK:
        return f"NETLINK:[{s.ino}]"
    return f"socket:[{s.ino}]"


# -- the tables -------------------------------------------------------------------

class Tables:
    """Per process (tgid): fd -> Fd, and the working folder."""

    def __init__(self, snap: dict | None = None) -> None:
        self.fds: dict[int, dict[int, Fd]] = {}
        self.cwds: dict[int, str | None] = {}
        if snap:
            pid = int(snap["pid"])
            self.fds[pid] = {int(n): Fd(f["text"], f["cloexec"]) for n, f in snap["fds"].items()}
            self.cwds[pid] = snap.get("cwd")

    def table(self, tgid: int) -> dict[int, Fd]:
        t = self.fds.get(tgid)
        if t is None:
            t = self.fds[tgid] = {}
        return t

    def text(self, tgid: int, fd: int) -> str | None:
        got = self.fds.get(tgid, {}).get(fd)
        return got.text if got else None

    def cwd(self, tgid: int) -> str | None:
        return self.cwds.get(tgid)

    def path_of(self, tgid: int, dirfd: int, path: str) -> str:
        """An opened path as the kernel resolves it: relative to the working folder or dirfd."""
        if not path.startswith("/"):
            base = self.cwd(tgid) if dirfd == -100 else self.text(tgid, dirfd)
            if base and base.startswith("/"):
                path = os.path.join(base, path)
            else:
                return path
        return file_text(os.path.normpath(path))

    def set(self, tgid: int, fd: int, text: str | None, cloexec: bool = False) -> None:
        if fd < 0:
            return
        if text is None:
            self.table(tgid).pop(fd, None)
        else:
            self.table(tgid)[fd] = Fd(text, cloexec)

    def close(self, tgid: int, fd: int) -> None:
        self.table(tgid).pop(fd, None)

    def dup(self, tgid: int, old: int, new: int, cloexec: bool = False) -> None:
        got = self.fds.get(tgid, {}).get(old)
        self.set(tgid, new, got.text if got else None, cloexec)

    def exec(self, tgid: int) -> None:
        t = self.table(tgid)
        for n in [n for n, f in t.items() if f.cloexec]:
            del t[n]

    def fork(self, parent: int, child: int) -> None:
        """A new process starts with a copy of its parent's fds."""
        if child != parent and child not in self.fds:
            self.fds[child] = dict(self.fds.get(parent, {}))
            self.cwds[child] = self.cwds.get(parent)

    def exited(self, tgid: int) -> None:
        self.fds.pop(tgid, None)
        self.cwds.pop(tgid, None)
