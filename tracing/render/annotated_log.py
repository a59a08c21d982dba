"""annotated.log as people open it: an index of its sections up front (with
the line each starts on), and the start-up imports folded into one counted
line, so the first request is near the top.

The fold is for the text only: raw.strace and events.jsonl keep every call.
A Python server makes thousands of file calls importing its modules (a
failed openat per place on sys.path, then openat/read/close of each .pyc)
before it listens; a run of at least FOLD_LEAST file calls (files, folders,
failed opens), before the first listen or epoll wait, becomes one line that
says how many and of what.
"""

from __future__ import annotations

import os
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import IO

from ..names import FILE, WAITS
from .load_fold import LoadFold
from .renderer import BATCH, Lines, Renderer, new_file
from .timing import latency_lines, stall_text, unnamed_reason
from .text import TextLines
from ..understand.records import Copies

FOLD_LEAST = 20  # fewer start-up file calls are left as they are
STARTED = frozenset({"listen"}) | WAITS  # the start-up's end: no folding after these
IMPORT_CALLS = {"open", "openat", "read", "pread64", "close", "newfstatat", "fstat", "lseek",
                "getdents64", "readlink", "stat", "lstat", "mmap"}
_CODE = re.compile(r"(\.pyc?|\.so(\.[\d.]+)?|\.pth|\.egg-link|\.zip)$|/__pycache__(/|$)|/site-packages(/|$)"
                   r"|/lib/python\d|/dist-packages(/|$)")
_PATH = re.compile(r'"([^"]*)"')
# Where the story starts: the index names the first of each.
LANDMARKS = (("the first epoll wait", lambda r: r.get("syscall") in WAITS),
             ("the first accepted connection", lambda r: r.get("syscall") in ("accept", "accept4")
              and r.get("errno") is None),
             ("the first wakeup", lambda r: r.get("category") == "wakeup"))


def _path(rec: dict) -> str:
    for f in rec.get("fds") or []:
        if f.get("detail"):
            return f["detail"]
    m = _PATH.search(rec.get("args") or "")
    return m.group(1) if m else ""


def is_import(rec: dict) -> bool:
    """A call of start-up loading: the dynamic linker's and the interpreter's search for and
    reads of code (libraries, modules, their folders, misses on the path) and of its config."""
    if rec.get("kind") != "syscall" or rec.get("syscall") not in IMPORT_CALLS:
        return False
    if rec["syscall"] in ("open", "openat"):
        return rec.get("errno") is not None or _is_file(rec) or bool(_CODE.search(_path(rec)))
    return _is_file(rec)


def _is_file(rec: dict) -> bool:
    fds = rec.get("fds") or []
    return bool(fds) and fds[0].get("role") == FILE


def _what(counts: Counter) -> str:
    parts = [f"{n} {what}" for what, n in counts.most_common()]
    return ", ".join(parts)


class StartupFold:
    """The start-up file calls as one record of kind "folded", fed a record at a time.

    The calls of other kinds made meanwhile (a clone, a socketpair, an
    epoll_create) follow the folded line, in their order. A section change,
    the first listen or epoll wait, or `keep_most` such calls end the fold;
    after the first listen or wait every record passes (`done`).
    """

    def __init__(self, least: int = FOLD_LEAST, keep_most: int = 500) -> None:
        self.least, self.keep_most = least, keep_most
        self.held: list[dict] = []  # every record since the fold began, until it is long enough
        self.others: list[dict] = []  # the non-file records since then
        self.counts: Counter = Counter()
        self.first: dict | None = None
        self.last: dict | None = None
        self.started = False

    @property
    def done(self) -> bool:
        return self.started and self.first is None

    def add(self, rec: dict) -> list[dict]:
        """The records to write now."""
        out: list[dict] = []
        if not self.started and rec.get("syscall") in STARTED:
            self.started = True
        if self.first is not None and (self.started or rec.get("request") != self.first.get("request")
                                       or len(self.others) >= self.keep_most):
            out += self.end()
        if self.started:
            out.append(rec)
            return out
        if is_import(rec):
            if self.first is None:
                self.first = rec
            self.last = rec
            failed = rec.get("errno") and rec["syscall"] in ("open", "openat")
            self.counts["failed " + rec["syscall"] if failed else rec["syscall"]] += 1
            if self.counts.total() < self.least:
                self.held.append(rec)
            else:
                self.held = []
        elif self.first is None:
            out.append(rec)
        else:
            self.others.append(rec)
            if self.counts.total() < self.least:
                self.held.append(rec)
        return out

    def end(self) -> list[dict]:
        first, last = self.first, self.last
        if first is not None and self.counts.total() >= self.least:
            out = [{"kind": "folded", "line": first["line"],
                    "last_line": last.get("resumed_line") or last["line"], "count": self.counts.total(),
                    "what": _what(self.counts), "tid": first.get("tid"), "thread": first.get("thread"),
                    "request": first.get("request")}, *self.others]
        else:
            out = self.held
        self.held, self.others, self.counts, self.first, self.last = [], [], Counter(), None, None
        return out


def folded_line(rec: dict) -> str:
    lines = f"{rec['line']}-{rec['last_line']}"
    return (f"{'':>7} {rec.get('thread') or '':<5} [{rec['count']} start-up file calls folded "
            f"(loading libraries, modules and config; misses on the search path), raw lines {lines}: "
            f"{rec['what']}. The raw log and events.jsonl keep them all; --full shows them here]")


class AnnotatedLog(Renderer):
    """annotated.log: the text, the start-up folded (unless `full`), and, for a file, an
    index up front of its sections and landmarks (with the line each starts on) and each
    thread's role and why. `roles`, asked at the end, gives {tid: {"role", "why"}}.
    `timing` (tracing.render.timing.Tally, fed each record before this is) adds where the
    time went: each loop thread's longest stalls with their lines in this file, and the
    latency table. To a stream (standard output) it writes the text only: it cannot go back."""

    def __init__(self, out: Path | IO[str], heading: str = "", headers: dict[str, str] | None = None,
                 full: bool = False, color: bool = False, roles=None, timing=None,
                 loads: dict[str, int] | None = None) -> None:
        self.text = TextLines(headers, color)
        self.path = out if isinstance(out, Path) else None
        if self.path is not None:
            self.body_path = self.path.with_name(self.path.name + ".part")
            self.body = new_file(self.body_path)
        else:
            self.body = out
        self.heading, self.roles = heading, roles
        self.lines = Lines(self.body)
        self.n = 0  # body lines so far
        self.fold = None if full else StartupFold()
        self.want = dict(LANDMARKS)  # landmarks not seen yet
        self.pending: dict[int, list[str]] = {}  # id of a landmark's record -> its names, until written
        self.sections: list[tuple[str, int]] = []
        self.marks: dict[str, int] = {}
        self.timing = timing
        self.at_raw: dict[int, int] = {}  # raw line -> body line: the lines the timing keeps, waits offered
        # A load's repeats folded (tracing.render.load_fold): the waits it may name are remembered.
        self.wanted: set[int] = set()
        self.late: list[tuple[str, int]] = []  # (landmark, raw line) named after the line went by
        self.loads = loads if loads and not full else None
        self.load_fold = LoadFold(self.loads, mark=lambda name, rec: self.late.append((name, _raw(rec))),
                                  want=lambda rec: self.wanted.add(_raw(rec))) if self.loads else None

    def add(self, rec: dict) -> None:
        if self.want and rec.get("kind") == "syscall":
            for name, test in list(self.want.items()):
                if test(rec):
                    self.pending.setdefault(id(rec), []).append(name)
                    del self.want[name]
        if self.fold is None:
            self._load(rec)
            return
        for r in self.fold.add(rec):
            self._load(r)
        if self.fold.done:
            self.fold = None

    def _load(self, rec: dict) -> None:
        if self.load_fold is None:
            self._put(rec)
            return
        for r in self.load_fold.add(rec):
            self._put(r)

    def add_copies(self, rows) -> None:
        """Copies straight to the text, but where the start-up may yet be folded, a
        request begins, or a call may be a landmark not seen yet: those as records."""
        if self.fold is not None or self.loads and any(row[6] in self.loads for row in rows):
            Renderer.add_copies(self, rows)  # through the folds: each its record
            return
        text, batch, want = self.text, self.lines.batch, self.want
        marked = self.timing.marked if self.timing is not None else None  # a stall's line: its number is kept
        i, n = 0, len(rows)
        while i < n:
            end = i
            while end < n and rows[end][6] == text.current and not (
                    want and not want.keys().isdisjoint(_landmarks(rows[end][0]))) and not (
                    marked and rows[end][1] in marked):
                end += 1
            if end > i:
                before = len(batch)
                text.add_copies(rows[i:end] if i or end < n else rows, batch)
                self.n += sum(chunk.count("\n") + 1 for chunk in batch[before:])
            if end < n:
                for rec in Copies(rows[end:end + 1]).records():
                    self.add(rec)
            i = end + 1
        self.lines.flush()  # a run of copies is one text: out with it

    def _put(self, rec: dict) -> None:
        batch = self.lines.batch
        before, section = len(batch), self.text.current
        if rec["kind"] == "folded":
            self.text.section(rec.get("request"), batch)
            batch.append(folded_line(rec))
        elif rec["kind"] == "load-folded":
            self.text.section(rec.get("request"), batch)
            batch.append(f"{'':>7} {rec.get('thread') or '':<5} {rec['text']}")
        else:
            self.text.add(rec, batch)
        added = "\n".join(batch[before:]).split("\n") if len(batch) > before else []
        if self.text.current != section:
            for i, line in enumerate(added):
                if line.startswith("==== "):
                    self.sections.append((_label(line, self.text.headers), self.n + i + 1))
        if self.pending:
            names = self.pending.pop(id(rec), None)
            if names:
                prefix = f"{rec.get('resumed_line') or rec['line']:>7} "
                at = next(i for i, line in enumerate(added) if line.startswith(prefix))
                for name in names:
                    self.marks[name] = self.n + at + 1
        if (self.timing is not None or self.wanted) and rec["kind"] not in ("folded", "load-folded"):
            raw = rec.get("resumed_line") or rec["line"]
            if raw in self.wanted or self.timing is not None and raw in self.timing.marked:
                prefix = f"{raw:>7} "
                at = next((i for i, line in enumerate(added) if line.startswith(prefix)), None)
                if at is not None:
                    self.at_raw.setdefault(raw, self.n + at + 1)
        self.n += len(added)
        if len(batch) >= BATCH:
            self.lines.flush()

    def abort(self) -> None:
        self.lines.flush()
        if self.path is not None:
            self.body.close()
            self.body_path.unlink(missing_ok=True)

    def close(self) -> list[tuple[str, int]]:
        """Ends the text; for a file, writes it with its index, and returns the index:
        (section or landmark, line in the file)."""
        try:
            if self.fold is not None:
                for r in self.fold.end():
                    self._load(r)
            if self.load_fold is not None:
                for r in self.load_fold.end():
                    self._put(r)
            self.lines.flush()
            if self.path is None:
                return []
            self.body.close()
            return self._with_index()
        finally:
            if self.path is not None:
                self.body.close()
                self.body_path.unlink(missing_ok=True)

    def _with_index(self) -> list[tuple[str, int]]:
        for name, raw in self.late:
            if raw in self.at_raw:
                self.marks[name] = self.at_raw[raw]
        entries = self.sections + sorted(self.marks.items(), key=lambda kv: kv[1])
        threads = _threads(self.roles() if self.roles else {})
        # The index: a title, its entries, the threads, where the time went, a blank line.
        timed = _time_lines(self.timing, self.at_raw, 0)
        offset = self.heading.count("\n") + len(entries) + len(threads) + len(timed) + 2
        timed = _time_lines(self.timing, self.at_raw, offset)
        entries = [(name, at + offset) for name, at in entries]
        with new_file(self.path) as out:
            out.write(self.heading)
            out.write("# Index (line numbers in this file):\n")
            width = max(len(name) for name, _ in entries) if entries else 0
            for name, at in entries:
                out.write(f"#   {name:<{width}}  line {at}\n")
            out.writelines(threads)
            out.writelines(timed)
            out.write("\n")
            out.flush()
            with open(self.body_path, "rb") as body:
                _append(body, out.fileno())
        return entries


def _append(src: IO[bytes], dst: int) -> None:
    """The rest of `src` after what `dst` holds, as bytes: the body was written as text already
    (decoding and encoding it again cost a tenth of a big log's annotating)."""
    try:
        while os.copy_file_range(src.fileno(), dst, 1 << 30):
            pass
    except OSError:  # a file system or kernel without it: by hand, from where it stopped
        with open(dst, "ab", closefd=False) as out:
            shutil.copyfileobj(src, out, 1 << 20)


def _raw(rec: dict) -> int:
    return rec.get("resumed_line") or rec["line"]


def _landmarks(call) -> tuple[str, ...]:
    """The landmarks a call's records are (the same for every line of it)."""
    got = call.forms.get("landmarks")
    if got is None:
        got = call.forms["landmarks"] = tuple(name for name, test in LANDMARKS if test(call.rec))
    return got


def _time_lines(timing, at_raw: dict[int, int], offset: int) -> list[str]:
    """Where the time went: each loop thread's longest stalls (their lines in this file, raw.strace's
    in the text), and the latency table's busiest rows."""
    if timing is None:
        return []
    out = []
    stalls = timing.stalls()
    if stalls:
        out.append("# Where the time went: each loop thread's longest stalls (outside any wait; line numbers "
                   "in the text are raw.strace's)\n")
        for tid, rows in stalls.items():
            out.append(f"#   loop {tid}:\n")
            for row in rows:
                raw = row["resumed_line"] or row["line"]
                here = at_raw.get(raw)
                where = f" (this file: line {here + offset})" if here is not None else " (folded here; --full shows it)"
                out.append(f"#     {stall_text(row, where)}\n")
        if any(row.get("held_by") is None for rows in stalls.values() for row in rows):
            out.append(f"#   {unnamed_reason(stalls, len(timing.reports))}\n")
    rows = timing.latency()
    if rows:
        out.append("# Latency per syscall and thread role (-T; p50 and p99 within 2%):\n")
        out += [f"#   {line}\n" for line in latency_lines(rows, 15)]
    return out


def _threads(roles: dict) -> list[str]:
    """Each thread's role and why (line numbers are raw.strace's), loops first."""
    if not roles:
        return []
    order = {"loop": 0, "pool": 1}
    rows = sorted(roles.items(), key=lambda kv: (order.get(kv[1]["role"], 2), str(kv[0])))
    return ["# Threads (roles from the whole log; lines are raw.strace's):\n"] + [
        f"#   {r['role']:<5} {tid}: {r['why']}\n" for tid, r in rows]


def _label(header: str, headers: dict[str, str]) -> str:
    inner = header[5:-5] if header.endswith(" ====") else header[5:]
    for label in headers:
        if inner == label or inner.startswith(label + ":"):
            return label
    return inner.split(": ", 1)[0] if not inner.startswith("request ") else ": ".join(inner.split(": ")[:2])


def first_request(index: list[tuple[str, int]]) -> tuple[str, int] | None:
    """Where to look first: the first request, else the busy cycle of a load."""
    return next(((name, at) for name, at in index if name.startswith("request ")), None) or next(
        ((name, at) for name, at in index if name.startswith("a wait-serve cycle under load")), None)
