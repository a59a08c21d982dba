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

import re
import shutil
from collections import Counter
from pathlib import Path
from typing import IO, Iterable, Iterator

from tracing.names import FILE, WAITS
from tracing.render.views import text_lines

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


def fold_startup(records: Iterable[dict], least: int = FOLD_LEAST, keep_most: int = 500
                 ) -> Iterator[dict]:
    """Records, with the start-up file calls as one record of kind "folded".

    The calls of other kinds made meanwhile (a clone, a socketpair, an
    epoll_create) follow the folded line, in their order. A section change,
    the first listen or epoll wait, or `keep_most` such calls end the fold.
    """
    held: list[dict] = []  # every record since the fold began, until it is long enough
    others: list[dict] = []  # the non-file records since then
    counts: Counter = Counter()
    first = last = None
    started = False

    def flush() -> Iterator[dict]:
        nonlocal held, others, counts, first, last
        if first is not None and counts.total() >= least:
            yield {"kind": "folded", "line": first["line"],
                   "last_line": last.get("resumed_line") or last["line"], "count": counts.total(),
                   "what": _what(counts), "tid": first.get("tid"), "thread": first.get("thread"),
                   "request": first.get("request")}
            yield from others
        else:
            yield from held
        held, others, counts, first, last = [], [], Counter(), None, None

    for rec in records:
        if not started and rec.get("syscall") in STARTED:
            started = True
        if first is not None and (started or rec.get("request") != first.get("request")
                                  or len(others) >= keep_most):
            yield from flush()
        if started:
            yield rec
            continue
        if is_import(rec):
            if first is None:
                first = rec
            last = rec
            failed = rec.get("errno") and rec["syscall"] in ("open", "openat")
            counts["failed " + rec["syscall"] if failed else rec["syscall"]] += 1
            if counts.total() < least:
                held.append(rec)
            else:
                held = []
        elif first is None:
            yield rec
        else:
            others.append(rec)
            if counts.total() < least:
                held.append(rec)
    yield from flush()


def folded_line(rec: dict) -> str:
    lines = f"{rec['line']}-{rec['last_line']}"
    return (f"{'':>7} {rec.get('thread') or '':<5} [{rec['count']} start-up file calls folded "
            f"(loading libraries, modules and config; misses on the search path), raw lines {lines}: "
            f"{rec['what']}. The raw log and events.jsonl keep them all; --full shows them here]")


def write(records: Iterable[dict], path: Path, heading: str, headers: dict[str, str] | None = None,
          full: bool = False, color: bool = False, roles=None) -> list[tuple[str, int]]:
    """annotated.log with its index; returns the index: (section or landmark, line in the file).
    `roles`, asked once the records are read, gives {tid: {"role", "why"}}: each thread's
    role and why, listed after the index."""
    body_path = path.with_name(path.name + ".part")
    sections: list[tuple[str, int]] = []
    marks: dict[str, int] = {}
    pending_mark: list[tuple[str, str]] = []  # (landmark, the prefix its record's line starts with)
    want = dict(LANDMARKS)

    def watched(recs: Iterable[dict]) -> Iterator[dict]:
        for rec in recs:
            for name, test in list(want.items()):
                if rec.get("kind") == "syscall" and test(rec):
                    pending_mark.append((name, f"{rec.get('resumed_line') or rec['line']:>7} "))
                    del want[name]
            yield rec

    stream = watched(records)
    if not full:
        stream = fold_startup(stream)
    try:
        return _write(stream, path, body_path, heading, headers, color, sections, marks, pending_mark, roles)
    finally:
        if body_path.exists():
            body_path.unlink()


def _write(stream, path, body_path, heading, headers, color, sections, marks, pending_mark, roles=None):
    n = 0
    with open(body_path, "w") as body:
        for line in _with_folds(stream, headers, color):
            n += 1
            if line.startswith("==== "):
                sections.append((_label(line, headers or {}), n))
            if pending_mark and line.startswith(pending_mark[0][1]):
                marks[pending_mark.pop(0)[0]] = n
            body.write(line + "\n")
    entries = sections + sorted(marks.items(), key=lambda kv: kv[1])
    threads = _threads(roles() if roles else {})
    # The index: a title, its entries, the threads, a blank line.
    offset = heading.count("\n") + len(entries) + len(threads) + 2
    entries = [(name, at + offset) for name, at in entries]
    with open(path, "w") as out, open(body_path) as body:
        out.write(heading)
        out.write("# Index (line numbers in this file):\n")
        width = max(len(name) for name, _ in entries) if entries else 0
        for name, at in entries:
            out.write(f"#   {name:<{width}}  line {at}\n")
        out.writelines(threads)
        out.write("\n")
        shutil.copyfileobj(body, out)
    return entries


def _threads(roles: dict) -> list[str]:
    """Each thread's role and why (line numbers are raw.strace's), loops first."""
    if not roles:
        return []
    order = {"loop": 0, "pool": 1}
    rows = sorted(roles.items(), key=lambda kv: (order.get(kv[1]["role"], 2), str(kv[0])))
    return ["# Threads (roles from the whole log; lines are raw.strace's):\n"] + [
        f"#   {r['role']:<5} {tid}: {r['why']}\n" for tid, r in rows]


def _with_folds(records: Iterable[dict], headers: dict[str, str] | None, color: bool) -> Iterator[str]:
    """text_lines, with a folded run said in one line where it was."""
    pending: list[dict] = []

    def plain() -> Iterator[dict]:
        for rec in records:
            if rec["kind"] == "folded":
                pending.append(rec)
                # A stand-in the text view passes through: it opens the section if need be.
                yield {"kind": "started", "line": rec["line"], "text": "\0fold", "tid": rec["tid"],
                       "thread": rec["thread"], "request": rec["request"]}
            else:
                yield rec

    for line in text_lines(plain(), headers, color):
        if line.endswith("\0fold"):
            yield folded_line(pending.pop(0))
        else:
            yield line


def _label(header: str, headers: dict[str, str]) -> str:
    inner = header[5:-5] if header.endswith(" ====") else header[5:]
    for label in headers:
        if inner == label or inner.startswith(label + ":"):
            return label
    return inner.split(": ", 1)[0] if not inner.startswith("request ") else ": ".join(inner.split(": ")[:2])


def first_request(index: list[tuple[str, int]]) -> tuple[str, int] | None:
    return next(((name, at) for name, at in index if name.startswith("request ")), None)


def write_stream(records: Iterable[dict], out: IO[str], headers: dict[str, str] | None = None,
                 full: bool = False, color: bool = False) -> None:
    """The annotated text to a stream (standard output): folded, no index (it cannot go back)."""
    stream = records if full else fold_startup(records)
    for line in _with_folds(stream, headers, color):
        out.write(line + "\n")
