"""Kernel-tracer records to strace-syntax lines, and libuv's user_data decoded.

tracing/run/tracers/kernel/records.py reads the loader's binary records; here they are
sorted by the kernel's timestamp (CLOCK_MONOTONIC, plus the offset to
time.time() measured at start) and written the way strace -f -ttt -T -yy
prints, fds decorated from tracing/run/tracers/kernel/fds.py's tables, so the parser and
annotator read them unchanged. Record kinds strace has not:
`io_uring_sqe(IORING_OP_..., user_data=0x..., fd=5<...>, len=...) = res` at each
submission (decoded: its fd, length, offset, path; its completion's result; `async=io-wq`
where the kernel handed it to its worker threads), `io_uring_cqe(IORING_OP_..., user_data=0x...,
...) = res` at each completion, on the thread that posted it (an accept's new fd named there,
where it is born; `worker="iou-wrk-N"` for an io-wq worker), `getaddrinfo("node", ...) = ret`,
and, where the ring buffer was full, a
message line `strace: N calls lost here ...` at the time of the first loss
(the parser keeps `strace:` lines as the tracer's own messages).
"""

from __future__ import annotations

import errno as E
import ipaddress
import os
import signal
from collections import deque
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from . import records as K
from .fds import ANON, Tables, sock_text
from .syscalls import NAME


@dataclass
class Counts:
    """What the records say about their own completeness."""

    records: int = 0
    calls: int = 0  # syscalls recorded
    lost: int = 0  # calls the ring had no room for, from the LOST records in the stream
    places: list = field(default_factory=list)  # (time, calls lost) of each LOST record
    stats: dict | None = None  # the loader's own count, written last
    truncated: str = ""  # the file ended inside a record

    @property
    def dropped(self) -> int:
        return max(self.lost, (self.stats or {}).get("lost", 0))

    def take(self, r: K.Rec) -> None:
        self.records += 1
        if r.kind in (K.CALL, K.NORETURN):
            self.calls += 1
        elif r.kind == K.LOST:
            self.lost += r.ret
            self.places.append((r.t0, r.ret))
        elif r.kind == K.STATS:
            self.stats = {"records": r.args[0], "lost": r.args[1], "untraceable": r.args[2]}


def counted(records: Iterable[K.Rec], counts: Counts) -> Iterator[K.Rec]:
    for r in records:
        counts.take(r)
        yield r


class Pairs:
    """An io_uring submission and its completion, matched by user_data (oldest first: a
    program may have several in flight under one user_data), and the kernel's hand-off
    of a submission to io-wq."""

    def __init__(self) -> None:
        self.subs: dict[tuple, deque] = {}

    def take(self, r: K.Rec) -> K.Rec | None:
        """The record to place (a hand-off to io-wq is not one: it marks its submission).
        A completion and its submission name each other (`sub`, `done`)."""
        if r.kind == K.URING_SUB:
            self.subs.setdefault((r.tgid, r.args[0]), deque()).append(r)
        elif r.kind == K.URING_ASYNC:
            waiting = self.subs.get((r.tgid, r.args[0]))
            if waiting:
                waiting[-1].punted = True
            return None
        elif r.kind == K.URING_DONE:
            key = (r.tgid, r.args[0])
            waiting = self.subs.get(key)
            if waiting:
                sub = waiting[0]
                # A multishot request (IORING_CQE_F_MORE) completes again; the line keeps the first.
                if not (r.more == K.DONE_OP and r.args[1] & CQE_F_MORE):
                    waiting.popleft()
                    if not waiting:
                        del self.subs[key]
                if sub.done is None:
                    sub.done = r
                r.sub = sub
        return r


class Lines:
    """Records as strace lines: the call's text, its fds named as -yy names them."""

    def __init__(self, offset: float, tables: Tables | None = None) -> None:
        self.offset = offset
        self.tables = tables if tables is not None else Tables()

    def prefix(self, r: K.Rec, ns: int) -> str:
        return f"{r.tid} {ns / 1e9 + self.offset:.6f} "

    def line(self, r: K.Rec) -> str | None:
        """One record as one complete line (None: a record that is not a line)."""
        if r.kind in (K.CALL, K.NORETURN):
            return self.prefix(r, r.t0) + self.call(r)
        if r.kind == K.URING_SUB:
            return self.prefix(r, r.t0) + self.sqe(r)
        if r.kind == K.URING_DONE:
            return self.prefix(r, r.t0) + self.cqe(r)
        if r.kind == K.GAI:
            return self.prefix(r, r.t0) + gai_line(r)
        if r.kind in (K.EXIT, K.SIGNAL, K.LOST):
            return self.prefix(r, r.t0) + point_line(r)
        return None

    # -- the fd table, changed by what a call did -----------------------------
    def after(self, r: K.Rec) -> None:
        """Apply what the call (or a fork, an exit) did to the fds."""
        t = self.tables
        if r.kind == K.FORK:
            t.fork(r.tgid, r.args[1])
            return
        if r.kind == K.EXIT:
            if r.tid == r.tgid:
                t.exited(r.tgid)
            return
        if r.kind == K.URING_DONE:
            self._ring_done(r)
            return
        if r.kind != K.CALL:
            return
        name, ret, a = NAME.get(r.nr, ""), r.ret, r.args
        if ret < 0:
            return
        if name == "close":
            t.close(r.tgid, _int(a[0]))
        elif name in ("open", "openat"):
            t.set(r.tgid, ret, self._opened(r), bool((a[1] if name == "open" else a[2]) & 0o2000000))
        elif name in ANON:
            t.set(r.tgid, ret, f"anon_inode:[{ANON[name]}]", name == "io_uring_setup" or _cloexec(name, a))
        elif name in ("socket", "accept", "accept4"):
            cloexec = bool((a[1] if name == "socket" else a[3] if name == "accept4" else 0) & 0o2000000)
            t.set(r.tgid, ret, sock_text(K.sock(r.data)), cloexec)
        elif name in ("bind", "listen", "connect"):
            got = sock_text(K.sock(r.data))
            old = t.table(r.tgid).get(_int(a[0]))
            if got:
                t.set(r.tgid, _int(a[0]), got, old.cloexec if old else False)
        elif name in ("pipe2", "socketpair"):
            fds = _pair(r.data)
            cloexec = bool((a[1]) & 0o2000000)
            if fds:
                for i, fd in enumerate(fds):
                    t.set(r.tgid, fd, sock_text(K.sock(r.data, 8 + i * K.SOCK.size)), cloexec)
        elif name in ("dup", "dup2", "dup3"):
            t.dup(r.tgid, _int(a[0]), ret, name == "dup3" and bool(a[2] & 0o2000000))
        elif name == "execve":
            t.exec(r.tgid)

    def _ring_done(self, r: K.Rec) -> None:
        """What a completion did to the fds: an accept or an open made one, a close ended one."""
        sub, res, t = r.sub, r.ret, self.tables
        if sub is None or sub.more != K.SUB_OP or res < 0:
            return
        op = opcode_name(sub.nr)
        if op == "ACCEPT":
            t.set(r.tgid, res, sock_text(K.sock(r.data)), bool(sub.args[3] & 0o2000000))
        elif op == "OPENAT":
            t.set(r.tgid, res, t.path_of(r.tgid, _int(sub.args[1]), cstr(sub.data)), bool(sub.args[3] & 0o2000000))
        elif op == "CLOSE":
            t.close(r.tgid, _int(sub.args[1]))

    def _opened(self, r: K.Rec) -> str:
        path = cstr(r.data)
        dirfd = -100 if NAME.get(r.nr) == "open" else _int(r.args[0])
        return self.tables.path_of(r.tgid, dirfd, path)

    # -- io_uring records ------------------------------------------------------
    def sqe(self, r: K.Rec) -> str:
        """`io_uring_sqe(IORING_OP_RECV, user_data=0x..., fd=5<TCP:[...]>, len=8192, flags=0) = 83`:
        what was submitted, and its completion's result (`= ?`: none in the trace)."""
        op = opcode_name(r.nr)
        args = [f"IORING_OP_{op}" if not op.isdigit() else op, f"user_data={r.args[0]:#x}"]
        if r.more == K.SUB_EPOLL:
            # The request as the kernel prepared it from the sqe (struct io_epoll).
            _, epfd, fd, cmd, events, data = r.args
            args += [f"epfd={_int(epfd)}", f"fd={_int(fd)}", f"op={_int(cmd)}",
                     f"{{events={flags(events & 0xFFFFFFFF, EPOLL, '0')}, data={{u32={data & 0xFFFFFFFF}, u64={data}}}}}"]
        elif r.more == K.SUB_OP:
            args += self.sub_fields(r, op)
        if r.punted:
            args.append("async=io-wq")  # io_uring_queue_async_work: the kernel's worker threads run it
        done = r.done
        res = "= ?" if done is None else _result("io_uring_sqe", done.ret)
        return f"io_uring_sqe({', '.join(args)}) {res}"

    def sub_fields(self, r: K.Rec, op: str) -> list[str]:
        _, fd, size, a, b, sqe_flags = r.args
        out = []
        if op in ("READ", "WRITE", "READV", "WRITEV", "SEND", "RECV", "SENDMSG", "RECVMSG", "ACCEPT",
                  "POLL_ADD", "SHUTDOWN", "CONNECT", "CLOSE"):
            out.append(f"fd={self.fd(r, fd)}")
        if op in ("SEND", "WRITE"):
            out.append(f"buf={quote(r.data, size)}")
        if op in ("READ", "WRITE", "SEND", "RECV"):
            out.append(f"len={size & 0xFFFFFFFF}")
        elif op in ("READV", "WRITEV"):
            out.append(f"iovcnt={size & 0xFFFFFFFF}")
        if op in ("READ", "WRITE", "READV", "WRITEV"):
            out.append(f"off={_int64(a)}")
        elif op in ("SEND", "RECV", "SENDMSG", "RECVMSG"):
            out.append(f"flags={msg_flags(a)}")
        elif op == "ACCEPT":
            out.append(f"flags={sock_type(a, base=False)}")
        elif op == "POLL_ADD":
            out.append(f"events={flags(a & 0xFFFF, POLL, '0')}")
        elif op == "SHUTDOWN":
            out.append(f"how={ {0: 'SHUT_RD', 1: 'SHUT_WR', 2: 'SHUT_RDWR'}.get(a, str(a)) }")
        elif op == "OPENAT":
            cwd = self.tables.cwd(r.tgid)
            dirfd = (f"AT_FDCWD<{cwd}>" if cwd else "AT_FDCWD") if _int(fd) == -100 else self.fd(r, fd)
            out += [f"dfd={dirfd}", f"path={cstring(r.data)}"]
            out += [f"flags={x}" if i == 0 else f"mode={x}" for i, x in enumerate(_open_flags(a, b))]
        elif op == "TIMEOUT":
            out.append(f"ts={{tv_sec={_int64(a)}, tv_nsec={_int64(b)}}}")
            if size:
                out.append(f"count={size & 0xFFFFFFFF}")
        elif op == "ASYNC_CANCEL":
            out.append(f"target={a:#x}")
            if b:
                out.append(f"flags={b:#x}")
        if sqe_flags:
            # The sqe's IOSQE_* flags as the request carries them after its prep (the same bits):
            # a prep may add REQ_F_FORCE_ASYNC itself (a SHUTDOWN's does).
            out.append(f"req_flags={flags(sqe_flags, REQ_F, '0')}")
        return out

    def cqe(self, r: K.Rec) -> str:
        """`io_uring_cqe(IORING_OP_ACCEPT, user_data=0x..., fd=4<...>, in_flight=0.03) = 7<TCP:[...]>`:
        a completion where and when the kernel posted it; an fd it made is named here."""
        sub = r.sub
        nr = sub.nr if sub is not None else (r.nr if r.more == K.DONE_OP else None)
        op = opcode_name(nr) if nr is not None and nr != 0xFF else "?"
        args = [f"IORING_OP_{op}" if op != "?" and not op.isdigit() else op, f"user_data={r.args[0]:#x}"]
        res, deco = r.ret, ""
        if sub is not None and sub.more == K.SUB_OP:
            fd = sub.args[1]
            if op in ("READ", "WRITE", "READV", "WRITEV", "SEND", "RECV", "SENDMSG", "RECVMSG", "ACCEPT",
                      "POLL_ADD", "SHUTDOWN", "CONNECT", "CLOSE"):
                args.append(f"fd={self.fd(r, fd)}")
            elif op == "OPENAT":
                args.append(f"path={cstring(sub.data)}")
            elif op == "TIMEOUT":
                args.append(f"ts={{tv_sec={_int64(sub.args[3])}, tv_nsec={_int64(sub.args[4])}}}")
            if op in ("RECV", "READ") and res >= 0:
                args.append(f"buf={quote(r.data, res)}")
            if res >= 0 and res < 1 << 31:
                if op == "ACCEPT":
                    deco = _deco(sock_text(K.sock(r.data)))
                elif op == "OPENAT":
                    deco = _deco(self.tables.path_of(r.tgid, _int(fd), cstr(sub.data)))
        elif sub is not None and sub.more == K.SUB_EPOLL:
            args.append(f"fd={_int(sub.args[2])}")
        if r.more == K.DONE_OP and r.args[1]:
            args.append(f"cflags={flags(r.args[1], CQE_FLAGS, '0')}")
        if sub is not None:
            args.append(f"in_flight={(r.t0 - sub.t0) / 1e9:.6f}")
        if r.more == K.DONE_OP and r.args[2]:
            comm = b"".join(x.to_bytes(8, "little") for x in r.args[4:6])
            args.append(f"worker={cstring(comm)}")
        return f"io_uring_cqe({', '.join(args)}) {_result('io_uring_cqe', res)}{deco}"

    # -- a call -----------------------------------------------------------------
    def fd(self, r: K.Rec, x: int) -> str:
        n = _int(x)
        text = self.tables.text(r.tgid, n) if n >= 0 else None
        return f"{n}<{text}>" if text else str(n)

    def new_fd(self, r: K.Rec) -> str:
        """The decoration of an fd the call returns (before `after` files it)."""
        name = NAME.get(r.nr, "")
        if r.ret < 0 or r.ret >= 1 << 31:
            return ""
        text = None
        if name in ("open", "openat"):
            text = self._opened(r)
        elif name in ANON:
            text = f"anon_inode:[{ANON[name]}]"
        elif name in ("socket", "accept", "accept4"):
            text = sock_text(K.sock(r.data))
        elif name in ("dup", "dup2", "dup3"):
            text = self.tables.text(r.tgid, _int(r.args[0]))
        return f"<{text}>" if text else ""

    def call(self, r: K.Rec, half: str = "") -> str:
        if r.kind == K.NORETURN:
            return f"exit_group({_int(r.args[0])}) = ?"
        name = NAME.get(r.nr, f"syscall_{r.nr}")
        parts = self.args(name, r)
        cut = _OUT_FROM.get(name, len(parts))
        head, tail = parts[:cut], parts[cut:]
        first = ", ".join(head) + (", " if head and tail else "")
        rest = ", ".join(tail)
        result = _result(name, r.ret) + self.new_fd(r) + self.detail(name, r) + f" <{r.dur / 1e9:.6f}>"
        if half == "start":
            return f"{name}({first} <unfinished ...>"
        if half == "end":
            return f"<... {name} resumed>{rest}) {result}"
        return f"{name}({first}{rest}) {result}"

    def detail(self, name: str, r: K.Rec) -> str:
        """What strace prints after the result: a wait's ready fds, time left."""
        if r.ret < 0 or name not in ("poll", "ppoll", "select", "pselect6"):
            return ""
        if name in ("poll", "ppoll"):
            fds = pollfds(r.data[32:] if name == "ppoll" else r.data, r.args[1])
            ready = [f"{{fd={fd}, revents={flags(rev, POLL, '0')}}}" for fd, _, rev in fds if rev]
            left = (f", left {timespec(r.data[16:32], 'nsec')}" if name == "ppoll" and r.args[2]
                    and len(r.data) >= 32 else "")
            return f" ([{', '.join(ready)}]{left})" if r.ret else " (Timeout)"
        unit = "usec" if name == "select" else "nsec"
        sets = [(label, fd_set(r.data[(4 + i) * K.SETS:(5 + i) * K.SETS], r.args[0]))
                for i, label in enumerate(("in", "out", "exc")) if r.args[1 + i]]
        said = [f"{label} [{' '.join(map(str, fds))}]" for label, fds in sets if fds]
        if r.args[4] and len(r.data) >= 8 * K.SETS:
            said.append(f"left {timespec(r.data[7 * K.SETS:8 * K.SETS], unit)}")
        return f" ({', '.join(said)})" if r.ret else " (Timeout)"

    def args(self, name: str, r: K.Rec) -> list[str]:
        a0, a1, a2, a3, a4, a5 = r.args
        ret, blob, fd = r.ret, r.data, lambda x: self.fd(r, x)
        if name in ("read", "pread64", "recvfrom"):
            buf = quote(blob, ret) if ret >= 0 else _ptr(a1)
            rest = {"read": [str(a2)], "pread64": [str(a2), str(a3)],
                    "recvfrom": [str(a2), msg_flags(a3), _ptr(a4), _ptr(a5)]}[name]
            return [fd(a0), buf, *rest]
        if name in ("write", "sendto"):
            rest = [str(a2)] if name == "write" else [str(a2), msg_flags(a3), _ptr(a4), str(a5)]
            return [fd(a0), quote(blob, a2), *rest]
        if name in ("readv", "writev"):
            return [fd(a0), iovecs(blob, ret if name == "readv" else None) if ret >= 0 or name == "writev"
                    else _ptr(a1), str(a2)]
        if name in ("recvmsg", "sendmsg"):
            return [fd(a0), msghdr(blob, ret if name == "recvmsg" else None) if ret >= 0 or name == "sendmsg"
                    else _ptr(a1), msg_flags(a2)]
        if name == "openat":
            cwd = self.tables.cwd(r.tgid)
            dirfd = (f"AT_FDCWD<{cwd}>" if cwd else "AT_FDCWD") if _int(a0) == -100 else fd(a0)
            return [dirfd, cstring(blob), *_open_flags(a2, a3)]
        if name == "open":
            return [cstring(blob), *_open_flags(a1, a2)]
        if name in ("close", "dup", "epoll_create"):
            return [fd(a0)] if name != "epoll_create" else [str(_int(a0))]
        if name == "dup2":
            return [fd(a0), fd(a1)]
        if name == "dup3":
            return [fd(a0), fd(a1), flags(a2, O_FLAGS, "0")]
        if name == "socket":
            return [FAMILY.get(a0, str(a0)), sock_type(a1), protocol(a0, a2)]
        if name in ("bind", "connect"):
            return [fd(a0), sockaddr(blob[K.SOCK.size:]), str(a2)]
        if name == "listen":
            return [fd(a0), str(_int(a1))]
        if name == "shutdown":
            return [fd(a0), {0: "SHUT_RD", 1: "SHUT_WR", 2: "SHUT_RDWR"}.get(a1, str(a1))]
        if name in ("accept", "accept4"):
            addr = blob[K.SOCK.size:]
            out = [fd(a0), sockaddr(addr) if addr and ret >= 0 else _ptr(a1),
                   f"[{len(addr)}]" if addr and ret >= 0 else _ptr(a2)]
            return out + [sock_type(a3, base=False)] if name == "accept4" else out
        if name == "epoll_create1":
            return [flags(a0, {0o2000000: "EPOLL_CLOEXEC"}, "0")]
        if name == "epoll_ctl":
            op = {1: "EPOLL_CTL_ADD", 2: "EPOLL_CTL_DEL", 3: "EPOLL_CTL_MOD"}.get(a1, str(a1))
            return [fd(a0), op, fd(a2), epoll_events(blob)[0] if len(blob) >= 12 else _ptr(a3)]
        if name in ("epoll_wait", "epoll_pwait", "epoll_pwait2"):
            ready = "[" + ", ".join(epoll_events(blob)) + "]" if ret >= 0 else _ptr(a1)
            if name == "epoll_wait":
                return [fd(a0), ready, str(a2), str(_int(a3))]
            timeout = str(_int(a3)) if name == "epoll_pwait" else _ptr(a3)
            return [fd(a0), ready, str(a2), timeout, _ptr(a4), str(a5)]
        if name in ("poll", "ppoll"):
            fds = pollfds(blob[32:] if name == "ppoll" else blob, a1)
            listed = "[" + ", ".join(f"{{fd={fd(n) if n >= 0 else n}, events={flags(ev, POLL, '0')}}}"
                                     for n, ev, _ in fds) + (", ..." if a1 > len(fds) else "") + "]"
            if name == "poll":
                return [listed if a0 else "NULL", str(a1), str(_int(a2))]
            timeout = timespec(blob[:16], "nsec") if a2 and len(blob) >= 16 else "NULL"
            return [listed if a0 else "NULL", str(a1), timeout, _ptr(a3), str(a4)]
        if name in ("select", "pselect6"):
            unit = "usec" if name == "select" else "nsec"
            sets = [("[" + " ".join(fd(n) for n in fd_set(blob[i * K.SETS:(i + 1) * K.SETS], a0)) + "]"
                     if p else "NULL") for i, p in enumerate((a1, a2, a3))]
            timeout = timespec(blob[3 * K.SETS:4 * K.SETS], unit) if a4 and len(blob) >= 4 * K.SETS else "NULL"
            out = [str(a0), *sets, timeout]
            return out + [_ptr(a5)] if name == "pselect6" else out
        if name == "eventfd2":
            return [str(a0), flags(a1, {0o2000000: "EFD_CLOEXEC", 0o4000: "EFD_NONBLOCK", 1: "EFD_SEMAPHORE"}, "0")]
        if name in ("pipe2", "socketpair"):
            fds = _pair(blob) if ret >= 0 else None
            pair = (f"[{fds[0]}{_deco(sock_text(K.sock(blob, 8)))}, "
                    f"{fds[1]}{_deco(sock_text(K.sock(blob, 8 + K.SOCK.size)))}]" if fds else
                    _ptr(a0 if name == "pipe2" else a3))
            if name == "pipe2":
                return [pair, flags(a1, O_FLAGS, "0")]
            return [FAMILY.get(a0, str(a0)), sock_type(a1), str(a2), pair]
        if name == "timerfd_create":
            clock = {0: "CLOCK_REALTIME", 1: "CLOCK_MONOTONIC", 7: "CLOCK_BOOTTIME"}.get(a0, str(a0))
            return [clock, flags(a1, {0o2000000: "TFD_CLOEXEC", 0o4000: "TFD_NONBLOCK"}, "0")]
        if name == "timerfd_settime":
            return [fd(a0), str(a1), itimerspec(blob) if len(blob) >= 32 else _ptr(a2), _ptr(a3)]
        if name == "signalfd4":
            return [fd(a0), _ptr(a1), str(a2), flags(a3, {0o2000000: "SFD_CLOEXEC", 0o4000: "SFD_NONBLOCK"}, "0")]
        if name == "io_uring_setup":
            return [str(a0), _ptr(a1)]
        if name == "io_uring_enter":
            return [fd(a0), str(a1), str(a2), flags(a3, {1: "IORING_ENTER_GETEVENTS", 2: "IORING_ENTER_SQ_WAKEUP",
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
            return [cstring(blob), _ptr(a1), _ptr(a2)]
        if name == "exit_group":
            return [str(_int(a0))]
        return [hex(x) for x in r.args]


def convert(records: Iterable[K.Rec], offset: float, tables: Tables | None = None) -> Iterator[str]:
    """Sorted strace-syntax lines: a call is one line when nothing else happened
    between its entry and exit, else `<unfinished ...>` and `<... resumed>` as
    strace prints them. Point events sit at their own time. The fd table
    changes as each call returns, so a line names its fds as they were then."""
    points = []  # (ns, order, seq, rec); order 0 a call's start, 1 its end or a point
    pairs = Pairs()
    for seq, r in enumerate(records):
        got = pairs.take(r)
        if got is None or r.kind == K.STATS:
            continue  # a hand-off to io-wq marks its submission, placed already
        if r.kind == K.CALL:
            points.append((r.t0, 0, seq, r))
            points.append((r.t0 + r.dur, 1, seq, r))
        elif r.kind == K.GAI:
            # A library call spans the syscalls it makes: one line at its return.
            points.append((r.t0 + r.dur, 1, seq, r))
        else:
            points.append((r.t0, 1, seq, r))
    points.sort(key=lambda p: (p[0], p[1], p[2]))
    lines = Lines(offset, tables)
    split: set[int] = set()
    for i, (ns, order, sq, r) in enumerate(points):
        if r.kind != K.CALL:
            text = lines.line(r)
            lines.after(r)
            if text is not None:
                yield text
        elif order == 0:
            nxt = points[i + 1] if i + 1 < len(points) else None
            if nxt is not None and nxt[2] == sq:
                yield lines.line(r)
            else:
                split.add(sq)
                yield lines.prefix(r, r.t0) + lines.call(r, half="start")
        else:
            if sq in split:
                split.discard(sq)
                yield lines.prefix(r, ns) + lines.call(r, half="end")
            lines.after(r)


def stream(records: Iterable[K.Rec], offset: float, tables: Tables | None = None) -> Iterator[str]:
    """Live mode: each record as one complete line as soon as it is whole, in the
    order the ring gave them (a call is printed when it returns, at its start time;
    an io_uring submission when it completes, just before its completion)."""
    pairs = Pairs()
    lines = Lines(offset, tables)
    for r in records:
        got = pairs.take(r)
        if got is None or r.kind in (K.URING_SUB, K.STATS):
            continue  # a submission waits for its completion
        if r.kind == K.URING_DONE and r.sub is not None and r.sub.done is r:
            yield lines.line(r.sub)
        text = lines.line(got)
        lines.after(got)
        if text is not None:
            yield text


def _int(x: int) -> int:
    """A 64-bit register holding a C int."""
    x &= 0xFFFFFFFF
    return x - (1 << 32) if x >= 1 << 31 else x


def _int64(x: int) -> int:
    x &= 0xFFFFFFFFFFFFFFFF
    return x - (1 << 64) if x >= 1 << 63 else x


def _ptr(x: int) -> str:
    return "NULL" if x == 0 else hex(x)


def _deco(text: str | None) -> str:
    return f"<{text}>" if text else ""


def _pair(blob: bytes) -> tuple[int, int] | None:
    if len(blob) < 8:
        return None
    return (int.from_bytes(blob[:4], "little", signed=True), int.from_bytes(blob[4:8], "little", signed=True))


def _cloexec(name: str, a: tuple) -> bool:
    flag = {"epoll_create1": a[0], "eventfd2": a[1], "timerfd_create": a[1], "signalfd4": a[3]}.get(name, 0)
    return bool(flag & 0o2000000)


def _open_flags(fl: int, mode: int) -> list[str]:
    out = [flags(fl, O_FLAGS, "O_RDONLY", acc=True)]
    if fl & 0o100 or fl & 0o20200000 == 0o20200000:  # O_CREAT, O_TMPFILE: a mode follows
        out.append(f"0{mode & 0o7777:o}")
    return out


# Arguments known at entry go before `<unfinished ...>`; those the kernel
# fills in (a read's buffer, a wait's ready list) after `resumed>`, as strace.
_OUT_FROM = {"read": 1, "pread64": 1, "recvfrom": 1, "readv": 1, "recvmsg": 1, "epoll_wait": 1,
             "epoll_pwait": 1, "epoll_pwait2": 1, "pipe2": 0, "socketpair": 3, "accept": 1, "accept4": 1}


def cstr(blob: bytes) -> str:
    end = blob.find(b"\0")
    return (blob[:end] if end >= 0 else blob).decode("utf-8", "surrogateescape")


POLL = {0x1: "POLLIN", 0x2: "POLLPRI", 0x4: "POLLOUT", 0x8: "POLLERR", 0x10: "POLLHUP", 0x20: "POLLNVAL",
        0x40: "POLLRDNORM", 0x80: "POLLRDBAND", 0x100: "POLLWRNORM", 0x200: "POLLWRBAND", 0x2000: "POLLRDHUP"}
MSG = {0x1: "MSG_OOB", 0x2: "MSG_PEEK", 0x4: "MSG_DONTROUTE", 0x8: "MSG_CTRUNC", 0x20: "MSG_TRUNC",
       0x40: "MSG_DONTWAIT", 0x80: "MSG_EOR", 0x100: "MSG_WAITALL", 0x4000: "MSG_NOSIGNAL",
       0x8000: "MSG_MORE", 0x40000000: "MSG_CMSG_CLOEXEC"}


def msg_flags(value: int) -> str:
    return flags(value & 0xFFFFFFFF, MSG, "0")


def protocol(family: int, proto: int) -> str:
    if family in (2, 10):
        return {0: "IPPROTO_IP", 6: "IPPROTO_TCP", 17: "IPPROTO_UDP"}.get(proto, str(proto))
    return str(proto)


def pollfds(blob: bytes, nfds: int) -> list[tuple[int, int, int]]:
    """struct pollfd (fd, events, revents) of a poll's array, as many as were kept."""
    out = []
    for i in range(0, min(len(blob), nfds * 8) - 7, 8):
        fd = int.from_bytes(blob[i:i + 4], "little", signed=True)
        out.append((fd, int.from_bytes(blob[i + 4:i + 6], "little"), int.from_bytes(blob[i + 6:i + 8], "little")))
    return out


def fd_set(blob: bytes, nfds: int) -> list[int]:
    bits = int.from_bytes(blob, "little")
    return [n for n in range(min(nfds, len(blob) * 8)) if bits >> n & 1]


def timespec(blob: bytes, unit: str) -> str:
    if len(blob) < 16:
        return "NULL"
    sec, frac = int.from_bytes(blob[:8], "little", signed=True), int.from_bytes(blob[8:16], "little", signed=True)
    return f"{{tv_sec={sec}, tv_{unit}={frac}}}"


def iovecs(blob: bytes, total: int | None) -> str:
    """`[{iov_base="...", iov_len=N}, ...]`: each iovec's bytes as the loader gathered them
    (in turn, at most what a read returned; see copy_iov in epoll_lab.bpf.c)."""
    got = K.iov(blob)
    if got is None:
        return "?"
    count, lens, _, _, _, data = got
    left = (1 << 64) if total is None else total
    room, off, out = len(data), 0, []
    for n in range(min(count, 4)):
        used = min(lens[n], left)
        left -= used
        take = min(used, max(room - off, 0))
        out.append(f"{{iov_base={quote(data[off:off + take], used)}, iov_len={lens[n]}}}")
        off += take
    return "[" + ", ".join(out) + (", ..." if count > 4 else "") + "]"


def msghdr(blob: bytes, total: int | None) -> str:
    got = K.iov(blob)
    if got is None:
        return "?"
    count, _, namelen, controllen, msgflags, _ = got
    name = "msg_name=NULL, " if namelen == 0 else ""
    return (f"{{{name}msg_namelen={namelen}, msg_iov={iovecs(blob, total)}, msg_iovlen={count}, "
            f"msg_controllen={controllen}, msg_flags={msg_flags(msgflags)}}}")


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
           0o4000: "O_NONBLOCK", 0o10000: "O_DSYNC", 0o40000: "O_DIRECT", 0o100000: "O_LARGEFILE",
           0o200000: "O_DIRECTORY",
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


# A request's first flags are its sqe's IOSQE_* bits (REQ_F_FORCE_ASYNC is IOSQE_ASYNC...).
REQ_F = {0x1: "REQ_F_FIXED_FILE", 0x2: "REQ_F_IO_DRAIN", 0x4: "REQ_F_LINK", 0x8: "REQ_F_HARDLINK",
         0x10: "REQ_F_FORCE_ASYNC", 0x20: "REQ_F_BUFFER_SELECT", 0x40: "REQ_F_CQE_SKIP"}
CQE_F_MORE = 0x2
CQE_FLAGS = {0x1: "IORING_CQE_F_BUFFER", CQE_F_MORE: "IORING_CQE_F_MORE", 0x4: "IORING_CQE_F_SOCK_NONEMPTY",
             0x8: "IORING_CQE_F_NOTIF"}


def opcode_name(nr: int) -> str:
    """`RECV` for 27; the number itself for one this table does not know."""
    return IORING_OPS[nr] if 0 <= nr < len(IORING_OPS) else str(nr)


def gai_line(r: K.Rec) -> str:
    ret = _int(r.ret)
    result = f"= {ret}" if ret >= 0 else f"= {ret} (EAI error)"
    return f"getaddrinfo({cstring(r.data)}, ...) {result} <{r.dur / 1e9:.6f}>"


SI_CODES = {0: "SI_USER", 0x80: "SI_KERNEL", -1: "SI_QUEUE", -6: "SI_TKILL"}


def point_line(r: K.Rec) -> str:
    if r.kind == K.EXIT:
        code = r.ret
        if code & 0x7F:
            try:
                return f"+++ killed by {signal.Signals(code & 0x7F).name} +++"
            except ValueError:
                return f"+++ killed by signal {code & 0x7F} +++"
        return f"+++ exited with {(code >> 8) & 0xFF} +++"
    if r.kind == K.SIGNAL:
        sig, code = r.nr, _int(r.args[0])
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"SIGRT_{sig - 34}" if sig >= 34 else str(sig)
        how = {1: "CLD_EXITED", 2: "CLD_KILLED"}.get(code) if name == "SIGCHLD" else SI_CODES.get(code)
        return f"--- {name} {{si_signo={name}, si_code={how or code}}} ---"
    if r.kind == K.LOST:
        return (f"strace: {r.ret} call{'s' if r.ret != 1 else ''} lost here: the kernel tracer's ring "
                f"buffer was full (CPU {r.nr}, {r.dur / 1e6:.3f} ms from this time on); this trace is incomplete")
    return f"unknown record {r.kind}"
