"""Where raw strace lines come from: one log, standard input, or the per-pid
files of `strace -ff -o NAME` merged into one stream by timestamp.

Each yields numbered items `(line, text)` or, for a merge, `(line, text,
"file:line")`: the merged stream is numbered anew and every line names the
file line it came from, so nothing is lost and everything can be found.
"""

from __future__ import annotations

import heapq
import re
from pathlib import Path
from typing import Callable, Iterator

from tracing.parse import split_prefix

Items = Iterator[tuple]


class InputError(Exception):
    pass


def expand(args: list[str]) -> list[Path]:
    """The files named, where `NAME` also stands for `NAME.<pid>` from -ff."""
    out: list[Path] = []
    for arg in args:
        p = Path(arg)
        if p.is_file():
            out.append(p)
            continue
        per_pid = sorted((q for q in p.parent.glob(p.name + ".*") if q.suffix[1:].isdigit()),
                         key=lambda q: int(q.suffix[1:]))
        if not per_pid:
            raise InputError(f"no such file: {arg} (nor {arg}.<pid> files from strace -ff)")
        out.extend(per_pid)
    return out


def _pid_of(path: Path) -> int | None:
    suffix = path.suffix[1:]
    return int(suffix) if suffix.isdigit() else None


def _numbered(path: Path) -> Items:
    with open(path, errors="replace") as f:
        for n, text in enumerate(f, 1):
            yield n, text


# -r times are relative to the line before in the same file: they cannot
# order lines across files. -t/-tt/-ttt can.
_RELATIVE = re.compile(r"^\s+\d+\.\d+ ")


def mergeable(paths: list[Path]) -> tuple[bool, str]:
    """Can these -ff files be merged by time? (yes/no, why not)."""
    for path in paths:
        with open(path, errors="replace") as f:
            first = next(f, "")
        if not first.strip():
            continue
        if _RELATIVE.match(first):
            return False, f"{path.name} has -r (relative) times"
        if split_prefix(first)[1] is None:
            return False, f"{path.name} has no timestamps (use -ttt)"
    return True, ""


def _keyed(index: int, path: Path) -> Iterator[tuple]:
    """One -ff file as (time, file index, line, text with its pid prefix)."""
    pid = _pid_of(path)
    prefix = f"{pid} " if pid is not None else ""
    last = float("-inf")
    for n, text in _numbered(path):
        ts = split_prefix(text)[1]
        # A line without a time (a cut-off continuation) stays after its
        # neighbour in the same file.
        last = ts if ts is not None else last
        yield last, index, n, prefix + text


def merged(paths: list[Path], warn: Callable[[str], None] = lambda _: None) -> Items:
    """Several -ff files as one numbered stream in time order."""
    ok, why = mergeable(paths)
    if ok:
        stream = heapq.merge(*(_keyed(i, p) for i, p in enumerate(paths)))
    else:
        warn(f"cannot order the files by time ({why}); reading them one after another")
        stream = (k for i, p in enumerate(paths) for k in _keyed(i, p))
    for n, (_, index, line, text) in enumerate(stream, 1):
        yield n, text, f"{paths[index].name}:{line}"


def opener(args: list[str], warn: Callable[[str], None] = lambda _: None) -> Callable[[], Items]:
    """A function that opens the input afresh (the annotator reads twice)."""
    paths = expand(args)
    if len(paths) == 1:
        return lambda: _numbered(paths[0])
    return lambda: merged(paths, warn)
