"""The one grammar of a strace line's prefix, and the scanner built on it.

A line is `[pid  N] ` or `N ` (strace -f to stderr or to a file; -Y adds the
process's name, `N<python3> `), a time (-ttt or -r seconds, -t/-tt clock),
-n's syscall number `[ 257] ` and -i's instruction pointer, then the call,
and with -T its duration ` <0.000012>` at the end.

`split_prefix` peels the prefix off any line (the parser's careful path).
`scan` cuts a line into its *call key* (the prefix's pid text and the call
without time or duration), its time and its duration without reading the
call: two lines with one key are one call made again, which the annotator
decides once (`tracing.understand.annotate`). Everything that tells the two
lines apart (line number, time, duration, -i's address) is left out of the
key; everything else is in it.
"""

from __future__ import annotations

import os

import re

# The pieces, shared by every pattern that reads a prefix (here, the parser's fast pattern and
# the learning pass's skim).
PID = r"(?:\[pid +(\d{1,10})(?:<[^>\n]{0,64}>)?\] |(\d{1,10})(?:<[^>\n]{0,64}>)? +)"
SECONDS = r"(\d{1,12}\.\d+)"
NUMBER_IP = r"(?:\[ *\d{1,5}\] +)?(?:\[(?:[0-9a-f]{8,16}|\?{8,16})\] +)?"

# The careful forms: any white space between the parts, and the clock times of -t/-tt.
_PID = re.compile(r"^(?:\[pid\s+(\d{1,10})(?:<[^>\n]{0,64}>)?\]\s|(\d{1,10})(?:<[^>\n]{0,64}>)?\s+)")
_TS = re.compile(r"^\s*(?:(\d{1,12}\.\d+)|(\d\d):(\d\d):(\d\d)(?:\.(\d+))?)\s+")
_NUMBER_IP = re.compile(r"^(?:\[\s*\d{1,5}\]\s+)?(?:\[(?:[0-9a-f]{8,16}|\?{8,16})\]\s+)?")


def split_prefix(text: str) -> tuple[int | None, float | None, str]:
    """Peel the pid and timestamp prefixes off one line."""
    tid = None
    m = _PID.match(text)
    if m:
        tid = int(m.group(1) or m.group(2))
        text = text[m.end():]
    ts = None
    m = _TS.match(text)
    if m:
        if m.group(1):
            ts = float(m.group(1))
        else:
            h, mi, s, frac = m.group(2, 3, 4, 5)
            ts = int(h) * 3600 + int(mi) * 60 + int(s) + (float("0." + frac) if frac else 0.0)
        text = text[m.end():]
    if text[:1] == "[":
        text = text[_NUMBER_IP.match(text).end():]
    return tid, ts, text


# The pid as printed (one group: its text is part of the key), the seconds, the rest.
_KEY = re.compile(r"(\[pid +\d{1,10}(?:<[^>\n]{0,64}>)?\] |\d{1,10}(?:<[^>\n]{0,64}>)? +)? *"
                  r"(?:" + SECONDS + " +)?" + NUMBER_IP)
_DURATION = re.compile(r"\d{1,12}\.\d+")


def scan(raw: str) -> tuple[tuple[str | None, str], str | None, str | None]:
    """(call key, seconds text or None, duration text or None) of one raw line.

    The duration is cut off only where the parser reads one (` <digits.digits>`
    at the very end), so one key never stands for two different calls."""
    m = _KEY.match(raw)
    body = raw[m.end():]
    if body[-1:] == "\n":
        body = body[:-1]
    duration = None
    if body[-1:] == ">":
        i = body.rfind(" <")
        if i > 0 and _DURATION.fullmatch(body, i + 2, len(body) - 1):
            duration = body[i + 2:-1]
            body = body[:i]
    return (m.group(1), body), m.group(2), duration


FULL = True  # copy_lines' answer when `rows` holds `most`: more may follow
BREAK = "break"  # an item that is no line: copy_lines stops there (live mode: show what came)


def _copy_lines(items, live: dict, last: dict, at: dict, window: float | None, rows: list, most: int,
                brief: float):
    """Take lines from `items` while each repeats a call in `live`; one row per line.

    `live` maps a call key to `(call, tid, flags, forms)`, or to False: a line to
    pass over (no row; its thread's last call stays). A line whose flags have 1
    (its thread waits for readiness) is taken only within `window` seconds of
    that thread's last call (`at[tid]`; no window: always); one whose flags have 4
    only if its duration is under `brief` seconds, or not shown. Each line taken
    becomes its thread's last (`last[tid]` its item, `at[tid]` its time, or None
    if its flags have 2: a time that starts no gap) and a row `(call, line, time,
    duration, text, source, None, forms)` in `rows` (text as read, its newline
    too); with `rows` None (the learning pass) no row is made. Returns the
    first item not taken (an item that is not a tuple, such as BREAK, is
    never taken), None when the items end, or FULL when `rows` holds `most`. A compiled twin (`tracing/_core.c`) does the same; the tests hold them to
    one another on every recorded log.
    """
    put = dict.__setitem__
    for item in items:
        if item.__class__ is not tuple:
            return item
        raw = item[1]
        key, ts, duration = scan(raw)
        got = live.get(key)
        if got is None:
            return item
        if got is False:
            continue
        call, tid, flags, forms = got
        if flags & 4 and duration is not None and float(duration) >= brief:
            return item
        if ts is not None:
            ts = float(ts)
            if flags & 1 and window is not None:
                then = at.get(tid)
                if then is not None and ts - then >= window:
                    return item
        put(last, tid, item)
        at[tid] = None if flags & 2 else ts
        if rows is None:
            continue
        rows.append((call, item[0], ts, None if duration is None else float(duration), raw,
                     item[2] if len(item) > 2 else None, None, forms))
        if len(rows) >= most:
            return FULL
    return None


try:
    if os.environ.get("EPOLL_LAB_PURE_PYTHON"):  # the Python twin only: the bench's row that shows what C pays
        raise ImportError
    from .._core import copy_lines
except ImportError:  # built by `make setup`; a plain pip install may have had no compiler
    copy_lines = _copy_lines


def compiled() -> bool:
    return copy_lines is not _copy_lines
