"""Where the time went: each loop thread's longest stalls (the gap or call, its length,
its line) and a latency table per syscall and role, in the summary and in
annotated.log's index; with asyncio's debug report, the stall is tied to the
coroutine that held the loop, citing the report's line."""

from __future__ import annotations

import json
import random
import re
import sys

import pytest

from tests.helpers import FIXTURES, LOAD as LOAD_LOG, PROGRAMS, Trace, free_port, run_cli, show
from tracing.render.timing import Latency, Tally
from tracing.understand.annotate import annotate_file
from tracing.understand.records import Copies

PY = sys.executable
DEBUG_LOG = FIXTURES / "stalls" / "asyncio-debug.strace"
HANDLER_SLEEPS = PROGRAMS / "own_server.py"


def tallied(path, copies: bool = False):
    """The log's records and a Tally fed them (with `copies`, as a run feeds it: repeated lines
    as runs of copies)."""
    records, _ = annotate_file(str(path), copies=copies)
    tally = Tally()
    recs = []
    for item in records:
        if isinstance(item, Copies):
            tally.add_copies(item)
            recs += list(item.records())
        else:
            tally.add(item)
            recs.append(item)
    return recs, tally


@pytest.mark.parametrize("log", [DEBUG_LOG, LOAD_LOG], ids=["asyncio-debug", "c-pool-keepalive"])
def test_copied_lines_are_counted_as_the_records_they_stand_for(log):
    _, by_records = tallied(log)
    _, by_copies = tallied(log, copies=True)
    assert by_copies.latency() == by_records.latency()
    assert by_copies.stalls() == by_records.stalls()


@pytest.mark.parametrize("seed", range(5))
def test_percentiles_are_within_two_percent_of_the_exact_ones(seed):
    rnd = random.Random(seed)
    values = [rnd.lognormvariate(-9, 2) for _ in range(rnd.randrange(1, 5000))]
    lat = Latency()
    for v in values:
        lat.add(v)
    exact = sorted(values)
    for q in (0.5, 0.99):
        want = exact[max(1, -(-int(q * len(exact) * 1000) // 1000)) - 1]
        got = lat.quantile(q)
        assert want <= got <= want * 1.0201, (q, want, got)
    assert lat.count == len(values) and lat.max == max(values) and abs(lat.total - sum(values)) < 1e-9


def test_the_latency_table_counts_every_timed_call_of_each_syscall_and_role():
    recs, tally = tallied(DEBUG_LOG)
    rows = {(r["syscall"], r["role"]): r for r in tally.latency()}
    timed = [r for r in recs if r["kind"] == "syscall" and r["duration"] is not None]
    for (name, role), row in rows.items():
        mine = [r["duration"] for r in timed if r["syscall"] == name and r["thread"] == role]
        assert row["count"] == len(mine) and abs(row["total_s"] - sum(mine)) < 1e-5, row
        assert row["max_ms"] == round(max(mine) * 1000, 3), row
    assert sum(r["count"] for r in rows.values()) == len(timed)


def test_the_loops_longest_stalls_are_the_handlers_sleeps_each_held_by_the_task_asyncio_names():
    recs, tally = tallied(DEBUG_LOG)
    (tid, rows), = tally.stalls().items()
    reports = [r for r in recs if r["syscall"] == "write" and "Executing <" in r["args"]]
    assert len(reports) == 2, show(reports)
    top = rows[:2]
    assert all(0.19 <= r["seconds"] <= 0.25 and r["kind"] == "gap" for r in top), rows
    assert sorted(r["held_by"] for r in top) == [r["line"] for r in reports], rows
    assert all("handle()" in r["held_by_report"] and "own_server.py:17" in r["held_by_report"] for r in top), rows
    assert rows == sorted(rows, key=lambda r: -r["seconds"])
    # Before its first wait a loop is starting up: no stall is counted there.
    first_wait = min(r["line"] for r in recs if r["syscall"] == "epoll_wait" and str(r["tid"]) == tid)
    assert all(r["line"] > first_wait for r in rows), rows


@pytest.fixture(scope="module")
def debug_run(tools_present, tmp_path_factory):
    out, port = tmp_path_factory.mktemp("debug"), free_port()
    p = run_cli("trace", "--out", str(out), "--port", str(port), "--asyncio-debug", "--request", "/block",
                "--request", "/", "--", PY, str(HANDLER_SLEEPS), str(port))
    assert p.returncode == 0, p.stderr
    return p, Trace.load(out)


def index_lines(text: str) -> list[str]:
    return text.split("\n\n", 1)[0].splitlines()


def test_annotated_log_names_the_handler_that_slept_file_and_line_as_the_stalls_cause(debug_run):
    _, trace = debug_run
    lines = (trace.out / "annotated.log").read_text().splitlines()
    index = index_lines("\n".join(lines))
    start = index.index(next(line for line in index if line.startswith("# Where the time went")))
    first = index[start + 2]
    m = re.search(r"(\d+\.\d) ms .* \(this file: line (\d+)\): asyncio's report at line (\d+): the Task running "
                  r"handle\(\) \((\S+own_server\.py):(\d+),", first)
    assert m, "\n".join(index[start:start + 8])
    ms, here, report = float(m.group(1)), int(m.group(2)), int(m.group(3))
    assert 190 <= ms <= 260
    assert m.group(4) == str(HANDLER_SLEEPS) and m.group(5) == "17"
    said = lines[here - 1] + "\n" + lines[here]
    assert "that callback held the loop" in said and f"report at line {report}" in said, said
    stalled = next(r for r in trace.records if f"report at line {report}" in r["note"])
    assert {"claim": "held-loop", "line": report, "tid": stalled["tid"]} in stalled["evidence"]
    assert stalled["request"] == "request 1: GET /block", stalled["request"]


def test_the_summary_gives_the_stalls_and_the_latency_table(debug_run):
    p, trace = debug_run
    summary = json.loads((trace.out / "summary.json").read_text())
    (rows,) = summary["stalls"].values()
    assert rows[0]["held_by"] and 0.19 <= rows[0]["seconds"] <= 0.26, rows
    table = {(r["syscall"], r["role"]) for r in summary["latency"]}
    assert {("epoll_wait", "loop"), ("sendto", "loop"), ("recvfrom", "loop")} <= table, table
    assert re.search(r"longest stalls of loop \d+", p.stdout), p.stdout
    assert "latency (ms), the busiest by total time:" in p.stdout and "p99 ms" in p.stdout, p.stdout


def test_without_asyncio_debug_the_stall_is_listed_and_its_cause_said_to_be_unknown(tools_present, tmp_path):
    port = free_port()
    p = run_cli("trace", "--out", str(tmp_path / "o"), "--port", str(port), "--request", "/block",
                "--", PY, str(HANDLER_SLEEPS), str(port))
    assert p.returncode == 0, p.stderr
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    (rows,) = summary["stalls"].values()
    assert 0.19 <= rows[0]["seconds"] <= 0.26 and rows[0]["held_by"] is None, rows
    assert "--asyncio-debug" in summary["stalls_unnamed"]
    text = (tmp_path / "o" / "annotated.log").read_text()
    assert "held the loop" not in text and "--asyncio-debug has asyncio name the callback" in text
