"""ltrace output to annotated records: the library calls strace cannot see.

`getaddrinfo` is a libc function, not a syscall: strace shows only the files
and sockets it touches, ltrace shows the call itself and the thread making
it. ltrace's line format is close to strace's, so each line is rewritten in
strace's syntax and folded by the same parser (unfinished/resumed pairs);
records keep the original ltrace text.

ltrace quirks handled here (all seen on this machine, ltrace 0.7.3):
  `select.cpython-311-x86_64-linux-gnu.so->epoll_wait(...)`  the calling library
  `read(9 <no return ...>`  then `error: maximum array length seems negative`
  then `, "", 8113) = -1` on lines of their own (ltrace's message cut the call)
  `+++ exited (status 0) +++`, `--- SIGCONT (Continued) ---`
"""

from __future__ import annotations

import re
from typing import Iterable, Iterator

from ...understand import records
from ...understand.annotate import Step
from ...read.inputs import open_text
from ...names import LOOP, OTHER, POOL, RESOLVER_CALLS, WAITS
from ...read.parse import Event, Started, numbered_events, to_int

_TS = r"((?:\d+\.\d+|\d\d:\d\d:\d\d(?:\.\d+)?) +)?"  # -ttt, -tt or -t
_CALL = re.compile(r"^(\d+) +" + _TS + r"([^\s(]+)->(\w+\(.*)$")
_PREFIXED = re.compile(r"^(\d+) +" + _TS + r"(.*)$")
_NO_RETURN = " <no return ...>"
_EXITED = re.compile(r"\+\+\+ exited \(status (-?\d+)\) \+\+\+")

LOOP_CALLS = WAITS  # the libc wrappers carry the syscalls' names
POLL_CALLS = LOOP_CALLS | {"epoll_create", "epoll_create1", "epoll_ctl", "accept", "accept4"}
RESOLVER = RESOLVER_CALLS
CTL_OPS = {"1": "ADD", "2": "DEL", "3": "MOD"}


def strace_syntax(lines: Iterable[str]) -> Iterator[tuple[int, str, str, str]]:
    """(line number, the line in strace's syntax, the calling library, the line as is)."""
    last_open: tuple[str, str] | None = None  # (pid, function) of the last <no return ...>
    for n, raw in enumerate(lines, 1):
        text = raw.rstrip("\n")
        m = _CALL.match(text)
        if m:
            pid, ts, lib, call = m.group(1), m.group(2) or "", m.group(3), m.group(4)
            if call.endswith(_NO_RETURN):
                call = call[: -len(_NO_RETURN)] + " <unfinished ...>"
                last_open = (pid, call.split("(", 1)[0])
            yield n, f"{pid} {ts}{call}", lib, text
            continue
        if text.startswith(("error: ", "warning: ")):
            yield n, "strace: " + text, "", text  # ltrace's own message
            continue
        if last_open and text.startswith((",", ")")):
            # The rest of the call ltrace's message cut off.
            pid, func = last_open
            last_open = None
            yield n, f"{pid} <... {func} resumed> {text}", "", text
            continue
        m = _PREFIXED.match(text)
        if m and _EXITED.search(m.group(3)):
            status = _EXITED.search(m.group(3)).group(1)
            yield n, f"{m.group(1)} {m.group(2) or ''}+++ exited with {status} +++", "", text
            continue
        yield n, text, "", text


def _ret(ev: Event) -> int | None:
    value = to_int(ev.ret)
    if value is None:
        return None
    return value - (1 << 32) if value >= 1 << 31 and value < 1 << 32 else value


class LtraceAnnotator:
    """Thread roles from who calls the epoll wrappers; notes per library call."""

    def __init__(self, loops: set, pools: set, steps: Iterable[Step] = ()) -> None:
        self.loops, self.pools = loops, pools
        self.steps = sorted(steps, key=lambda s: s.start)
        self.summary = records.Summary()

    def role(self, tid) -> str:
        return LOOP if tid in self.loops else POOL if tid in self.pools else OTHER

    def step_at(self, ts):
        return records.step_at(self.steps, ts)

    def record(self, ev: Event | Started, originals: dict, libs: dict) -> dict:
        if isinstance(ev, Started):
            rec = records.started(ev, self.role(ev.tid), self.step_at(ev.ts))
            rec["text"] = originals.get(ev.line, ev.text)
            return rec
        rec = records.record(ev, self.step_at(ev.ts))
        rec["errno"] = None
        rec["thread"] = self.role(ev.tid)
        rec["text"] = originals.pop(ev.line, ev.text)
        rec["resumed_text"] = originals.pop(ev.resumed_line, ev.resumed_text)
        rec["library"] = libs.pop(ev.line, "")
        if ev.kind == "syscall":
            self.note(rec, ev)
            if ev.problem and "resumed" not in ev.problem:
                rec["note"] += f" [{ev.problem}]"
        elif ev.kind == "strace":
            rec["note"] = "ltrace's own message"
        elif ev.kind == "exit":
            rec["note"] = f"thread/process {ev.tid} ended"
        elif ev.kind == "signal":
            rec["note"] = f"{ev.syscall} (ltrace stops and continues threads to handle breakpoints)"
        else:
            rec["note"] = f"not understood, kept verbatim ({ev.problem})"
        self.summary.add(rec)
        return rec

    def note(self, rec: dict, ev: Event) -> None:
        name, role, ret = ev.syscall, rec["thread"], _ret(ev)
        lib = rec["library"]
        where = f" (called from {lib})" if lib and lib != "libc.so.6" else ""
        args = [a.strip() for a in ev.args.split(",")]
        if name in RESOLVER:
            if role == "loop":
                rec["category"] = "blocking"
                rec["note"] = (f"{name}{where}: a libc function, not a syscall, run ON THE LOOP THREAD: "
                               "every client waits until the name is resolved")
            else:
                rec["category"] = "thread-pooled"
                rec["note"] = (f"{name}{where} on pool thread {ev.tid}: a libc function, not a syscall "
                               "(strace sees only the files and sockets it opens); the loop keeps serving")
            return
        if name in POLL_CALLS:
            rec["category"] = "pollable"
            if name in LOOP_CALLS and ret == -1:
                rec["note"] = (f"{name}{where} returned -1 (EINTR): ltrace stops every thread at each "
                               "breakpoint, which interrupts the wait; the loop simply waits again")
            elif name in LOOP_CALLS:
                rec["note"] = f"{name}{where}: the loop sleeps in epoll; {ret} fd(s) ready"
            elif name == "epoll_ctl" and len(args) > 2:
                rec["note"] = f"epoll_ctl {CTL_OPS.get(args[1], args[1])} fd {args[2]} on epoll {args[0]}{where}"
            elif name.startswith("accept"):
                rec["note"] = (f"{name}{where}: new client fd {ret}" if ret is not None and ret >= 0
                               else f"{name}{where}: no more pending connections")
            else:
                rec["note"] = f"{name}{where} made epoll fd {ret}"
            return
        if name == "write" and role != "loop" and len(args) > 2 and args[2] == "8" and "\\001" in ev.args:
            rec["category"] = "wakeup"
            rec["note"] = (f"write of an 8-byte counter to fd {args[0]} from thread {ev.tid}: a pool "
                           "thread bumps the loop's eventfd, waking its epoll wait")
            return
        rec["note"] = f"{name}{where} -> {ev.ret}"


def learn_loops(lines: Iterable[str]) -> tuple[set, set]:
    """First pass: loop threads call the epoll wait wrappers; the others that
    resolve names (or wake a loop) are pool threads."""
    loops, resolvers = set(), set()
    for item in numbered_events((n, t) for n, t, _, _ in strace_syntax(lines)):
        if isinstance(item, Event) and item.kind == "syscall":
            if item.syscall in LOOP_CALLS:
                loops.add(item.tid)
            elif item.syscall in RESOLVER or (item.syscall == "write" and "\\001" in item.args):
                resolvers.add(item.tid)
    return loops, resolvers - loops


def annotate_file(path: str, steps: Iterable[Step] = ()) -> tuple[Iterator[dict], LtraceAnnotator]:
    """Two passes, streamed: roles first, then records with ltrace's own text."""
    with open_text(path) as f:
        loops, pools = learn_loops(f)
    ann = LtraceAnnotator(loops, pools, steps)

    def stream() -> Iterator[dict]:
        # Each line's original text and caller, kept only until its record is out.
        originals: dict[int, str] = {}
        libs: dict[int, str] = {}

        def numbered() -> Iterator[tuple[int, str]]:
            with open_text(path) as f:
                for n, converted, lib, text in strace_syntax(f):
                    originals[n] = text
                    if lib:
                        libs[n] = lib
                    yield n, converted

        for ev in numbered_events(numbered()):
            yield ann.record(ev, originals, libs)

    return stream(), ann


def summary(ann: LtraceAnnotator) -> dict:
    """The shared Summary, with the names the ltrace report reads."""
    got = ann.summary.as_dict()
    return {"tool": "ltrace", "calls": got["syscalls"], **got}
