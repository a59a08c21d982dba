"""Annotated records to one self-contained HTML page: a lane per thread, time
across, waits as spans, calls as marks coloured by category, the pool's
wakeup writes as arrows to the loop's next wait return, requests shaded.

The SVG is drawn here, so the page shows without JavaScript; a little plain
JS adds zoom (wheel), pan (drag) and jump-to-request. Runs of identical short
calls fold into one mark, and past MAX_MARKS marks per lane nearby marks share
one, so a 100k-line trace stays a few MB.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from ..names import NO_PID, WAITS
from .renderer import Renderer, fan_out

COLORS = {"pollable": "#2e8b57", "thread-pooled": "#1f77b4", "blocking": "#d62728",
          "wakeup": "#9467bd", "other": "#9a9a9a"}
WAIT_COLOR = "#cfe8d6"
LANE_H, TOP, LEFT, WIDTH = 34, 30, 150, 1400
TAG_ROWS, TAG_H = 3, 14  # request labels: rows to stagger them on, and a row's height
PAGE_CHROME = 85  # px above the labels: title, legend, buttons (a screenshot fits the page)
MAX_LANES = 64  # threads drawn; past it the busiest (a 5,000-thread input made a 148 MB page)
MAX_MARKS = 3000  # per lane and kind (calls, waits), after folding repeats; ~2 per pixel
FOLD_GAP = 0.0005  # seconds: identical calls closer than this fold together
KEEP_EXACT = 4 * MAX_MARKS  # marks (and wakeups) kept as they are; a longer trace is folded as it comes


@dataclass
class Mark:
    start: float
    end: float
    name: str
    category: str
    note: str
    count: int = 1


class _Fold:
    """Marks sharing one time bucket: what one drawn mark says of them."""

    __slots__ = ("start", "end", "names", "cats", "count")

    def __init__(self, m: Mark) -> None:
        self.start, self.end, self.names, self.cats, self.count = m.start, m.end, {m.name}, {m.category: m.count}, m.count

    def take(self, m: Mark) -> None:
        self.end = max(self.end, m.end)
        self.names.add(m.name)
        self.cats[m.category] = self.cats.get(m.category, 0) + m.count
        self.count += m.count

    def merge(self, other: _Fold) -> None:
        self.start, self.end = min(self.start, other.start), max(self.end, other.end)
        self.names |= other.names
        for cat, n in other.cats.items():
            self.cats[cat] = self.cats.get(cat, 0) + n
        self.count += other.count

    def mark(self) -> Mark:
        cats = self.cats
        cat = max(cats, key=lambda c: (c != "other", cats[c]))
        names = sorted(self.names)
        return Mark(self.start, self.end, "+".join(names[:3]), cat,
                    f"{self.count} calls folded (a long trace)", self.count)


class Marks:
    """A lane's marks of one kind, in time order. Exact up to KEEP_EXACT; past that, a long
    trace's marks are folded as they come into time buckets (doubling their width whenever
    there are more than 2 * MAX_MARKS), so memory stays bounded however long the log."""

    def __init__(self, fold_repeats: bool) -> None:
        self.exact: list[Mark] = []
        self.fold_repeats = fold_repeats  # calls: a run of identical short calls is one mark
        self.buckets: dict[int, _Fold] | None = None
        self.origin = 0.0
        self.size = 0.0

    def add(self, start: float, end: float, name: str, category: str, note: str) -> None:
        if self.buckets is not None:
            self._bucket(start, end, name, category, 1, None)
            return
        exact = self.exact
        last = exact[-1] if exact and self.fold_repeats else None
        if (last and last.name == name and last.category == category
                and start - last.end < FOLD_GAP):
            last.end, last.count = max(last.end, end), last.count + 1
            return
        exact.append(Mark(start, end, name, category, note[:TIP + 1]))  # what its title can show: memory
        if len(exact) > KEEP_EXACT:
            self.origin = exact[0].start
            self.size = max(exact[-1].end - self.origin, 1e-9) / MAX_MARKS
            self.buckets = {}
            for m in exact:
                self._bucket(m.start, m.end, m.name, m.category, m.count, m)
            self.exact = []

    def _bucket(self, start: float, end: float, name: str, category: str, count: int, mark: Mark | None) -> None:
        i = int((start - self.origin) / self.size)
        got = self.buckets.get(i)
        if got is None:
            self.buckets[i] = _Fold(mark or Mark(start, end, name, category, "", count))
            if len(self.buckets) > 2 * MAX_MARKS:
                self.size *= 2
                wider: dict[int, _Fold] = {}
                for j, f in self.buckets.items():
                    if j // 2 in wider:
                        wider[j // 2].merge(f)
                    else:
                        wider[j // 2] = f
                self.buckets = wider
        else:
            if end > got.end:
                got.end = end
            got.names.add(name)
            got.cats[category] = got.cats.get(category, 0) + count
            got.count += count

    def __iter__(self):
        return iter(self.all())

    def __len__(self) -> int:
        return len(self.exact) if self.buckets is None else len(self.buckets)

    def all(self) -> list[Mark]:
        if self.buckets is None:
            return self.exact
        return [f.mark() for _, f in sorted(self.buckets.items())]

    def thin(self, t0: float, t1: float) -> list[Mark]:
        """At most MAX_MARKS marks: neighbours in one time bucket share a mark."""
        if self.buckets is None and len(self.exact) <= MAX_MARKS:
            return self.exact
        size = (t1 - t0) / MAX_MARKS or 1e-9
        groups: dict[int, _Fold] = {}
        if self.buckets is None:
            for m in self.exact:
                i = int((m.start - t0) / size)
                if i in groups:
                    groups[i].take(m)
                else:
                    groups[i] = _Fold(m)
        else:
            for _, f in sorted(self.buckets.items()):
                i = int((f.start - t0) / size)
                if i in groups:
                    groups[i].merge(f)
                else:
                    groups[i] = f
        return [f.mark() for f in groups.values()]


@dataclass
class Lane:
    tid: int
    role: str = "other"
    marks: Marks = field(default_factory=lambda: Marks(True))
    waits: Marks = field(default_factory=lambda: Marks(False))


class Collector:
    """One pass over the records: lanes, wakeups, request windows."""

    def __init__(self) -> None:
        self.lanes: dict[int, Lane] = {}
        self.wakeups: list[tuple[float, int]] = []
        self.wakeup_every = 1  # past KEEP_EXACT wakeups, every other one is kept (then every fourth...)
        self.seen_wakeups = 0
        self.requests: dict[str, list[float]] = {}
        self.t0: float | None = None
        self.t1: float | None = None
        self.calls = 0

    def add(self, rec: dict) -> None:
        ts = rec.get("ts")
        if ts is not None and rec.get("kind") == "syscall":
            self._call(rec, ts, rec.get("duration"), rec.get("request"))

    def add_copies(self, rows) -> None:
        """As `_call`, with what a call's copies share looked up once per call (its form)."""
        lanes, t0, t1 = self.lanes, self.t0, self.t1
        for call, _, ts, duration, _, _, request, forms in rows:
            if ts is None:
                continue
            form = forms.get("timeline")
            if form is None:
                form = forms["timeline"] = self._form(call.rec)
            tid, thread, name, category, note, is_wait = form
            if request or category == "wakeup":
                self.t0, self.t1 = t0, t1
                self._call(call.rec, ts, duration, request)
                t0, t1 = self.t0, self.t1
                continue
            self.calls += 1
            end = ts + (duration or 0.0)
            t0 = ts if t0 is None else min(t0, ts)
            t1 = end if t1 is None else max(t1, end)
            lane = lanes.get(tid)
            if lane is None:
                lane = lanes[tid] = Lane(tid)
            if thread:
                lane.role = thread
            (lane.waits if is_wait else lane.marks).add(ts, end, name, category, note)
        self.t0, self.t1 = t0, t1

    @staticmethod
    def _form(rec: dict) -> tuple:
        tid = rec.get("tid")
        thread = rec.get("thread")
        name = rec.get("syscall") or "?"
        is_wait = name in WAITS
        category = rec.get("category", "pollable") if is_wait else rec.get("category") or "other"
        return (NO_PID if tid is None else tid, thread if thread in ("loop", "pool") else None, name,
                category, rec.get("note") or "", is_wait)

    def _call(self, rec: dict, ts: float, duration: float | None, label: str | None) -> None:
        tid = rec.get("tid")
        if tid is None:
            tid = NO_PID
        self.calls += 1
        end = ts + (duration or 0.0)
        self.t0 = ts if self.t0 is None else min(self.t0, ts)
        self.t1 = end if self.t1 is None else max(self.t1, end)
        lane = self.lanes.get(tid)
        if lane is None:
            lane = self.lanes[tid] = Lane(tid)
        thread = rec.get("thread")
        if thread == "loop" or thread == "pool":
            lane.role = thread
        name = rec.get("syscall") or "?"
        note = rec.get("note") or ""
        category = rec.get("category")
        if name in WAITS:
            lane.waits.add(ts, end, name, rec.get("category", "pollable"), note)
        else:
            lane.marks.add(ts, end, name, category or "other", note)
        if category == "wakeup":
            self.seen_wakeups += 1
            if self.seen_wakeups % self.wakeup_every == 0:
                self.wakeups.append((ts, tid))
                if len(self.wakeups) > KEEP_EXACT:
                    self.wakeups = self.wakeups[1::2]
                    self.wakeup_every *= 2
        if label:
            win = self.requests.setdefault(label, [ts, end])
            win[0], win[1] = min(win[0], ts), max(win[1], end)

    def data(self) -> dict:
        return {"lanes": self.lanes, "wakeups": self.wakeups, "requests": self.requests,
                "t0": self.t0 or 0.0, "t1": self.t1 or 1.0, "calls": self.calls}


def collect(records: Iterable[dict]) -> dict:
    c = Collector()
    for rec in records:
        c.add(rec)
    return c.data()


def _loop_wait_end_after(loops: list[Lane], t: float) -> tuple[int, float] | None:
    """The loop lane and the time its wait in progress at t (or the next) returns."""
    best = None
    for lane in loops:
        for w in lane.waits.all():  # waits are in time order
            if w.end >= t:
                if best is None or w.end < best[1]:
                    best = (lane.tid, w.end)
                break
    return best


TIP = 200  # characters of a note a mark's hover title shows


def _tip(text: str, most: int = TIP) -> str:
    """A hover title: the note, cut short (a wait's list of ready fds can be long)."""
    return html.escape(text if len(text) <= most else text[:most - 1] + "…")


def nice_step(span: float, ticks: int = 8) -> float:
    """A tick step of 1, 2 or 5 times a power of ten giving about `ticks` ticks over `span`."""
    raw = max(span / ticks, 1e-9)
    power = 10 ** math.floor(math.log10(raw))
    return next(k * power for k in (1, 2, 5, 10) if k * power >= raw)


def tick_label(t: float, step: float) -> str:
    """A time since the trace began, in the unit its step reads best in."""
    if step >= 1:
        return f"{t:.{0 if step == int(step) else 1}f} s"
    if step >= 1e-3:
        return f"{t * 1e3:.{0 if abs(step * 1e3 - round(step * 1e3)) < 1e-9 else 1}f} ms"
    return f"{t * 1e6:.0f} µs"


def ticks(a: float, b: float) -> list[tuple[float, str]]:
    """(seconds since the start, label) for the ticks between a and b."""
    step = nice_step(b - a)
    first = math.ceil(a / step - 1e-9)
    out = []
    for i in range(first, first + 40):
        t = i * step
        if t > b + 1e-12:
            break
        out.append((t, tick_label(t, step)))
    return out


def shown_lanes(lanes: list[Lane]) -> tuple[list[Lane], int]:
    """At most MAX_LANES lanes: every loop and pool thread first, then the busiest others;
    returns them (in drawing order) and how many were left out."""
    if len(lanes) <= MAX_LANES:
        return lanes, 0
    busy = sorted(lanes, key=lambda l: (l.role not in ("loop", "pool"),
                                        -(sum(m.count for m in l.marks) + len(l.waits)), l.tid))
    keep = {id(l) for l in busy[:MAX_LANES]}
    return [l for l in lanes if id(l) in keep], len(lanes) - MAX_LANES


def render(data: dict, title: str) -> str:
    t0, t1 = data["t0"], data["t1"]
    span = max(t1 - t0, 1e-6)
    order = {"loop": 0, "pool": 1, "other": 2}
    every = sorted(data["lanes"].values(), key=lambda l: (order.get(l.role, 3), l.tid))
    lanes, hidden = shown_lanes(every)
    data["hidden_lanes"] = hidden
    y = {lane.tid: TOP + i * LANE_H for i, lane in enumerate(lanes)}
    height = TOP + len(lanes) * LANE_H + 10

    def x(t: float) -> float:
        return round((t - t0) / span * WIDTH, 3)

    def w(a: float, b: float, least: float = 0.6) -> float:
        return round(max((b - a) / span * WIDTH, least), 3)

    parts = []
    shaded = [(label, a, b) for label, (a, b) in data["requests"].items() if label.startswith("request")]
    for i, (label, a, b) in enumerate(shaded):
        parts.append(f'<rect class="req r{i % 2}" x="{x(a)}" y="0" width="{w(a, b)}" height="{height}">'
                     f'<title>{html.escape(label)}</title></rect>')
    # Open on the requests (start-up imports dwarf them); "whole trace" shows all.
    if shaded:
        lo, hi = x(shaded[0][1]), x(max(b for _, _, b in shaded))
        pad = max((hi - lo) * 0.02, 0.5)
        view = (max(0.0, lo - pad), min(WIDTH, hi + pad) - max(0.0, lo - pad))
    else:
        view = (0.0, float(WIDTH))
    for lane in lanes:
        ly = y[lane.tid]
        parts.append(f'<line class="lane" x1="0" x2="{WIDTH}" y1="{ly + LANE_H / 2}" y2="{ly + LANE_H / 2}"/>')
        for m in lane.waits.thin(t0, t1):
            parts.append(f'<rect class="wait" x="{x(m.start)}" y="{ly + 6}" width="{w(m.start, m.end)}" '
                         f'height="{LANE_H - 12}"><title>{_tip(m.note)}</title></rect>')
        for m in lane.marks.thin(t0, t1):
            count = f" ×{m.count}" if m.count > 1 else ""
            parts.append(f'<rect class="mark {m.category}" x="{x(m.start)}" y="{ly + 9}" '
                         f'width="{w(m.start, m.end, 1.2)}" height="{LANE_H - 18}">'
                         f'<title>{_tip(m.name + count + ": " + m.note)}</title></rect>')
    loops = [lane for lane in lanes if lane.role == "loop"]
    for ts, tid in data["wakeups"]:
        got = _loop_wait_end_after(loops, ts)
        if got is None or tid not in y:
            continue
        loop_tid, back = got
        parts.append(f'<line class="arrow" x1="{x(ts)}" y1="{y[tid] + LANE_H / 2}" x2="{x(back)}" '
                     f'y2="{y[loop_tid] + LANE_H / 2}" marker-end="url(#head)">'
                     f'<title>wakeup: thread {tid} wakes loop {loop_tid}</title></line>')
    labels = "".join(f'<div class="lab {lane.role}" style="top:{y[lane.tid]}px">{lane.role} {lane.tid}</div>'
                     for lane in lanes)
    buttons = "".join(f'<button data-a="{x(a)}" data-b="{x(b)}">{html.escape(label)}</button>'
                      for label, (a, b) in data["requests"].items())
    tags = "".join(f'<div class="tag" data-a="{x(a)}">{html.escape(label.split(": ", 1)[-1])}</div>'
                   for label, a, b in shaded)
    # The axis as drawn before any script runs (positions in % of the drawing); the script
    # redraws it on every zoom and pan.
    va, vb = view[0] / WIDTH * span, (view[0] + view[1]) / WIDTH * span
    axis = "".join(f'<div class="tick" style="left:{(t - va) / (vb - va) * 100:.3f}%"><span>{text}</span></div>'
                   for t, text in ticks(va, vb))
    legend = "".join(f'<span><i style="background:{c}"></i>{k}</span>' for k, c in COLORS.items())
    note = (f'<p id="capped">showing {len(lanes)} of {len(every):,} threads: every loop and pool '
            f'thread, then the busiest others ({hidden:,} left out; events.jsonl and trace.json keep '
            f'them all)</p>' if hidden else "")
    svg = (f'<svg id="tl" xmlns="http://www.w3.org/2000/svg" viewBox="{view[0]} 0 {view[1]} {height}" '
           f'preserveAspectRatio="none" width="{WIDTH}" height="{height}">'
           '<defs><marker id="head" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
           'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#9467bd"/>'
           '</marker></defs>' + "".join(parts) + "</svg>")
    meta = json.dumps({"span_s": span, "width": WIDTH})
    return PAGE.format(title=html.escape(title), labels=labels, svg=svg, buttons=buttons, legend=legend,
                       tags=tags, tags_h=TAG_ROWS * TAG_H, tag_h=TAG_H, tag_rows=TAG_ROWS, axis=axis,
                       page_h=height + PAGE_CHROME + TAG_ROWS * TAG_H + (24 if hidden else 0), top=TOP,
                       height=height, left=LEFT, width=WIDTH, wait=WAIT_COLOR, meta=meta, capped=note,
                       span=_duration(span), css_colors="".join(
                           f".{k}{{fill:{c}}}" for k, c in COLORS.items()))


def _duration(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1000:.1f} ms"


class Timeline(Renderer):
    """timeline.html from the records; `close` writes it and returns what it shows:
    {"lanes": drawn, "threads": in all, "hidden": left out, "calls": drawn from}.
    With `empty_ok` False, records with no call to draw raise NotEvents and nothing is written."""

    def __init__(self, out: Path, title: str, empty_ok: bool = True) -> None:
        self.out, self.title, self.empty_ok = out, title, empty_ok
        self.collector = Collector()
        self.add = self.collector.add
        self.add_copies = self.collector.add_copies

    def close(self) -> dict:
        data = self.collector.data()
        if not data["calls"] and not self.empty_ok:
            raise NotEvents("it holds no call with a time and a thread to draw")
        self.out.write_text(render(data, self.title))
        return {"threads": len(data["lanes"]), "hidden": data["hidden_lanes"],
                "lanes": len(data["lanes"]) - data["hidden_lanes"], "calls": data["calls"]}


def write(records: Iterable[dict], out: Path, title: str, empty_ok: bool = True) -> dict:
    """Write the page from `records` (see Timeline)."""
    return fan_out(records, [Timeline(out, title, empty_ok)])[0]


class NotEvents(ValueError):
    """A line of the input is not an events.jsonl record."""


# The fields the page reads, and what each must be (None is always allowed).
_NUMBERS = ("ts", "duration")
_INTS = ("tid", "line")
_TEXTS = ("kind", "syscall", "category", "thread", "note", "request")
_MOST_TIME = 1e11  # seconds: an epoch time, or a time of day; beyond it the input is not a trace


def _kind_of(value) -> str:
    return {str: "a string", list: "a list", dict: "an object", bool: "a boolean", int: "a number",
            float: "a number"}.get(type(value), type(value).__name__)


def check_record(rec: dict) -> str:
    """'' for a record whose fields the page can use, else what is wrong with it."""
    for key in _NUMBERS:
        v = rec.get(key)
        if v is None:
            continue
        if type(v) not in (int, float):
            return f"field {key!r} is {_kind_of(v)}, not a number"
        try:
            ok = math.isfinite(float(v)) and 0 <= v < _MOST_TIME
        except OverflowError:
            ok = False
        if not ok:
            return f"field {key!r} is out of range ({str(v)[:20]}{'…' if len(str(v)) > 20 else ''})"
    for key in _INTS:
        v = rec.get(key)
        if v is not None and (type(v) is not int or not 0 <= v < 1 << 32):
            return f"field {key!r} is {_kind_of(v)}, not a thread or line number" if type(v) is not int \
                else f"field {key!r} is out of range ({str(v)[:20]})"
    for key in _TEXTS:
        v = rec.get(key)
        if v is not None and type(v) is not str:
            return f"field {key!r} is {_kind_of(v)}, not a string"
    return ""


def from_jsonl(path: Path) -> Iterable[dict]:
    """The records of an events.jsonl, each checked; NotEvents on the first that is not one."""
    with open(path, errors="replace") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    rec = json.loads(line)
                except RecursionError:
                    raise NotEvents(f"{path} line {n} is JSON nested too deeply to be a record") from None
                except ValueError as e:  # JSONDecodeError, or an integer of too many digits
                    raise NotEvents(f"{path} line {n} is not JSON ({getattr(e, 'msg', e)})") from None
                if not isinstance(rec, dict):
                    raise NotEvents(f"{path} line {n} is JSON but not a record")
                wrong = check_record(rec)
                if wrong:
                    raise NotEvents(f"{path} line {n}: {wrong}")
                yield rec


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="epoll-lab-page-height" content="{page_h}">
<style>
body{{font:13px system-ui,sans-serif;margin:12px;color:#222;min-width:640px}}
h1{{font-size:16px;margin:0 0 6px;overflow-wrap:anywhere}}
#bar{{display:flex;flex-wrap:wrap;align-items:center;gap:2px 4px;margin:4px 0}}
#bar button{{font-size:12px}} #legend{{display:flex;flex-wrap:wrap;gap:2px 14px}}
#legend i{{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:middle}}
#capped{{margin:4px 0;color:#a33}}
#wrap{{position:relative;padding-left:{left}px;overflow:hidden;border:1px solid #ddd}}
.lab{{position:absolute;left:6px;width:{left}px;font-size:12px;line-height:34px;font-weight:600;white-space:nowrap}}
.lab.loop{{color:#2e8b57}} .lab.pool{{color:#1f77b4}} .lab.other{{color:#777}}
svg{{display:block;cursor:grab;background:#fff;width:100%}}
.req.r0{{fill:#fff3c4}} .req.r1{{fill:#e8f0fb}}
#tags{{position:relative;height:{tags_h}px;margin-left:{left}px;overflow:hidden}}
.tag{{position:absolute;font-size:11px;line-height:{tag_h}px;white-space:nowrap;color:#555}} .lane{{stroke:#eee}} .wait{{fill:{wait}}}
#axis{{position:absolute;left:{left}px;right:0;top:0;bottom:0;pointer-events:none;overflow:hidden}}
.tick{{position:absolute;top:0;bottom:0;border-left:1px solid rgba(0,0,0,.12)}}
.tick span{{position:absolute;top:2px;left:3px;font-size:11px;color:#444;background:rgba(255,255,255,.8);white-space:nowrap}}
.arrow{{stroke:#9467bd;stroke-width:1.5;vector-effect:non-scaling-stroke}}
{css_colors}
</style></head><body>
<h1>{title}</h1>
<div id="legend">{legend}<span><i style="background:{wait}"></i>waiting in epoll (blocked)</span>
<span>arrow: a pool thread's wakeup write, to the loop's next wait return</span>
<span>axis: time since the trace began</span></div>
<div id="bar">trace: {span}; wheel to zoom, drag to pan, or pick a request:
<button id="reset">whole trace</button>{buttons}</div>
{capped}
<div id="tags">{tags}</div>
<div id="wrap" style="height:{height}px">{labels}{svg}<div id="axis">{axis}</div></div>
<script>
(function () {{
  var meta = {meta}, svg = document.getElementById("tl"), vb = svg.viewBox.baseVal;
  var full = {{x: 0, w: meta.width}}, axis = document.getElementById("axis");
  function label(t, step) {{
    if (step >= 1) return t.toFixed(Math.round(step) === step ? 0 : 1) + " s";
    if (step >= 1e-3) return (t * 1e3).toFixed(Math.abs(Math.round(step * 1e3) - step * 1e3) < 1e-9 ? 0 : 1) + " ms";
    return (t * 1e6).toFixed(0) + " \u00b5s";
  }}
  // Ticks at 1, 2 or 5 times a power of ten, about one per 110 px, in seconds since the start.
  function drawAxis() {{
    var a = vb.x / meta.width * meta.span_s, b = (vb.x + vb.width) / meta.width * meta.span_s;
    var n = Math.max(2, Math.floor(svg.clientWidth / 110)), raw = (b - a) / n;
    var p = Math.pow(10, Math.floor(Math.log10(raw))), steps = [0.5, 1, 2, 5, 10].map(function (k) {{ return k * p; }});
    var i = steps.findIndex(function (s) {{ return s >= raw; }});
    // Rounding the step up can leave three ticks; at least four, while they stay 60 px apart.
    while (i > 0 && (b - a) / steps[i] < 4 && svg.clientWidth * steps[i - 1] / (b - a) >= 60) i--;
    var step = steps[i];
    var html = "";
    for (var t = Math.ceil(a / step - 1e-9) * step; t <= b + 1e-12; t += step) {{
      html += '<div class="tick" style="left:' + ((t - a) / (b - a) * 100).toFixed(3) + '%"><span>' +
        label(Math.round(t / step) * step, step) + "</span></div>";
    }}
    axis.innerHTML = html;
    // A label that would run past the right edge is left out (its line stays).
    axis.querySelectorAll(".tick span").forEach(function (s) {{
      if (s.parentNode.offsetLeft + s.offsetLeft + s.offsetWidth > axis.clientWidth) s.style.display = "none";
    }});
  }}
  // Request labels never overprint: each goes on the first of {tag_rows} rows where it
  // clears the label before it; one that fits on none is left out (its request's
  // shading and button stay), and shows again when a zoom makes room.
  function place() {{
    var ends = [];
    for (var i = 0; i < {tag_rows}; i++) ends.push(-1e9);
    document.querySelectorAll(".tag").forEach(function (t) {{
      var px = (+t.dataset.a - vb.x) / vb.width * svg.clientWidth;
      t.style.display = "";
      t.style.left = px + "px";
      var w = t.offsetWidth, row = -1;
      for (var r = 0; r < ends.length && row < 0; r++) if (px >= ends[r] + 6) row = r;
      if (px < 0 || px + w > svg.clientWidth || row < 0) {{ t.style.display = "none"; t.dataset.row = ""; return; }}
      ends[row] = px + w;
      t.style.top = (row * {tag_h}) + "px";
      t.dataset.row = row; t.dataset.w = w;
    }});
    drawAxis();
  }}
  function show(x, w) {{
    w = Math.min(Math.max(w, full.w / 100000), full.w);
    x = Math.max(full.x, Math.min(x, full.x + full.w - w));
    vb.x = x; vb.width = w; place();
  }}
  place();
  window.addEventListener("resize", place);
  svg.addEventListener("wheel", function (e) {{
    e.preventDefault();
    var r = svg.getBoundingClientRect(), at = vb.x + (e.clientX - r.left) / r.width * vb.width;
    var k = e.deltaY < 0 ? 0.8 : 1.25, w = Math.min(full.w, vb.width * k);
    show(at - (at - vb.x) * w / vb.width, w);
  }}, {{passive: false}});
  var drag = null;
  svg.addEventListener("mousedown", function (e) {{ drag = {{x: e.clientX, vx: vb.x}}; }});
  window.addEventListener("mouseup", function () {{ drag = null; }});
  window.addEventListener("mousemove", function (e) {{
    if (!drag) return;
    var r = svg.getBoundingClientRect();
    show(drag.vx - (e.clientX - drag.x) / r.width * vb.width, vb.width);
  }});
  document.getElementById("reset").onclick = function () {{ show(full.x, full.w); }};
  document.querySelectorAll("#bar button[data-a]").forEach(function (b) {{
    b.onclick = function () {{
      var a = +b.dataset.a, z = +b.dataset.b, pad = (z - a) * 0.1 + 1;
      show(a - pad, z - a + 2 * pad);
    }};
  }});
  // #zoom=<request label> (`epoll-lab screenshot --zoom` uses it): open on that request.
  var want = decodeURIComponent((location.hash.match(/^#zoom=(.*)$/) || [])[1] || "");
  var pick = want && Array.prototype.find.call(document.querySelectorAll("#bar button[data-a]"),
    function (b) {{ return b.textContent.indexOf(want) === 0; }});
  if (pick) pick.onclick();
}})();
</script>
</body></html>
"""
