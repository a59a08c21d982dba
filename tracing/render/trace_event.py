"""Annotated records to the Trace Event Format (JSON) that ui.perfetto.dev and
speedscope open (Chromium 156 has no chrome://tracing page).

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
  - signals and exits as instant events ("ph": "i"); so is a tracer's
    message that calls were lost here (the kernel tracer's full ring
    buffer), named "N calls lost", and otherData counts them
    ("lost_calls"): a lossy trace says so in the viewer too;
  - metadata ("ph": "M"): process_name, thread_name ("loop 4239", "pool 4242")
    and thread_sort_index (loop first).

Written as a stream: one event per line as records come in; only small
tables (threads, processes, open wakeups, request windows) are kept. A
repeated call's slice JSON around its times and line number is its form
(`tracing.render.renderer`).

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

from ..names import CLONES, LOOP, LOST_CALLS, NO_PID, POOL, RING_RECORDS, WAITS, WAKEUP_CAT
from . import fill
from .fill import STEP_US
from .renderer import BATCH, Renderer, fan_out

US = 1e6  # the format's times are microseconds
WOKEN_US = 1.0  # the "woken" slice at the end of a wait
PLAIN = "trace-event plain"  # a call's form for fill.slices
SIDES_KEPT = 4096  # writes and waits kept for the other side of their pair; memory stays bounded
WOKEN_KEPT = 4096  # waits whose woken slice is remembered (later writes bind to the same one)
WAIT_CAT = "epoll-wait"
REQUESTS_PID = 0  # a track group of its own for the scenario's requests
REQUEST_TID, PROBE_TID = 1, 2
SORT = {LOOP: 0, POOL: 1}
ARGS_MOST = 300  # characters of the raw arguments kept per event
_EXE = re.compile(r'^"([^"]+)"')


# One encoder for every event: json.dumps with an option builds a new one per call.
_encode = json.JSONEncoder(ensure_ascii=False).encode


def _us(seconds: float) -> float:
    return round(seconds * US, 3)


class Exporter(Renderer):
    """Add records, then `close`: writes a complete JSON object to `out`, with the requests
    `probes` names (label, start, end) on their own track; returns the event counts."""

    def __init__(self, out: IO[str], title: str = "epoll-lab",
                 probes: Iterable[tuple[str, float, float]] = ()) -> None:
        self.out = out
        self.first = True
        self.title = title
        self.process_of: dict[int, int] = {}  # tid -> pid of its process
        self.first_process: int | None = None
        self.proc_names: dict[int, str] = {}
        self.roles: dict[int, str] = {}  # tid -> role; a loop stays a loop
        # A flow is a pair of lines the records name as evidence (a wait "woken by" a write,
        # a write that "wakes" a wait): each side's slice as seen, and pairs waiting for a side.
        self.writes: dict[int, tuple[int, int, float]] = {}  # write line -> (pid, tid, start)
        self.waits: dict[int, tuple[int, int, float, float]] = {}  # wait line -> (pid, tid, start, end)
        self.wanted: dict[int, list[tuple[int, int]]] = {}  # a line not seen yet -> [(write, wait)] needing it
        self.paired: set[tuple[int, int]] = set()
        self.flows = 0
        self.moved = 0  # slices started later so as not to overlap the one before on their track
        self.track_end: dict[int, float] = {}  # tid -> end of its last slice (µs)
        self.track_zero: dict[int, bool] = {}  # tid -> its last slice had no length
        self.woken: dict[tuple[int, float], float | None] = {}  # (tid, wait start) -> its woken slice's ts
        self.unmatched = 0  # pairs whose other side the records never showed
        self.requests: dict[str, list[float]] = {}  # label -> [start, end]
        self.probes: list[tuple[str, float, float]] = list(probes)
        self.counts: dict[str, int] = {}
        self.lost = 0  # calls the tracer said it lost
        self.pending: list[str] = []  # events not yet written
        self.out.write('{"displayTimeUnit": "ms", "traceEvents": [\n')

    # -- writing ------------------------------------------------------------
    def emit(self, event: dict) -> None:
        self._write(_encode(event), event["ph"] if event["ph"] != "X" else ("X:" + event["cat"]))

    def _write(self, text: str, key: str) -> None:
        self.pending.append(text)
        self.counts[key] = self.counts.get(key, 0) + 1
        if len(self.pending) >= BATCH:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.out.write((",\n" if not self.first else "") + ",\n".join(self.pending))
            self.first = False
            self.pending.clear()

    def _slice(self, pieces: tuple[str, str, str], cat: str, ts: float, dur: float, pid: int, tid: int,
               line) -> None:
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

    def add(self, rec: dict) -> None:
        tid, ts, kind = rec.get("tid"), rec.get("ts"), rec.get("kind")
        if ts is None or kind == "started":
            return
        if tid is None:
            tid = NO_PID
        if kind == "syscall":
            self._call(rec, tid, ts, rec.get("duration"), rec.get("line"), rec.get("request"), rec.get("call"))
            return
        pid = self._thread(rec, tid, ts, ts, rec.get("request"))
        if kind in ("signal", "exit"):
            self.emit({"name": rec.get("syscall") or kind, "cat": kind, "ph": "i", "s": "t",
                       "ts": _us(ts), "pid": pid, "tid": tid, "args": {"note": rec.get("note", "")}})
        elif kind == "strace" and (m := LOST_CALLS.search(rec.get("text") or "")):
            self._lost(rec, int(m.group(1)), pid, tid, ts)

    def add_copies(self, rows) -> None:
        """Most copies are a plain call's slice, written by `fill.slices` from its form (its
        JSON around the slot, its thread, its process). A wait, a clone or an exec, an io_uring
        record, a call with evidence, a line a flow wants, or one in a request: as `_call`."""
        i, n, chunks = 0, len(rows), False
        while i < n:
            text, i, moved = fill.slices(rows, i, PLAIN, self.wanted, self.roles, LOOP, self.track_end,
                                         self.track_zero, self.counts)
            if text:
                self.pending.append(text)
                chunks = True
            self.moved += moved
            if i == n:
                break
            call, line, ts, duration, _, _, request, forms = rows[i]
            rec = call.rec
            if PLAIN not in forms:
                forms[PLAIN] = self._plain(rec)
                if forms[PLAIN] is not False and not request and line not in self.wanted:
                    continue  # slices writes it
            tid = rec["tid"]
            self._call(rec, NO_PID if tid is None else tid, ts, duration, line, request, call)
            i += 1
        if chunks or len(self.pending) >= BATCH:  # a chunk holds up to a batch of slices itself
            self.flush()

    def _plain(self, rec: dict) -> tuple | bool:
        """A call's slice JSON around its place and line, with what `fill.slices` needs to write
        it (count key, role, tid, process), or False for a call with more to it."""
        name = rec.get("syscall") or "?"
        if (name in WAITS or name in CLONES or name == "execve" or name in RING_RECORDS
                or rec.get("evidence")):
            return False
        category = rec.get("category") or "other"
        tid = NO_PID if rec["tid"] is None else rec["tid"]
        return (*_pieces(rec, name, category, None), "X:" + category, rec.get("thread") or "other", tid,
                self.process(tid))

    def _thread(self, rec: dict, tid: int, ts: float, end: float, label: str | None) -> int:
        """The record's process; its thread's role and its request's window, kept."""
        pid = self.process(tid)
        if self.roles.get(tid) != LOOP:
            self.roles[tid] = rec.get("thread") or "other"
        if label:
            win = self.requests.setdefault(label, [ts, end])
            win[0], win[1] = min(win[0], ts), max(win[1], end)
        return pid

    def _call(self, rec: dict, tid: int, ts: float, duration: float | None, line, label: str | None,
              call) -> None:
        """A call's slice (its JSON around times and line number kept in its call's forms),
        and what it tells: a new thread's process, a program's name, wakeup flows."""
        end = ts + (duration or 0.0)
        pid = self._thread(rec, tid, ts, end, label)
        name = rec.get("syscall") or "?"
        category = rec.get("category") or "other"
        if name in RING_RECORDS:
            # An io_uring submission or completion is a moment inside a call (or on an io-wq
            # worker), not a call: an instant, which neither nests under the io_uring_enter it
            # happened in nor pushes that wait's slice aside.
            self.emit({"name": name, "cat": category, "ph": "i", "s": "t", "ts": _us(ts), "pid": pid, "tid": tid,
                       "args": {"note": rec.get("note", ""), "line": line,
                                "args": (rec.get("args") or "")[:ARGS_MOST], "ret": rec.get("ret"),
                                **({"request": label} if label else {})}})
            return
        is_wait = name in WAITS
        start, dur = self._place(tid, _us(ts), _us(end - ts))
        if call is None:
            pieces = _pieces(rec, name, category, label)
        else:
            key = ("trace-event", label)  # a request's name is in the slice's args
            pieces = call.forms.get(key)
            if pieces is None:
                pieces = call.forms[key] = _pieces(rec, name, category, label)
        self._slice(pieces, WAIT_CAT if is_wait else category, start, dur, pid, tid, line)
        if name in CLONES and rec.get("errno") is None:
            self._cloned(tid, rec)
        elif name == "execve" and rec.get("errno") is None:
            m = _EXE.match(rec.get("args") or "")
            if m and pid == tid:  # the process's own main thread
                self.proc_names[pid] = Path(m.group(1)).name
        if line is not None and (rec.get("evidence") or line in self.wanted or is_wait):
            self._evidence(rec, line, pid, tid, start, start + dur, is_wait)

    def _place(self, tid: int, start: float, dur: float) -> tuple[float, float]:
        start, dur, moved = fill.place(self.track_end, self.track_zero, tid, start, dur)
        self.moved += moved
        return start, dur

    def _lost(self, rec: dict, calls: int, pid: int, tid: int, ts: float) -> None:
        """The tracer lost calls here: a mark across all tracks, and a count for otherData."""
        self.lost += calls
        self.emit({"name": f"{calls} call{'' if calls == 1 else 's'} lost", "cat": "lost", "ph": "i", "s": "g",
                   "ts": _us(ts), "pid": pid, "tid": tid,
                   "args": {"note": rec.get("note", ""), "text": rec.get("text"), "line": rec.get("line")}})

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

    def _evidence(self, rec: dict, line: int, pid: int, tid: int, start: float, end: float,
                  is_wait: bool) -> None:
        """Flows from the records' own evidence: a wait woken by a write, a write that wakes a
        wait. strace may print a write after the wait it ended (unfinished when the wait
        returned), so each side is kept until its pair comes."""
        mine = []
        for e in rec.get("evidence") or ():
            if e.get("tid") == tid:
                continue
            if is_wait and e.get("claim") == "woken-by":
                mine.append((e["line"], line))
            elif not is_wait and e.get("claim") == "wakes":
                mine.append((line, e["line"]))
        if is_wait:
            self._keep(self.waits, line, (pid, tid, start, end))
        elif mine or line in self.wanted:
            self._keep(self.writes, line, (pid, tid, start))
        for pair in self.wanted.pop(line, ()):
            self._flow(pair)
        for pair in mine:
            self._flow(pair)

    def _keep(self, seen: dict, line: int, what: tuple) -> None:
        seen[line] = what
        if len(seen) > SIDES_KEPT:  # a pair's sides are near each other in a log: keep the newest
            del seen[next(iter(seen))]

    def _flow(self, pair: tuple[int, int]) -> None:
        if pair in self.paired:
            return
        write, wait = pair
        w, t = self.writes.get(write), self.waits.get(wait)
        if w is None or t is None:
            need = write if w is None else wait
            waiting = self.wanted.setdefault(need, [])
            if pair not in waiting:
                waiting.append(pair)
            if len(self.wanted) > SIDES_KEPT:
                self.unmatched += len(self.wanted.pop(next(iter(self.wanted))))
            return
        self.paired.add(pair)
        if len(self.paired) > SIDES_KEPT:
            self.paired.pop()
        pid, writer, at = w
        self.flows += 1
        self.emit({"name": "wakeup", "cat": WAKEUP_CAT, "ph": "s", "id": self.flows, "ts": at,
                   "pid": pid, "tid": writer})
        self._bind(self.flows, at, *t)

    def _bind(self, flow: int, at: float, pid: int, tid: int, start: float, stop: float) -> None:
        """The flow's end: a short "woken" slice at the end of the wait (one per wait, however
        many writes ended it), not before the write. Times are µs.

        The woken slice ends a step before the wait does: a child ending at the very
        time its parent ends is ordered either way by viewers that sort begin and end
        events (speedscope then closes the wait first and warns). A step is STEP_US,
        which the format's doubles still tell apart at epoch times in µs (their
        spacing there is 0.25). A wait too short for that binds the arrow itself."""
        key = (tid, start)
        if key not in self.woken:
            if stop - start < 3 * STEP_US:
                self.woken[key] = None
            else:
                end = stop - STEP_US
                woken = min(max(start + STEP_US, end - WOKEN_US, at), end - STEP_US)
                self.woken[key] = woken
                self.emit({"name": "woken", "cat": WAKEUP_CAT, "ph": "X", "ts": woken, "dur": end - woken,
                           "pid": pid, "tid": tid,
                           "args": {"note": "the wait returns the fd a write filled (the wait's evidence)"}})
            if len(self.woken) > WOKEN_KEPT:  # only recent waits are bound to: keep the newest
                del self.woken[next(iter(self.woken))]
        woken = self.woken[key]
        self.emit({"name": "wakeup", "cat": WAKEUP_CAT if woken is not None else WAIT_CAT, "ph": "f", "bp": "e",
                   "id": flow, "ts": woken if woken is not None else start, "pid": pid, "tid": tid})

    # -- the end ------------------------------------------------------------
    def close(self) -> dict:
        """Close the open flows, write spans and names, end the JSON; returns the counts."""
        try:
            return self._close()
        finally:
            self.pending.clear()

    def _close(self) -> dict:
        self.unmatched += sum(len(pairs) for pairs in self.wanted.values())
        if self.requests or self.probes:
            self.emit({"name": "process_name", "ph": "M", "pid": REQUESTS_PID, "tid": REQUEST_TID,
                       "args": {"name": "curl scenario"}})
            self.emit({"name": "thread_name", "ph": "M", "pid": REQUESTS_PID, "tid": REQUEST_TID,
                       "args": {"name": "requests"}})
            for label, a, b in one_after_another((label, a, b) for label, (a, b) in self.requests.items()):
                self.emit({"name": label, "cat": "request", "ph": "X", "ts": a, "dur": b - a,
                           "pid": REQUESTS_PID, "tid": REQUEST_TID, "args": {"request": label}})
        if self.probes:
            self.emit({"name": "thread_name", "ph": "M", "pid": REQUESTS_PID, "tid": PROBE_TID,
                       "args": {"name": "probes (sent during a request)"}})
            for label, a, b in one_after_another(self.probes):
                self.emit({"name": label, "cat": "request", "ph": "X", "ts": a, "dur": b - a,
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
        self.flush()
        self.out.write('\n], "otherData": ' + json.dumps({"title": self.title, "source": "epoll-lab",
                                                         "wakeup_flows": self.flows,
                                                         "slices_moved_not_to_overlap": self.moved,
                                                         "unmatched_wakeups": self.unmatched,
                                                         "lost_calls": self.lost}) + "}\n")
        return dict(self.counts, flows=self.flows, unmatched=self.unmatched, lost=self.lost)


def one_after_another(spans: Iterable[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    """Spans of one track in µs, in time order, each ending no later than the next begins.

    A request's window runs from its first call to the end of its last, and a
    call that began in one window may end in the next (http.server's start-up
    ran 6.55 ms into request 1): on one track that would draw request 1 inside
    the start-up."""
    ordered = sorted(((label, _us(a), _us(b)) for label, a, b in spans), key=lambda s: (s[1], s[2]))
    out = []
    for i, (label, a, b) in enumerate(ordered):
        if i + 1 < len(ordered):
            b = min(b, ordered[i + 1][1])
        out.append((label, a, max(a, b)))
    return out


def _pieces(rec: dict, name: str, category: str, label: str | None) -> tuple[str, str, str]:
    """The JSON of a call's slice around its times, place and line number. args: note,
    category, line, the raw arguments (cut), ret, errno and request if any."""
    cat = WAIT_CAT if name in WAITS else category
    more = {"args": (rec.get("args") or "")[:ARGS_MOST], "ret": rec.get("ret"),
            **({"errno": rec["errno"]} if rec.get("errno") else {}), **({"request": label} if label else {})}
    return (f'{{"name": {_encode(name)}, "cat": {_encode(cat)}, "ph": "X", "ts": ',
            f'"args": {_encode({"note": rec.get("note", ""), "category": category})[:-1]}, "line": ',
            f", {_encode(more)[1:]}}}")


def write(records: Iterable[dict], out: IO[str], title: str = "epoll-lab",
          probes: Iterable[tuple[str, float, float]] = ()) -> dict:
    """Stream `records` into `out` as one Trace Event Format object; returns event counts."""
    return fan_out(records, [Exporter(out, title, probes)])[0]
