"""Live mode: the server under strace, annotated lines on the terminal as the
calls happen, while curl is typed by hand in another terminal.

strace writes into a pipe (`-o /dev/fd/N`); this process reads it a pipe-full
at a time (at most every TICK seconds, at idle CPU priority), keeps the raw
lines, annotates them in one pass (a thread's role is known from its first
epoll wait on) and prints them. The raw log, the annotated log and the JSON
Lines go to traces/<run>-live/ as they come.
Ctrl-C (or the server dying) stops everything by PID and prints the summary.
"""

from __future__ import annotations

import codecs
import fcntl
import os
import re
import select
import signal
import sys
import threading
import time
from pathlib import Path
from typing import IO, Callable, Iterator

from ..understand.annotate import Annotator
from ..names import LOST_CALLS, WAITS
from ..run.recipes import Target
from ..run.scenario import LOAD_SECONDS
from ..errors import EXIT_START, TraceError
from ..run.orchestrate import preflight
from ..run import tracers
from ..run.procs import Traced
from ..run.scenario import load, wait_ready
from ..log import eprint
from ..read.scan import BREAK
from ..render.jsonl import Jsonl
from ..render.renderer import Renderer, fan_out
from ..render.summary import summary_text
from ..render.text import COLORS, Text, use_color

ROLES = ("loop", "pool", "other")
BURST_SHOW = 0.5  # seconds a burst's count may wait before it is shown
QUIET = 0.2  # seconds without output from strace after which a burst's count is shown
# Reads come at most every TICK seconds, up to READ bytes each, from a pipe of PIPE bytes:
# the work per read (flushes, a select, the annotator's set-up) is paid per pipe-full,
# not per line, and strace's lines wait in the pipe meanwhile instead of strace waiting.
TICK = 0.03
READ = PIPE = 1 << 20
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # Linux's number where this Python lacks the name
CATEGORIES = ("pollable", "thread-pooled", "blocking", "wakeup", "other")


def matches(rec: dict, wanted: list[str]) -> bool:
    """--filter words: a thread role, a category, or the start of a call's name."""
    if not wanted:
        return True
    for word in wanted:
        if word in ROLES and rec.get("thread") == word:
            return True
        if word in CATEGORIES and rec.get("category") == word:
            return True
        if (rec.get("syscall") or "").startswith(word):
            return True
    return False


class Screen:
    """One line per event: time, role and tid in fixed columns, call, note.

    A burst of identical calls (zero-timeout polls, say) prints once, then a
    count when something else comes, when strace goes quiet, or every
    BURST_SHOW seconds while the burst goes on. Lines are kept until `flush`,
    which live mode calls once per chunk read from strace, not per line.
    """

    def __init__(self, out: IO, color: bool, wanted: list[str]) -> None:
        self.out, self.color, self.wanted = out, color, wanted
        self.lock = threading.Lock()  # other threads (start-up, stop) print too
        self.same: tuple | None = None
        self.repeats = 0
        self.burst_since = 0.0  # when the count not yet shown began
        self.pending: list[str] = []

    def say(self, text: str) -> None:
        with self.lock:
            self._flush_repeats()
            self.pending.append(text + "\n")
            self._write()

    def record(self, rec: dict) -> None:
        if rec["kind"] == "started" or not matches(rec, self.wanted):
            return
        key = _burst_key(rec)
        with self.lock:
            if self._repeated(key):
                return
            self.same = key if rec["kind"] == "syscall" else None
            self.pending.append(_at(rec.get("ts")) + self._rest(rec))

    def copies(self, rows) -> None:
        """Copied lines (tracing.read.scan.copy_lines): as `record` each, with what a line
        shows of its call (all but the time) worked out once per call."""
        with self.lock:
            for call, _, ts, _, _, _, _, forms in rows:
                form = forms.get("screen")
                if form is None:
                    rec = call.rec
                    form = forms["screen"] = (_burst_key(rec), self._rest(rec)) if matches(rec, self.wanted) else False
                if form is False:
                    continue
                key, rest = form
                if self._repeated(key):
                    continue
                self.same = key
                self.pending.append(_at(ts) + rest)

    def _repeated(self, key: tuple) -> bool:
        """The same as the line shown last: counted in its burst, not shown."""
        if key == self.same:
            if not self.repeats:
                self.burst_since = time.monotonic()
            self.repeats += 1
            return True
        self._flush_repeats()
        return False

    def flush(self) -> None:
        """Show what came so far; a long burst's count too, so it never lags."""
        with self.lock:
            if self.repeats and time.monotonic() - self.burst_since >= BURST_SHOW:
                self._flush_repeats()
            self._write()

    def quiet(self) -> None:
        """strace has gone quiet: show a burst's count now, not when the next call comes."""
        self.finish()

    def _write(self) -> None:
        if self.pending:
            self.out.write("".join(self.pending))
            self.pending.clear()
        self.out.flush()

    def _flush_repeats(self) -> None:
        if self.repeats:
            self.pending.append(f"{'':>12} {'':<12} … {self.repeats} more like the line above\n")
        self.repeats = 0

    def finish(self) -> None:
        with self.lock:
            self._flush_repeats()
            self.same = None
            self._write()

    def _rest(self, rec: dict) -> str:
        """A record's screen line after its time: all that the lines of one call share."""
        who = f"{rec.get('thread', ''):<5} {rec['tid'] or '':<6}"
        what = rec["syscall"] or rec["kind"]
        cat = rec.get("category", "")
        tag = f"[{cat}]"
        if self.color and cat in COLORS:
            tag = f"\x1b[{COLORS[cat]}m{tag}\x1b[0m"
        note = rec["note"]
        if rec["kind"] == "syscall":
            first = (rec.get("args") or "").split(",", 1)[0].split("<", 1)[0][:12]
            what = f"{what}({first}…)" + (f" = {rec['ret']}" if rec["ret"] is not None else "")
        elif rec["kind"] == "strace" and LOST_CALLS.search(rec.get("text") or ""):
            # The tracer lost calls here: the message itself is the news ("N calls lost here").
            note = (rec.get("text") or "").split("strace: ", 1)[-1]
        return f" {who} {what:<26} {tag} {note}\n"


def _at(ts: float | None) -> str:
    """A line's time on the screen, in its fixed column."""
    return f"{clock(ts) if ts else '':>12}"


def _burst_key(rec: dict) -> tuple:
    """What two records share when the second only repeats the first (a burst)."""
    return rec["tid"], rec["syscall"], rec["ret"], rec["category"], _short_args(rec)


_SECOND: list = [None, ""]  # the last whole second shown, and its text: lines come many a second


def clock(ts: float) -> str:
    """A -ttt time as the screen shows it: local wall clock to the millisecond."""
    second = ts // 1  # localtime rounds down, before 1970 too
    if second != _SECOND[0]:
        _SECOND[:] = [second, time.strftime("%H:%M:%S", time.localtime(ts))]
    return _SECOND[1] + f".{int(ts % 1 * 1000):03d}"


def _short_args(rec: dict) -> str:
    # Identical waits: the same note (epoll fd, timeout, ready fds) but for how
    # long they slept; other calls: the same arguments.
    if rec.get("syscall") in WAITS:
        note = rec.get("note") or ""
        return re.sub(r", slept [\d.]+ ms", "", note) if ", slept " in note else note
    return (rec.get("args") or "")[:60]


def start(target: Target, out: Path) -> tuple[Traced, int]:
    """The target's tracer running on it, writing its lines into a pipe; returns the read end."""
    out.mkdir(parents=True, exist_ok=True)
    return tracers.get(target.tracer).start_live(preflight(target.port, target.tracer), target, out)


def chunked_lines(fd: int, raw: IO[bytes], flush: Callable[[], None],
                  quiet: Callable[[], None]) -> Iterator[tuple | str]:
    """strace's lines from the pipe, numbered, read a pipe-full at a time; a BREAK after
    each pipe-full, so what came is annotated and shown before the next read waits.

    Under load strace writes tens of thousands of lines a second; reading them
    as they come (a few lines a read) would cost a read, a select and the
    flushes per few lines, and that CPU is taken from the server. So the pipe is
    made large and read at most every TICK seconds: a line waits up to TICK.
    `flush` runs before each wait, when every line read so far has been
    annotated and shown (the consumer asks for more only when done with what
    it has); `quiet` when strace has written nothing for QUIET seconds.
    """
    try:
        fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE)
    except OSError:  # over /proc/sys/fs/pipe-max-size for a user: the default pipe still works
        pass
    decode = codecs.getincrementaldecoder("utf-8")(errors="replace").decode
    rest = ""
    n = 0
    last = 0.0
    while True:
        flush()
        if not select.select([fd], [], [], QUIET)[0]:
            quiet()
            continue
        wait = last + TICK - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        last = time.monotonic()
        chunk = os.read(fd, READ)
        if not chunk:
            break
        raw.write(chunk)
        lines = (rest + decode(chunk)).split("\n")
        rest = lines.pop()
        for n, line in enumerate(lines, n + 1):
            yield n, line
        yield BREAK
    rest += decode(b"", final=True)
    if rest:
        yield n + 1, rest


class Shown(Renderer):
    """The screen, as one of the stream's outputs."""

    def __init__(self, screen: Screen) -> None:
        self.screen = screen
        self.add = screen.record
        self.add_copies = screen.copies
        self.flush = screen.flush


def idle_priority() -> None:
    """This thread (and threads it starts) runs only on CPU the traced program leaves: on a
    busy machine its lines come later (strace's pipe holds them), but the program's calls
    never wait for a core it took. Nice 19 where idle is refused; as it was where both are."""
    me = threading.get_native_id()
    try:
        os.sched_setscheduler(me, os.SCHED_IDLE, os.sched_param(0))
        return
    except (OSError, AttributeError):  # not Linux, or a seccomp profile that refuses it
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, me, 19)
    except OSError:
        pass


def stream(fd: int, raw: IO[bytes], text: IO[str], jsonl: IO[str], ann: Annotator, shown: Renderer,
           quiet: Callable[[], None] = lambda: None, idle: bool = False) -> None:
    """strace's lines from the pipe `fd` until it closes: the raw bytes to `raw`, each
    annotated record to `text` and `jsonl` (every line in one record, as a file's) and to
    `shown` (the screen, or the web page's tabs): the one pipeline, a pipe-full at a time.
    The files are flushed before `shown`, so what a reader sees is in them. With `idle`,
    the calling thread drops to idle CPU priority for good (`idle_priority`): the terminal's
    live mode, where a server under load must not pay for it. The web page does not: a
    browser drawing on the same cores would leave it no CPU, and a class would wait."""
    files = [Text(text), Jsonl(jsonl)]
    if idle:
        idle_priority()

    def flush() -> None:
        for r in files:
            r.flush()
        raw.flush()
        text.flush()
        jsonl.flush()
        shown.flush()

    fan_out(ann.stream(chunked_lines(fd, raw, flush, quiet)), [*files, shown])


def hints(target: Target) -> list[str]:
    url = f"http://127.0.0.1:{target.port}"
    paths = [r.path for r in target.requests] or ["/"]
    return [f"  curl {url}{p}" for p in paths]


def run(target: Target, out: Path, screen: Screen, load_seconds: int = LOAD_SECONDS) -> dict:
    traced, pipe = start(target, out)
    ready = threading.Event()
    failed: list[str] = []

    def announce() -> None:
        try:
            wait_ready(traced, target.port)
        except TraceError as e:
            failed.append(str(e))
            return
        ready.set()
        screen.say(f"[epoll-lab] live: strace {traced.strace.pid}, server {traced.server_pid()} on "
                   f"127.0.0.1:{target.port}. Try, in another terminal:")
        for line in hints(target):
            screen.say(line)
        if target.recipe == "load":
            threading.Thread(target=put_load, daemon=True).start()
        screen.say("[epoll-lab] Ctrl-C stops the server and strace and prints the summary.")

    def put_load() -> None:
        try:
            load(target.port, load_seconds)
        except TraceError as e:  # wrk missing or failed: say so, keep the trace going
            screen.say(f"[epoll-lab] {e}")

    threading.Thread(target=announce, daemon=True).start()
    ann = Annotator()
    stopped: list[str] = []
    stopper: list[threading.Thread] = []

    def stop() -> None:
        screen.say("[epoll-lab] stopping the server and strace ...")
        stopped.extend(traced.stop(target.port))

    def on_signal(signum, frame) -> None:
        # Stop from a thread: this one keeps draining strace's pipe meanwhile,
        # so strace never blocks on a full pipe while the server shuts down.
        # The thread prints, too: the handler runs inside whatever this thread
        # was doing, perhaps halfway through the screen's own bookkeeping.
        if not stopper:
            t = threading.Thread(target=stop, daemon=True)
            t.start()
            stopper.append(t)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with open(out / raw_name(target), "wb") as raw, open(out / "annotated.log", "w") as text, \
                open(out / "events.jsonl", "w") as jsonl:
            text.write(f"# epoll-lab live trace of {target.name}; raw lines, each followed by its note.\n")
            stream(pipe, raw, text, jsonl, ann, Shown(screen), screen.quiet, idle=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for t in stopper:
            t.join()
        if traced.strace.poll() is None:
            stopped += traced.stop(target.port)
        os.close(pipe)
        screen.finish()
    if failed and not ready.is_set():
        raise TraceError(failed[0], EXIT_START)
    if not stopper:
        screen.say("[epoll-lab] the server exited on its own")
    summary = ann.summary.as_dict()
    screen.say(summary_text(summary))
    if notice := tracers.get(target.tracer).notice(out):
        screen.say(notice)
    screen.say(f"files: {out / raw_name(target)}\n       {out / 'annotated.log'}\n       {out / 'events.jsonl'}")
    return summary


def raw_name(target: Target) -> str:
    return tracers.get(target.tracer).raw_name


def main_live(target: Target, out: Path, wanted: list[str], load_seconds: int = LOAD_SECONDS,
              color: str = "auto") -> int:
    screen = Screen(sys.stdout, use_color(sys.stdout, color), wanted)
    eprint(f"[epoll-lab] live trace of {target.name}; writing {out}/")
    run(target, out, screen, load_seconds)
    return 0
