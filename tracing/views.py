"""Annotated records to what people and programs read.

`write_text` keeps every raw line, in log order, each followed by its note,
with a header before each scenario request. `write_jsonl` writes one JSON
object per record. Both consume the record stream once.
"""

from __future__ import annotations

import json
import os
import sys
from typing import IO, Iterable, Iterator

COLORS = {"pollable": "32", "thread-pooled": "36", "blocking": "31;1", "wakeup": "35;1"}
JSONL_FIELDS = ("line", "resumed_line", "tid", "kind", "syscall", "args", "ret", "errno",
                "duration", "ts", "thread", "fds", "ready", "category", "note", "request")


def use_color(stream: IO, choice: str = "auto") -> bool:
    """--color always|never|auto; auto: a terminal, unless NO_COLOR is set to something
    (https://no-color.org: an empty NO_COLOR does not count)."""
    if choice in ("always", "never"):
        return choice == "always"
    return not os.environ.get("NO_COLOR") and hasattr(stream, "isatty") and stream.isatty()


def text_lines(records: Iterable[dict], headers: dict[str, str] | None = None,
               color: bool = False) -> Iterator[str]:
    """The annotated log, one string per output line."""
    headers = headers or {}
    current = None
    for rec in records:
        req = rec.get("request")
        if req and req != current:
            yield ""
            yield f"==== {req}: {headers.get(req, '')} ====".replace(":  ====", " ====")
        elif req is None and current is not None:
            yield f"---- (after {current}) ----"
        current = req
        role = f"{rec.get('thread', ''):<5}"
        if rec["kind"] == "started":
            yield f"{rec['line']:>7} {role} {rec['text']}"
            continue
        raw = rec.get("resumed_text") if rec.get("resumed_line") else rec.get("text")
        lineno = rec["resumed_line"] or rec["line"]
        yield f"{lineno:>7} {role} {raw}"
        cat = rec.get("category", "")
        tag = f"[{cat}]"
        if color and cat in COLORS:
            tag = f"\x1b[{COLORS[cat]}m{tag}\x1b[0m"
        if rec.get("note"):
            yield f"{'':>7} {'':5}   -> {tag} {rec['note']}"


_str = json.encoder.encode_basestring  # the C encoder; keeps non-ASCII as is


def _s(value: str | None) -> str:
    return "null" if value is None else _str(value)


def _n(value: int | float | None) -> str:
    # Numbers here are line numbers, tids, timestamps and durations: finite.
    return "null" if value is None else repr(value)


def _fds(fds: list[dict]) -> str:
    if not fds:
        return "[]"
    return "[" + ", ".join(f'{{"fd": {_n(f["fd"])}, "role": {_str(f["role"])}, "detail": {_s(f["detail"])}}}'
                           for f in fds) + "]"


def jsonl_line(rec: dict) -> str:
    """One record as a JSON object, fields in JSONL_FIELDS order.

    Written by hand: json.dumps cost more than annotating the line, and big
    logs are written this way, one line at a time.
    """
    g = rec.get
    ready = g("ready")
    out = (f'{{"line": {_n(g("line"))}, "resumed_line": {_n(g("resumed_line"))}, '
           f'"tid": {_n(g("tid"))}, "kind": {_s(g("kind"))}, "syscall": {_s(g("syscall"))}, '
           f'"args": {_s(g("args"))}, "ret": {_s(g("ret"))}, "errno": {_s(g("errno"))}, '
           f'"duration": {_n(g("duration"))}, "ts": {_n(g("ts"))}, "thread": {_s(g("thread"))}, '
           f'"fds": {_fds(g("fds"))}, '
           f'"ready": {json.dumps(ready, ensure_ascii=False) if ready else "[]"}, '
           f'"category": {_s(g("category"))}, "note": {_s(g("note"))}, "request": {_s(g("request"))}')
    if rec["kind"] != "syscall":
        out += f', "text": {_s(g("text"))}'
    if g("source") is not None:
        out += f', "source": {_s(g("source"))}'
    return out + "}"


def jsonl_tee(records: Iterable[dict], jsonl_out: IO) -> Iterator[dict]:
    """Pass records on, writing each (but a started half) as a JSON line on the way."""
    for rec in records:
        if rec["kind"] != "started":
            jsonl_out.write(jsonl_line(rec) + "\n")
        yield rec


def write_outputs(records: Iterable[dict], text_out: IO | None, jsonl_out: IO | None,
                  headers: dict[str, str] | None = None, color: bool = False) -> None:
    """Stream records to the text view and/or JSON Lines at once."""
    headers = headers or {}

    def tee() -> Iterator[dict]:
        for rec in records:
            if jsonl_out is not None and rec["kind"] != "started":
                jsonl_out.write(jsonl_line(rec) + "\n")
            yield rec

    if text_out is not None:
        for line in text_lines(tee(), headers, color):
            text_out.write(line + "\n")
    else:
        for _ in tee():
            pass


def threads_by_role(threads: dict[str, str]) -> str:
    """{"12": "loop", "13": "pool"} -> "loop 12; pool 13"."""
    roles: dict[str, list[str]] = {}
    for tid, role in threads.items():
        roles.setdefault(role, []).append(tid)
    return "; ".join(f"{r} {' '.join(ts)}" for r, ts in sorted(roles.items()))


def summary_text(summary: dict) -> str:
    cats = ", ".join(f"{k} {v}" for k, v in sorted(summary["categories"].items()))
    threads = threads_by_role(summary["threads"])
    top = ", ".join(f"{k} {v}" for k, v in list(summary["syscalls"].items())[:8])
    lines = [
        f"lines traced: {summary['lines']} ({summary['records']} records, "
        f"{summary['unparsed']} not understood)",
        f"threads: {len(summary['threads'])} ({threads})",
        f"categories: {cats}",
        f"busiest syscalls: {top}",
    ]
    return "\n".join(lines)


def eprint(*a) -> None:
    print(*a, file=sys.stderr, flush=True)
