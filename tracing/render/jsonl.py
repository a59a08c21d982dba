"""Records as JSON Lines (events.jsonl, `annotate --format jsonl`): one object per
record, fields in JSONL_FIELDS order, then `text` (a record that is not a call),
`source` (a line of merged -ff files) and `stack` (strace -k) where they apply.

Written by hand, not with json.dumps: a big log is a million records, and
json.dumps per record cost more than annotating it. Numbers here (line
numbers, tids, times, durations) are finite, so repr is their JSON.
"""

from __future__ import annotations

import json
from typing import IO

from . import fill as F
from .fill import DURATION, LINE, NUMBER, QUOTED, REQUEST, TS, slot
from .renderer import BATCH, Lines, Renderer

JSONL_FIELDS = ("line", "resumed_line", "tid", "kind", "syscall", "args", "ret", "errno",
                "duration", "ts", "thread", "fds", "ready", "category", "note", "evidence", "request")

_str = json.encoder.encode_basestring  # the C encoder; keeps non-ASCII as is
_json = json.JSONEncoder(ensure_ascii=False).encode


def _text(value: str | None) -> str:
    return "null" if value is None else _str(value)


def _number(value) -> str:
    return "null" if value is None else repr(value)


def _call_part(rec: dict) -> str:
    """From resumed_line to errno: what the call was."""
    return (f'"resumed_line": {_number(rec.get("resumed_line"))}, "tid": {_number(rec.get("tid"))}, '
            f'"kind": {_text(rec.get("kind"))}, "syscall": {_text(rec.get("syscall"))}, '
            f'"args": {_text(rec.get("args"))}, "ret": {_text(rec.get("ret"))}, "errno": {_text(rec.get("errno"))}')


_READY = ("fd", "role", "detail", "events")  # a ready fd the fd table knows: most of a wait's


_READY_TEXT: dict[tuple, str] = {}  # a ready fd's JSON: a server's waits return the same few again and again
_READY_MOST = 4096


_BY_ITEM: dict[int, tuple[dict, str]] = {}  # id of a ready item records share -> (the item, its JSON)


def _flat(d: dict) -> str:
    """json's text of a dict of strings, ints and None (a ready fd, an fd, a cited line),
    written directly: a wait returning 16 fds is 16 of these."""
    got = _BY_ITEM.get(id(d))
    if got is not None and got[0] is d:  # the entry holds the item: its id is not another's
        return got[1]
    if tuple(d) == _READY:
        key = tuple(d.values())
        fd, role, detail, events = key
        if (fd.__class__ is int and role.__class__ is str and events.__class__ is str
                and (detail is None or detail.__class__ is str)):
            text = _READY_TEXT.get(key)
            if text is None:
                if len(_READY_TEXT) >= _READY_MOST:
                    _READY_TEXT.clear()
                text = _READY_TEXT[key] = (
                    f'{{"fd": {fd!r}, "role": {_str(role)}, "detail": {"null" if detail is None else _str(detail)}, '
                    f'"events": {_str(events)}}}')
            if len(_BY_ITEM) >= _READY_MOST:
                _BY_ITEM.clear()
            _BY_ITEM[id(d)] = (d, text)
            return text
    parts = []
    for k, v in d.items():
        if v is None:
            parts.append(f"{_str(k)}: null")
        elif v.__class__ is str:
            parts.append(f"{_str(k)}: {_str(v)}")
        elif v.__class__ is int:
            parts.append(f"{_str(k)}: {v!r}")
        else:
            return _json(d)
    return "{" + ", ".join(parts) + "}"


def _list(items) -> str:
    return "[" + ", ".join(map(_flat, items)) + "]" if items else "[]"


def _verdict_part(rec: dict) -> str:
    """From thread to evidence: what the annotator made of it."""
    fds = ", ".join(f'{{"fd": {_number(f["fd"])}, "role": {_text(f["role"])}, "detail": {_text(f["detail"])}}}'
                    for f in rec.get("fds") or ())
    return (f'"thread": {_text(rec.get("thread"))}, "fds": [{fds}], "ready": {_list(rec.get("ready"))}, '
            f'"category": {_text(rec.get("category"))}, "note": {_text(rec.get("note"))}, '
            f'"evidence": {_list(rec.get("evidence"))}')


def _tail(rec: dict) -> str:
    """request, and what only some records have; the closing brace."""
    out = f'"request": {_text(rec.get("request"))}'
    if rec.get("kind") != "syscall":
        out += f', "text": {_text(rec.get("text"))}'
    source = rec.get("source")
    if source is not None:
        out += f', "source": {_str(source)}'
    stack = rec.get("stack")
    if stack:
        out += f', "stack": {_json(stack)}'
    return out + "}"


def jsonl_line(rec: dict) -> str:
    """One record as a JSON object (a field the record lacks is null)."""
    return (f'{{"line": {_number(rec.get("line"))}, {_call_part(rec)}, "duration": {_number(rec.get("duration"))}, '
            f'"ts": {_number(rec.get("ts"))}, {_verdict_part(rec)}, {_tail(rec)}')


class Jsonl(Renderer):
    """Every record but a call's started half, one JSON object a line."""

    def __init__(self, out: IO[str]) -> None:
        self.lines = Lines(out)

    def add(self, rec: dict) -> None:
        call = rec.get("call")
        if call is None:
            if rec["kind"] == "started":
                return
            line = jsonl_line(rec)
        else:
            line = _one((call, rec["line"], rec["ts"], rec["duration"], rec["text"], rec["source"],
                         rec["request"], call.forms))
        batch = self.lines.batch
        batch.append(line)
        if len(batch) >= BATCH:
            self.lines.flush()

    def add_copies(self, rows) -> None:
        batch = self.lines.batch
        if rows[0][5] is not None:  # lines of merged -ff files: each names its file
            batch += map(_one, rows)
        else:
            i = 0
            while i < len(rows):
                text, i = F.fill(rows, i, "jsonl", _str)
                if text:
                    batch.append(text)
                if i < len(rows):
                    _form(rows[i][0])
        self.lines.flush()  # a run of copies is one text: out with it

    def close(self) -> None:
        self.flush()

    def flush(self) -> None:
        if not self.lines.out.closed:  # a run that failed half-way may have closed it first
            self.lines.flush()


def _form(call) -> tuple:
    """A call's JSON with slots for the line's own fields (see tracing.render.fill)."""
    rec = call.rec
    form = call.forms["jsonl"] = (
        '{"line": ', slot(LINE, NUMBER), f", {_call_part(rec)}, \"duration\": ", slot(DURATION, NUMBER),
        ', "ts": ', slot(TS, NUMBER), f", {_verdict_part(rec)}, \"request\": ", slot(REQUEST, QUOTED), "}")
    return form


def _one(row: tuple) -> str:
    if "jsonl" not in row[7]:
        _form(row[0])
    text, _ = F.fill([row], 0, "jsonl", _str)
    if row[5] is not None:  # a line of merged -ff files
        text = f'{text[:-1]}, "source": {_str(row[5])}}}'
    return text
