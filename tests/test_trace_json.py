"""trace.json, the Trace Event Format file every run writes for Perfetto:
parsed and checked against the format's rules and against the run's own
events (every thread named, every syscall a slice, every wakeup a flow into
the wait it ends, every request a span)."""

from __future__ import annotations

import json
import re

import pytest

import io

from tests.helpers import LOGS, PROGRAMS, ROOT, free_port, nesting_problems, run_cli, show
from tracing.render import trace_event
from tracing.understand.annotate import annotate_file
from tracing.names import WAITS

PHASES = {"X", "M", "s", "f", "i"}
FIXTURES = ROOT / "tests" / "fixtures" / "others"


def load(path) -> list[dict]:
    doc = json.loads(path.read_text())
    assert isinstance(doc, dict) and isinstance(doc.get("traceEvents"), list), "JSON Object Format"
    return doc["traceEvents"]


def format_problems(events: list[dict]) -> list[str]:
    """The Trace Event Format's rules for the phases used here."""
    bad = []
    for e in events:
        ph = e.get("ph")
        if ph not in PHASES or not isinstance(e.get("name"), str):
            bad.append(f"unknown phase or no name: {e}")
            continue
        if not (isinstance(e.get("pid"), int) and isinstance(e.get("tid"), int)):
            bad.append(f"pid/tid not integers: {e}")
        if ph == "M":
            if e["name"] not in ("process_name", "thread_name", "thread_sort_index") or "args" not in e:
                bad.append(f"metadata: {e}")
            continue
        if not isinstance(e.get("ts"), (int, float)):
            bad.append(f"no ts: {e}")
        if ph == "X" and not (isinstance(e.get("dur"), (int, float)) and e["dur"] >= 0):
            bad.append(f"complete event without a duration: {e}")
        if ph in ("s", "f") and "id" not in e:
            bad.append(f"flow event without an id: {e}")
        if ph == "f" and e.get("bp") != "e":
            bad.append(f"flow end not bound to its enclosing slice: {e}")
        if ph == "i" and e.get("s") not in ("t", "p", "g"):
            bad.append(f"instant without a scope: {e}")
    return bad


def named_threads(events) -> dict[tuple[int, int], str]:
    return {(e["pid"], e["tid"]): e["args"]["name"] for e in events
            if e["ph"] == "M" and e["name"] == "thread_name"}


def slices(events, **match) -> list[dict]:
    return [e for e in events if e["ph"] == "X" and all(e.get(k) == v for k, v in match.items())]


def check_run(out) -> tuple[list[dict], list[dict]]:
    events = load(out / "trace.json")
    records = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert not format_problems(events), "\n".join(format_problems(events)[:10])
    return events, records


@pytest.fixture(scope="module", params=["uvloop_trace", "asyncio_trace", "c_pool_trace"])
def run(request):
    trace = request.getfixturevalue(request.param)
    return (*check_run(trace.out), trace)


def test_every_thread_has_a_named_track_like_loop_4239(run):
    events, records, _ = run
    names = named_threads(events)
    used = {(e["pid"], e["tid"]) for e in events if e["ph"] != "M"}
    assert used <= set(names), f"unnamed: {used - set(names)}"
    for rec in records:
        pid_tid = next(k for k in names if k[1] == rec["tid"])
        assert names[pid_tid] == f"{rec['thread']} {rec['tid']}" or names[pid_tid].startswith("loop "), \
            (names[pid_tid], rec["thread"], rec["tid"])
    assert any(re.fullmatch(r"loop \d+", n) for n in names.values()), names
    procs = {e["pid"] for e in events if e["ph"] == "M" and e["name"] == "process_name"}
    assert {p for p, _ in used} <= procs, "every process is named"


def test_every_syscall_is_one_complete_event_with_its_note(run):
    events, records, _ = run
    calls = [r for r in records if r["kind"] == "syscall"]
    by_line = {e["args"]["line"]: e for e in events if e["ph"] == "X" and "line" in e.get("args", {})}
    missing = [r for r in calls if r["line"] not in by_line]
    assert not missing, show(missing)
    for r in calls[:500]:
        e = by_line[r["line"]]
        assert e["name"] == r["syscall"] and e["args"]["note"] == r["note"] and e["tid"] == r["tid"]
        assert e["cat"] == ("epoll-wait" if r["syscall"] in WAITS else r["category"])
        # A call that would overlap the one before on its thread starts where that one ended.
        assert e["ts"] >= r["ts"] * 1e6 - 1 and e["dur"] <= (r["duration"] or 0) * 1e6 + 1, (e, r)


def test_epoll_waits_are_slices_of_their_own_on_the_loop_track(run):
    events, records, _ = run
    names = named_threads(events)
    waits = slices(events, cat="epoll-wait")
    assert len(waits) == sum(r["syscall"] in WAITS for r in records)
    assert waits and all(names[(w["pid"], w["tid"])].startswith("loop ") for w in waits)


def test_every_wakeup_is_a_flow_from_the_write_to_the_wait_it_ends(run):
    events, records, _ = run
    # A flow is evidence the records name: a write that wakes another thread's wait.
    wakeups = [r for r in records if r["category"] == "wakeup"
               and any(e["claim"] == "wakes" and e["tid"] != r["tid"] for e in r["evidence"])]
    assert wakeups, "each of these runs has pool work that wakes the loop"
    starts = {e["id"]: e for e in events if e["ph"] == "s"}
    ends = {e["id"]: e for e in events if e["ph"] == "f"}
    assert len(starts) >= len(wakeups) and set(starts) == set(ends)
    key = lambda e: (e["pid"], e["tid"], e["ts"], e["cat"])  # noqa: E731 (what a flow binds to)
    x_keys = {key(e) for e in events if e["ph"] == "X"}
    for w in wakeups:
        s = next((e for e in starts.values() if e["tid"] == w["tid"] and abs(e["ts"] - w["ts"] * 1e6) < 1), None)
        assert s is not None and key(s) in x_keys, f"no flow starts at the write:\n{show([w])}"
        f = ends[s["id"]]
        assert f["ts"] >= s["ts"] and key(f) in x_keys, (s, f)
        # Its end is a short "woken" slice inside the wait, or the wait itself when too short for one.
        woken = next(e for e in slices(events, tid=f["tid"]) if key(e) == key(f))
        wait = [x for x in slices(events, cat="epoll-wait", tid=f["tid"])
                if x["ts"] <= woken["ts"] and woken["ts"] + woken["dur"] <= x["ts"] + x["dur"]]
        assert wait and f["tid"] != w["tid"], f"the flow does not end in a wait of another thread: {f}"


def test_every_request_is_a_named_span(run):
    events, records, trace = run
    labels = {r["request"] for r in records if r["request"]}
    spans = {e["name"] for e in slices(events, cat="request")}
    assert labels and labels <= spans, labels - spans
    track = named_threads(events)
    assert {track[(e["pid"], e["tid"])] for e in slices(events, cat="request")} <= \
        {"requests", "probes (sent during a request)"}


def test_the_lessons_probes_are_spans_on_their_own_track(lessons_trace):
    events, _ = check_run(lessons_trace.out)
    probes = [e for e in slices(events, cat="request") if e["args"].get("probe")]
    assert len(probes) == sum(1 for r in lessons_trace.requests if r.get("probe"))


def test_annotate_any_log_as_trace_events(tmp_path):
    out = tmp_path / "node.json"
    p = run_cli("annotate", str(FIXTURES / "node.strace"), "--format", "trace-event", "-o", str(out))
    assert p.returncode == 0, p.stderr
    events = load(out)
    assert not format_problems(events)
    assert slices(events, cat="epoll-wait") and [e for e in events if e["ph"] == "f"]
    assert "ui.perfetto.dev" in p.stderr


def trace_events_of(log) -> list[dict]:
    out = io.StringIO()
    trace_event.write(annotate_file(str(log))[0], out, log.name)
    return json.loads(out.getvalue())["traceEvents"]


@pytest.mark.parametrize("log", LOGS, ids=lambda p: str(p.relative_to(ROOT / "tests" / "fixtures")))
def test_slices_nest_strictly_on_every_track_of_every_recorded_log(log):
    events = trace_events_of(log)
    problems = nesting_problems(events)
    assert not problems, "\n".join(problems[:10])
    assert not format_problems(events), format_problems(events)[:5]


def test_slices_nest_strictly_in_every_run(run):
    events, _, _ = run
    problems = nesting_problems(events)
    assert not problems, "\n".join(problems[:10])


def test_a_woken_slice_ends_before_its_wait_and_each_wait_has_one(run):
    events, _, _ = run
    woken = slices(events, name="woken")
    assert woken
    assert len({(e["tid"], e["ts"]) for e in woken}) == len(woken), "one woken slice per wait"
    for w in woken:
        (wait,) = [x for x in slices(events, cat="epoll-wait", tid=w["tid"])
                   if x["ts"] < w["ts"] < x["ts"] + x["dur"]]
        assert w["ts"] + w["dur"] < wait["ts"] + wait["dur"], (w, wait)


def test_request_spans_never_overlap_for_http_server(tmp_path):
    # python -m http.server: its start-up window's last call ran into request 1 (6.55 ms).
    import sys
    port = free_port()
    out = tmp_path / "run"
    p = run_cli("trace", "--out", str(out), "--port", str(port), "--request", "/", "--request", "/",
                "--", sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                "--directory", str(PROGRAMS))
    assert p.returncode == 0, p.stderr[-2000:]
    events = load(out / "trace.json")
    spans = sorted((e["ts"], e["ts"] + e["dur"], e["name"]) for e in slices(events, cat="request", tid=1))
    assert [n for *_, n in spans][:3] == ["start-up", "request 1: GET /", "request 2: GET /"], spans
    for (a1, b1, n1), (a2, b2, n2) in zip(spans, spans[1:]):
        assert b1 <= a2, f"{n1} [{a1}, {b1}] overlaps {n2} [{a2}, {b2}]"
    assert not nesting_problems(events), nesting_problems(events)[:5]
