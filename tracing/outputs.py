"""A run's files, written from its raw trace: annotated.log, events.jsonl,
timeline.html, summary.json; and what is printed at the end of a run."""

from __future__ import annotations

import json
from pathlib import Path

from tracing import timeline
from tracing.errors import EXIT_OUTPUT, TraceError
from tracing.scenario import load_steps
from tracing.tracers import Tracer
from tracing.views import summary_text, threads_by_role, write_outputs


def output_error(path: Path, err: OSError) -> TraceError:
    why = err.strerror or str(err)
    return TraceError(f"cannot write {path}: {why} (pick another folder with --out)", EXIT_OUTPUT)


def ready_folder(out: Path) -> None:
    """Make the run folder and prove it takes a file, before anything is started."""
    probe = out / ".epoll-lab-write-test"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"x" * 4096)
        probe.unlink()
    except OSError as e:
        raise output_error(out, e) from None


def write_run(out: Path, tracer: Tracer) -> dict:
    """Annotate the raw file into the run's views; returns the summary."""
    try:
        return _write_run(out, tracer)
    except OSError as e:
        raise output_error(Path(e.filename) if e.filename else out, e) from None


def _write_run(out: Path, tracer: Tracer) -> dict:
    steps, headers = load_steps(out)
    records, summary = tracer.records(out / tracer.raw_name, steps)
    heading = (f"# epoll-lab annotated {tracer.name} trace of {out.name}; "
               + tracer.heading.format(raw=tracer.raw_name) + "\n")
    with open(out / "annotated.log", "w") as text, open(out / "events.jsonl", "w") as jsonl:
        text.write(heading)
        write_outputs(records, text, jsonl, headers)
    timeline.write(timeline.from_jsonl(out / "events.jsonl"), out / "timeline.html",
                   f"epoll-lab timeline: {out.name}{tracer.title}")
    done = summary()
    (out / "summary.json").write_text(json.dumps(done, indent=2) + "\n")
    return done


def report(result: dict) -> None:
    out = Path(result["out"])
    summary = result["summary"]
    if summary.get("tool") == "ltrace":
        print("library calls: " + ", ".join(f"{k} {v}" for k, v in summary["calls"].items()))
        print("threads: " + threads_by_role(summary["threads"]))
    else:
        print(summary_text(summary))
    raw = result.get("raw", "raw.strace")
    print(f"files: {out / raw}\n       {out / 'annotated.log'}\n       {out / 'events.jsonl'}\n"
          f"       {out / 'timeline.html'}")
