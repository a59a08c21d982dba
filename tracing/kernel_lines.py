"""Kernel-tracer records to strace-syntax lines, and libuv's user_data decoded.

tracing/kernel.bt prints one short record per event; here they are sorted by
the kernel's timestamp (CLOCK_MONOTONIC, plus the offset to time.time()
measured at start) and written the way strace -f -ttt -T prints, so the
parser and annotator read them unchanged. New record kinds:
`io_uring_sqe(IORING_OP_..., user_data=0x...[, epfd=, fd=, op=, {event}]) = res`
and `getaddrinfo("node", ...) = ret`.
"""

from __future__ import annotations

import errno as E
import ipaddress
import os
import re
import signal
from dataclasses import dataclass
from typing import Iterable, Iterator

from tracing.syscalls_x86_64 import NAME, NR

@dataclass(slots=True)
class Rec:
    kind: str
    tgid: int
    tid: int
    t0: int  # ns, CLOCK_MONOTONIC
    dur: int  # ns; 0 for point events
    fields: list
    blob: bytes = b""


_EV = re.compile(r"^@ev\[(\d+), (\d+)\]: \((.*)\)$")
_COUNT = re.compile(r"^@calls: (\d+)$|^Lost (\d+) events")


@dataclass
class Counts:
    """What the records say about their own completeness."""

    calls: int = 0  # story syscalls the kernel saw
    kept: int = 0  # of them, held in the map (it has a fixed size)
    lost: int = 0  # perf-buffer records the kernel dropped (bpftrace fell behind)

    @property
    def dropped(self) -> int:
        return self.lost + max(0, self.calls - self.kept)


def read_records(lines: Iterable[str], counts: Counts | None = None) -> Iterator[Rec | str]:
    """bpftrace's lines to records; anything else (warnings) as text."""
    counts = counts if counts is not None else Counts()
    for line in lines:
        line = line.rstrip("\n")
        kind = line[:2]
        try:
            if (m := _EV.match(line)) or (line.startswith("(") and line.endswith(")")):
                # @ev[t0, tid]: (dur, nr, ret, a0..a5, n, b0..b11), or live mode's
                # (t0, tid, dur, ...): n bytes of buffer in 12 words.
                v = [int(x) for x in (m.group(3) if m else line[1:-1]).split(", ")]
                t0, tid = (int(m.group(1)), int(m.group(2))) if m else (v.pop(0), v.pop(0))
                blob = b"".join((w & (1 << 64) - 1).to_bytes(8, "little") for w in v[10:22])[:v[9]]
                counts.kept += 1
                yield Rec("S", 0, tid, t0, v[0], v[1:9], blob)
            elif m := _COUNT.match(line):
                if m.group(1):
                    counts.calls += int(m.group(1))
                else:
                    counts.lost += int(m.group(2))
            elif kind == "E ":
                p = line.split(" ", 4)
                yield Rec("E", int(p[1]), int(p[2]), int(p[3]), 0, [p[4] if len(p) > 4 else ""])
            elif kind in ("Q ", "X ", "C ", "G ", "U "):
                p = line.split()
                ints = [int(x, 16) if kind in ("U ", "C ") and i == 4 else
                        (int(x, 16) if kind == "U " and i == 9 else int(x)) for i, x in enumerate(p) if i]
                yield Rec(kind[0], ints[0], ints[1], ints[2], 0, ints[3:])
            elif kind == "a ":
                p = line.split(" ", 4)
                yield Rec("a", int(p[1]), int(p[2]), int(p[3]), 0, [p[4] if len(p) > 4 else ""])
            elif kind == "A ":
                p = line.split()
                yield Rec("A", int(p[1]), int(p[2]), int(p[3]), int(p[4]), [int(p[5])])
            elif line.strip() and not line.startswith("Attaching "):
                yield line
        except (ValueError, IndexError):
            yield line


class Pairs:
    """Records that complete others: execve's path, getaddrinfo's node, an io_uring
    submission's completion."""

    def __init__(self) -> None:
        self.execs: dict[int, str] = {}
        self.nodes: dict[int, str] = {}
        self.subs: dict[tuple, Rec] = {}

    def take(self, r: Rec) -> Rec | None:
        """The record to place, completed where it can be; None for a half kept for later.
        A completion (C) returns its submission, now with the result."""
        if r.kind == "S" and r.fields[0] == NR["execve"]:
            r.fields.append(self.execs.pop(r.tid, None))
        elif r.kind == "E":
            self.execs[r.tid] = r.fields[0]
            return None
        elif r.kind == "a":
            self.nodes[r.tid] = r.fields[0]
            return None
        elif r.kind == "A":
            r.fields.append(self.nodes.pop(r.tid, "?"))
        elif r.kind == "U":
            self.subs[(r.tgid, r.fields[0])] = r
        elif r.kind == "C":
            sub = self.subs.pop((r.tgid, r.fields[0]), None)
            if sub is not None:
                sub.dur = r.t0 - sub.t0
                sub.fields.append(r.fields[1])
            return sub
        return r


def line_of(r: Rec, offset: float) -> str:
    """One record as one complete strace-syntax line."""
    if r.kind == "S":
        return _prefix(r, r.t0, offset) + syscall_line(r)
    if r.kind == "U":
        return _prefix(r, r.t0, offset) + sqe_line(r)
    if r.kind == "A":
        return _prefix(r, r.t0, offset) + gai_line(r)
    return _prefix(r, r.t0, offset) + point_line(r)


def convert(records: Iterable[Rec | str], offset: float) -> Iterator[str]:
    """Sorted strace-syntax lines: a call is one line when nothing else happened
    between its entry and exit, else `<unfinished ...>` and `<... resumed>` as
    strace prints them. Point events sit at their own time."""
    points = []  # (ns, order, seq, rec)
    pairs = Pairs()
    extra: list[str] = []
    for seq, r in enumerate(records):
        if isinstance(r, str):
            extra.append(r)
            continue
        got = pairs.take(r)
        if got is None or r.kind == "C":
            continue  # a completion fills in its submission, placed already
        if r.kind == "S":
            points.append((r.t0, 0, seq, r))
            points.append((r.t0 + r.dur, 1, seq, r))
        elif r.kind == "A":
            # A library call spans the syscalls it makes: one line at its return.
            points.append((r.t0 + r.dur, 1, seq, r))
        else:
            points.append((r.t0, 1, seq, r))
    points.sort(key=lambda p: (p[0], p[1], p[2]))
    yield from extra
    split: set[int] = set()
    for i, (ns, order, sq, r) in enumerate(points):
        if r.kind != "S":
            yield line_of(r, offset)
        elif order == 0:
            nxt = points[i + 1] if i + 1 < len(points) else None
            if nxt is not None and nxt[2] == sq:
                yield line_of(r, offset)
            else:
                split.add(sq)
                yield _prefix(r, r.t0, offset) + syscall_line(r, half="start")
        elif sq in split:
            split.discard(sq)
            yield _prefix(r, ns, offset) + syscall_line(r, half="end")


def stream(records: Iterable[Rec | str], offset: float) -> Iterator[str]:
    """Live mode: each record as one complete line as soon as it is whole, in the
    order bpftrace read them (a call is printed when it returns, at its start time)."""
    pairs = Pairs()
    for r in records:
        if isinstance(r, str):
            yield r
            continue
        got = pairs.take(r)
        if got is not None and r.kind != "U":  # a submission waits for its completion
            yield line_of(got, offset)


def _prefix(r: Rec, ns: int, offset: float) -> str:
    return f"{r.tid} {ns / 1e9 + offset:.6f} "


def syscall_line(r: Rec, half: str = "") -> str:
    nr, ret, *a = r.fields[:8]
    name = NAME.get(nr, f"syscall_{nr}")
    args = format_args(name, ret, a, r.blob, r.fields[8] if len(r.fields) > 8 else None)
    result = _result(name, ret) + f" <{r.dur / 1e9:.6f}>"
    if half == "start":
        return f"{name}({args[0]} <unfinished ...>"
    if half == "end":
        return f"<... {name} resumed>{args[1]}) {result}"
    return f"{name}({args[0]}{args[1]}) {result}"


# Arguments known at entry go before `<unfinished ...>`; those the kernel
# fills in (a read's buffer, a wait's ready list) after `resumed>`, as strace.
_OUT_FROM = {"read": 1, "pread64": 1, "recvfrom": 1, "epoll_wait": 1, "epoll_pwait": 1,
             "epoll_pwait2": 1, "pipe2": 0, "socketpair": 3, "accept": 1, "accept4": 1}


def format_args(name: str, ret: int, a: list[int], blob: bytes, path: str | None) -> tuple[str, str]:
    parts = _args(name, ret, a, blob, path)
    cut = _OUT_FROM.get(name, len(parts))
    head, tail = parts[:cut], parts[cut:]
    first = ", ".join(head) + (", " if head and tail else "")
    return first, ", ".join(tail)


def _fd(x: int) -> str:
    x &= 0xFFFFFFFF
    return str(x - (1 << 32) if x >= 1 << 31 else x)


def _ptr(x: int) -> str:
    return "NULL" if x == 0 else hex(x)


def _args(name: str, ret: int, a: list[int], blob: bytes, path: str | None) -> list[str]:
    a0, a1, a2, a3, a4, a5 = a
    if name in ("read", "pread64", "recvfrom"):
        buf = quote(blob, ret) if ret >= 0 else _ptr(a1)
        rest = {"read": [str(a2)], "pread64": [str(a2), str(a3)],
                "recvfrom": [str(a2), str(a3), _ptr(a4), _ptr(a5)]}[name]
        return [_fd(a0), buf, *rest]
    if name in ("write", "sendto"):
        rest = [str(a2)] if name == "write" else [str(a2), str(a3), _ptr(a4), str(a5)]
        return [_fd(a0), quote(blob, a2), *rest]
    if name in ("readv", "writev"):
        return [_fd(a0), _ptr(a1), str(a2)]
    if name in ("recvmsg", "sendmsg"):
        return [_fd(a0), _ptr(a1), str(a2)]
    if name == "openat":
        return ["AT_FDCWD" if _fd(a0) == "-100" else _fd(a0), cstring(blob), flags(a2, O_FLAGS, "O_RDONLY", acc=True)]
    if name == "open":
        return [cstring(blob), flags(a1, O_FLAGS, "O_RDONLY", acc=True)]
    if name in ("close", "dup", "epoll_create"):
        return [_fd(a0)]
    if name == "dup2":
        return [_fd(a0), _fd(a1)]
    if name == "dup3":
        return [_fd(a0), _fd(a1), flags(a2, O_FLAGS, "0")]
    if name == "socket":
        return [FAMILY.get(a0, str(a0)), sock_type(a1), str(a2)]
    if name in ("bind", "connect"):
        return [_fd(a0), sockaddr(blob), str(a2)]
    if name == "listen":
        return [_fd(a0), str(a1)]
    if name == "shutdown":
        return [_fd(a0), {0: "SHUT_RD", 1: "SHUT_WR", 2: "SHUT_RDWR"}.get(a1, str(a1))]
    if name in ("accept", "accept4"):
        out = [_fd(a0), _ptr(a1), _ptr(a2)]
        return out + [sock_type(a3, base=False)] if name == "accept4" else out
    if name == "epoll_create1":
        return [flags(a0, {0o2000000: "EPOLL_CLOEXEC"}, "0")]
    if name == "epoll_ctl":
        op = {1: "EPOLL_CTL_ADD", 2: "EPOLL_CTL_DEL", 3: "EPOLL_CTL_MOD"}.get(a1, str(a1))
        return [_fd(a0), op, _fd(a2), epoll_events(blob)[0] if len(blob) >= 12 else _ptr(a3)]
    if name in ("epoll_wait", "epoll_pwait", "epoll_pwait2"):
        ready = "[" + ", ".join(epoll_events(blob)) + "]" if ret >= 0 else _ptr(a1)
        if name == "epoll_wait":
            return [_fd(a0), ready, str(a2), _fd(a3)]
        timeout = _fd(a3) if name == "epoll_pwait" else _ptr(a3)
        return [_fd(a0), ready, str(a2), timeout, _ptr(a4), str(a5)]
    if name == "eventfd2":
        return [str(a0), flags(a1, {0o2000000: "EFD_CLOEXEC", 0o4000: "EFD_NONBLOCK", 1: "EFD_SEMAPHORE"}, "0")]
    if name == "pipe2":
        return [fd_pair(blob, ret), flags(a1, O_FLAGS, "0")]
    if name == "socketpair":
        return [FAMILY.get(a0, str(a0)), sock_type(a1), str(a2), fd_pair(blob, ret)]
    if name == "timerfd_create":
        clock = {0: "CLOCK_REALTIME", 1: "CLOCK_MONOTONIC", 7: "CLOCK_BOOTTIME"}.get(a0, str(a0))
        return [clock, flags(a1, {0o2000000: "TFD_CLOEXEC", 0o4000: "TFD_NONBLOCK"}, "0")]
    if name == "timerfd_settime":
        return [_fd(a0), str(a1), itimerspec(blob) if len(blob) >= 32 else _ptr(a2), _ptr(a3)]
    if name == "signalfd4":
        return [_fd(a0), _ptr(a1), str(a2), flags(a3, {0o2000000: "SFD_CLOEXEC", 0o4000: "SFD_NONBLOCK"}, "0")]
    if name == "io_uring_setup":
        return [str(a0), _ptr(a1)]
    if name == "io_uring_enter":
        return [_fd(a0), str(a1), str(a2), flags(a3, {1: "IORING_ENTER_GETEVENTS", 2: "IORING_ENTER_SQ_WAKEUP",
                                                      4: "IORING_ENTER_SQ_WAIT", 8: "IORING_ENTER_EXT_ARG"}, "0"),
                _ptr(a4), str(a5)]
    if name == "clone":
        return [f"child_stack={_ptr(a1)}", f"flags={clone_flags(a0)}"]
    if name == "clone3":
        fl = int.from_bytes(blob[:8], "little") if len(blob) >= 8 else None
        return ["{flags=" + (clone_flags(fl) if fl is not None else "?") + ", ...}", str(a1)]
    if name in ("fork", "vfork"):
        return []
    if name == "execve":
        return [cstring((path or "").encode("latin-1", "replace") + b"\0"), _ptr(a1), _ptr(a2)]
    if name == "exit_group":
        return [str(a0)]
    return [hex(x) for x in a]


def _result(name: str, ret: int) -> str:
    if -4095 <= ret < 0:
        n = -ret
        if n in RESTART:
            return f"= ? {RESTART[n]}"
        return f"= -1 {E.errorcode.get(n, f'E{n}')} ({os.strerror(n)})"
    if name in ("clone", "clone3", "fork", "vfork") or ret < 1 << 20:
        return f"= {ret}"
    return f"= {hex(ret)}"


RESTART = {512: "ERESTARTSYS (To be restarted if SA_RESTART is set)",
           513: "ERESTARTNOINTR (To be restarted)",
           514: "ERESTARTNOHAND (To be restarted if no handler)",
           516: "ERESTART_RESTARTBLOCK (Interrupted by signal)"}

O_FLAGS = {0o100: "O_CREAT", 0o200: "O_EXCL", 0o400: "O_NOCTTY", 0o1000: "O_TRUNC", 0o2000: "O_APPEND",
           0o4000: "O_NONBLOCK", 0o10000: "O_DSYNC", 0o40000: "O_DIRECT", 0o200000: "O_DIRECTORY",
           0o400000: "O_NOFOLLOW", 0o1000000: "O_NOATIME", 0o2000000: "O_CLOEXEC", 0o10000000: "O_PATH"}
FAMILY = {1: "AF_UNIX", 2: "AF_INET", 10: "AF_INET6", 16: "AF_NETLINK"}
SOCK_TYPES = {1: "SOCK_STREAM", 2: "SOCK_DGRAM", 3: "SOCK_RAW", 5: "SOCK_SEQPACKET"}
CLONE = {0x100: "CLONE_VM", 0x200: "CLONE_FS", 0x400: "CLONE_FILES", 0x800: "CLONE_SIGHAND",
         0x1000: "CLONE_PIDFD", 0x2000: "CLONE_PTRACE", 0x4000: "CLONE_VFORK", 0x8000: "CLONE_PARENT",
         0x10000: "CLONE_THREAD", 0x20000: "CLONE_NEWNS", 0x40000: "CLONE_SYSVSEM",
         0x80000: "CLONE_SETTLS", 0x100000: "CLONE_PARENT_SETTID", 0x200000: "CLONE_CHILD_CLEARTID",
         0x800000: "CLONE_UNTRACED", 0x1000000: "CLONE_CHILD_SETTID", 0x2000000: "CLONE_NEWCGROUP",
         0x4000000: "CLONE_NEWUTS", 0x8000000: "CLONE_NEWIPC", 0x10000000: "CLONE_NEWUSER",
         0x20000000: "CLONE_NEWPID", 0x40000000: "CLONE_NEWNET", 0x80000000: "CLONE_IO"}
EPOLL = {0x1: "EPOLLIN", 0x2: "EPOLLPRI", 0x4: "EPOLLOUT", 0x8: "EPOLLERR", 0x10: "EPOLLHUP",
         0x40: "EPOLLRDNORM", 0x80: "EPOLLRDBAND", 0x100: "EPOLLWRNORM", 0x200: "EPOLLWRBAND",
         0x400: "EPOLLMSG", 0x2000: "EPOLLRDHUP", 1 << 28: "EPOLLEXCLUSIVE", 1 << 29: "EPOLLWAKEUP",
         1 << 30: "EPOLLONESHOT", 1 << 31: "EPOLLET"}


def flags(value: int, names: dict, zero: str, acc: bool = False) -> str:
    out = []
    if acc:
        out.append(("O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE")[value & 3])
        value &= ~3
    for bit, name in names.items():
        if value & bit:
            out.append(name)
            value &= ~bit
    if value:
        out.append(hex(value))
    return "|".join(out) or zero


def sock_type(value: int, base: bool = True) -> str:
    out = [SOCK_TYPES.get(value & 0xF, str(value & 0xF))] if base else []
    rest = flags(value & ~0xF if base else value, {0o2000000: "SOCK_CLOEXEC", 0o4000: "SOCK_NONBLOCK"}, "")
    return "|".join(x for x in (*out, rest) if x) or "0"


def clone_flags(value: int) -> str:
    sig = value & 0xFF
    text = flags(value & ~0xFF, CLONE, "")
    if sig:
        try:
            text += ("|" if text else "") + signal.Signals(sig).name
        except ValueError:
            text += f"|{sig}"
    return text or "0"


def epoll_events(blob: bytes) -> list[str]:
    """Packed struct epoll_event (12 bytes on x86_64) in strace 6.1's form."""
    out = []
    for i in range(0, len(blob) - 11, 12):
        ev = int.from_bytes(blob[i:i + 4], "little")
        data = int.from_bytes(blob[i + 4:i + 12], "little")
        out.append(f"{{events={flags(ev, EPOLL, '0')}, data={{u32={data & 0xFFFFFFFF}, u64={data}}}}}")
    return out


def fd_pair(blob: bytes, ret: int) -> str:
    if ret < 0 or len(blob) < 8:
        return "0x?"
    return f"[{int.from_bytes(blob[:4], 'little', signed=True)}, {int.from_bytes(blob[4:8], 'little', signed=True)}]"


def itimerspec(blob: bytes) -> str:
    v = [int.from_bytes(blob[i:i + 8], "little") for i in range(0, 32, 8)]
    return (f"{{it_interval={{tv_sec={v[0]}, tv_nsec={v[1]}}}, "
            f"it_value={{tv_sec={v[2]}, tv_nsec={v[3]}}}}}")


def sockaddr(blob: bytes) -> str:
    if len(blob) < 2:
        return "0x?"
    family = int.from_bytes(blob[:2], "little")
    if family == 2 and len(blob) >= 8:
        port = int.from_bytes(blob[2:4], "big")
        return (f'{{sa_family=AF_INET, sin_port=htons({port}), '
                f'sin_addr=inet_addr("{".".join(str(b) for b in blob[4:8])}")}}')
    if family == 1:
        return f'{{sa_family=AF_UNIX, sun_path={cstring(blob[2:])}}}'
    if family == 10 and len(blob) >= 24:
        port = int.from_bytes(blob[2:4], "big")
        return (f'{{sa_family=AF_INET6, sin6_port=htons({port}), '
                f'inet_pton(AF_INET6, "{ipaddress.IPv6Address(blob[8:24])}", &sin6_addr)}}')
    return f"{{sa_family={FAMILY.get(family, family)}, ...}}"


def cstring(blob: bytes) -> str:
    end = blob.find(b"\0")
    return quote(blob[:end] if end >= 0 else blob, None)


def quote(data: bytes, size: int | None) -> str:
    """strace's string form: C escapes, octal for the rest, `...` when cut."""
    out = []
    for i, b in enumerate(data):
        c = chr(b)
        if c in '"\\':
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif c == "\r":
            out.append("\\r")
        elif c == "\t":
            out.append("\\t")
        elif 32 <= b < 127:
            out.append(c)
        else:
            nxt = data[i + 1] if i + 1 < len(data) else None
            out.append(f"\\{b:03o}" if nxt is not None and 48 <= nxt <= 55 else f"\\{b:o}")
    cut = "..." if size is not None and size > len(data) else ""
    return '"' + "".join(out) + '"' + cut


# -- io_uring submissions, getaddrinfo, exits and signals -------------------------

# The io_uring opcodes (include/uapi/linux/io_uring.h), for naming submissions.
IORING_OPS = ("NOP READV WRITEV FSYNC READ_FIXED WRITE_FIXED POLL_ADD POLL_REMOVE SYNC_FILE_RANGE "
              "SENDMSG RECVMSG TIMEOUT TIMEOUT_REMOVE ACCEPT ASYNC_CANCEL LINK_TIMEOUT CONNECT "
              "FALLOCATE OPENAT CLOSE FILES_UPDATE STATX READ WRITE FADVISE MADVISE SEND RECV "
              "OPENAT2 EPOLL_CTL SPLICE PROVIDE_BUFFERS REMOVE_BUFFERS TEE SHUTDOWN RENAMEAT "
              "UNLINKAT MKDIRAT SYMLINKAT LINKAT MSG_RING FSETXATTR SETXATTR FGETXATTR GETXATTR "
              "SOCKET URING_CMD SEND_ZC SENDMSG_ZC READ_MULTISHOT WAITID FUTEX_WAIT FUTEX_WAKE "
              "FUTEX_WAITV FIXED_FD_INSTALL FTRUNCATE BIND LISTEN").split()


def sqe_line(r: Rec) -> str:
    """`io_uring_sqe(IORING_OP_EPOLL_CTL, user_data=0x..., epfd=4, fd=14, op=1, events=EPOLLIN) = 0`."""
    ud, opcode, epfd, fd, op, events, data = r.fields[:7]
    res = r.fields[7] if len(r.fields) > 7 else None
    name = f"IORING_OP_{IORING_OPS[opcode]}" if opcode < len(IORING_OPS) else str(opcode)
    args = [name, f"user_data={ud:#x}"]
    if op >= 0:
        # The request as the kernel prepared it from the sqe (struct io_epoll).
        args += [f"epfd={_fd(epfd)}", f"fd={_fd(fd)}", f"op={op}",
                 f"{{events={flags(events, EPOLL, '0')}, data={{u32={data & 0xFFFFFFFF}, u64={data}}}}}"]
    if res is None:
        return f"io_uring_sqe({', '.join(args)}) = ? <{r.dur / 1e9:.6f}>"
    return f"io_uring_sqe({', '.join(args)}) {_result('io_uring_sqe', res)} <{r.dur / 1e9:.6f}>"


def gai_line(r: Rec) -> str:
    ret, node = r.fields[0], r.fields[1]
    result = f"= {ret}" if ret >= 0 else f"= {ret} (EAI error)"
    return f'getaddrinfo({quote(node.encode("latin-1", "replace"), None)}, ...) {result} <{r.dur / 1e9:.6f}>'


SI_CODES = {0: "SI_USER", 0x80: "SI_KERNEL", -1: "SI_QUEUE", -6: "SI_TKILL"}


def point_line(r: Rec) -> str:
    if r.kind == "X":
        code = r.fields[0]
        if code & 0x7F:
            try:
                return f"+++ killed by {signal.Signals(code & 0x7F).name} +++"
            except ValueError:
                return f"+++ killed by signal {code & 0x7F} +++"
        return f"+++ exited with {(code >> 8) & 0xFF} +++"
    if r.kind == "G":
        sig, code = r.fields[0], r.fields[1]
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"SIGRT_{sig}"
        how = {1: "CLD_EXITED", 2: "CLD_KILLED"}.get(code) if name == "SIGCHLD" else SI_CODES.get(code)
        return f"--- {name} {{si_signo={name}, si_code={how or code}}} ---"
    if r.kind == "Q":
        return f"exit_group({r.fields[1]}) = ?"
    return f"unknown record {r.kind}"


def decode_user_data(user_data: int, opcode: str) -> dict:
    """libuv's packing of an IORING_OP_EPOLL_CTL: op | slot << 2 | fd << 32.

    Anything else (another opcode, op 0, a slot past libuv's 256-entry ring,
    a negative fd) is not libuv's layout: its fd is unknown, never guessed.
    """
    op, slot, fd = user_data & 3, (user_data >> 2) & 0x3FFFFFFF, user_data >> 32
    if opcode != "IORING_OP_EPOLL_CTL" or op == 0 or slot >= 256 or fd >= 1 << 31:
        return {"libuv": False, "opcode": opcode}
    return {"libuv": True, "opcode": opcode, "op": ("", "ADD", "DEL", "MOD")[op], "slot": slot, "fd": fd}


_SQE = re.compile(r"^(IORING_OP_\w+|\d+), user_data=(0x[0-9a-f]+)"
                  r"(?:, epfd=(-?\d+), fd=(-?\d+), op=(\d+), (\{.*\}))?$", re.S)


def sqe_fields(args: str) -> dict | None:
    """An io_uring_sqe record's arguments, with libuv's user_data decoded."""
    m = _SQE.match(args)
    if m is None:
        return None
    got = decode_user_data(int(m.group(2), 16), m.group(1))
    got["user_data"] = int(m.group(2), 16)
    if m.group(3) is not None:
        # What the kernel prepared from the sqe: the truth where they differ.
        got["kernel"] = {"epfd": int(m.group(3)), "fd": int(m.group(4)), "op": int(m.group(5)),
                         "event": m.group(6)}
    return got
