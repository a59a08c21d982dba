"""annotated.log under load: the first requests in full, then the repeats as counted lines.

A load step (`trace --load CONNS:SECONDS`) makes thousands of calls that say the
same thing. The section shows every line until the end of the first wait-serve
cycle that answers many connections at once (a wait of the loop that reports
ready fds, and the calls up to its next such wait, with at least a quarter of
the connections answered, or two), so one request is seen in full and the loop
juggling many; after it, the calls are counted, not printed:

    [the next 1,856 requests on 64 connections repeat this sequence, per request:
     recvfrom, sendto, 0.04 epoll_wait (raw lines 816-4870, 3,950 calls) ...]

A request is an answer: a write by a loop thread to a client connection. A
line that says something the repeats do not (a stall of the loop, a signal, an
exit) is printed where it is, and the count goes on after it. raw.strace and
events.jsonl keep every line; `--full` prints them all here.
"""

from __future__ import annotations

from collections import Counter
from ..names import CLIENT, LOOP, POLL_WAITS, WAITS, WRITES

SHOW_MOST = 3000  # records shown in full at most, if no cycle answers many connections
FOLD_LEAST = 20  # fewer calls than this are printed, not counted
_STALLS = ("serving-nobody", "held-loop", "blocks-loop")


def answers(rec: dict) -> bool:
    fds = rec.get("fds") or []
    return (rec.get("thread") == LOOP and rec.get("syscall") in WRITES and rec.get("errno") is None
            and bool(fds) and fds[0].get("role") == CLIENT)


def _boundary(rec: dict) -> bool:
    """A loop's wait that reports ready fds: a new wait-serve cycle starts."""
    return rec.get("thread") == LOOP and (rec.get("syscall") in WAITS or rec.get("syscall") in POLL_WAITS) \
        and bool(rec.get("ready"))


def _notable(rec: dict) -> bool:
    """Said of this line only: a stall, a signal, an exit, a line not understood."""
    if rec.get("kind") != "syscall":
        return rec.get("kind") != "started"
    return any(e.get("claim") in _STALLS for e in rec.get("evidence") or ())


class LoadFold:
    """Fed the records of annotated.log a record at a time (`add`, then `end`): what to write
    now, each load section's repeats as records of kind "load-folded". `loads`: {section
    label: connections}. Each wait that starts a cycle while lines are shown is offered to
    `want(record)` as it goes by; `mark(name, record)` names the busy cycle's one once it is
    known (the busiest shown, at the cut-off)."""

    def __init__(self, loads: dict[str, int], mark=None, want=None) -> None:
        self.loads, self.mark, self.want = loads, mark, want
        self.current = None  # the load section being read
        self.chunk: _Chunk | None = None

    def _begin(self, label: str) -> None:
        self.current = label
        self.showing, self.shown, self.chunks = True, 0, 0
        self.cycle_wait: dict | None = None
        self.cycle_answers = 0
        self.best: tuple[int, dict | None] = (0, None)  # the busiest cycle shown so far: (answers, its wait)

    def add(self, rec: dict) -> list[dict]:
        label = rec.get("request")
        out: list[dict] = []
        if label != self.current:
            if self.current is not None and not (rec.get("kind") == "started" and label is None):
                out += self.end()
            if label in self.loads:
                self._begin(label)
            else:
                self.current = None
        if self.current is None:
            out.append(rec)
            return out
        if self.showing:
            if _boundary(rec):
                if self.cycle_wait is not None and self.cycle_answers > self.best[0]:
                    self.best = (self.cycle_answers, self.cycle_wait)
                if self.cycle_answers >= max(2, self.loads[self.current] // 4) or self.shown >= SHOW_MOST:
                    # The cycle that answered many; at the cut-off, the busiest one shown.
                    self.showing = False
                    most, wait = self.best
                    if self.mark is not None and wait is not None:
                        self.mark(f"a wait-serve cycle under load (its wait reported {len(wait['ready'])} fds; "
                                  f"{most} answers followed)", wait)
                else:
                    self.cycle_wait, self.cycle_answers = rec, 0
                    if self.want is not None:
                        self.want(rec)
            if self.showing:
                self.cycle_answers += answers(rec)
                self.shown += 1
                out.append(rec)
                return out
        if _notable(rec):
            out += self._flush()
            out.append(rec)
            return out
        if self.chunk is None:
            self.chunk = _Chunk(self.loads[self.current])
        self.chunk.add(rec)
        return out

    def _flush(self) -> list[dict]:
        chunk, self.chunk = self.chunk, None
        if chunk is None:
            return []
        if len(chunk.held) < FOLD_LEAST:
            return chunk.held
        self.chunks += 1
        return [chunk.record(first=self.chunks == 1)]

    def end(self) -> list[dict]:
        """What is held when a load section (or the log) ends."""
        return self._flush()


class _Chunk:
    """Folded records: counts, and the first few kept in case there are too few to fold."""

    def __init__(self, conns: int) -> None:
        self.conns = conns
        self.held: list[dict] = []
        self.loop: Counter = Counter()  # the loop threads' calls, in the order first seen
        self.others: Counter = Counter()  # other threads' calls
        self.failed: Counter = Counter()
        self.clients: set = set()
        self.answers = 0
        self.calls = 0
        self.first = self.last = None
        self.tid = self.thread = self.request = None

    def add(self, rec: dict) -> None:
        if len(self.held) < FOLD_LEAST:
            self.held.append(rec)
        if self.first is None:
            self.first, self.tid, self.thread = rec["line"], rec.get("tid"), rec.get("thread")
            self.request = rec.get("request")
        self.last = rec.get("resumed_line") or rec["line"]
        if rec.get("kind") != "syscall":
            return
        self.calls += 1
        name = rec["syscall"]
        (self.loop if rec.get("thread") == LOOP else self.others)[name] += 1
        if rec.get("errno") and rec["errno"] != "EAGAIN":
            self.failed[f"{name} {rec['errno']}"] += 1
        if answers(rec):
            self.answers += 1
            self.clients.add((rec["tid"], rec["fds"][0].get("detail") or rec["fds"][0].get("fd")))

    def record(self, first: bool) -> dict:
        return {"kind": "load-folded", "line": self.first, "last_line": self.last, "tid": self.tid,
                "thread": self.thread, "request": self.request, "text": self.text(first)}

    def text(self, first: bool) -> str:
        n = self.answers
        seq = _sequence(self.loop, n) or "no call of a loop"
        others = f"; on other threads, per request: {_sequence(self.others, n)}" if self.others else ""
        failed = (f"; failed: {', '.join(f'{v:,} {k}' for k, v in self.failed.most_common())}" if self.failed
                  else "")
        conns = len(self.clients)
        lead = ((f"the next {n:,} requests on {conns:,} connection{'s' if conns != 1 else ''} repeat this "
                 f"sequence, per request (an answer written to a client):") if first else
                f"then {n:,} more requests on {conns:,} connection{'s' if conns != 1 else ''}, per request:")
        if n == 0:
            lead = "then calls that answer no client:"
            seq = ", ".join(f"{v:,} {k}" for k, v in self.loop.items()) or "none on a loop"
        return (f"[{lead} {seq}{others}{failed} (raw lines {self.first}-{self.last}: {self.calls:,} calls). "
                "The raw log and events.jsonl keep them all; --full shows them here]")


def _sequence(counts: Counter, per: int) -> str:
    """The calls per request, the most frequent first: `recvfrom, sendto, 0.031 epoll_wait`; calls
    rarer than one in a hundred requests are given as counts (`and 1 close`)."""
    if per == 0:
        return ", ".join(f"{v:,} {k}" for k, v in counts.most_common())
    common = [(k, v / per) for k, v in counts.most_common() if v / per >= 0.01]
    rare = [(k, v) for k, v in counts.most_common() if v / per < 0.01]
    # Two significant figures: "1" (one call per request, give or take) is said by the name alone.
    words = [k if f"{r:.2g}" == "1" else f"{r:.2g} {k}" for k, r in common]
    if rare:
        words.append("and " + ", ".join(f"{v:,} {k}" for k, v in rare) + " in all")
    return ", ".join(words)
