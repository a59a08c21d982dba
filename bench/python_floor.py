"""The floor under any CPython annotator that writes the lab's records: a reference for
`make bench-annotate`, not a tool.

For a log of `PID TIME call` lines (strace -f -ttt -o, as the bench's is), it
does per line only what the annotator does for a call it has seen before,
with the lab's own pieces: split off the pid, time and duration, look the
call's text up (parsed by tracing.read.parse the first time), make its Event,
look its verdict up, build the record (tracing.understand.records), count it (Summary)
and write its JSON line (tracing.render.jsonl). No first pass, no fd table, no
role, no stall check, no note: every verdict is a placeholder. Its speed is
what no amount of work on the annotator's own logic can beat without a
compiled core or records that are not a dict per line.

Usage: python bench/python_floor.py LOG  (JSON Lines to stdout)
"""

from __future__ import annotations

import sys

import helpers  # puts the checkout on sys.path
from tracing.understand import records
from tracing.read.parse import Event, parse_line
from tracing.render.jsonl import jsonl_line

BATCH = 512


def main(path: str) -> int:
    calls: dict[str, tuple] = {}
    verdicts: dict[tuple, tuple] = {}
    last: dict = {}
    summary = records.Summary()
    out, batch = sys.stdout, []
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for lineno, raw in enumerate(f, 1):
            text = raw.rstrip("\n")
            pid, ts, body = text.split(None, 2)
            body, sep, dur = body.rpartition(" <")
            fields = calls.get(body)
            if fields is None:
                ev = parse_line(lineno, text)
                fields = calls[body] = (ev.syscall, ev.args, ev.ret, ev.ret_detail, ev.errno)
            ev = Event(lineno, text, "syscall", int(pid), float(ts), *fields,
                       float(dur[:-1]) if sep else None)
            key = (ev.tid, ev.syscall, ev.args, ev.ret, ev.errno, ev.ret_detail, ev.problem)
            verdict = verdicts.get(key)
            if verdict is None:
                verdict = verdicts[key] = ("other", [], [], "other", f"{ev.syscall}: a placeholder note")
            last[ev.tid] = ev
            rec = records.record(ev, None, *verdict)
            summary.add(rec)
            batch.append(jsonl_line(rec))
            if len(batch) >= BATCH:
                out.write("\n".join(batch) + "\n")
                batch.clear()
    out.write("\n".join(batch) + "\n" if batch else "")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
