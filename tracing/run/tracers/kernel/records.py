"""The kernel tracer's binary records (tracing/run/tracers/kernel/bpf/epoll_lab.h), read back.

The loader copies the BPF ring buffer to the run's `kernel.records` as the
kernel lays it out: per record an 8-byte frame (its length, a busy and a
discard bit, a page offset), then the record, padded to 8 bytes: a 96-byte
head and the data bytes its `blob` says (at most EL_CAP). This module mirrors
that layout, and says per call which part of the data is what;
tracing/run/tracers/kernel/lines.py writes the lines.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO, Iterator

CAP = 160  # EL_CAP: bytes of a buffer, path or struct kept per call
SETS = 16  # EL_SETS: bytes of each select fd_set (fds 0 to 127)
FRAME = struct.Struct("<II")  # the ring's own record header: length and flags, page offset
DISCARD = 1 << 30
HEAD = struct.Struct("<HHIIIQQq6QII")  # struct el_head
SOCK = struct.Struct("<QQHHHH16s16s")  # struct el_sock
IOV = struct.Struct("<I4IIII")  # struct el_iov
assert HEAD.size == 96 and SOCK.size == 56 and IOV.size == 32

CALL, NORETURN, URING_SUB, URING_DONE, EXIT, SIGNAL, GAI, FORK, LOST, STATS, URING_ASYNC = range(1, 12)
KINDS = {CALL: "call", NORETURN: "noreturn", URING_SUB: "io_uring submission",
         URING_DONE: "io_uring completion", EXIT: "exit", SIGNAL: "signal", GAI: "getaddrinfo",
         FORK: "fork", LOST: "lost", STATS: "stats", URING_ASYNC: "io_uring hand-off to io-wq"}

# An io_uring record's layout (head.more). A record written before a layout
# existed has more 0: only its user_data (args[0]) and, for a completion, the result.
SUB_EPOLL = 1  # IORING_OP_EPOLL_CTL: user_data, epfd, fd, op, events, data (struct io_epoll)
SUB_OP = 2  # any other opcode: user_data, fd, len, a, b, sqe flags (SUB_FIELDS); data below
DONE_OP = 2  # a completion: user_data, cflags, 1 if an io-wq worker posted it, -, comm (args[4:6])

# What a submission's args[3] and args[4] (a, b) hold, and its data, per opcode
# (sub_op in epoll_lab.bpf.c): "off" the file offset (ki_pos), "buf" the buffer's address.
SUB_FIELDS = {
    "READ": ("off", "buf"), "WRITE": ("off", "buf"), "READV": ("off", "iov"), "WRITEV": ("off", "iov"),
    "SEND": ("flags", "buf"), "RECV": ("flags", "buf"), "SENDMSG": ("flags", "msg"),
    "RECVMSG": ("flags", "msg"), "ACCEPT": ("flags", None), "POLL_ADD": ("events", None),
    "SHUTDOWN": ("how", None), "OPENAT": ("flags", "mode"), "TIMEOUT": ("tv_sec", "tv_nsec"),
    "ASYNC_CANCEL": ("target", "flags"),
}
# data: OPENAT its path (the kernel's copy), SEND and WRITE the first bytes sent.


@dataclass(slots=True)
class Rec:
    kind: int
    nr: int  # syscall number, io_uring opcode, signal, CPU (LOST)
    tgid: int
    tid: int
    t0: int  # ns, CLOCK_MONOTONIC
    dur: int  # ns
    ret: int
    args: tuple
    data: bytes = b""  # the valid bytes only
    more: int = 0
    # What pairing adds to io_uring records: a submission's completion (`done`) and whether
    # the kernel handed it to io-wq (`punted`); a completion's submission (`sub`).
    done: "Rec | None" = None
    sub: "Rec | None" = None
    punted: bool = False


class Truncated(Exception):
    """The file ends inside a record: the loader was killed, or the disk filled."""


def read(f: BinaryIO) -> Iterator[Rec]:
    """Every record of a kernel.records file (or pipe), in the order the ring gave them.
    A file cut inside a record raises Truncated after the last whole one."""
    frame_size, head_size = FRAME.size, HEAD.size
    while True:
        raw = f.read(frame_size)
        if not raw:
            return
        if len(raw) < frame_size:
            raise Truncated(f"{len(raw)} bytes of a record frame")
        size = FRAME.unpack(raw)[0]
        body = f.read((size & 0x3FFFFFFF) + 7 & ~7)
        if len(body) < (size & 0x3FFFFFFF):
            raise Truncated(f"{len(body)} of {size & 0x3FFFFFFF} record bytes")
        if size & DISCARD or len(body) < head_size:
            continue
        kind, blob, nr, tgid, tid, t0, dur, ret, a0, a1, a2, a3, a4, a5, n, more = HEAD.unpack_from(body)
        data = body[head_size:head_size + min(n, blob)] if blob else b""
        yield Rec(kind, nr, tgid, tid, t0, dur, ret, (a0, a1, a2, a3, a4, a5), data, more)


@dataclass
class Sock:
    """struct el_sock: what a socket or pipe fd is."""

    ino: int
    peer_ino: int
    family: int
    type: int
    sport: int
    dport: int
    saddr: bytes
    daddr: bytes


def sock(data: bytes, at: int = 0) -> Sock | None:
    if len(data) < at + SOCK.size:
        return None
    return Sock(*SOCK.unpack_from(data, at))


def iov(data: bytes) -> tuple[int, list[int], int, int, int, bytes] | None:
    """struct el_iov and the bytes after it: (count, first four lengths, namelen,
    controllen, msg_flags, bytes of each iovec in turn)."""
    if len(data) < IOV.size:
        return None
    count, l0, l1, l2, l3, namelen, controllen, flags = IOV.unpack_from(data)
    return count, [l0, l1, l2, l3], namelen, controllen, flags, data[IOV.size:]


def stats(path) -> dict | None:
    """The loader's last record (EL_STATS): records written, calls lost, tasks it could
    not follow. None when the file does not end with one (the loader did not finish)."""
    try:
        with open(path, "rb") as f:
            f.seek(-HEAD.size, 2)
            raw = f.read(HEAD.size)
    except OSError:
        return None
    if len(raw) < HEAD.size:
        return None
    kind, _, _, _, _, _, _, _, a0, a1, a2, *_ = HEAD.unpack(raw)
    if kind != STATS:
        return None
    return {"records": a0, "lost": a1, "untraceable": a2}
