"""Raw strace lines to events.

`events(lines)` is a generator: it holds only the calls that are still
`<unfinished ...>`, one per thread, so memory grows with live threads and not
with the log. Every input line ends up in exactly one Event, as its `line` or,
for a call strace split in two, its `resumed_line`. A line it cannot read
becomes an Event of kind "unparsed" carrying the text verbatim.

Besides complete events it yields `Started` markers for `<unfinished ...>`
lines, so a view can show the first half where it happened in the log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Iterator

# `[pid  123] ` (strace -f to stderr) or `123  ` (strace -f -o FILE).
_PID = re.compile(r"^(?:\[pid\s+(\d+)\]\s|(\d+)\s+)")
# -ttt / -r (seconds), -t / -tt (wall clock).
_TS = re.compile(r"^\s*(?:(\d+\.\d+)|(\d\d):(\d\d):(\d\d)(?:\.(\d+))?)\s+")
_CALL = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\(")
_RESUMED = re.compile(r"^<\.\.\.\s+([A-Za-z_][A-Za-z0-9_]*)\s+resumed>\s?")
_UNFINISHED = re.compile(r"\s*<unfinished \.\.\.>\)?\s*$")
_DURATION = re.compile(r"\s+<(\d+\.\d+)>\s*$")
_RET = re.compile(r"^\s*=\s+(-?\d+|0x[0-9a-fA-F]+|\?)")
_ERRNO = re.compile(r"^\s*(E[A-Z0-9]+|ERESTART[A-Z_]*)\s+\((.*)\)\s*$")
_SIGNAL = re.compile(r"^---\s+(SIG[A-Z0-9+-]+|SIGRT\w*)\s?(.*?)\s*---\s*$")
_EXIT = re.compile(r"^\+\+\+\s+(exited with (-?\d+)|killed by (SIG\w+)(?: \(core dumped\))?|superseded by execve.*?)\s*\+\+\+\s*$")
_STRACE = re.compile(r"^strace:\s")


@dataclass
class Event:
    line: int
    text: str
    kind: str  # syscall | signal | exit | strace | unparsed
    tid: int | None = None
    ts: float | None = None
    syscall: str | None = None
    args: str = ""
    ret: str | None = None
    ret_detail: str | None = None  # the -y/-yy decoration or "(Timeout)" after ret
    errno: str | None = None
    duration: float | None = None
    resumed_line: int | None = None
    resumed_text: str | None = None
    problem: str | None = None  # why a line was odd, though kept

    @property
    def failed(self) -> bool:
        return self.errno is not None


@dataclass
class Started:
    """The first half of a call strace printed as `<unfinished ...>`."""

    line: int
    text: str
    tid: int | None
    ts: float | None
    syscall: str
    args: str = field(default="")


def split_prefix(text: str) -> tuple[int | None, float | None, str]:
    """Peel the pid and timestamp prefixes off one line."""
    tid = None
    m = _PID.match(text)
    if m:
        tid = int(m.group(1) or m.group(2))
        text = text[m.end():]
    ts = None
    m = _TS.match(text)
    if m:
        if m.group(1):
            ts = float(m.group(1))
        else:
            h, mi, s, frac = m.group(2, 3, 4, 5)
            ts = int(h) * 3600 + int(mi) * 60 + int(s) + (float("0." + frac) if frac else 0.0)
        text = text[m.end():]
    return tid, ts, text


def close_paren(s: str, depth: int = 1) -> int:
    """Index of the `)` that closes a call whose `(` came before `s`, or -1.

    Quoted strings are skipped (strace escapes `"` inside them), so a `)` in
    a buffer or a path does not end the arguments early.
    """
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c == '"':
            i += 1
            while i < n and s[i] != '"':
                i += 2 if s[i] == "\\" else 1
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def split_result(tail: str) -> tuple[str | None, str | None, str | None, float | None] | None:
    """`= ret[<deco>] [ERRNO (msg)|(detail)] [<dur>]` to its parts, or None."""
    duration = None
    m = _DURATION.search(tail)
    if m:
        duration = float(m.group(1))
        tail = tail[: m.start()]
    m = _RET.match(tail)
    if not m:
        return None
    ret = m.group(1)
    rest = tail[m.end():]
    detail = None
    if rest.startswith("<"):
        # fd decoration from -y/-yy; may nest: 19</dev/null<char 1:3>>
        depth, i = 0, 0
        while i < len(rest):
            if rest[i] == "<":
                depth += 1
            elif rest[i] == ">" and (i == 0 or rest[i - 1] != "-"):
                depth -= 1
                if depth == 0:
                    break
            i += 1
        detail, rest = rest[1:i], rest[i + 1:]
    errno = None
    m = _ERRNO.match(rest)
    if m:
        errno = m.group(1)
        detail = detail or m.group(2)
    elif rest.strip():
        extra = rest.strip()
        detail = f"{detail} {extra}" if detail else extra
    return ret, detail, errno, duration


def _call_parts(body: str) -> tuple[str, str | None] | None:
    """Split `args) = ret...` at the closing paren: (args, tail) or None."""
    end = close_paren(body)
    if end < 0:
        return None
    return body[:end], body[end + 1:]


def parse_line(lineno: int, text: str) -> Event | Started | tuple[str, Event]:
    """One raw line to an Event, a Started marker, or ("resumed", partial)."""
    tid, ts, body = split_prefix(text)
    ev = Event(line=lineno, text=text, kind="unparsed", tid=tid, ts=ts)
    if _STRACE.match(body) or _STRACE.match(text):
        ev.kind = "strace"
        return ev
    m = _SIGNAL.match(body)
    if m:
        ev.kind, ev.syscall, ev.args = "signal", m.group(1), m.group(2)
        return ev
    m = _EXIT.match(body)
    if m:
        ev.kind, ev.args = "exit", m.group(1)
        ev.ret = m.group(2) if m.group(2) is not None else None
        ev.syscall = m.group(3)  # the killing signal, if any
        return ev
    m = _RESUMED.match(body)
    if m:
        ev.kind, ev.syscall = "syscall", m.group(1)
        rest = body[m.end():]
        if _UNFINISHED.search(rest):
            ev.args = _UNFINISHED.sub("", rest)
            return ("resumed-unfinished", ev)
        parts = _call_parts(rest)
        if parts is None:
            ev.kind = "unparsed"
            ev.problem = "resumed call without a closing parenthesis"
            return ev
        ev.args = parts[0]
        if not _fill_result(ev, parts[1]):
            ev.kind = "unparsed"
        return ("resumed", ev)
    m = _CALL.match(body)
    if not m:
        ev.problem = "not a syscall, signal, exit or strace message"
        return ev
    name, rest = m.group(1), body[m.end():]
    if _UNFINISHED.search(rest):
        return Started(lineno, text, tid, ts, name, _UNFINISHED.sub("", rest))
    ev.kind, ev.syscall = "syscall", name
    parts = _call_parts(rest)
    if parts is None:
        ev.kind = "unparsed"
        ev.problem = "no closing parenthesis"
        return ev
    ev.args = parts[0]
    if not _fill_result(ev, parts[1]):
        ev.kind = "unparsed"
    return ev


def _fill_result(ev: Event, tail: str) -> bool:
    res = split_result(tail)
    if res is None:
        ev.problem = "no '= result' after the arguments"
        return False
    ev.ret, ev.ret_detail, ev.errno, ev.duration = res
    return True


def events(lines: Iterable[str]) -> Iterator[Event | Started]:
    """Fold a stream of raw lines into events, in completion order."""
    pending: dict[int | None, Started] = {}
    for lineno, raw in enumerate(lines, 1):
        text = raw.rstrip("\n")
        if not text.strip():
            yield Event(line=lineno, text=text, kind="unparsed", problem="empty line")
            continue
        got = parse_line(lineno, text)
        if isinstance(got, Started):
            if got.tid in pending:
                # strace never starts two calls on one thread; keep both.
                yield _orphan(pending.pop(got.tid), "a new call began before this one resumed")
            pending[got.tid] = got
            yield got
        elif isinstance(got, tuple):
            how, ev = got
            start = pending.pop(ev.tid, None)
            if start is not None and start.syscall == ev.syscall:
                merged = Event(line=start.line, text=start.text, kind=ev.kind, tid=start.tid,
                               ts=start.ts, syscall=ev.syscall, args=start.args + ev.args,
                               ret=ev.ret, ret_detail=ev.ret_detail, errno=ev.errno,
                               duration=ev.duration, resumed_line=lineno, resumed_text=text,
                               problem=ev.problem)
            else:
                if start is not None:
                    yield _orphan(start, "resumed as a different call")
                merged = ev
                merged.problem = merged.problem or "resumed without a start line"
            if how == "resumed-unfinished":
                # The call was interrupted again: wait for a further resume.
                again = Started(merged.line, merged.text, merged.tid, merged.ts,
                                merged.syscall or "", merged.args)
                if merged.resumed_line is not None:
                    yield Event(line=lineno, text=text, kind="syscall", tid=merged.tid,
                                ts=split_prefix(text)[1], syscall=merged.syscall,
                                problem="resumed and interrupted again")
                pending[merged.tid] = again
                continue
            yield merged
        else:
            yield got
    for start in pending.values():
        yield _orphan(start, "never resumed (the trace ended first)")


def _orphan(start: Started, why: str) -> Event:
    return Event(line=start.line, text=start.text, kind="syscall", tid=start.tid,
                 ts=start.ts, syscall=start.syscall, args=start.args, problem=why)


def split_args(args: str) -> list[str]:
    """Top-level comma split of a call's arguments.

    Respects quotes, (), [], {} and fd decorations `5<...>`; the `>` of
    `->` inside `UNIX-STREAM:[a->b]` sits inside [] and is not a closer.
    """
    out, stack, cur, i, n = [], [], [], 0, len(args)
    while i < n:
        c = args[i]
        if c == '"':
            j = i + 1
            while j < n and args[j] != '"':
                j += 2 if args[j] == "\\" else 1
            cur.append(args[i:j + 1])
            i = j + 1
            continue
        if c in "([{":
            stack.append(c)
        elif c == "<" and i and args[i - 1].isdigit():
            stack.append(c)
        elif c in ")]}" and stack and stack[-1] != "<":
            stack.pop()
        elif c == ">" and stack and stack[-1] == "<":
            stack.pop()
        elif c == "," and not stack:
            out.append("".join(cur).strip())
            cur = []
            i += 1
            continue
        cur.append(c)
        i += 1
    tail = "".join(cur).strip()
    if tail or out:
        out.append(tail)
    return out


_FD = re.compile(r"^(-?\d+)(?:<(.*)>)?$", re.S)


def fd_arg(arg: str) -> tuple[int, str | None] | None:
    """`7</etc/hosts>` -> (7, "/etc/hosts"); `7` -> (7, None); else None."""
    m = _FD.match(arg.strip())
    if not m:
        return None
    return int(m.group(1)), m.group(2)


_EPOLL_ITEM = re.compile(
    r"\{(?:events=)?(?P<events>[A-Z0-9_|]+|0x[0-9a-f]+|0),\s*"
    r"(?:data=)?(?:\{u32=(?P<u32>\d+),\s*u64=(?P<u64>\d+)\}|(?P<hex>0x[0-9a-f]+|\d+))\}")


def epoll_items(text: str) -> list[tuple[str, int]]:
    """Events and data of each `{...}` in an epoll event (array).

    Reads the three formats strace has used: `{EPOLLIN, {u32=5, u64=5}}`
    (to 5.10), `{events=EPOLLIN, data={u32=5, u64=5}}` (5.11 on) and
    `{events=EPOLLIN, data=0x5}` (6.13 on).
    """
    out = []
    for m in _EPOLL_ITEM.finditer(text):
        if m.group("u64") is not None:
            data = int(m.group("u64"))
        else:
            data = int(m.group("hex"), 0)
        out.append((m.group("events"), data))
    return out


def quoted(arg: str) -> str | None:
    """The text of a strace string argument, without quotes, or None."""
    arg = arg.strip()
    if len(arg) >= 2 and arg[0] == '"':
        end = arg.rfind('"')
        return arg[1:end] if end > 0 else arg[1:]
    return None
