"""Where raw strace lines come from: one log, standard input, or the per-pid
files of `strace -ff -o NAME` merged into one stream by timestamp.

Each yields numbered items `(line, text)` or, for a merge, `(line, text,
"file:line")`: the merged stream is numbered anew and every line names the
file line it came from, so nothing is lost and everything can be found.
"""

from __future__ import annotations

import heapq
import io
import re
import stat
from pathlib import Path
from typing import IO, BinaryIO, Callable, Iterator

from tracing.parse import split_prefix

Items = Iterator[tuple]


class InputError(Exception):
    pass


def as_text(binary: BinaryIO) -> IO[str]:
    """A byte stream as text lines the way strace and sed count them: split at
    "\\n" only (a lone "\\r" stays inside its line), bytes that are not UTF-8
    replaced, so every record writes as valid UTF-8."""
    return io.TextIOWrapper(binary, encoding="utf-8", errors="replace", newline="\n")


def open_text(path: Path | str) -> IO[str]:
    return open(path, encoding="utf-8", errors="replace", newline="\n")


def stream(args: list[str]) -> str | None:
    """The one input that can be read only once (standard input, a FIFO), or None."""
    if args == ["-"]:
        return "-"
    if len(args) == 1:
        try:
            mode = Path(args[0]).stat().st_mode
        except OSError:
            return None
        if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode):
            return args[0]
    return None


def expand(args: list[str]) -> list[Path]:
    """The files named, where `NAME` also stands for `NAME.<pid>` from -ff."""
    out: list[Path] = []
    for arg in args:
        p = Path(arg)
        if p.is_file():
            try:
                open(p, "rb").close()
            except OSError as e:
                raise InputError(f"cannot read {arg}: {e.strerror}") from None
            out.append(p)
            continue
        if p.is_dir():
            raise InputError(f"{arg} is a directory: name the strace log in it "
                             f"(e.g. {p / 'raw.strace'})")
        if p.exists():
            raise InputError(f"{arg} is not a regular file: give a strace log, or - to read "
                             "standard input")
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
    try:
        f = open_text(path)
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}") from None
    with f:
        yield from enumerate(f, 1)


# -r times are relative to the line before in the same file: they cannot
# order lines across files. -t/-tt/-ttt can.
_RELATIVE = re.compile(r"^\s+\d+\.\d+ ")


def mergeable(paths: list[Path]) -> tuple[bool, str]:
    """Can these -ff files be merged by time? (yes/no, why not)."""
    for path in paths:
        with open_text(path) as f:
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
