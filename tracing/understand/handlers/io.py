"""Files, reads and writes: opens (a pool's work, the resolver's steps), reads and
writes of clients, files and wakeup fds, fds passed with SCM_RIGHTS, a request's first line."""

from __future__ import annotations

import re

from .. import fds as F
from .. import roles as R
from ...names import LOOP, OTHER_CAT, POLLABLE, POLLABLE_ROLES, RESOLVER_FILES, WAKEUP_CAT, WRITES
from ...read.parse import close_paren, fd_arg, quoted, split_args
from .context import Ctx, Verdict, loopless, resolver_step, tids, where, whom, work
from .signals import in_handler, signal_number


_LIBUV = re.compile(r"/uvloop/loop\.[^/\"]*\.so|libuv\.so")


def openat(c: Ctx) -> Verdict:
    path_arg = c.args[1] if c.ev.syscall == "openat" and len(c.args) > 1 else (c.args[0] if c.args else "")
    path = quoted(path_arg) or path_arg
    if c.ok and _LIBUV.search(path) and c.m.proc(c.ev.tid) not in c.m.libuv:
        c.m.libuv[c.m.proc(c.ev.tid)] = (c.ev.line, c.ev.tid)
    lookup = resolver_step(c, path) if path in RESOLVER_FILES else ""
    cat = work(c)
    if not c.ok:
        return c.say(f"open {path}: {c.ev.errno}" + where(c, cat, lookup), cat)
    n = c.ret_int()
    if n is None:
        return c.say(f"open {path}: returned {c.ev.ret}, not an fd", cat)
    deco = fd_arg(f"{c.ev.ret}<{c.ev.ret_detail}>") if c.ev.ret_detail else None
    real = deco[1] if deco and deco[1] else path
    role = F.DEVICE if real.startswith("/dev/") else F.FILE
    if role == F.DEVICE:
        cat = OTHER_CAT
    c.new_fd(n, role, real.split("<", 1)[0])
    what = f"open {path} as fd {n}"
    if cat == OTHER_CAT and not lookup and (path.endswith((".py", ".pyc", ".so")) or ".so." in path):
        return c.say(f"{what} (loading code)", cat)
    return c.say(what + where(c, cat, lookup), cat)


def read_write(c: Ctx) -> Verdict:
    fd = c.arg_fd(0)
    name = c.ev.syscall
    nbytes = c.ret_int()
    is_write = name in WRITES
    if fd is None:
        return c.say(f"{name} on an fd the lab could not read")
    if fd.role in (F.FILE, F.DEVICE) or (fd.role == F.UNKNOWN and fd.detail.startswith("/")):
        lookup = resolver_step(c, fd.detail) if fd.detail in RESOLVER_FILES else ""
        cat = work(c) if fd.role == F.FILE else OTHER_CAT
        verb = "write" if is_write else "read"
        amount = f"{nbytes} bytes" if nbytes is not None and c.ok else (c.ev.errno or "?")
        text = f"{verb} {amount} {'to' if is_write else 'from'} {fd.detail or 'a file'}"
        return c.say(text + where(c, cat, lookup), cat)
    if "SCM_RIGHTS" in c.ev.args:
        return _passed_fds(c, fd, is_write)
    if is_write and fd.role not in (F.STDIO, F.CLIENT):
        verdict = _wakeup_write(c, fd)
        if verdict is not None:
            return verdict
    cat = POLLABLE if fd.role in POLLABLE_ROLES else OTHER_CAT
    if c.role != LOOP and fd.role != F.STDIO and cat == POLLABLE and R.process_has_loop(c.m, c.ev.tid):
        cat = OTHER_CAT
    if fd.role == F.CLIENT and loopless(c):
        return _blocking_client_io(c, fd, nbytes, is_write)
    if fd.role == F.CLIENT and c.role != LOOP:
        c.m.saw_work(c.ev.tid, c.ev.line)  # a connection served off the loop: work a pool thread hands back
    c.category = cat
    if not c.ok:
        if c.ev.errno == "EAGAIN":
            return c.say(f"{name} fd {fd.num} ({fd.describe()}): nothing more for now (EAGAIN)")
        return c.say(c.failed_note(f"{name} fd {fd.num} ({fd.describe()})"))
    if fd.role == F.CLIENT:
        if not is_write and nbytes == 0:
            return c.say(f"{name} fd {fd.num}: 0 bytes = the client closed its end (EOF)")
        text = _first_line(c)
        return c.say(f"{name} {nbytes} bytes {'to' if is_write else 'from'} client fd {fd.num}"
                     f"{': ' + text if text else ''}")
    if fd.role == F.WAKEUP and not is_write:
        return c.say(_drain(c, fd, nbytes), POLLABLE)
    return c.say(f"{name} {nbytes} bytes {'to' if is_write else 'from'} fd {fd.num} ({fd.describe()})")


def _drain(c: Ctx, fd: F.Fd, nbytes: int | None) -> str:
    """A read of a wakeup fd: it empties what a write put there, named where the log shows it."""
    name = c.ev.syscall
    text = f"{name} drains wakeup fd {fd.num} ({fd.detail or fd.describe()}): {nbytes} byte{'' if nbytes == 1 else 's'}"
    key = c.m.reader_key(c.ev.tid, fd)
    before = c.m.ready_at.get(key)
    if before is not None:
        text += f", which the wait at line {before} returned"
        fill = c.m.last_fill.get(key)
        if fill is not None:
            line, tid, sig, delivered, _ = fill
            text += f"; the write at line {line}{f' (thread {tid})' if tid != c.ev.tid else ''} put it there"
            if sig:
                text += f", inside the {sig} signal handler (delivered at {c.cite('signal-handler', delivered, tid)})"
    others = R.fellow_waiters(c.m, c.ev.tid)
    if others:
        eps = ", ".join(str(e) for e in sorted(c.m.epolls_of(c.ev.tid)))
        text += f"; threads {tids(others)} share epoll {eps} with this one"
    return text


def _scm_fds(args: str) -> list:
    """The fds in `cmsg_type=SCM_RIGHTS, cmsg_data=[5<...>, 6<...>]`."""
    at = args.find("cmsg_type=SCM_RIGHTS, cmsg_data=[")
    if at < 0:
        return []
    body = args[at + len("cmsg_type=SCM_RIGHTS, cmsg_data=["):]
    end = close_paren(body)
    return [fd_arg(x) for x in split_args(body[:end] if end >= 0 else body)]


def _passed_fds(c: Ctx, fd: F.Fd, is_write: bool) -> Verdict:
    """sendmsg/recvmsg with SCM_RIGHTS: fds passed to another process (a connection born without accept)."""
    got = _scm_fds(c.ev.args)
    nums = []
    for item in got:
        if item is None:
            continue
        num, deco = item
        if is_write:
            passed = c.table.get(num, deco, c.ev.line)
            c.fds.append(passed)
            if deco:
                c.m.passed[deco] = (passed.role, passed.detail, c.ev.line, c.ev.tid)
        else:
            sent = c.m.passed.get(deco or "")
            base = F.from_decoration(num, deco, c.m.listening_ports)
            role, detail = (sent[0], sent[1]) if sent else (base.role, base.detail)
            new = c.new_fd(num, role, detail)
            if sent is not None:
                nums.append(f"fd {num}: the {new.describe()} sent at {c.cite('passed', sent[2], sent[3])}")
                if role == F.CLIENT and c.m.proc(c.ev.tid) not in c.m.accepted:
                    c.m.accepted[c.m.proc(c.ev.tid)] = (c.ev.line, c.ev.tid)
                continue
            if role == F.CLIENT and c.m.proc(c.ev.tid) not in c.m.accepted:
                c.m.accepted[c.m.proc(c.ev.tid)] = (c.ev.line, c.ev.tid)
        nums.append(f"fd {num} ({c.fds[-1].describe()})")
    where = "to" if is_write else "from"
    if is_write:
        c.m.hands_off(c.ev.tid)
    cat = POLLABLE if c.role == LOOP else OTHER_CAT
    verb = "passes" if is_write else "receives"
    return c.say(f"{c.ev.syscall} {where} fd {fd.num} ({fd.describe()}) {verb} fds with SCM_RIGHTS: "
                 f"{'; '.join(nums) or '?'}" + ("; born here without accept" if not is_write and any(
                     f.role == F.CLIENT for f in c.fds[1:]) else ""), cat)


def _blocking_client_io(c: Ctx, fd: F.Fd, nbytes: int | None, is_write: bool) -> Verdict:
    """Socket I/O in a process with no loop: the call blocks its thread until done."""
    name, why = c.ev.syscall, "blocking I/O on a thread of its own, no event loop"
    if not c.ok:
        return c.say(c.failed_note(f"{name} fd {fd.num} ({fd.describe()})") + f": {why}", OTHER_CAT)
    if not is_write and nbytes == 0:
        return c.say(f"{name} fd {fd.num}: 0 bytes = the client closed its end (EOF): {why}", OTHER_CAT)
    text = _first_line(c)
    return c.say(f"{name} {nbytes} bytes {'to' if is_write else 'from'} client fd {fd.num}"
                 f"{': ' + text if text else ''}: {why}", OTHER_CAT)


# The buffer (second argument) of a read or write on a client: its HTTP
# request or status line, found without splitting every argument.
_REQ_LINE = re.compile(r'^\s*-?\d+(?:<.*?>)?,\s*"((?:GET|HEAD|POST|PUT|DELETE|OPTIONS|PATCH) '
                       r'[^ ]+ HTTP/1\.[01]|HTTP/1\.[01] \d{3}[^\\"]*)', re.S)
# Else the start of the buffer (or of sendmsg's first iov_base) for a text protocol.
_BUFFER = re.compile(r'^\s*-?\d+(?:<.*?>)?,\s*(?:\{msg_name=.*?iov_base=)?"((?:[^"\\]|\\.){1,240})', re.S)
_TEXT_LINE = re.compile(r"[A-Za-z][\x20-\x5b\x5d-\x7e]{0,119}")  # printable, no backslash
_RESP = re.compile(r"\*(\d{1,4})\\r\\n((?:\$\d{1,9}\\r\\n[^\\]*\\r\\n)+)")
_RESP_WORD = re.compile(r"\$\d{1,9}\\r\\n([^\\]*)\\r\\n")
_RESP_REPLY = re.compile(r"[+\-:]([\x20-\x5b\x5d-\x7e]{1,80})\\r\\n|\$(-?\d{1,9})\\r\\n")


def _first_line(c: Ctx) -> str:
    m = _REQ_LINE.match(c.ev.args)
    if m:
        return m.group(1)
    m = _BUFFER.match(c.ev.args)
    return protocol_line(m.group(1)) if m else ""


def protocol_line(buf: str) -> str:
    """The request or reply line of a text protocol, as strace printed the buffer.

    RESP (redis): `*1\\r\\n$4\\r\\nPING\\r\\n` -> `PING (RESP)`; a line protocol
    (memcached, SMTP, redis inline): the text before the first `\\r\\n`.
    """
    m = _RESP.match(buf)
    if m:
        words = _RESP_WORD.findall(m.group(2))
        more = " ..." if len(words) < int(m.group(1)) else ""
        return " ".join(words) + more + " (RESP)"
    line, sep, _ = buf.partition("\\r\\n")
    if not sep and not buf.endswith("\\n"):
        return ""
    line = line.removesuffix("\\n")
    if _TEXT_LINE.fullmatch(line):
        return line
    m = _RESP_REPLY.match(buf)
    if m:
        return (f"{buf[0]}{m.group(1)}" if m.group(1) else f"${m.group(2)}") + " (RESP)"
    return ""


def _wakeup_write(c: Ctx, fd: F.Fd) -> Verdict | None:
    """A write into an fd a wait watches (or its other end): a signal's self-pipe, a pool
    thread handing back its work, one loop waking another, a loop waking itself. None for
    any other write."""
    tid, name = c.ev.tid, c.ev.syscall
    if fd.role not in (F.WAKEUP, F.PIPE, F.SOCKET):
        return None
    wake = R.wake_of(c.m, tid, fd)
    woke = c.m.prior.woke.get(c.ev.line)
    reader = fd if fd.detail == "eventfd" else c.table.fds.get(fd.peer) if fd.peer is not None else None
    # What the write fills: the eventfd itself, or the other end of the pipe or socketpair,
    # named by its object (the same in a forked child that writes its copy).
    filled = fd.object(c.m.proc(tid)) if fd.detail == "eventfd" else (
        fd.other_end() or (reader.object(c.m.proc(tid)) if reader is not None else None))
    sig, shown, delivered = in_handler(c)
    job = None
    if filled is None and not c.m.learned.missed:
        c.m.learned.missed = True  # a pipe end whose other end the log has not shown yet
    if filled is not None:
        # Whether or not a wait is known to watch it yet: a later wait may return it.
        job = None if sig or c.m.is_loop(tid) else c.m.ends_job(tid)
        c.m.filled_by(tid, filled, c.ev.line, sig or "", delivered, job, c.ev.ts)
    if wake is None and woke is None and sig is None:
        return None
    if woke is not None and c.m.proc(woke[1]) != c.m.proc(tid) and sig is None:
        # Another process's wait takes it: data on a pipe (a child's output), not a wakeup fd.
        c.cite("wakes", woke[0], woke[1])
        return c.say(f"{name} {c.ret_int()} bytes to fd {fd.num} ({fd.describe()}): it wakes thread {woke[1]} of "
                     f"another process, whose wait at line {woke[0]} returns the other end", OTHER_CAT)
    _mark_wakeup(c, fd, ("signal", delivered) if sig else ("thread", None))
    how = "eventfd" if fd.detail == "eventfd" else "self-pipe"
    if reader is None or reader is fd:
        where = f"fd {fd.num} ({how})"
    else:
        where = f"fd {fd.num} ({how}; its other end is fd {reader.num})"
    eps = ", ".join(str(e) for e in wake.epolls) if wake is not None and wake.epolls else ""
    head = f"{name} to {where}" + (f", watched by epoll {eps}" if eps else "")
    woken = set(wake.woken) if wake is not None else set()
    if woke is not None and woke[1] != tid:
        woken.add(woke[1])
    then = _then(c, woke)
    if woken and sig is None:
        c.m.hands_off(tid)
    if sig is not None:
        text = (f"{head}, inside the {sig} signal handler (delivered at "
                f"{c.cite('signal-handler', delivered, tid)}){shown}")
        number = signal_number(sig)
        byte = _first_byte(c.ev.args)
        if number is not None and byte == number:
            c.cite("signal-number", delivered, tid)
            text += f": it writes the signal number ({number})"
        elif byte is not None:
            text += f": it writes {_show_byte(byte)}"
        # The signal arrives as readable data on the waiting thread's fd: signals are pollable
        # this way. Written for another thread's wait, it wakes that thread.
        others = woken if woke is not None else set()
        return c.say(text + then, WAKEUP_CAT if others else POLLABLE)
    if not woken:
        if wake is not None and tid in wake.waiting or woke is not None:
            mine = woke[0] if woke is not None else c.m.thread(tid).first_wait
            return c.say(f"{head}: the writer waits there itself (its wait at {c.cite('itself', mine, tid)}), "
                         f"so it wakes itself; nobody else is woken", POLLABLE)
        return c.say(f"{head}: no thread waits there yet{then}", POLLABLE)
    if woke is None:
        # Someone waits where this write lands, but no wait of theirs is seen to return it.
        who = f"{whom(c, woken)} waits" if len(woken) == 1 else f"threads {tids(woken)} wait"
        return c.say(f"{head}: {who} there{then}", WAKEUP_CAT)
    if c.m.is_loop(tid):
        if len(woken) == 1:
            return c.say(f"{head}: loop thread {tid} wakes {whom(c, woken)}{then}", WAKEUP_CAT)
        return c.say(f"{head}: thread {tid} wakes one of the threads {tids(woken)}, which share epoll "
                     f"{eps} (one epoll fd shared by several threads){then}", WAKEUP_CAT)
    if job is not None and woke is not None:
        job = f"; it hands back the work it did since its last such write (first at {c.cite('finished-job', job)})"
    else:
        job = ""
    if len(woken) > 1:
        return c.say(f"{head}: thread {tid} wakes one of the threads {tids(woken)}, which share epoll "
                     f"{eps}{then}{job}", WAKEUP_CAT)
    return c.say(f"{head}: thread {tid} wakes {whom(c, woken)}{then}{job}", WAKEUP_CAT)


def _then(c: Ctx, woke) -> str:
    """The wait that returned the fd this write filled (known from the first pass)."""
    if woke is None:
        return (": no wait in this log returns it after this" if c.m.prior.complete
                else " (read as a stream: whether a wait returns it comes later)")
    line, tid = woke
    if tid == c.ev.tid:
        return f" (its own wait at {c.cite('itself', line, tid)} returns it)"
    c.cite("wakes", line, tid)
    return f" (woke its wait at line {line}, which returns it)"


def _first_byte(args: str) -> int | None:
    """The first byte of a write's buffer, as strace printed it (escapes included)."""
    m = re.search(r',\s*(?:\[\{iov_base=)?"((?:[^"\\]|\\.)*)', args)
    if not m or not m.group(1):
        return None
    s = m.group(1)
    if s[0] != "\\":
        return ord(s[0])
    esc = re.match(r"\\(x[0-9a-fA-F]{2}|[0-7]{1,3}|[ntrvfab\\\"'])", s)
    if not esc:
        return None
    code = esc.group(1)
    if code[0] == "x":
        return int(code[1:], 16)
    if code[0].isdigit():
        return int(code, 8)
    return {"n": 10, "t": 9, "r": 13, "v": 11, "f": 12, "a": 7, "b": 8, "\\": 92, '"': 34, "'": 39}[code]


def _show_byte(b: int) -> str:
    return f'"{chr(b)}"' if 32 < b < 127 else f"byte {b}"


def _mark_wakeup(c: Ctx, fd: F.Fd, by: tuple) -> None:
    """An fd (and its peer) written to wake a wait is a wakeup fd, whatever made it.
    `by`: ("thread", None) or ("signal", the delivery's line)."""
    who = by[0]
    if fd.role != F.WAKEUP or fd.wakes != who:
        fd.role, fd.wakes = F.WAKEUP, who
    peer = c.table.fds.get(fd.peer) if fd.peer is not None else None
    if peer is not None and (peer.role != F.WAKEUP or peer.wakes != who):
        peer.role, peer.wakes = F.WAKEUP, who
    c.m.saw_wakeup_fd(c.ev.tid, (who, c.ev.line, c.ev.tid, by[1]), fd.born, peer.born if peer is not None else None)
