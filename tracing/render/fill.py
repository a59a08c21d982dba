"""Forms: a renderer's template of a call's output, filled per line.

A form is a tuple `(text, slot, text, slot, ..., text)`: its texts are as
they go out, each slot names a field of a row (`tracing.understand.records.
Copies`: call, line, time, duration, text, source, request, forms) and how
to write it. `fill` writes a run of rows, each through its call's form, in
one go; `slices` writes a run of rows as Trace Event slices, placing each on
its thread's track. Compiled twins (`tracing/_core.c`) do the same, and the
tests hold them to one another on every recorded log.
"""

from __future__ import annotations

import os

from typing import Callable

# Where a row's fields are, and how a slot writes one: `field * 4 + how`.
LINE, TS, DURATION, TEXT, SOURCE, REQUEST = 1, 2, 3, 4, 5, 6
# repr (None: null); quote() (None: null); the str (a line's: without its final newline); an int right-aligned in 7
NUMBER, QUOTED, AS_IS, WIDE = 0, 1, 2, 3


def slot(field: int, how: int) -> int:
    return field * 4 + how


def _fill(rows: list, start: int, key, quote: Callable[[str], str]) -> tuple[str, int]:
    """The rows from `start`, each through its call's form for `key` (`row[7][key]`),
    joined by newlines; it stops at the first row whose call has no such form: (text,
    the index it stopped at)."""
    if start < 0:
        raise ValueError("start is an index into rows")
    out = []
    for i in range(start, len(rows)):
        row = rows[i]
        form = row[7].get(key)
        if form is None:
            return "\n".join(out), i
        parts = [form[0]]
        for j in range(1, len(form), 2):
            code = form[j]
            value, how = row[code >> 2], code & 3
            if how == NUMBER:
                parts.append("null" if value is None else repr(value))
            elif how == QUOTED:
                parts.append("null" if value is None else quote(value))
            elif how == AS_IS:
                parts.append(value[:-1] if value[-1:] == "\n" else value)
            else:
                parts.append(f"{value:>7}")
            parts.append(form[j + 1])
        out.append("".join(parts))
    return "\n".join(out), len(rows)


EPOCH_US = float(2 ** 50)  # from here on doubles are 0.25 apart (or more): already rounded to 3 places
STEP_US = 0.25  # the smallest gap kept between nested ends: doubles near 1.8e15 µs are 0.25 apart


def place(track_end: dict, track_zero: dict, tid, start: float, dur: float) -> tuple[float, float, int]:
    """A call's slice on its thread's track, never overlapping the call before it: (start,
    duration, 1 if it was moved else 0).

    One thread is in one call at a time, but strace's clocks (-ttt, -T) can
    put a call's start a microsecond before the previous call's end, and a
    cut log can do worse. A viewer would draw such a call inside the other
    (speedscope nests every later slice under it): the later call starts
    where the earlier ended instead, and the trace counts how many moved."""
    last = track_end.get(tid)
    moved = 0
    if last is not None and start < last:
        moved = 1
        dur = max(0.0, start + dur - last)
        start = last
    # A zero-length slice (no -T, or a call under a microsecond) is a begin and an end at
    # one time; sharing that time with another slice's edge, the order is a viewer's guess.
    if last is not None and start == last and (dur == 0 or track_zero.get(tid)):
        start += STEP_US
        dur = max(0.0, dur - STEP_US)
    # The end as a viewer computes it (ts + dur, in doubles near 1.8e15 µs, 0.25 apart): a
    # duration off that grid would end a call past the next one's start.
    dur = (start + dur) - start
    track_end[tid] = start + dur
    track_zero[tid] = dur == 0
    return start, dur, moved


def _slices(rows: list, start: int, key, wanted, roles: dict, loop: str, track_end: dict, track_zero: dict,
            counts: dict) -> tuple[str, int, int]:
    """Trace Event slices of the rows from `start`, placed on their threads' tracks, joined
    by ",\n"; it stops at the first row it cannot write alone (its call has no form for `key`
    yet, or a form that is not a tuple, or the row is in a request, or `wanted` holds its
    line): (text, the index it stopped at, how many slices it moved). A row without a time is
    passed over. The form: (head, args head, args tail, count key, role, tid, pid).

    Each is placed as `place` says."""
    if start < 0:
        raise ValueError("start is an index into rows")
    out, moved = [], 0
    for i in range(start, len(rows)):
        _, line, ts, duration, _, _, request, forms = rows[i]
        if ts is None:
            continue
        form = forms.get(key)
        if form is None or form.__class__ is not tuple or request or line in wanted:
            return ",\n".join(out), i, moved
        head, args_head, args_tail, count, role, tid, pid = form
        if roles.get(tid) != loop:
            roles[tid] = role
        at = ts * 1e6
        at = at if at >= EPOCH_US else round(at, 3)
        dur = round((ts + (duration or 0.0) - ts) * 1e6, 3)
        at, dur, was = place(track_end, track_zero, tid, at, dur)
        moved += was
        out.append(f'{head}{at!r}, "dur": {dur!r}, "pid": {pid!r}, "tid": {tid!r}, {args_head}{line!r}{args_tail}')
        counts[count] = counts.get(count, 0) + 1
    return ",\n".join(out), len(rows), moved


try:
    if os.environ.get("EPOLL_LAB_PURE_PYTHON"):  # the Python twin only: the bench's row that shows what C pays
        raise ImportError
    from .._core import fill, slices
except ImportError:  # built by `make setup`; without a compiler the Python twins run
    fill, slices = _fill, _slices
