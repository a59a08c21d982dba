"""A run's files, written from its raw trace in one read: annotated.log,
events.jsonl, timeline.html, trace.json, summary.json; and what is printed at
the end of a run."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Iterator

from ..render import per_request, timing, trace_event
from ..render.annotated_log import AnnotatedLog, first_request
from ..render.jsonl import Jsonl
from ..render.renderer import fan_out, new_file
from ..render.timeline import Timeline
from ..errors import EXIT_OUTPUT, TraceError
from .scenario import load_steps
from . import tracers
from .tracers import Tracer


def output_error(path: Path, err: OSError, running: bool = True) -> TraceError:
    if running and isinstance(err, FileNotFoundError):
        return TraceError(f"{path} is gone (was the run folder removed while it ran?): nothing more "
                          "could be written; run again, or pick another folder with --out", EXIT_OUTPUT)
    why = err.strerror or str(err)
    return TraceError(f"cannot write {path}: {why} (pick another folder with --out)", EXIT_OUTPUT)


def ready_folder(out: Path) -> None:
    """Make the run folder and prove it takes a file, before anything is started."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        _probe(out)
    except OSError as e:  # nothing ran yet: a missing path here is not a removed run folder
        raise output_error(out, e, running=False) from None


# What a run leaves in its folder: a folder holding one of these holds an earlier run.
RUN_FILES = ("raw.strace", "raw.ltrace", "raw.kernel", "events.jsonl", "summary.json", "scenario.jsonl",
             "annotated.log", "server.log")


def holds_a_run(out: Path) -> bool:
    """A folder we cannot even look into holds nothing we know of: writing it fails later, in
    one line, where the run makes its folder."""
    try:
        return any((out / name).exists() for name in RUN_FILES)
    except OSError:
        return False


def new_folder(base: Path, name: str) -> tuple[Path, str]:
    """The default folder of a run: base/name, or base/name-2, -3 ... the first that holds no
    earlier run and that no run is using. Returns it and, if it is not base/name, why."""
    first = base / name
    n = 1
    while True:
        out = first if n == 1 else base / f"{name}-{n}"
        if not _exists(out) or not (holds_a_run(out) or in_use(out)):
            why = "" if n == 1 else (f"{first} holds an earlier run" + (f" (and so do {n - 2} more)" if n > 2 else ""))
            return out, why
        n += 1


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:
        return False


def in_use(out: Path) -> bool:
    try:
        with locked(out):
            return False
    except FolderInUse:
        return True
    except OSError:
        return False


class FolderInUse(Exception):
    pass


@contextlib.contextmanager
def locked(out: Path) -> Iterator[None]:
    """Hold the run folder for this run: flock on the folder itself (no file left behind, and
    the kernel lets go when this process ends, however it ends). FolderInUse if another run
    holds it. The fd is not inherited: the tracer and the program never hold the lock."""
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderInUse(str(out)) from None
        yield
    finally:
        os.close(fd)


def folder_in_use(out: Path) -> TraceError:
    return TraceError(f"{out} is in use by another epoll-lab run: wait for it to end, or pick another "
                      "folder with --out", EXIT_OUTPUT)


def cannot_write(out: Path) -> TraceError | None:
    """Why the running program's folder takes no more (full, gone), or None if it does."""
    try:
        _probe(out)
    except FileNotFoundError as e:
        return output_error(out, e)
    except OSError as e:
        return TraceError(f"cannot write {out}: {e.strerror or e}: the program's output (server.log) "
                          "and the trace could not be written there, so the run stopped (free some "
                          "space, or pick another folder with --out)", EXIT_OUTPUT)
    return None


def _probe(out: Path) -> None:
    probe = out / ".epoll-lab-write-test"
    try:
        probe.write_bytes(b"x" * 4096)
    finally:
        probe.unlink(missing_ok=True)


def write_run(out: Path, tracer: Tracer, full: bool = False) -> tuple[dict, list[tuple[str, int]]]:
    """Annotate the raw file into the run's views; returns the summary and annotated.log's index."""
    try:
        return _write_run(out, tracer, full)
    except OSError as e:
        raise output_error(Path(e.filename) if e.filename else out, e) from None


def _write_run(out: Path, tracer: Tracer, full: bool) -> tuple[dict, list[tuple[str, int]]]:
    steps, headers = load_steps(out)
    records, summary = tracer.records(out / tracer.raw_name, steps)
    heading = (f"# epoll-lab annotated {tracer.name} trace of {out.name}; "
               + tracer.heading.format(raw=tracer.raw_name) + "\n")
    if notice := tracer.notice(out):
        heading += f"# {notice}\n"
    load_row = next((r for r in scenario_rows(out) if r["path"] == per_request.LABEL and "connections" in r), None)
    return write_views(out, records, summary, heading, out.name, headers, full, tracer.title, probes(out), load_row)


def write_views(out: Path, records, summary, heading: str, name: str, headers: dict[str, str] | None = None,
                full: bool = False, title: str = "", spans: list[tuple[str, float, float]] = (),
                load_row: dict | None = None) -> tuple[dict, list]:
    """One read of the records, every one to every view at once: events.jsonl, annotated.log,
    timeline.html, trace.json, then summary.json (with where the time went). Returns the
    summary and annotated.log's index. `load_row`, a run's load step (scenario.jsonl), folds
    its repeats in annotated.log and gives its figures per request."""
    tally, counted = timing.Tally(), per_request.Counted()
    loads = {per_request.LABEL: load_row["connections"]} if load_row else None
    with new_file(out / "events.jsonl") as jsonl, new_file(out / "trace.json") as trace:
        _, _, _, index, _, _ = fan_out(records, [
            tally, counted,
            Jsonl(jsonl),
            AnnotatedLog(out / "annotated.log", heading, headers, full=full,
                         roles=lambda: summary().get("roles", {}), timing=tally, loads=loads),
            Timeline(out / "timeline.html", f"epoll-lab timeline: {name}{title}"),
            trace_event.Exporter(trace, f"epoll-lab: {name}", spans)])
    done = summary()
    done["stalls"], done["latency"] = tally.stalls(), tally.latency()
    if load_row is not None and load_row.get("requests"):
        done["load"] = per_request.figures(load_row, counted)
    if done["stalls"]:
        done["stalls_unnamed"] = timing.unnamed_reason(done["stalls"], len(tally.reports))
    (out / "summary.json").write_text(json.dumps(done, indent=2) + "\n")
    return done, index


def scenario_rows(out: Path) -> list[dict]:
    path = out / "scenario.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def probes(out: Path) -> list[tuple[str, float, float]]:
    """Requests sent while another ran (the lessons' probes), as (label, start, end)."""
    return [(f"probe: GET {r['path']}", r["start"], r["end"]) for r in scenario_rows(out) if r.get("probe")]


def report(result: dict) -> None:
    out = Path(result["out"])
    tracer = tracers.get(result["tracer"])
    print("\n".join(tracer.said(result["summary"], out)))
    raw = result.get("raw", tracer.raw_name)
    print(f"files: {out / raw}\n       {out / 'annotated.log'}\n       {out / 'events.jsonl'}\n"
          f"       {out / 'timeline.html'}\n       {out / 'trace.json'}")
    print(where_to_look(out, result.get("index") or []))


def where_to_look(out: Path, index: list[tuple[str, int]]) -> str:
    """The line to open first, and the two pictures."""
    first = first_request(index) or next(iter(index), None)
    start = (f"{out / 'annotated.log'} line {first[1]} ({first[0]})" if first
             else f"{out / 'annotated.log'} (its index is at the top)")
    return (f"look first: {start}\n"
            f"    picture: {out / 'timeline.html'} (any browser)\n"
            f"    Perfetto: open {out / 'trace.json'} at https://ui.perfetto.dev (Open trace file)")
