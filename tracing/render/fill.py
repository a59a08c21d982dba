"""Forms: a renderer's template of a call's output, filled per line.

A form is a tuple `(text, slot, text, slot, ..., text)`: its texts are as
they go out, each slot names a field of a row (`tracing.understand.records.
Copies`: call, line, time, duration, text, source, request, forms) and how
to write it. `fill` writes a run of rows, each through its call's form, in
one go; a compiled twin (`tracing/_core.c`) does the same, and the tests hold
them to one another on every recorded log.
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


try:
    if os.environ.get("EPOLL_LAB_PURE_PYTHON"):  # the Python twin only: the bench's row that shows what C pays
        raise ImportError
    from .._core import fill
except ImportError:  # built by `make setup`; without a compiler the Python twin runs
    fill = _fill
