"""The annotated record (the lab's JSON Lines schema) and the run's Summary,
one of each for the strace and the ltrace annotators."""

from __future__ import annotations

from collections import Counter
from typing import Iterator

from ..names import OTHER, OTHER_CAT


def started(item, thread: str, request: str | None) -> dict:
    """The first half of a call strace printed `<unfinished ...>`."""
    return {"kind": "started", "line": item.line, "text": item.text, "tid": item.tid,
            "ts": item.ts, "syscall": item.syscall, "thread": thread, "request": request,
            "source": item.source}


def record(ev, request: str | None, thread: str = OTHER, fds: list | None = None, ready: list | None = None,
           category: str = OTHER_CAT, note: str = "", evidence=()) -> dict:
    """A record for a complete event, with what the annotator made of it.

    Records are read-only once made: a reused verdict's fds and ready lists are
    shared by every record that reuses it, and the JSON writer keeps their text
    by identity. `evidence` lists the lines the note's claims cite: {"claim", "line", "tid"}
    (see tracing.understand.claims)."""
    rec = {
        "line": ev.line, "resumed_line": ev.resumed_line, "tid": ev.tid,
        "kind": ev.kind, "syscall": ev.syscall, "args": ev.args, "ret": ev.ret,
        "errno": ev.errno, "duration": ev.duration, "ts": ev.ts,
        "thread": thread, "fds": [] if fds is None else fds, "ready": [] if ready is None else ready,
        "category": category, "note": note, "evidence": evidence or [], "request": request,
        "text": ev.text, "resumed_text": ev.resumed_text, "source": ev.source,
    }
    stack = getattr(ev, "stack", None)
    if stack:  # strace -k: [(line, text)] of the call's stack, only in a log that has them
        rec["stack"] = stack
    return rec


def step_at(steps: list, ts) -> str | None:
    """The label of the scenario request whose window holds `ts`."""
    if ts is None:
        return None
    for step in steps:
        if step.start <= ts <= step.end:
            return step.label
    return None


class Summary:
    """Counts for the end of a run: per call, thread, category; unparsed lines."""

    def __init__(self) -> None:
        self.lines = 0
        self.syscalls: Counter = Counter()
        self.categories: Counter = Counter()
        self.kinds: Counter = Counter()
        self.threads: dict = {}
        self.unparsed = 0
        self.unparsed_lines: list[int] = []  # the first few, to look at
        self.roles: dict = {}  # tid -> model.Role: each thread's role, why, and the lines that show it
        self.lost = 0  # calls the tracer says it lost (its "calls lost here" lines)

    def add(self, rec: dict) -> None:
        kind = rec["kind"]
        self.lines += 2 if rec["resumed_line"] else 1
        if "stack" in rec:
            self.lines += len(rec["stack"])
        self.kinds[kind] += 1
        if kind == "syscall":
            self.syscalls[rec["syscall"]] += 1
            self.categories[rec["category"]] += 1
        elif kind == "unparsed":
            self.unparsed += 1
            if len(self.unparsed_lines) < 20:
                self.unparsed_lines.append(rec["line"])
        if rec["tid"] is not None:
            self.threads[rec["tid"]] = rec["thread"]

    def add_copies(self, rec: dict, n: int) -> None:
        """`n` more lines of one call (its thread, name and category are already counted)."""
        self.lines += n
        self.kinds["syscall"] += n
        self.syscalls[rec["syscall"]] += n
        self.categories[rec["category"]] += n

    @property
    def understood(self) -> int:
        """Records that are strace's (calls, signals, exits, its messages)."""
        return sum(n for k, n in self.kinds.items() if k != "unparsed")

    def as_dict(self) -> dict:
        return {"lines": self.lines, "records": sum(self.kinds.values()),
                "kinds": dict(self.kinds), "syscalls": dict(self.syscalls.most_common()),
                "categories": dict(self.categories),
                "threads": {str(t): r for t, r in self.threads.items()},
                "roles": {str(t): {"role": r.role, "why": r.why, "evidence": list(r.evidence)}
                          for t, r in self.roles.items() if t in self.threads},
                "unparsed": self.unparsed, "unparsed_lines": self.unparsed_lines,
                **({"lost_in_log": self.lost} if self.lost else {})}


class Copies(list):
    """Rows of lines that repeat a kept call (`tracing.read.scan.copy_lines`): `(call, line,
    time, duration, text, source, request, forms)`, text as read (its newline too), forms the call's. A renderer that keeps a form per call reads
    them as they are; `records()` makes each the record the annotator would have made:
    its call's record with the line's own fields."""

    __slots__ = ()

    def records(self) -> Iterator[dict]:
        for call, line, ts, duration, text, source, request, _ in self:
            rec = call.rec.copy()
            rec["line"], rec["ts"], rec["duration"], rec["text"], rec["source"], rec["request"] = (
                line, ts, duration, text[:-1] if text[-1:] == "\n" else text, source, request)
            rec["call"] = call  # (not in call.rec: a cycle would wait for the garbage collector)
            yield rec
