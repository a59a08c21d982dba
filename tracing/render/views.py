"""Annotated records to what people and programs read.

`write_text` keeps every raw line, in log order, each followed by its note,
with a header before each scenario request. `write_jsonl` writes one JSON
object per record. Both consume the record stream once.
"""

from __future__ import annotations

import json
import operator
import os
import sys
from typing import IO, Iterable, Iterator

from tracing import log as progress

COLORS = {"pollable": "32", "thread-pooled": "36", "blocking": "31;1", "wakeup": "35;1"}
JSONL_FIELDS = ("line", "resumed_line", "tid", "kind", "syscall", "args", "ret", "errno",
                "duration", "ts", "thread", "fds", "ready", "category", "note", "evidence", "request")


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
    opened: set = set()
    for rec in records:
        req = rec.get("request")
        if req and req in opened and req != current:
            # A call is labelled by the window its start falls in: one that began in an earlier
            # window and is printed here (its `resumed>` line) stays in the section it is printed in.
            req = current
        if req and req != current:
            opened.add(req)
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
        for n, frame in rec.get("stack") or ():  # strace -k: where the call was made
            yield f"{n:>7} {role} {frame}"


_str = json.encoder.encode_basestring  # the C encoder; keeps non-ASCII as is
_ready = json.JSONEncoder(ensure_ascii=False).encode


def _fds(fds: list[dict]) -> str:
    out = []
    for f in fds:
        num, role, detail = f["fd"], f["role"], f["detail"]
        key = (num, role, detail)
        text = _FD_JSON.get(key)
        if text is None:
            if len(_FD_JSON) >= _KEEP:
                _FD_JSON.clear()
            text = _FD_JSON[key] = (f'{{"fd": {"null" if num is None else repr(num)}, "role": {_str(role)}, '
                                    f'"detail": {"null" if detail is None else _str(detail)}}}')
        out.append(text)
    return "[" + ", ".join(out) + "]"


def _readies(ready: list[dict]) -> str:
    out = []
    for item in ready:
        key = tuple(item.items())
        text = _READY_JSON.get(key)
        if text is None:
            if len(_READY_JSON) >= _KEEP:
                _READY_JSON.clear()
            text = _READY_JSON[key] = _ready(item)
        out.append(text)
    return "[" + ", ".join(out) + "]"


def _number(value: float) -> str:
    """repr of a duration: few distinct values, and repr of a float is slow."""
    if value.__class__ is not float:
        return repr(value)  # 1 and 1.0 are one key, and must not share a text
    text = _NUMBERS.get(value)
    if text is None:
        if len(_NUMBERS) >= _KEEP:
            _NUMBERS.clear()
        text = _NUMBERS[value] = repr(value)
    return text


# The same fds, ready events and durations come back line after line; the
# caches are bounded, so memory does not grow with the log.
_KEEP = 4096
_FD_JSON: dict[tuple, str] = {}
_READY_JSON: dict[tuple, str] = {}
_NUMBERS: dict[float, str] = {}
# A server repeats its calls, and the annotator hands a repeated call the very
# same verdict (see tracing.understand.changes): the JSON of a call's text and of its
# verdict is kept, keyed on its values (strings or None). The fds and ready
# lists are keyed on identity; the entry holds them, so an id is not reused
# while it is kept, and records are read-only (records.record).
_CALL_JSON: dict[tuple, str] = {}
_VERDICT_JSON: dict[tuple, tuple[list, list, str]] = {}


_FIELDS = operator.itemgetter(*JSONL_FIELDS)  # all of a record's fields in one C call
_NULLS = dict.fromkeys(JSONL_FIELDS)


def _json_str(value: str | None) -> str:
    return "null" if value is None else _str(value)


def _call_json(kind, syscall, args, ret, errno) -> str:
    key = (kind, syscall, args, ret, errno)
    text = _CALL_JSON.get(key)
    if text is None:
        text = (f'"kind": {_json_str(kind)}, "syscall": {_json_str(syscall)}, "args": {_json_str(args)}, '
                f'"ret": {_json_str(ret)}, "errno": {_json_str(errno)}')
        if len(args or "") <= _LONG:
            if len(_CALL_JSON) >= _KEEP:
                _CALL_JSON.clear()
            _CALL_JSON[key] = text
    return text


def _verdict_json(thread, fds, ready, cat, note, evidence) -> str:
    key = (thread, id(fds), id(ready), cat, note)
    got = _VERDICT_JSON.get(key)
    if got is not None and got[0] is fds and got[1] is ready and not evidence:
        return got[2]
    text = (f'"thread": {_json_str(thread)}, "fds": {_fds(fds) if fds else "[]"}, '
            f'"ready": {_readies(ready) if ready else "[]"}, "category": {_json_str(cat)}, '
            f'"note": {_json_str(note)}, "evidence": {_ready(evidence) if evidence else "[]"}')
    if not ready and not evidence:  # a verdict with ready fds or evidence is seldom reused: not worth keeping
        if len(_VERDICT_JSON) >= _KEEP:
            _VERDICT_JSON.clear()
        _VERDICT_JSON[key] = (fds, ready, text)
    return text


_LONG = 2048  # a call's text longer than this is not kept: one big buffer, seldom repeated


def jsonl_line(rec: dict) -> str:
    """One record as a JSON object, fields in JSONL_FIELDS order.

    Written by hand: json.dumps, or a helper call per field, cost more than
    annotating the line, and big logs are written this way, a million lines
    at a time. Numbers here (line numbers, tids, times, durations) are
    finite, so repr is their JSON.
    """
    try:
        (line, resumed, tid, kind, syscall, args, ret, errno, dur, ts, thread, fds, ready, cat, note,
         evidence, request) = _FIELDS(rec)
    except KeyError:  # a record made elsewhere, without every field: the missing ones are null
        (line, resumed, tid, kind, syscall, args, ret, errno, dur, ts, thread, fds, ready, cat, note,
         evidence, request) = _FIELDS({**_NULLS, **rec})
    out = (f'{{"line": {"null" if line is None else repr(line)}, '
           f'"resumed_line": {"null" if resumed is None else repr(resumed)}, '
           f'"tid": {"null" if tid is None else repr(tid)}, '
           f'{_call_json(kind, syscall, args, ret, errno)}, '
           f'"duration": {"null" if dur is None else _number(dur)}, '
           f'"ts": {"null" if ts is None else repr(ts)}, '
           f'{_verdict_json(thread, fds, ready, cat, note, evidence)}, '
           f'"request": {"null" if request is None else _str(request)}')
    if kind != "syscall":
        text = rec.get("text")
        out += f', "text": {"null" if text is None else _str(text)}'
    source = rec.get("source")
    if source is not None:
        out += f', "source": {_str(source)}'
    stack = rec.get("stack")
    if stack:
        out += f', "stack": {_ready(stack)}'
    return out + "}"


def jsonl_tee(records: Iterable[dict], jsonl_out: IO) -> Iterator[dict]:
    """Pass records on, writing each (but a started half) as a JSON line on the way.

    Lines go out BATCH at a time (one write call per line cost as much as
    annotating it), the rest when the records end or the tee is closed.
    """
    batch: list[str] = []
    try:
        for rec in records:
            if rec["kind"] != "started":
                batch.append(jsonl_line(rec))
                if len(batch) >= BATCH:
                    _write(jsonl_out, batch)
            yield rec
    finally:
        if not jsonl_out.closed:  # a run that failed half-way may have closed it first
            _write(jsonl_out, batch)


BATCH = 512


def _write(out: IO, lines: list[str]) -> None:
    if lines:
        out.write("\n".join(lines) + "\n")
        lines.clear()


def write_outputs(records: Iterable[dict], text_out: IO | None, jsonl_out: IO | None,
                  headers: dict[str, str] | None = None, color: bool = False) -> None:
    """Stream records to the text view and/or JSON Lines at once."""
    stream = jsonl_tee(records, jsonl_out) if jsonl_out is not None else iter(records)
    text: list[str] = []
    try:
        if text_out is not None:
            for line in text_lines(stream, headers or {}, color):
                text.append(line)
                if len(text) >= BATCH:
                    _write(text_out, text)
        else:
            for _ in stream:
                pass
    finally:
        if jsonl_out is not None:
            stream.close()
        if text_out is not None:
            _write(text_out, text)


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
    progress.wipe()
    print(*a, file=sys.stderr, flush=True)
