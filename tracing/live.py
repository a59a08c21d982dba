"""Live mode: the server under strace, annotated lines on the terminal as the
calls happen, while curl is typed by hand in another terminal.

strace writes into a pipe (`-o /dev/fd/N`); this process reads it line by
line, keeps the raw line, annotates it in one pass (a thread's role is known
from its first epoll wait on) and prints it at once. The raw log, the
annotated log and the JSON Lines go to traces/<run>-live/ as they come.
Ctrl-C (or the server dying) stops everything by PID and prints the summary.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import IO

from tracing.annotate import Annotator
from tracing.names import WAITS
from tracing.parse import events
from tracing.recipes import Target
from tracing.run import EXIT_START, TraceError, Traced, load, preflight, wait_ready
from tracing.run import start as run_start
from tracing.views import COLORS, eprint, jsonl_line, summary_text, text_lines, use_color

ROLES = ("loop", "pool", "other")
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
    count when something else comes.
    """

    def __init__(self, out: IO, color: bool, wanted: list[str]) -> None:
        self.out, self.color, self.wanted = out, color, wanted
        self.lock = threading.RLock()  # a signal handler may print while we print
        self.same: tuple | None = None
        self.repeats = 0

    def say(self, text: str) -> None:
        with self.lock:
            self._flush_repeats()
            self.out.write(text + "\n")
            self.out.flush()

    def record(self, rec: dict) -> None:
        if rec["kind"] == "started" or not matches(rec, self.wanted):
            return
        key = (rec["tid"], rec["syscall"], rec["ret"], rec["category"], _short_args(rec))
        with self.lock:
            if key == self.same:
                self.repeats += 1
                return
            self._flush_repeats()
            self.same = key if rec["kind"] == "syscall" else None
            self.out.write(self._line(rec) + "\n")
            self.out.flush()

    def _flush_repeats(self) -> None:
        if self.repeats:
            self.out.write(f"{'':>12} {'':<12} … {self.repeats} more like the line above\n")
        self.repeats = 0

    def finish(self) -> None:
        with self.lock:
            self._flush_repeats()
            self.same = None
            self.out.flush()

    def _line(self, rec: dict) -> str:
        ts = time.strftime("%H:%M:%S", time.localtime(rec["ts"])) + f".{int(rec['ts'] % 1 * 1000):03d}" \
            if rec.get("ts") else ""
        who = f"{rec.get('thread', ''):<5} {rec['tid'] or '':<6}"
        what = rec["syscall"] or rec["kind"]
        cat = rec.get("category", "")
        tag = f"[{cat}]"
        if self.color and cat in COLORS:
            tag = f"\x1b[{COLORS[cat]}m{tag}\x1b[0m"
        if rec["kind"] == "syscall":
            first = (rec.get("args") or "").split(",", 1)[0].split("<", 1)[0][:12]
            what = f"{what}({first}…)" + (f" = {rec['ret']}" if rec["ret"] is not None else "")
        return f"{ts:>12} {who} {what:<26} {tag} {rec['note']}"


def _short_args(rec: dict) -> str:
    # Identical waits: the same note (epoll fd, timeout, ready fds) but for how
    # long they slept; other calls: the same arguments.
    if rec.get("syscall") in WAITS:
        return re.sub(r", slept [\d.]+ ms", "", rec.get("note") or "")
    return (rec.get("args") or "")[:60]


def start(target: Target, out: Path) -> tuple[Traced, IO]:
    tracer = preflight(target.port)
    read_end, write_end = os.pipe()
    traced = run_start(target, tracer, out, output=f"/dev/fd/{write_end}", pass_fds=(write_end,))
    os.close(write_end)  # strace holds it now; EOF comes when strace exits
    return traced, os.fdopen(read_end, errors="replace")


def hints(target: Target) -> list[str]:
    url = f"http://127.0.0.1:{target.port}"
    paths = [r.path for r in target.requests] or ["/"]
    return [f"  curl {url}{p}" for p in paths]


def run(target: Target, out: Path, screen: Screen) -> dict:
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
            threading.Thread(target=lambda: load(target.port), daemon=True).start()
        screen.say("[epoll-lab] Ctrl-C stops the server and strace and prints the summary.")

    threading.Thread(target=announce, daemon=True).start()
    ann = Annotator()
    stopped: list[str] = []
    stopper: list[threading.Thread] = []

    def on_signal(signum, frame) -> None:
        # Stop from a thread: this one keeps draining strace's pipe meanwhile,
        # so strace never blocks on a full pipe while the server shuts down.
        if not stopper:
            screen.say("[epoll-lab] stopping the server and strace ...")
            t = threading.Thread(target=lambda: stopped.extend(traced.stop(target.port)), daemon=True)
            t.start()
            stopper.append(t)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with open(out / "raw.strace", "w") as raw, open(out / "annotated.log", "w") as text, \
                open(out / "events.jsonl", "w") as jsonl:
            text.write(f"# epoll-lab live trace of {target.name}; raw lines, each followed by its note.\n")

            def lines():
                for line in pipe:
                    raw.write(line)
                    raw.flush()
                    yield line

            for rec in ann.run(events(lines())):
                screen.record(rec)
                for t in text_lines([rec]):
                    text.write(t + "\n")
                if rec["kind"] != "started":
                    jsonl.write(jsonl_line(rec) + "\n")
                text.flush()
                jsonl.flush()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for t in stopper:
            t.join()
        if traced.strace.poll() is None:
            stopped += traced.stop(target.port)
        pipe.close()
        screen.finish()
    if failed and not ready.is_set():
        raise TraceError(failed[0], EXIT_START)
    if not stopper:
        screen.say("[epoll-lab] the server exited on its own")
    summary = ann.summary.as_dict()
    screen.say(summary_text(summary))
    screen.say(f"files: {out / 'raw.strace'}\n       {out / 'annotated.log'}\n       {out / 'events.jsonl'}")
    return summary


def main_live(target: Target, out: Path, wanted: list[str]) -> int:
    screen = Screen(sys.stdout, use_color(sys.stdout), wanted)
    eprint(f"[epoll-lab] live trace of {target.name}; writing {out}/")
    run(target, out, screen)
    return 0
