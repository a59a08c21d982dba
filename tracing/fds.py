"""The fd table: what every fd of every traced process is, birth to close.

Threads share one table, a fork copies it, so a number reused after close
names the new thing. Each epoll instance keeps its interest list (fd, events,
data), so a wait's ready events resolve to fds even when `data` is not the fd.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tracing.changes import Dict, Tracked
from tracing.names import (CLIENT, DEVICE, EPOLL, FILE, IO_URING, LISTENING, PIDFD,  # noqa: F401
                           PIPE, RESOLVER_FILES, SIGNAL, SOCKET, STDIO, TIMER, UNKNOWN, WAKEUP)


@dataclass
class Fd(Tracked):
    num: int
    role: str
    detail: str = ""
    born: int | None = None  # line of the call that made it
    peer: int | None = None  # the other end of a pipe or socketpair
    cloexec: bool = False
    wakes: str = ""  # for a wakeup fd: who writes it to wake a wait ("thread", "signal")

    def describe(self) -> str:
        if self.role == UNKNOWN and not self.detail:
            # Say what the log cannot tell rather than guess.
            return "not known: made before the log starts or by an untraced call, and no -yy to name it"
        name = self.role.replace("-", " ")
        return f"{name} {self.detail}".strip() if self.detail else name


@dataclass
class Interest(Tracked):
    fd: int
    events: str
    data: int


@dataclass
class Table(Tracked):
    """One process's fds; shared by its threads."""

    fds: dict[int, Fd] = field(default_factory=Dict)
    # epoll fd -> {watched fd -> Interest}
    interest: dict[int, dict[int, Interest]] = field(default_factory=Dict)

    def copy(self) -> "Table":
        t = Table(Dict({n: Fd(**vars(f)) for n, f in self.fds.items()}))
        t.interest = Dict({e: Dict({n: Interest(**vars(i)) for n, i in w.items()})
                           for e, w in self.interest.items()})
        return t

    def watched(self, epfd: int) -> dict[int, Interest]:
        """An epoll instance's interest list (made empty on first use)."""
        return self.interest.setdefault(epfd, Dict())

    def get(self, num: int, deco: str | None = None) -> Fd:
        """The fd `num`; one never seen born is guessed from its -yy decoration."""
        fd = self.fds.get(num)
        if fd is None:
            fd = from_decoration(num, deco)
            self.fds[num] = fd
        elif fd.role == UNKNOWN and deco:
            fd = from_decoration(num, deco)
            self.fds[num] = fd
        return fd

    def open(self, fd: Fd) -> Fd:
        self.close(fd.num)
        self.fds[fd.num] = fd
        return fd

    def close(self, num: int) -> Fd | None:
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

    def watchers(self, num: int) -> list[int]:
        return [e for e, w in self.interest.items() if num in w]

    def by_data(self, epfd: int) -> dict[int, int]:
        """An epoll instance's interest list as data -> fd (the first registration
        of a value wins), for resolving a wait's ready events in one look-up each."""
        out: dict[int, int] = {}
        for interest in self.interest.get(epfd, {}).values():
            out.setdefault(interest.data, interest.fd)
        return out

    def resolve(self, epfd: int, data: int, by_data: dict[int, int] | None = None) -> tuple[Fd | None, bool]:
        """The fd a ready event's `data` names; bool = found in the interest list.

        libuv registers some fds through io_uring, which strace does not
        decode; libuv and asyncio put the fd in `data`, so fall back to that.
        """
        num = (by_data if by_data is not None else self.by_data(epfd)).get(data)
        if num is not None:
            return self.fds.get(num), True
        if 0 <= data < 1 << 20 and data in self.fds:
            return self.fds[data], False
        return None, False


_TCP = re.compile(r"^(TCP|TCPv6|UDP|UDPv6):\[(.*)\]$")


def from_decoration(num: int, deco: str | None) -> Fd:
    """Best guess of an fd's role from strace -y/-yy text alone."""
    if num in (0, 1, 2):
        # Inherited stdio: where the server's log goes, not part of the story.
        return Fd(num, STDIO, ("stdin", "stdout", "stderr")[num] + (f" {deco}" if deco else ""))
    if not deco:
        return Fd(num, UNKNOWN)
    m = _TCP.match(deco)
    if m:
        addr = m.group(2)
        if "->" in addr:
            return Fd(num, CLIENT, addr)
        if re.fullmatch(r"\d+", addr):
            return Fd(num, SOCKET, f"{m.group(1)} socket")
        return Fd(num, LISTENING if m.group(1).startswith("TCP") else SOCKET, addr)
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
    if deco.startswith("pipe:"):
        return Fd(num, PIPE, deco)
    if deco.startswith(("UNIX", "NETLINK")):
        return Fd(num, SOCKET, deco)
    if deco.startswith("/dev/"):
        return Fd(num, DEVICE, deco.split("<", 1)[0])
    if deco.startswith("/"):
        return Fd(num, FILE, deco)
    return Fd(num, UNKNOWN, deco)


class Processes(Tracked):
    """tid -> Table, following clone: CLONE_FILES shares, anything else copies."""

    def __init__(self) -> None:
        self._by_tid: dict[int | None, Table] = Dict()
        self.process_of: dict[int | None, int | None] = Dict()

    def table(self, tid: int | None) -> Table:
        t = self._by_tid.get(tid)
        if t is None:
            t = self._by_tid[tid] = Table()
            self.process_of[tid] = tid
        return t

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

    def superseded(self, leader: int | None, by: int) -> None:
        """A non-leader thread ran execve: the process goes on under the leader's pid."""
        self._by_tid[leader] = self.table(by)

    def exited(self, tid: int | None) -> None:
        self._by_tid.pop(tid, None)
