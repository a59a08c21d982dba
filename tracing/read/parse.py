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

from ..names import WRITES
from .scan import NUMBER_IP, PID, SECONDS, split_prefix

_CALL = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*|\?{3,4})\(")  # ??? or ????: strace could not tell
_RESUMED = re.compile(r"^<\.\.\.\s+([A-Za-z_][A-Za-z0-9_]*|\?{3,4})\s+resumed>\s?")
_UNFINISHED = re.compile(r"\s*<unfinished \.\.\.>\)?\s*$")
# A thread's execve replaces the whole process, which keeps the leader's pid:
# `execve(... <pid changed to 15072 ...>`, resumed later by pid 15072.
_PID_CHANGED = re.compile(r"\s*<pid changed to (\d{1,10}) \.\.\.>\s*$")
# strace -p stopped with Ctrl-C while the call was in the kernel.
_DETACHED = re.compile(r"\s*<detached \.\.\.>\s*$")
DETACHED_WHY = "strace detached while this call was in the kernel; its result was never seen"
_DURATION = re.compile(r"\s+<(\d{1,12}\.\d+)>\s*$")
_RET = re.compile(r"^\s*=\s+(0x[0-9a-fA-F]+|-?\d+|\?)")
_ERRNO = re.compile(r"^\s*(E[A-Z0-9]+|ERESTART[A-Z_]*)\s+\((.*)\)\s*$")
_SIGNAL = re.compile(r"^---\s+(SIG[A-Z0-9+-]+|SIGRT\w*)\s?(.*?)\s*---\s*$")
_EXIT = re.compile(r"^\+\+\+\s+(exited with (-?\d+)|killed by (SIG\w+)(?: \(core dumped\))?|superseded by execve.*?)\s*\+\+\+\s*$")
_STRACE = re.compile(r"^strace:\s")


@dataclass(slots=True)
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
    source: str | None = None  # "file:line" when several -ff files were merged
    stack: list[tuple[int, str]] | None = None  # strace -k: the call's stack lines (line, text)

    @property
    def failed(self) -> bool:
        return self.errno is not None


@dataclass(slots=True)
class Started:
    """The first half of a call strace printed as `<unfinished ...>`."""

    line: int
    text: str
    tid: int | None
    ts: float | None
    syscall: str
    args: str = field(default="")
    source: str | None = None
    resumes_as: int | None = None  # the pid the resume will come from, if it changes


# A quoted string (strace escapes `"` and `\\` inside) or one bracket.
_STRING = r'"[^"\\]*(?:\\.[^"\\]*)*"?'
_BRACKETS = re.compile(_STRING + r'|[()\[\]{}]')


def close_paren(s: str, depth: int = 1) -> int:
    """Index of the `)` that closes a call whose `(` came before `s`, or -1.

    Quoted strings are skipped, so a `)` in a buffer or a path does not end
    the arguments early. The regex jumps over strings and plain text, which
    matters: buffers make up most of a log's bytes.
    """
    for m in _BRACKETS.finditer(s):
        c = m.group()
        if c[0] == '"':
            continue
        if c in "([{":
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                return m.start()
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


# The common case in one match: a complete call with -f, -ttt/-r and -T.
# The greedy `(.*)` finds the last `) = ` whose tail reads as a result, so a
# `) = ` inside a buffer cannot end the arguments early. Anything else takes
# the careful path below, which is the reference (tests compare the two).
_FAST = re.compile(
    PID + "? *(?:" + SECONDS + " +)?" + NUMBER_IP + r"([a-z_][a-z0-9_]*)\((.*)\) +"
    r"= (0x[0-9a-f]+|-?\d+|\?)(?:<(.*?)>)?(?: (E[A-Z0-9_]+) \((.*?)\))?(?: (\(.*?\)))?"
    r"(?: <(\d{1,12}\.\d+)>)?$", re.S)


def parse_line(lineno: int, text: str) -> Event | Started | tuple[str, Event]:
    """One raw line to an Event, a Started marker, or ("resumed", partial)."""
    m = _FAST.match(text)
    if m is not None:
        pid, pid2, ts, name, args, ret, detail, errno, why, extra, dur = m.groups()
        if not args.endswith("<unfinished ..."):
            if errno is not None:
                detail = detail or why
            elif extra is not None:
                detail = f"{detail} {extra}" if detail else extra
            pid = pid or pid2
            return Event(lineno, text, "syscall", int(pid) if pid else None,
                         float(ts) if ts else None, name, args, ret, detail,
                         errno, float(dur) if dur else None)
    return parse_line_carefully(lineno, text)


def parse_line_carefully(lineno: int, text: str) -> Event | Started | tuple[str, Event]:
    """The reference parser: every form strace prints, one step at a time."""
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
        if not _arguments_and_result(ev, rest, "resumed call without a closing parenthesis"):
            return ev
        return ("resumed", ev)
    m = _CALL.match(body)
    if not m:
        ev.problem = STRAY_STACK if text.startswith(STACK) else "not a syscall, signal, exit or strace message"
        return ev
    name, rest = m.group(1), body[m.end():]
    if _UNFINISHED.search(rest):
        return Started(lineno, text, tid, ts, name, _UNFINISHED.sub("", rest))
    changed = _PID_CHANGED.search(rest)
    if changed:
        return Started(lineno, text, tid, ts, name, rest[:changed.start()],
                       resumes_as=int(changed.group(1)))
    if _DETACHED.search(rest):
        ev.kind, ev.syscall, ev.args, ev.problem = "syscall", name, _DETACHED.sub("", rest), DETACHED_WHY
        return ev
    ev.kind, ev.syscall = "syscall", name
    _arguments_and_result(ev, rest, "no closing parenthesis")
    return ev


def _arguments_and_result(ev: Event, rest: str, unclosed: str) -> bool:
    """A call's arguments and result from the text after its name; an unclosed call is
    `unparsed` with the problem `unclosed` (False), an unreadable result `unparsed` too."""
    parts = _call_parts(rest)
    if parts is None:
        ev.kind, ev.problem = "unparsed", unclosed
        return False
    ev.args = parts[0]
    if not _fill_result(ev, parts[1]):
        ev.kind = "unparsed"
    return True


def _fill_result(ev: Event, tail: str) -> bool:
    res = split_result(tail)
    if res is None:
        ev.problem = "no '= result' after the arguments"
        return False
    ev.ret, ev.ret_detail, ev.errno, ev.duration = res
    if ev.ret == "?" and ev.ret_detail and "unavailable" in ev.ret_detail:
        ev.problem = "strace could not read the result (the thread was already gone)"
    return True


def events(lines: Iterable[str], stacks: bool = False) -> Iterator[Event | Started]:
    """Fold a stream of raw lines into events, in completion order (see Parser)."""
    return numbered_events(enumerate(lines, 1), stacks=stacks)


# strace writing to the terminal shares it with the traced program, so a line
# can be cut by strace's own "Process N attached" or by the program's output:
#   clone(child_stack=NULL, flags=...|SIGCHLDstrace: Process 12795 attached
#   , child_tidptr=0x7f6216a25a10) = 12795
#   write(1, "hello\n", 6hello
#   ) = 6
_CUT_BY_STRACE = re.compile(r"strace: (?:Process \d+ (?:attached|detached).*|.*)$")
_CUT_BY_OUTPUT = re.compile(r"^(.*,\s*\d+)(\D.*)$", re.S)
_CUTTABLE = ("no closing parenthesis", "no '= result' after the arguments")


@dataclass(slots=True)
class _Held:
    """A call strace had to leave mid-line, waiting for the rest."""

    line: int
    text: str
    call: str  # the text with whatever cut into it taken out
    source: str | None
    cut: str  # what cut into it, for the note


def _holdable(got, text: str, lineno: int, source: str | None) -> _Held | None:
    if not isinstance(got, Event) or got.kind != "unparsed" or got.problem not in _CUTTABLE:
        return None
    call, cut = text, ""
    m = _CUT_BY_STRACE.search(text)
    if m and m.start() > 0:
        call, cut = text[:m.start()], f"strace's message {m.group().strip()!r}"
    elif w := _CUT_BY_OUTPUT.match(text):
        name = split_prefix(text)[2].split("(", 1)[0]
        if name in WRITES:
            call, cut = w.group(1), f"the program's own output {w.group(2)!r}"
    return _Held(lineno, text, call, source, cut or "something")




def numbered_events(items: Iterable[tuple], stacks: bool = False) -> Iterator[Event | Started]:
    """`events` over (line number, text[, source]) items: a Parser pushed one item at a time.

    The learning pass skips lines but must keep their numbers; a merge of
    `-ff` files numbers the merged stream and names each line's file.
    """
    parser = Parser(stacks)
    push = parser.push
    for item in items:
        yield from push(item)
    yield from parser.end()


# strace -k prints a call's stack after the line that completes it, one frame a line:
#   ` > /usr/lib/x86_64-linux-gnu/libc.so.6(epoll_wait+0x5a) [0x1238ea]` (no pid, no time).
STACK = " > "
STRAY_STACK = ("a stack line of strace -k, on its own: no call before it, or read by a reader "
               "that passes each call on at once (live mode)")


class Parser:
    """Raw lines in, events out, one line at a time: `push` returns the events a line
    completes (none while a line cut by other output waits for its rest, `held`), `end`
    the ones still open when the lines end.

    It holds only what is unfinished: a start per thread waiting for its resume, a
    cut line. With `stacks`, the stack lines of `strace -k` go with their call: each
    complete call is passed on only once the next line shows whether a stack follows
    (for readers of a whole log). Without, each call is passed on at once (live mode,
    the web page, the learning pass), and a stack line is a line of its own, not
    understood."""

    def __init__(self, stacks: bool = False) -> None:
        self.stacks = stacks
        self.pending: dict[int | None, Started] = {}
        self.held: _Held | None = None
        self.waiting: list[Event] = []  # stacks: the calls whose stack may follow

    def push(self, item: tuple) -> list:
        if not self.stacks:
            return self._push(item)
        waiting = self.waiting
        if waiting and item[1].startswith(STACK) and waiting[0].kind == "syscall":
            target = waiting[0]
            if target.stack is None:
                target.stack = []
            target.stack.append((item[0], item[1].rstrip("\n")))
            return []
        return self._after_stacks(self._push(item))

    def end(self) -> list:
        out = []
        if self.held is not None:
            out.append(_cut_off(self.held, "the trace ended in the middle of this line"))
            self.held = None
        for start in self.pending.values():
            out.append(_orphan(start, "never resumed (the trace ended first)"))
        self.pending.clear()
        if self.stacks:
            out = self._after_stacks(out)
            out += self.waiting
            self.waiting = []
        return out

    def _after_stacks(self, got: list) -> list:
        """Each complete event waits for the next; an exit_group's stack comes after its
        process's `+++ exited` line: both wait, and the stack goes to the call."""
        out = []
        waiting = self.waiting
        for ev in got:
            if ev.__class__ is not Started:
                if (len(waiting) == 1 and ev.kind == "exit" and ev.tid == waiting[0].tid
                        and waiting[0].syscall in ("exit_group", "exit") and waiting[0].ret == "?"):
                    waiting.append(ev)
                    continue
                out += waiting
                waiting[:] = [ev]
                continue
            out += waiting
            waiting.clear()
            out.append(ev)
        return out

    def _push(self, item: tuple) -> list:
        lineno, raw = item[0], item[1]
        source = item[2] if len(item) > 2 else None
        text = raw.rstrip("\n")
        held, pending = self.held, self.pending
        if held is not None and _DETACHED.match(text):
            ev = _detached(held, lineno, text)
            self.held = None
            return [Started(held.line, held.text, ev.tid, ev.ts, ev.syscall or "", "", held.source), ev]
        if held is not None:
            joined = parse_line(held.line, held.call + text)
            if isinstance(joined, Started) or (isinstance(joined, Event) and joined.kind == "syscall"):
                self.held = None
                return list(_fold_stitched(joined, held, lineno, text, pending))
        if not text or (text[0].isspace() and not text.strip()):
            return [Event(lineno, text, "unparsed", problem="empty line", source=source)]
        got = parse_line(lineno, text)
        if held is None and got.__class__ is Event and got.kind == "syscall":
            # Most lines: one complete call, nothing to hold or pair up.
            if source is not None:
                got.source = source
            return [got]
        out = []
        if held is not None:
            if isinstance(got, Event) and got.kind == "unparsed":
                got.problem = f"printed by the traced program inside strace's line {held.line}"
                got.source = source
                return [got]
            out.append(_cut_off(held, "the rest of this line never came"))
            self.held = None
        hold = _holdable(got, text, lineno, source)
        if hold is not None:
            self.held = hold
            return out
        if source is not None:
            (got[1] if isinstance(got, tuple) else got).source = source
        if isinstance(got, Started):
            key = got.resumes_as or got.tid
            if key in pending:
                # strace never starts two calls on one thread; keep both.
                out.append(_orphan(pending.pop(key), "a new call began before this one resumed"))
            pending[key] = got
            out.append(got)
        elif isinstance(got, tuple):
            how, ev = got
            start = pending.pop(ev.tid, None)
            if start is not None and start.syscall == ev.syscall:
                merged = Event(line=start.line, text=start.text, kind=ev.kind, tid=start.tid,
                               ts=start.ts, syscall=ev.syscall, args=start.args + ev.args,
                               ret=ev.ret, ret_detail=ev.ret_detail, errno=ev.errno,
                               duration=ev.duration, resumed_line=lineno, resumed_text=text,
                               problem=ev.problem, source=start.source)
            else:
                if start is not None:
                    out.append(_orphan(start, "resumed as a different call"))
                merged = ev
                merged.problem = merged.problem or "resumed without a start line"
            if how == "resumed-unfinished":
                # The call was interrupted again: wait for a further resume.
                again = Started(merged.line, merged.text, merged.tid, merged.ts,
                                merged.syscall or "", merged.args, merged.source)
                if merged.resumed_line is not None:
                    out.append(Event(line=lineno, text=text, kind="syscall", tid=merged.tid,
                                     ts=split_prefix(text)[1], syscall=merged.syscall,
                                     problem="resumed and interrupted again", source=source))
                pending[merged.tid] = again
                return out
            out.append(merged)
        else:
            out.append(got)
        return out


def _fold_stitched(joined, held: _Held, lineno: int, text: str, pending: dict):
    """The two halves of a cut line as one call (line + resumed_line)."""
    why = f"stitched with line {lineno}: {held.cut} was printed inside it"
    if isinstance(joined, Started):
        # Cut, then unfinished: the start waits for its resume as usual; the
        # second half of the cut line gets its own record.
        joined.text = held.text
        joined.source = held.source
        if joined.tid in pending:
            yield _orphan(pending.pop(joined.tid), "a new call began before this one resumed")
        pending[joined.tid] = joined
        yield joined
        yield Event(lineno, text, "syscall", joined.tid, syscall=joined.syscall,
                    problem=f"second half of line {held.line}, cut by {held.cut}; "
                            "the call is still unfinished")
        return
    # A marker first, so the text view shows the first half too.
    yield Started(held.line, held.text, joined.tid, joined.ts, joined.syscall or "", "", held.source)
    joined.text, joined.resumed_line, joined.resumed_text = held.text, lineno, text
    joined.problem = why
    joined.source = held.source
    yield joined


def _detached(held: _Held, lineno: int, text: str) -> Event:
    """`wait4(1, ^Cstrace: Process 1 detached` + ` <detached ...>`: one call."""
    tid, ts, body = split_prefix(held.call)
    name = body.split("(", 1)[0]
    return Event(held.line, held.text, "syscall", tid, ts, name if _CALL.match(body) else None,
                 body[len(name) + 1:], resumed_line=lineno, resumed_text=text,
                 problem=DETACHED_WHY, source=held.source)


def _cut_off(held: _Held, why: str) -> Event:
    tid, ts, _ = split_prefix(held.text)
    return Event(held.line, held.text, "unparsed", tid, ts, problem=why, source=held.source)


def _orphan(start: Started, why: str) -> Event:
    return Event(line=start.line, text=start.text, kind="syscall", tid=start.tid,
                 ts=start.ts, syscall=start.syscall, args=start.args, problem=why)


_ARG_MARKS = re.compile(_STRING + r'|[()\[\]{}<>,]')


def split_args(args: str) -> list[str]:
    """Top-level comma split of a call's arguments.

    Respects quotes, (), [], {} and fd decorations `5<...>`; the `>` of
    `->` inside `UNIX-STREAM:[a->b]` sits inside [] and is not a closer.
    """
    if not args:
        return []
    out, stack, start = [], [], 0
    for m in _ARG_MARKS.finditer(args):
        c = m.group()
        if c[0] == '"':
            continue
        if c in "([{":
            stack.append(c)
        elif c == "<":
            i = m.start()
            if i and args[i - 1].isdigit():
                stack.append(c)
        elif c == ">":
            if stack and stack[-1] == "<":
                stack.pop()
        elif c == ",":
            if not stack:
                out.append(args[start:m.start()].strip())
                start = m.end()
        elif stack and stack[-1] != "<":
            stack.pop()
    tail = args[start:].strip()
    if tail or out:
        out.append(tail)
    return out


_FIRST_FD = re.compile(r"^\s*(-?\d{1,10})(?:<(.*?)>)?\s*(?:,|$)", re.S)


def first_fd(args: str) -> tuple[int, str | None] | None:
    """The fd of the first argument, without splitting all of them."""
    m = _FIRST_FD.match(args)
    if not m:
        return None
    return int(m.group(1)), m.group(2)


def fd_arg(arg: str) -> tuple[int, str | None] | None:
    """`7</etc/hosts>` -> (7, "/etc/hosts"); `7` -> (7, None); else None."""
    return first_fd(arg)


_EPOLL_ITEM = re.compile(
    r"\{(?:events=)?(?P<events>[A-Z0-9_|]+|0x[0-9a-f]+|0),\s*"
    r"(?:data=)?(?:\{u32=(?P<u32>\d{1,10}),\s*u64=(?P<u64>\d{1,20})\}|(?P<hex>0x[0-9a-f]{1,16}|\d{1,20}))\}")


def epoll_items(text: str) -> list[tuple[str, int]]:
    """Events and data of each `{...}` in an epoll event (array).

    Reads the three formats strace has used: `{EPOLLIN, {u32=5, u64=5}}`
    (to 5.10), `{events=EPOLLIN, data={u32=5, u64=5}}` (5.11 on) and
    `{events=EPOLLIN, data=0x5}` (6.13 on).
    """
    fast = _modern_items(text)
    return _found_items(text) if fast is None else fast


def _found_items(text: str) -> list[tuple[str, int]]:
    """epoll_items, every format, by findall."""
    out = []
    # findall hands back every item's groups at once (a wait can return 64).
    for events, _, u64, raw in _EPOLL_ITEM.findall(text):
        if u64:
            data = int(u64)
        else:
            data = int(raw, 16) if raw.startswith("0x") else int(raw)
        out.append((events, data))
    return out


# One item of today's format between "{" and "}}", as _EPOLL_ITEM reads it there.
_MODERN_ITEM = re.compile(r"events=([A-Z0-9_|]+|0x[0-9a-f]+|0), data=\{u32=\d{1,10}, u64=(\d{1,20})")
_ITEMS: dict[str, tuple[str, int]] = {}  # an item's text -> (events, data): a loop's waits return the same fds
_ITEMS_MOST = 4096


def _modern_items(text: str) -> list[tuple[str, int]] | None:
    """epoll_items of an array in today's format, `[{events=E, data={u32=N, u64=M}}, ...]`
    with no other brace in the text, cut at its separators and each item looked up:
    what findall returns there, at about a fifth of its cost. None: another shape, for findall."""
    i, j = text.find("[{"), text.rfind("}}]")
    if i < 0 or j < i or "{" in text[:i] or "{" in text[j + 3:]:
        return None
    out = []
    for piece in text[i + 2:j].split("}}, {"):
        got = _ITEMS.get(piece)
        if got is None:
            m = _MODERN_ITEM.fullmatch(piece)
            if m is None:
                return None
            if len(_ITEMS) >= _ITEMS_MOST:
                _ITEMS.clear()
            got = _ITEMS[piece] = (m.group(1), int(m.group(2)))
        out.append(got)
    return out


def quoted(arg: str) -> str | None:
    """The text of a strace string argument, without quotes, or None."""
    arg = arg.strip()
    if len(arg) >= 2 and arg[0] == '"':
        end = arg.rfind('"')
        return arg[1:end] if end > 0 else arg[1:]
    return None


_INT = re.compile(r"-?(?:0x[0-9a-fA-F]{1,16}|\d{1,20})")


def to_int(text: str | None) -> int | None:
    """A result or argument as a number: decimal (leading zeros too) or 0x hex.

    None for anything else, and for numbers longer than any the kernel
    returns (Python refuses to convert over 4,300 digits; no fd, pid or byte
    count comes near 20).
    """
    if text is None:
        return None
    # Most results: a plain count or fd, or -1.
    if text.isdigit() and text.isascii() and len(text) <= 20:
        return int(text)
    if text[:1] == "-" and text[1:].isdigit() and text.isascii() and len(text) <= 21:
        return -int(text[1:])
    if _INT.fullmatch(text) is None:
        return None
    neg = text.startswith("-")
    body = text[1:] if neg else text
    value = int(body, 16) if body[:2] in ("0x", "0X") else int(body)
    return -value if neg else value
