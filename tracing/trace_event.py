"""Annotated records to the Trace Event Format (JSON) that ui.perfetto.dev,
chrome://tracing and speedscope open.

What goes in (format: the "Trace Event Format" document, JSON Object Format):
  - one complete event ("ph": "X") per syscall: name the call, "cat" its
    category (epoll waits get "epoll-wait", so they stand out as their own
    slices), "dur" from strace -T, the note and the raw line number in "args";
  - a flow arrow ("ph": "s" then "f", one id) from each wakeup write to the
    loop's wait that it ends. A flow event binds to a slice with the same
    pid, tid, cat and ts (Chrome) or to the slice enclosing it (Perfetto,
    "bp": "e" on the "f"): so "s" copies the write's ts and cat, and "f" the
    ts and cat of a short "woken" slice nested at the end of the wait (the
    wait itself began before the write, and a flow may not run backwards).
    strace can print the write after the wait it ended (the write was
    unfinished when the wait resumed), so a few recent waits are kept;
  - requests as named spans on their own track ("requests"), probes sent
    during another request on a second one;
  - signals and exits as instant events ("ph": "i");
  - metadata ("ph": "M"): process_name, thread_name ("loop 4239", "pool 4242")
    and thread_sort_index (loop first).

Written as a stream: one event per line as records come in; only small
tables (threads, processes, open wakeups, request windows) are kept.

Processes: a thread made by clone with CLONE_THREAD joins its parent's
process; any other clone starts one. A thread seen before its clone returns,
or without one (strace -p attached after it started), belongs to the first
process seen: it keeps one track either way.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import IO, Iterable

from tracing.names import CLONES, LOOP, POOL, WAITS, WAKEUP, WAKEUP_CAT

US = 1e6  # the format's times are microseconds
WOKEN_US = 1.0  # the "woken" slice at the end of a wait
RECENT_WAITS = 8  # woken waits kept per process for writes printed after them
PENDING_MOST = 1000  # wakeups per process waiting for their wait; memory stays bounded
WAIT_CAT = "epoll-wait"
REQUESTS_PID = 0  # a track group of its own for the scenario's requests
REQUEST_TID, PROBE_TID = 1, 2
SORT = {LOOP: 0, POOL: 1}
ARGS_MOST = 300  # characters of the raw arguments kept per event
_EXE = re.compile(r'^"([^"]+)"')


# One encoder for every event: json.dumps with an option builds a new one per call.
_encode = json.JSONEncoder(ensure_ascii=False).encode
# The JSON around a call slice's times and line number, by its name, category and args.
_SLICE_JSON: dict[tuple, tuple[str, str, str]] = {}
SLICES_KEPT = 4096


def _us(seconds: float) -> float:
    return round(seconds * US, 3)


class Exporter:
    """Feed records, then `finish`: writes a complete JSON object to `out`."""

    def __init__(self, out: IO[str], title: str = "epoll-lab") -> None:
        self.out = out
        self.first = True
        self.title = title
        self.process_of: dict[int, int] = {}  # tid -> pid of its process
        self.first_process: int | None = None
        self.proc_names: dict[int, str] = {}
        self.roles: dict[int, str] = {}  # tid -> role; a loop stays a loop
        self.pending: dict[int, list[tuple[int, float, int]]] = {}  # pid -> [(flow id, ts, tid)]
        self.recent: dict[int, list[tuple[int, float, float]]] = {}  # pid -> [(tid, ts, end)] of woken waits
        self.flows = 0
        self.unmatched = 0  # wakeups with no later wait in their process
        self.requests: dict[str, list[float]] = {}  # label -> [start, end]
        self.probes: list[tuple[str, float, float]] = []
        self.counts: dict[str, int] = {}
        self.out.write('{"displayTimeUnit": "ms", "traceEvents": [\n')

    # -- writing ------------------------------------------------------------
    def emit(self, event: dict) -> None:
        self._write(_encode(event), event["ph"] if event["ph"] != "X" else ("X:" + event["cat"]))

    def _write(self, text: str, key: str) -> None:
        self.out.write(text if self.first else ",\n" + text)
        self.first = False
        self.counts[key] = self.counts.get(key, 0) + 1

    def _slice(self, name: str, cat: str, ts: float, dur: float, pid: int, tid: int, line,
               args: tuple) -> None:
        """What emit() writes for a call's slice, from kept pieces: a server's calls repeat,
        and with them the JSON around the times and the line number."""
        key = (name, cat, args)
        pieces = _SLICE_JSON.get(key)
        if pieces is None:
            note, category, raw, ret, errno, label = args
            more = {"args": raw, "ret": ret, **({"errno": errno} if errno else {}),
                    **({"request": label} if label else {})}
            pieces = (f'{{"name": {_encode(name)}, "cat": {_encode(cat)}, "ph": "X", "ts": ',
                      f'"args": {_encode({"note": note, "category": category})[:-1]}, "line": ',
                      f", {_encode(more)[1:]}}}")
            if len(_SLICE_JSON) >= SLICES_KEPT:
                _SLICE_JSON.clear()
            _SLICE_JSON[key] = pieces
        head, args_head, args_tail = pieces
        self._write(f'{head}{ts!r}, "dur": {dur!r}, "pid": {pid!r}, "tid": {tid!r}, '
                    f'{args_head}{_encode(line)}{args_tail}', "X:" + cat)

    # -- records ------------------------------------------------------------
    def process(self, tid: int) -> int:
        pid = self.process_of.get(tid)
        if pid is None:
            if self.first_process is None:
                self.first_process = tid
            pid = self.process_of[tid] = self.first_process
        return pid

    def feed(self, rec: dict) -> None:
        tid, ts, kind = rec.get("tid"), rec.get("ts"), rec.get("kind")
        if tid is None or ts is None or kind == "started":
            return
        pid = self.process(tid)
        role = rec.get("thread") or "other"
        if self.roles.get(tid) != LOOP:
            self.roles[tid] = role
        label = rec.get("request")
        end = ts + (rec.get("duration") or 0.0)
        if label:
            win = self.requests.setdefault(label, [ts, end])
            win[0], win[1] = min(win[0], ts), max(win[1], end)
        if kind != "syscall":
            if kind in ("signal", "exit"):
                self.emit({"name": rec.get("syscall") or kind, "cat": kind, "ph": "i", "s": "t",
                           "ts": _us(ts), "pid": pid, "tid": tid, "args": {"note": rec.get("note", "")}})
            return
        name = rec.get("syscall") or "?"
        category = rec.get("category") or "other"
        is_wait = name in WAITS
        # args: note, category, line, the raw arguments (cut), ret, errno and request if any.
        self._slice(name, WAIT_CAT if is_wait else category, _us(ts), _us(end - ts), pid, tid, rec.get("line"),
                    (rec.get("note", ""), category, (rec.get("args") or "")[:ARGS_MOST], rec.get("ret"),
                     rec.get("errno"), label))
        if name in CLONES and rec.get("errno") is None:
            self._cloned(tid, rec)
        elif name == "execve" and rec.get("errno") is None:
            m = _EXE.match(rec.get("args") or "")
            if m and pid == tid:  # the process's own main thread
                self.proc_names[pid] = Path(m.group(1)).name
        if category == WAKEUP_CAT:
            self._woke(pid, tid, ts)
        if is_wait and self.roles.get(tid) == LOOP:
            self._wait_returned(pid, tid, rec, ts, end)

    def _cloned(self, tid: int, rec: dict) -> None:
        try:
            child = int(rec.get("ret") or "")
        except ValueError:
            return
        if child in self.process_of:
            # Its first calls came before clone returned and are on a track already:
            # it stays there, so each thread keeps one track.
            return
        same = "CLONE_THREAD" in (rec.get("args") or "")
        self.process_of[child] = self.process_of[tid] if same else child

    def _wait_returned(self, pid: int, tid: int, rec: dict, ts: float, end: float) -> None:
        """A loop's wait returned its wakeup fd: the writes before it end their arrows here.

        strace may print the write after the wait (a write unfinished when the
        wait resumed), so the wait is also kept a while for writes still to come."""
        if not any(r.get("role") == WAKEUP for r in rec.get("ready") or []):
            return
        left = []
        for flow, at, writer in self.pending.get(pid, []):
            if at <= end and writer != tid:
                self._bind(flow, at, pid, tid, ts, end)
            else:
                left.append((flow, at, writer))
        self.pending[pid] = left
        recent = self.recent.setdefault(pid, [])
        recent.append((tid, ts, end))
        del recent[:-RECENT_WAITS]

    def _woke(self, pid: int, writer: int, at: float) -> None:
        """A wakeup write: its arrow ends in a wait already seen that it ended, or waits for one."""
        self.flows += 1
        self.emit({"name": "wakeup", "cat": WAKEUP_CAT, "ph": "s", "id": self.flows, "ts": _us(at),
                   "pid": pid, "tid": writer})
        ended = [(end, tid, ts) for tid, ts, end in self.recent.get(pid, [])
                 if tid != writer and ts <= at <= end]
        if ended:
            end, tid, ts = min(ended)
            self._bind(self.flows, at, pid, tid, ts, end)
        else:
            waiting = self.pending.setdefault(pid, [])
            waiting.append((self.flows, at, writer))
            if len(waiting) > PENDING_MOST:  # no wait returns them: end the oldest on its write
                self._unmatched(pid, *waiting.pop(0))

    def _bind(self, flow: int, at: float, pid: int, tid: int, ts: float, end: float) -> None:
        # A short "woken" slice at the end of the wait, not before the write: the
        # arrow's end binds to it. Slices of one wait all end at its end, so they nest.
        start = _us(ts)
        stop = start + _us(end - ts)  # the sum a viewer makes of the wait's ts and dur
        woken = min(stop, max(start, round(stop - WOKEN_US, 3), _us(at)))
        self.emit({"name": "woken", "cat": WAKEUP_CAT, "ph": "X", "ts": woken, "dur": round(stop - woken, 3),
                   "pid": pid, "tid": tid,
                   "args": {"note": "the wait returns the wakeup fd: a thread woke the loop"}})
        self.emit({"name": "wakeup", "cat": WAKEUP_CAT, "ph": "f", "bp": "e", "id": flow, "ts": woken,
                   "pid": pid, "tid": tid})

    def _unmatched(self, pid: int, flow: int, at: float, writer: int) -> None:
        # No wait of a loop returned this wakeup: the arrow points at its own write.
        self.unmatched += 1
        self.emit({"name": "wakeup", "cat": WAKEUP_CAT, "ph": "f", "bp": "e", "id": flow, "ts": _us(at),
                   "pid": pid, "tid": writer,
                   "args": {"note": "no wait of a loop returned this wakeup"}})

    def add_probe(self, label: str, start: float, end: float) -> None:
        self.probes.append((label, start, end))

    # -- the end ------------------------------------------------------------
    def finish(self) -> dict:
        """Close the open flows, write spans and names, end the JSON; returns the counts."""
        for pid, left in self.pending.items():
            for flow, at, writer in left:
                self._unmatched(pid, flow, at, writer)
        if self.requests or self.probes:
            self.emit({"name": "process_name", "ph": "M", "pid": REQUESTS_PID, "tid": REQUEST_TID,
                       "args": {"name": "curl scenario"}})
            self.emit({"name": "thread_name", "ph": "M", "pid": REQUESTS_PID, "tid": REQUEST_TID,
                       "args": {"name": "requests"}})
            for label, (a, b) in self.requests.items():
                self.emit({"name": label, "cat": "request", "ph": "X", "ts": _us(a), "dur": _us(b - a),
                           "pid": REQUESTS_PID, "tid": REQUEST_TID, "args": {"request": label}})
        if self.probes:
            self.emit({"name": "thread_name", "ph": "M", "pid": REQUESTS_PID, "tid": PROBE_TID,
                       "args": {"name": "probes (sent during a request)"}})
            for label, a, b in self.probes:
                self.emit({"name": label, "cat": "request", "ph": "X", "ts": _us(a), "dur": _us(b - a),
                           "pid": REQUESTS_PID, "tid": PROBE_TID, "args": {"request": label, "probe": True}})
        for pid in sorted(set(self.process_of.values())):
            self.emit({"name": "process_name", "ph": "M", "pid": pid, "tid": pid,
                       "args": {"name": f"{self.proc_names.get(pid, 'process')} {pid}"}})
        for tid, role in sorted(self.roles.items()):
            pid = self.process_of[tid]
            self.emit({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
                       "args": {"name": f"{role} {tid}"}})
            self.emit({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid,
                       "args": {"sort_index": SORT.get(role, 2) * 1_000_000 + tid}})
        self.out.write('\n], "otherData": ' + json.dumps({"title": self.title, "source": "epoll-lab",
                                                         "wakeup_flows": self.flows,
                                                         "unmatched_wakeups": self.unmatched}) + "}\n")
        return dict(self.counts, flows=self.flows, unmatched=self.unmatched)


def write(records: Iterable[dict], out: IO[str], title: str = "epoll-lab",
          probes: Iterable[tuple[str, float, float]] = ()) -> dict:
    """Stream `records` into `out` as one Trace Event Format object; returns event counts."""
    ex = Exporter(out, title)
    for rec in records:
        ex.feed(rec)
    for label, a, b in probes:
        ex.add_probe(label, a, b)
    return ex.finish()
