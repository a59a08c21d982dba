"""The one interface every output has, and the fan-out that feeds them.

A renderer takes the annotator's records one by one, in log order (`add`),
and finishes its output at the end (`close`, which returns what it has to
say: counts, an index). Lines that repeat a call the annotator kept come
as one `Copies` (`add_copies`): rows of the call and the line's own fields
(number, time, duration, text). A renderer keeps its own template of each
call in `call.forms` and fills those in, so the work per repeated line is a
lookup and a format; the first record of a call carries it too
(`rec["call"]`).
Whatever a renderer must remember across records (waits, wakeup flows,
request headers, the start-up fold) it keeps itself.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import IO, Iterable

from ..understand.records import Copies

BATCH = 512  # lines written per write call: one call per line cost as much as annotating it


class Renderer:
    def add(self, rec: dict) -> None:
        raise NotImplementedError

    def add_copies(self, rows: Copies) -> None:
        """Lines that repeat kept calls (see Copies); by default each as its record."""
        add = self.add
        for rec in rows.records():
            add(rec)

    def flush(self) -> None:
        """Write out what is batched (live mode, before it waits for more)."""

    def close(self):
        return None

    def abort(self) -> None:
        """The records stopped with an error: keep what was written, finish nothing."""
        self.flush()


def fan_out(records: Iterable[dict | Copies], renderers: list[Renderer]) -> list:
    """Every record (and run of copies) to every renderer, in one pass; then each is closed.
    Returns what each `close` said. If the records end with an error, each renderer is
    aborted instead (what it wrote stays; a page or an index is not made) and the error goes on."""
    adds = [r.add for r in renderers]
    copies = [r.add_copies for r in renderers]
    try:
        for rec in records:
            if rec.__class__ is Copies:
                for add in copies:
                    add(rec)
            else:
                for add in adds:
                    add(rec)
    except BaseException:
        for r in renderers:
            try:
                r.abort()
            except Exception:  # the first error is the one to report
                pass
        raise
    return [r.close() for r in renderers]


class Lines:
    """Text lines gathered and written BATCH at a time."""

    __slots__ = ("out", "batch")

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.batch: list[str] = []

    def flush(self) -> None:
        if self.batch:
            self.batch.append("")  # the last line's newline, without copying the joined text again
            self.out.write("\n".join(self.batch))
            self.batch.clear()


def new_file(path: Path, mode: str = "w") -> IO:
    """`open(path, mode)` as a new file: a regular file of an earlier run there is unlinked,
    not truncated. ext4 flushes a file that was truncated and written again when it is
    closed (its guard for programs that save in place), and the truncating frees the old
    pages in the writer's time; `--format all` over its own earlier output took 8.5-8.8 s
    that way, 7.5-7.8 s with the old files gone (a hard link to one keeps its text). A
    symbolic link, a FIFO or a device is opened as it is."""
    try:
        if stat.S_ISREG(os.lstat(path).st_mode):
            os.unlink(path)
    except OSError:  # not there, or not ours to unlink: open says what is wrong, if anything
        pass
    return open(path, mode)
