"""Where the time went: a latency table per syscall and thread role, and each loop
thread's longest stalls, read off the annotated records as they stream past.

- Latency: count, total, p50, p99 and max of the -T durations of each (syscall,
  role), copied lines included (a copy carries its own duration). The percentiles come from buckets 2% wide (a stream's memory stays
  bounded), so they are within 2% of the exact value; count, total and max are
  exact.
- Stalls: on a loop thread, the time it spends neither waiting nor in a quick
  call: a gap between calls outside any wait (the call after it carries the
  annotator's "made no traced call for N ms" note) or a call of its own that took
  long (a file read, a sleep). The longest few per loop thread are kept, each with
  its line, and, where the record names one (asyncio's debug report, the
  `held-loop` claim), what held the loop; where none does, the list says so.
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict
from ..names import LOOP, POLL_WAITS, WAITS
from .renderer import Renderer

BUCKET = math.log(1.02)
TOP = 5  # stalls kept per loop thread
LEAST = 0.001  # a stall shorter than this is not listed: a loop's ordinary work between waits
_WAITING = WAITS | POLL_WAITS | {"io_uring_enter"}
_OWN = object()  # Tally._stalls: the record given is the line's own
_BUCKETS: dict[float, int] = {}  # -T prints microseconds: a log's durations repeat


def bucket(d: float) -> int:
    got = _BUCKETS.get(d)
    if got is None:
        if len(_BUCKETS) >= 1 << 16:
            _BUCKETS.clear()
        got = _BUCKETS[d] = math.floor(math.log(d * 1e6) / BUCKET)
    return got


class Latency:
    """Durations of one (syscall, role): exact count, total and max; percentiles from buckets."""

    __slots__ = ("count", "total", "max", "buckets", "zeros")

    def __init__(self) -> None:
        self.count, self.total, self.max, self.zeros = 0, 0.0, 0.0, 0
        self.buckets: dict[int, int] = defaultdict(int)

    def add(self, d: float) -> None:
        self.count += 1
        self.total += d
        if d > self.max:
            self.max = d
        if d <= 0:
            self.zeros += 1
        else:
            self.buckets[bucket(d)] += 1

    def quantile(self, q: float) -> float:
        want = max(1, math.ceil(q * self.count))
        if want <= self.zeros:
            return 0.0
        seen = self.zeros
        for key in sorted(self.buckets):
            seen += self.buckets[key]
            if seen >= want:
                return min(self.max, math.exp((key + 1) * BUCKET) / 1e6)
        return self.max


class Tally(Renderer):
    """A renderer of the numbers: fed every record (and run of copies) before annotated.log is,
    so the lines it keeps are known when they are written; then `latency()`, `stalls()`."""

    def __init__(self) -> None:
        self.latencies: dict[tuple[str, str], Latency] = defaultdict(Latency)
        self.top: dict = defaultdict(list)  # tid -> heap of (seconds, line, entry)
        self.last_end: dict = {}  # tid -> (end time of its last call, its line), where -T shows it
        self.reports: dict[int, str] = {}  # line of an asyncio report -> its note's words
        self.marked: set[int] = set()  # lines that entered a top list: annotated.log maps them
        self.waited: set = set()  # threads seen waiting: a stall is counted from a loop's first wait

    def add(self, rec: dict) -> None:
        kind = rec["kind"]
        if kind == "syscall":
            if "asyncio's debug report:" in rec["note"]:
                self.reports[rec["line"]] = rec["note"]
            self._call(rec, rec["syscall"], rec["thread"], rec["tid"], rec["line"], rec["ts"], rec["duration"])
        elif kind == "exit":
            self.last_end.pop(rec["tid"], None)

    def add_copies(self, rows) -> None:
        """Copied lines, each its call's record with the line's own number, time and duration:
        `_call`, with what a call's lines share looked up once per call (its form)."""
        waited, latencies = self.waited, self.latencies
        for call, line, ts, d, _, _, request, forms in rows:
            form = forms.get(self)
            if form is None:
                rec = call.rec
                name = rec["syscall"]
                # the table's row by its key: a call whose lines show no -T makes none
                form = forms[self] = ((name, rec["thread"]), rec["tid"], name in _WAITING, rec["thread"] == LOOP)
            key, tid, waiting, loop = form
            if d is not None:
                latencies[key].add(d)
            if waiting:
                waited.add(tid)
            if loop and ts is not None and tid in waited:
                self._stalls(tid, line, ts, d, waiting, call.rec, request)

    def _call(self, rec: dict, name: str, role: str, tid, line: int, ts: float | None, d: float | None) -> None:
        if d is not None:
            self.latencies[(name, role)].add(d)
        waiting = name in _WAITING
        if waiting:
            self.waited.add(tid)
        if role != LOOP or ts is None or tid not in self.waited:
            return  # a loop's start-up (imports, set-up) comes before its first wait: no client waits yet
        self._stalls(tid, line, ts, d, waiting, rec)

    def _stalls(self, tid, line: int, ts: float, d: float | None, waiting: bool, rec: dict,
                request=_OWN) -> None:
        """A loop thread's call: the gap before it and its own time, kept if among its longest.
        `rec` is the line's record, or (with the line's `request`) its call's, for a copy."""
        before = self.last_end.get(tid)
        gap = before is not None and ts - before[0] >= LEAST
        took = d is not None and not waiting and d >= LEAST
        if gap or took:
            whole = rec if request is _OWN else {**rec, "line": line, "ts": ts, "duration": d, "request": request,
                                                  "resumed_line": None}
            if gap:
                self._keep(tid, ts - before[0], "gap", whole, before[1])
            if took:
                self._keep(tid, d, "call", whole, None)
        if d is not None:
            self.last_end[tid] = (ts + d, line)
        else:  # no -T: where the call ended is not shown, so the next gap is not measured
            self.last_end.pop(tid, None)

    def _keep(self, tid, seconds: float, kind: str, rec: dict, after: int | None) -> None:
        held = next((e["line"] for e in rec.get("evidence") or () if e.get("claim") == "held-loop"), None)
        entry = {"tid": tid, "seconds": round(seconds, 6), "kind": kind, "line": rec["line"],
                 "resumed_line": rec["resumed_line"], "syscall": rec["syscall"], "after": after,
                 "category": rec["category"], "request": rec["request"], "held_by": held}
        heap = self.top[tid]
        item = (seconds, rec["line"], kind, entry)
        if len(heap) < TOP:
            heapq.heappush(heap, item)
        elif item[:2] > heap[0][:2]:
            heapq.heapreplace(heap, item)
        else:
            return
        self.marked.add(rec["resumed_line"] or rec["line"])

    def latency(self) -> list[dict]:
        rows = [{"syscall": name, "role": role, "count": lat.count, "total_s": round(lat.total, 6),
                 "p50_ms": round(lat.quantile(0.5) * 1000, 3), "p99_ms": round(lat.quantile(0.99) * 1000, 3),
                 "max_ms": round(lat.max * 1000, 3)} for (name, role), lat in self.latencies.items()]
        return sorted(rows, key=lambda r: (-r["total_s"], r["syscall"], r["role"]))

    def stalls(self) -> dict[str, list[dict]]:
        """tid -> its longest stalls, longest first, each with what held the loop where named."""
        out = {}
        for tid, heap in self.top.items():
            rows = []
            for _, _, _, entry in sorted(heap, key=lambda x: (-x[0], x[1])):
                row = dict(entry)
                if row["held_by"] is not None:
                    row["held_by_report"] = _report_words(self.reports.get(row["held_by"], ""))
                rows.append(row)
            out[str(tid)] = rows
        return out


def _report_words(note: str) -> str:
    return note.split("asyncio's debug report: ", 1)[-1].rstrip("]") if note else ""


def stall_text(row: dict, where: str = "") -> str:
    """One stall, said in a line: its length, what it was, its line, and its cause where named."""
    ms = row["seconds"] * 1000
    if row["kind"] == "gap":
        what = f"no traced call between line {row['after']} and line {row['line']}"
    else:
        what = f"{row['syscall']} at line {row['resumed_line'] or row['line']}"
    cause = (f": asyncio's report at line {row['held_by']}: {row['held_by_report']}" if row.get("held_by") else
             "")
    return f"{ms:8.1f} ms  {what}{where}{cause}"


def unnamed_reason(stalls: dict, reports: int) -> str:
    """Why the listed stalls without a cause have none."""
    if reports:
        return ("a stall with no cause named is covered by no asyncio report (asyncio reports callbacks of "
                "100 ms or more)")
    return ("no cause is named: strace sees calls, not the code between them (a Python asyncio program run "
            "with --asyncio-debug has asyncio name the callback that ran through each stall)")


def latency_lines(rows: list[dict], most: int | None = None) -> list[str]:
    """The latency table as text: a header and one row per (syscall, role)."""
    shown = rows if most is None else rows[:most]
    if not shown:
        return []
    width = max(len(r["syscall"]) for r in shown)
    out = [f"{'syscall':<{width}}  role   {'count':>7}  {'total ms':>10}  {'p50 ms':>8}  {'p99 ms':>8}  {'max ms':>8}"]
    for r in shown:
        out.append(f"{r['syscall']:<{width}}  {r['role']:<5}  {r['count']:>7,}  {r['total_s'] * 1000:>10.1f}  "
                   f"{r['p50_ms']:>8.3f}  {r['p99_ms']:>8.3f}  {r['max_ms']:>8.3f}")
    if most is not None and len(rows) > most:
        out.append(f"... {len(rows) - most} more rows in summary.json (\"latency\")")
    return out
