"""A status line for long work: how far the annotator has read a big log.

Drawn on a terminal only (a pipe or a file gets nothing, so programs reading
stderr see what they always saw), first after EVERY items, then at most every
INTERVAL seconds, and wiped when the work ends, so the lines printed after it
start clean.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import IO, Callable, Iterable, Iterator

INTERVAL = 0.5  # seconds between redraws
EVERY = 8192  # items between looks at the clock (a look per line would cost more than the
              # line): a log shorter than this is read before there is anything to say


_drawn: list[Progress] = []  # the status line on the screen now, if any


def wipe() -> None:
    """Wipe the status line off the screen, if one is there: before anything else is
    printed (an error, a Ctrl-C's one line), which would otherwise land on its end."""
    for line in list(_drawn):
        line.clear()


class Progress:
    def __init__(self, stream: IO[str] | None, on: bool | None = None) -> None:
        self.stream = stream
        tty = stream is not None and stream.isatty()
        self.on = tty if on is None else on and tty
        self.shown = False

    def passes(self, open_items: Callable[[], Iterable[tuple]], passes: int = 2) -> Callable[[], Iterable]:
        """`open_items` (the annotator opens its input once per pass) with each pass's
        lines counted on the status line; the first pass's count is the later ones' total."""
        if not self.on:
            return open_items
        done: list[int] = []

        def opened() -> Iterator[tuple]:
            what = f"pass {len(done) + 1} of {passes}: " + ("learning thread roles" if not done
                                                              else "annotating")
            n = yield from self.count(open_items(), what, done[-1] if done else None)
            done.append(n)
        return opened

    def count(self, items: Iterable, what: str, total: int | None = None) -> Iterator:
        """Pass `items` on, saying how many have gone by; returns the count."""
        n = 0
        next_at = 0.0  # the first look draws at once: the line is there from the start
        try:
            for n, item in enumerate(items, 1):
                if not n % EVERY and time.monotonic() >= next_at:
                    self.show(what, n, total)
                    next_at = time.monotonic() + INTERVAL
                yield item
        finally:
            self.clear()
        return n

    def show(self, what: str, n: int, total: int | None) -> None:
        done = f"{n:,} of {total:,} lines ({min(100, n * 100 // total)}%)" if total else f"{n:,} lines"
        # One line only: a line that wraps cannot be wiped with \r.
        width = shutil.get_terminal_size().columns - 1
        self.stream.write(f"\r{f'[epoll-lab] {what}: {done}'[:width]}\x1b[K")
        self.stream.flush()
        if not self.shown:
            self.shown = True
            _drawn.append(self)

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False
            _drawn.remove(self)


def eprint(*a) -> None:
    """A message on standard error, after wiping the status line."""
    wipe()
    print(*a, file=sys.stderr, flush=True)
