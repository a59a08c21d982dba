"""JSON Lines for a big log: a line that repeats a call already annotated is
written from the record the annotator wrote for it.

A server under load prints the same few calls over and over (issue 18's log:
655 distinct call texts in 1.19M lines). While the model has not changed
(`tracing.understand.changes`), an identical call gets the same verdict, so the same
record but for its line number, time and duration. `write_jsonl` hands each
such record's JSON Line to the compiled core (`_repeats.c`) as a template,
keyed on the line's text without its time and duration. The core then reads
the log itself: a line with a kept text, while the count of changes is the
one its template stands for, is written from the template; any other line
comes back here and goes through the annotator, the one implementation.

What makes a line's record depend on more than its text is checked on the
way: a line the parser would hold (one cut by other output) or pair with a
start is never kept; while a cut line is held, every line goes through the
annotator; a loop thread's line that the stall check would add to goes
through it too; a record with a scenario request or a merged file's name is
never kept. `check=True` (the tests) sends every line through the annotator
and compares each with what the core would have written.

Without the compiled core (a `pip install` where no C compiler was found) every
line goes through the annotator, with the same output.
"""

from __future__ import annotations

from typing import IO, Callable, Iterable, Iterator

from tracing.understand import records
from tracing.understand.annotate import STALL, Annotator, Step, learn
from tracing.understand.changes import made
from tracing.names import LOOP
from tracing.read.parse import STACK, Event, numbered_events, parse_line
from tracing.render.views import jsonl_line, write_outputs

try:
    from tracing import _repeats
except ImportError:  # built by `make setup`; a plain pip install may have had no compiler
    _repeats = None


def compiled() -> bool:
    return _repeats is not None


class _Mark:
    """Where the core puts a line's own number, time or duration in a template:
    jsonl_line writes numbers with repr, and a NUL is never in its JSON otherwise."""

    def __init__(self, code: str) -> None:
        self.text = "\0" + code

    def __repr__(self) -> str:
        return self.text


_LINE, _TS, _DURATION = _Mark("L"), _Mark("S"), _Mark("D")


def write_jsonl(open_items: Callable[[], Iterable[tuple]], out: IO[str], steps: Iterable[Step] = (),
                check: bool = False, snapshot: dict | None = None) -> Annotator:
    """Annotate an input that can be opened twice into JSON Lines on `out`."""
    ann = Annotator(learn(open_items, snapshot), steps, check_reuse=check, snapshot=snapshot)
    if _repeats is None or ann.steps or _has_stacks(open_items):
        write_outputs(ann.run(numbered_events(open_items(), stacks=True)), None, out)
        return ann
    core = _repeats.Core(made, ann.model.last, STALL)
    holding: list = [None]
    predicted: list = [None, None]  # check mode: the line number and what the core would write
    out.flush()
    sink = getattr(out, "buffer", None) or _Utf8(out)  # the core writes UTF-8 itself: one copy, not four

    def misses() -> Iterator[tuple]:
        items = iter(open_items())
        while True:
            if holding[0] is not None or check:
                item = next(items, None)
                if check and holding[0] is None and item is not None:
                    predicted[:] = item[0], core.predict(item)
            else:
                item = core.until_miss(items)
                if item is True:
                    core.write_to(sink)
                    continue
            # The annotator reads each thread's last call: the core's, as the parser makes them.
            for tid, (lineno, raw) in core.take_last():
                ann.model.last[tid] = parse_line(lineno, raw.rstrip("\n"))
            if item is None:
                return
            yield item

    try:
        # No -k here (_has_stacks): each call goes out at once, in its place among the core's lines.
        for rec in ann.run(numbered_events(misses(), holding)):
            if rec["kind"] == "started":
                continue
            line = jsonl_line(rec)
            if predicted[1] is not None and rec["line"] == predicted[0]:
                if line != predicted[1]:
                    raise AssertionError(f"line {rec['line']}: the core would write {predicted[1]!r}, "
                                         f"the annotator wrote {line!r}")
                predicted[1] = None
                ann.checked.append(rec["line"])
            if core.add(line):
                core.write_to(sink)
            if ann.kept is not None and rec["kind"] == "syscall":
                _keep(core, ann.kept, rec, ann.model)
    finally:
        if not out.closed:  # a run that failed half-way may have closed it first
            core.write_to(sink)
            sink.flush()
    summary = ann.summary
    for (syscall, category), n in core.counts().items():
        summary.lines += n
        summary.kinds["syscall"] += n
        summary.syscalls[syscall] += n
        summary.categories[category] += n
    ann.reused += core.hits
    ann.repeated = core.hits
    return ann


def _has_stacks(open_items: Callable[[], Iterable[tuple]], first: int = 200) -> bool:
    """A log made with strace -k (a stack after every call, from its first line): the parser
    holds each call until it knows its stack, so the core, which writes a line the moment it
    reads it, must not run."""
    items = iter(open_items())
    try:
        return any(item[1].startswith(STACK) for _, item in zip(range(first), items))
    finally:
        getattr(items, "close", lambda: None)()


class _Utf8:
    """A text stream without a byte layer (io.StringIO) as one the core can write to."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def write(self, data: memoryview) -> int:
        self.out.write(str(data, "utf-8"))
        return len(data)

    def flush(self) -> None:
        self.out.flush()


def _keep(core, kept: tuple[int, tuple], rec: dict, model) -> None:
    """Give the core this record as its line's template, if the line's text alone makes it."""
    count, (category, note, ready, fds, thread, evidence) = kept
    if count != made[0]:
        return  # the model changed after the verdict
    # The record its text alone makes, with the verdict alone: not a resume, an orphaned start
    # or a stitched line; no scenario request or file name; no more in the note than the
    # verdict's (a stall).
    ev = parse_line(rec["line"], rec["text"])
    if ev.__class__ is not Event or records.record(ev, None, thread, fds, ready, category, note, evidence) != rec:
        return
    template = jsonl_line({**rec, "line": _LINE, "ts": None if rec["ts"] is None else _TS,
                           "duration": None if rec["duration"] is None else _DURATION})
    # The stall check applies to a thread that waits for readiness (annotate.Annotator.feed).
    waits = thread == LOOP or model.threads[rec["tid"]].first_wait is not None
    core.remember(rec["text"], count, template, rec["syscall"], category, waits,
                  rec["tid"], rec["ts"], rec["duration"])
