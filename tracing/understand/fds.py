"""The fd table: what every fd of every traced process is, birth to close.

Threads share one table, a fork copies it, so a number reused after close
names the new thing. Each epoll instance keeps its interest list (fd, events,
data), so a wait's ready events resolve to fds even when `data` is not the fd.

An fd made before the log began (`strace -p`, or by an untraced call) is known
only from what names it: a `-y`/`-yy` decoration, or the snapshot `trace
--pid` takes at attach (`Table.seed`). `-yy` names the kernel object too (a
pipe's inode, a unix socket's inode and its peer's), which is how the two
ends of a pipe or socketpair made before the log are found to be one pair.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from .changes import Dict, Tracked
from ..names import (CLIENT, DEVICE, EPOLL, FILE, IO_URING, LISTENING, PIDFD, PIPE, SIGNAL,
                           SOCKET, STDIO, TIMER, UNKNOWN, WAKEUP)


@dataclass
class Fd(Tracked):
    num: int
    role: str
    detail: str = ""
    born: int | None = None  # line of the call that made it
    peer: int | None = None  # the other end of a pipe or socketpair
    cloexec: bool = False
    wakes: str = ""  # for a wakeup fd: who writes it to wake a wait ("thread", "signal")
    obj: str = ""  # the kernel object -yy names ("pipe:325817", "unix:251319"), to pair ends
    peer_obj: str = ""  # a unix socket's peer's object, from -yy's `[a->b]`
    seen: int | None = None  # not born in the log: the line that first named it
    how: str = ""  # how an fd not born in the log is known: "-yy", "snapshot", "data"
    connecting: tuple | None = None  # (line, tid) of a non-blocking connect still in progress
    end: int = 0  # which end of a pipe or socketpair made in the log (0 or 1): with `born`, the
    # kernel object's name, the same in every process that shares it (fork, dup)

    def object(self, proc) -> tuple:
        """The kernel object this fd names: the same across fork and dup where the log made it."""
        if self.born is not None:
            return ("made", self.born, self.end)
        return ("seen", proc, self.num, self.obj)

    def other_end(self) -> tuple | None:
        """The object of the other end of a pipe or socketpair the log made."""
        if self.born is not None and self.role in (PIPE, WAKEUP) and self.detail != "eventfd":
            return ("made", self.born, 1 - self.end)
        return None

    def describe(self) -> str:
        if self.role == UNKNOWN and not self.detail:
            # Say what the log cannot tell rather than guess.
            return "not known: made before the log starts or by an untraced call, and no -yy to name it"
        name = self.role.replace("-", " ")
        return f"{name} {self.detail}".strip() if self.detail else name

    def origin(self) -> str:
        """Where the log shows what this fd is: its birth, or what named it."""
        if self.born is not None:
            return f"made at line {self.born}"
        if self.how == "snapshot":
            return "made before the log began; named by the snapshot taken at attach"
        if self.how == "-yy" and self.seen is not None:
            return f"made before the log began (or out of sight); -yy names it at line {self.seen}"
        return "made before the log began (or out of sight)"


@dataclass
class Interest(Tracked):
    fd: int
    events: str
    data: int
    line: int | None = None  # the registration's line (None: before the log, or via io_uring)


# Objects that never raise EPOLLHUP or EPOLLRDHUP: only pipes and sockets hang up.
_NEVER_HANG_UP = ("eventfd", "timerfd", "signalfd")


@dataclass
class Table(Tracked):
    """One process's fds; shared by its threads."""

    fds: dict[int, Fd] = field(default_factory=Dict)
    # epoll fd -> {watched fd -> Interest}
    interest: dict[int, dict[int, Interest]] = field(default_factory=Dict)
    # fds the log shows before any call made them: number -> (decoration, line); what was
    # there before the log began, for a second pass to start from (`Knowledge.seeds`)
    firsts: dict[int, tuple] = field(default_factory=Dict)

    def copy(self) -> "Table":
        t = Table(Dict({n: Fd(**vars(f)) for n, f in self.fds.items()}))
        t.interest = Dict({e: Dict({n: Interest(**vars(i)) for n, i in w.items()})
                           for e, w in self.interest.items()})
        return t

    def watched(self, epfd: int) -> dict[int, Interest]:
        """An epoll instance's interest list (made empty on first use)."""
        return self.interest.setdefault(epfd, Dict())

    def get(self, num: int, deco: str | None = None, line: int | Callable[[], int] | None = None) -> Fd:
        """The fd `num`; one never seen born is known from its -yy decoration, if any. `line` may
        be a function that gives it: read only for an fd made here (see Model.saw_wait)."""
        fd = self.fds.get(num)
        if fd is None or (fd.role == UNKNOWN and deco):
            fd = self.fds[num] = from_decoration(num, deco, self.listening_ports())
            if deco:
                line = line() if callable(line) else line
                fd.how, fd.seen = "-yy", line
                if num not in self.firsts and num > 2:
                    self.firsts[num] = (deco, line)
            self.pair(fd)
        return fd

    def seed(self, fd: Fd) -> None:
        """An fd that was there before the log began (the snapshot, or -yy read ahead)."""
        if fd.num not in self.fds:
            self.fds[fd.num] = fd
            self.pair(fd)

    def open(self, fd: Fd) -> Fd:
        self.close(fd.num)
        self.fds[fd.num] = fd
        return fd

    def close(self, num: int, line: int | None = None) -> Fd | None:
        fd = self.fds.pop(num, None)
        for watched in self.interest.values():
            watched.pop(num, None)
        self.interest.pop(num, None)
        if fd is not None and fd.peer is not None and fd.peer in self.fds:
            other = self.fds[fd.peer]
            if other.peer == num:
                other.peer = None
        return fd

    def exec(self) -> None:
        """execve keeps only the fds without close-on-exec."""
        for num in [n for n, f in self.fds.items() if f.cloexec]:
            self.close(num)

    def pair(self, fd: Fd) -> None:
        """Join `fd` to the other end of its pipe or socketpair, if -yy named both."""
        if not fd.obj or fd.peer is not None:
            return
        want = fd.peer_obj or fd.obj  # a unix socket's peer; a pipe's other end has its own inode
        for other in self.fds.values():
            if other is not fd and other.peer is None and other.obj == want and (
                    not other.peer_obj or other.peer_obj == fd.obj):
                fd.peer, other.peer = other.num, fd.num
                return

    def listening_ports(self) -> set[str]:
        return {f.detail.rsplit(":", 1)[-1] for f in self.fds.values() if f.role == LISTENING and f.detail}

    def watchers(self, num: int) -> list[int]:
        return [e for e, w in self.interest.items() if num in w]

    def by_data(self, epfd: int) -> dict[int, list[int]]:
        """An epoll instance's interest list as data -> fds (one value may name several
        fds), for resolving a wait's ready events in one look-up each."""
        out: dict[int, list[int]] = {}
        for interest in self.interest.get(epfd, {}).values():
            out.setdefault(interest.data, []).append(interest.fd)
        return out

    def resolve(self, epfd: int, data: int, events: str = "",
                by_data: dict[int, list[int]] | None = None) -> tuple[Fd | None, str]:
        """The fd a ready event's `data` names, and how it was found: "registered" (the
        interest list), "events" (one of several fds registered with the same data, the
        only one that can raise these events), "data" (not registered in the log: the
        fd whose number is in data's low 32 bits, as libuv and Python put it), or "".

        libuv registers some fds through io_uring, which strace does not decode, and
        a log that starts late misses registrations made before it.
        """
        nums = (by_data if by_data is not None else self.by_data(epfd)).get(data)
        if nums:
            if len(nums) == 1:
                return self.fds.get(nums[0]), "registered"
            fits = [n for n in nums if _can_raise(self.fds.get(n), events)]
            if len(fits) == 1:
                return self.fds.get(fits[0]), "events"
            return None, "ambiguous"
        for num in (data, data & 0xFFFFFFFF):
            if 0 <= num < 1 << 20 and num in self.fds and num != epfd:
                return self.fds[num], "data"
        return None, ""


def _can_raise(fd: Fd | None, events: str) -> bool:
    if fd is None:
        return False
    if "HUP" in events and (fd.detail in _NEVER_HANG_UP or fd.role in (TIMER, SIGNAL)):
        return False
    return "RDHUP" not in events or fd.role in (CLIENT, LISTENING, SOCKET) or fd.obj.startswith("unix:") \
        or "socket" in fd.detail


_INET = re.compile(r"^(TCP|TCPv6|UDP|UDPv6):\[(.*)\]$")
_UNIX = re.compile(r"^UNIX(?:-STREAM|-DGRAM|-SEQPACKET)?:\[(\d+)(?:->(\d+))?(?:,\"(.*)\")?\]$")
_PIPE = re.compile(r"^pipe:\[(\d+)\]$")
_PORT = re.compile(r":(\d+)$")


def from_decoration(num: int, deco: str | None, listening: set[str] = frozenset()) -> Fd:
    """What strace -y/-yy text alone says an fd is; `listening` holds the ports of the
    process's listening sockets, so an accepted connection is told from an outbound one."""
    if num in (0, 1, 2):
        # Inherited stdio: where the server's log goes, not part of the story.
        return Fd(num, STDIO, ("stdin", "stdout", "stderr")[num] + (f" {deco}" if deco else ""))
    if not deco:
        return Fd(num, UNKNOWN)
    m = _INET.match(deco)
    if m:
        addr = m.group(2)
        if "->" in addr:
            local = _PORT.search(addr.split("->", 1)[0])
            if local and local.group(1) in listening:
                return Fd(num, CLIENT, addr)
            return Fd(num, SOCKET, f"connected {addr}")
        if re.fullmatch(r"\d+", addr):
            return Fd(num, SOCKET, f"{m.group(1)} socket")
        return Fd(num, LISTENING if m.group(1).startswith("TCP") else SOCKET, addr)
    m = _UNIX.match(deco)
    if m:
        return Fd(num, SOCKET, deco, obj=f"unix:{m.group(1)}", peer_obj=f"unix:{m.group(2)}" if m.group(2) else "")
    m = _PIPE.match(deco)
    if m:
        return Fd(num, PIPE, deco, obj=f"pipe:{m.group(1)}")
    if deco == "anon_inode:[eventpoll]":
        return Fd(num, EPOLL)
    if deco == "anon_inode:[eventfd]":
        return Fd(num, WAKEUP, "eventfd")
    if deco == "anon_inode:[timerfd]":
        return Fd(num, TIMER, "timerfd")
    if deco == "anon_inode:[signalfd]":
        return Fd(num, SIGNAL, "signalfd")
    if deco == "anon_inode:[io_uring]":
        return Fd(num, IO_URING)
    if deco.startswith("anon_inode:[pidfd]"):
        return Fd(num, PIDFD)
    if deco.startswith(("UNIX", "NETLINK")):
        return Fd(num, SOCKET, deco)
    if deco.startswith("/dev/"):
        return Fd(num, DEVICE, deco.split("<", 1)[0])
    if deco.startswith("/"):
        return Fd(num, FILE, deco)
    return Fd(num, UNKNOWN, deco)


def unix_objects(deco: str | None) -> tuple[str, str]:
    """A `socketpair` end's object and its peer's, from -yy (empty without it)."""
    m = _UNIX.match(deco or "")
    if not m:
        return "", ""
    return f"unix:{m.group(1)}", f"unix:{m.group(2)}" if m.group(2) else ""


class Processes(Tracked):
    """tid -> Table, following clone: CLONE_FILES shares, anything else copies."""

    def __init__(self, seeds: dict | None = None, roles: dict | None = None) -> None:
        self._by_tid: dict[int | None, Table] = Dict()
        self.process_of: dict[int | None, int | None] = Dict()
        self.origins: dict[int | None, Table] = Dict()  # tid -> the table of a process the log did not see made
        self.seeds = seeds if seeds is not None else Dict()  # tid -> {fd: (decoration, line)}: seen there before the log
        self.seed_roles = roles if roles is not None else Dict()  # (tid, fd, line) -> role the log showed later

    def table(self, tid: int | None) -> Table:
        t = self._by_tid.get(tid)
        if t is None:
            t = self._by_tid[tid] = self.origins[tid] = Table()
            self.process_of[tid] = tid
            seeds = sorted(self.seeds.get(tid, {}).items())
            # Listening sockets first: a connection is told accepted by its local port.
            for num, (deco, line) in [s for s in seeds if "->" not in s[1][0]] + [s for s in seeds if "->" in s[1][0]]:
                fd = from_decoration(num, deco, t.listening_ports())
                fd.how, fd.seen = "-yy", line
                fd.role = self.seed_roles.get((tid, num, line), fd.role)
                t.seed(fd)
        return t

    def known(self, tid: int | None) -> Table | None:
        """The table of a thread already placed, without placing it."""
        return self._by_tid.get(tid)

    def cloned(self, parent: int | None, child: int, flags: str) -> None:
        table = self.table(parent)
        if "CLONE_FILES" in flags:
            self._by_tid[child] = table
        else:
            self._by_tid[child] = table.copy()
        if "CLONE_THREAD" in flags:
            self.process_of[child] = self.process_of.get(parent, parent)
        else:
            self.process_of[child] = child

    def joined(self, tid: int, leader: int | None) -> None:
        """A thread the log never saw made is known (snapshot, shared fds) to be `leader`'s."""
        self._by_tid[tid] = self.table(leader)
        self.process_of[tid] = self.process_of.get(leader, leader)

    def superseded(self, leader: int | None, by: int) -> None:
        """A non-leader thread ran execve: the process goes on under the leader's pid."""
        self._by_tid[leader] = self.table(by)

    def exited(self, tid: int | None) -> None:
        self._by_tid.pop(tid, None)
