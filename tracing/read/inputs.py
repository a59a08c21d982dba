"""Where raw strace lines come from: one log, standard input, or the per-pid
files of `strace -ff -o NAME` merged into one stream by timestamp.

Each yields numbered items `(line, text)` or, for a merge, `(line, text,
"file:line")`: the merged stream is numbered anew and every line names the
file line it came from, so nothing is lost and everything can be found.
"""

from __future__ import annotations

import bz2
import gzip
import heapq
import io
import lzma
import re
import stat
from pathlib import Path
from typing import IO, BinaryIO, Callable, Iterator

from ..errors import command_name
from .parse import split_prefix

Items = Iterator[tuple]


class InputError(Exception):
    pass


# A log kept compressed (`strace -o >(gzip > app.strace.gz)`, logrotate): read as it is,
# known by its first bytes, not its name.
COMPRESSED = ((b"\x1f\x8b", "gzip", lambda f: gzip.GzipFile(fileobj=f)), (b"BZh", "bzip2", bz2.BZ2File),
              (b"\xfd7zXZ\x00", "xz", lzma.LZMAFile))
ZSTD = b"\x28\xb5\x2f\xfd"


# Bytes read and decoded at a time: a log is read twice, and at 8 KiB (io's default) each
# pass of the bench's 240 MB log took 0.17-0.26 s of CPU; at 64 KiB 0.12-0.18 (at 1 MiB more
# than at 8 KiB: the chunk no longer fits the cache).
CHUNK = 1 << 16


def as_text(binary: BinaryIO, name: str = "standard input") -> IO[str]:
    """A byte stream as text lines the way strace and sed count them: split at
    "\\n" only (a lone "\\r" stays inside its line), bytes that are not UTF-8
    replaced, so every record writes as valid UTF-8. gzip, bzip2 and xz are
    read through; zstd (not in Python's library) is refused, saying so."""
    head = binary.peek(6)[:6] if hasattr(binary, "peek") else b""
    for magic, kind, reader in COMPRESSED:
        if head.startswith(magic):
            binary = _Checked(reader(binary), binary, name, kind)
            break
    else:
        if head.startswith(ZSTD):
            raise InputError(f"{name} is zstd-compressed, which this tool does not read: "
                             f"decompress it first (zstd -d), or pipe it in: zstd -dc FILE | "
                             f"{command_name()} annotate -")
    text = io.TextIOWrapper(binary, encoding="utf-8", errors="replace", newline="\n")
    text._CHUNK_SIZE = CHUNK
    return text


class _Checked(io.BufferedIOBase):
    """A decompressing reader whose errors (a cut or corrupt archive) say what was being read."""

    def __init__(self, inner, raw: BinaryIO, name: str, kind: str) -> None:
        super().__init__()
        self.inner, self.raw, self.name, self.kind = inner, raw, name, kind

    def readable(self) -> bool:
        return True

    def _guard(self, read, *args):
        try:
            return read(*args)
        except (OSError, EOFError, lzma.LZMAError) as e:
            raise InputError(f"{self.name} is {self.kind}-compressed and cannot be read to its end "
                             f"({e}): is it whole?") from None

    def read(self, size: int = -1) -> bytes:
        return self._guard(self.inner.read, size)

    def read1(self, size: int = -1) -> bytes:
        return self._guard(self.inner.read1, size)

    def readinto(self, b) -> int:
        return self._guard(self.inner.readinto, b)

    def close(self) -> None:
        self.inner.close()  # a reader given a file object leaves it open
        self.raw.close()
        super().close()


def open_text(path: Path | str) -> IO[str]:
    binary = open(path, "rb", buffering=CHUNK)
    try:
        return as_text(binary, str(path))
    except BaseException:
        binary.close()
        raise


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


class _Numbered(enumerate):
    """One file's lines numbered from 1, at enumerate's own speed (a generator's step per
    line cost a tenth of what annotating a repeated line costs); the file is closed when
    the lines are let go. A compressed file's read errors are InputErrors (`_Checked`)."""

    def __new__(cls, path: Path):
        try:
            f = open_text(path)
        except OSError as e:
            raise InputError(f"cannot read {path}: {e.strerror}") from None
        self = super().__new__(cls, f, 1)
        self.file = f
        return self

    def __del__(self) -> None:
        self.file.close()


def _numbered(path: Path) -> Items:
    try:
        f = open_text(path)
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}") from None
    with f:
        try:
            yield from enumerate(f, 1)
        except OSError as e:  # the disk, not the text (a compressed file's own errors say so)
            raise InputError(f"cannot read {path}: {e.strerror or e}") from None


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
    if len(paths) == 1 and _one_of_ff(paths[0]):
        # One `-ff` file named directly: its lines have no pid column, its name has the pid.
        return lambda: ((n, text, f"{paths[0].name}:{n}") for _, _, n, text in _keyed(0, paths[0]))
    if len(paths) == 1:
        return lambda: _Numbered(paths[0])
    return lambda: merged(paths, warn)


def _one_of_ff(path: Path) -> bool:
    """`NAME.<pid>` whose first line has no pid of its own: one file of strace -ff."""
    if _pid_of(path) is None:
        return False
    with open_text(path) as f:
        first = next((line for line in f if line.strip()), "")
    return bool(first) and split_prefix(first)[0] is None
