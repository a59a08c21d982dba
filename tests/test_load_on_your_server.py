"""`--load CONNS:SECONDS` on a user's own asyncio server: its loop serves many
connections in one wait-serve cycle; annotated.log shows the first requests in full
and folds the repeats with counts; the summary gives syscalls and CPU per request.
wrk where installed, else a built-in client."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys

import pytest

from tests.helpers import PROGRAMS, Trace, count_lines, covered, free_port, run_cli, show

PY = sys.executable
SERVER = PROGRAMS / "own_server.py"


@pytest.fixture(scope="module")
def loaded(tools_present, tmp_path_factory):
    assert shutil.which("wrk"), "wrk is not installed: make setup installs it"
    out, port = tmp_path_factory.mktemp("load"), free_port()
    p = run_cli("trace", "--out", str(out), "--port", str(port), "--load", "64:3", "--", PY, str(SERVER), str(port))
    assert p.returncode == 0, p.stderr
    return p, Trace.load(out)


def index_of(text: str) -> dict[str, int]:
    head = text.split("\n\n", 1)[0]
    return {m.group(1).strip(): int(m.group(2)) for m in re.finditer(r"^#   (.*?)\s+line (\d+)$", head, re.M)}


def test_the_load_runs_bounded_with_wrk_and_is_a_step_of_its_own(loaded):
    p, trace = loaded
    (row,) = [r for r in trace.requests if r["path"] == "load"]
    assert row["tool"] == "wrk" and row["connections"] == 64 and row["seconds"] == 3, row
    assert 2.5 <= row["end"] - row["start"] <= 6 and row["requests"] > 500 and row["errors"] == 0, row
    assert "load: 64 connections for 3 s (GET /)" in p.stderr


def test_the_loop_serves_many_connections_in_one_wait_serve_cycle(loaded):
    _, trace = loaded
    lines = (trace.out / "annotated.log").read_text().splitlines()
    index = index_of("\n".join(lines))
    name = next(n for n in index if n.startswith("a wait-serve cycle under load"))
    ready, answered = map(int, re.search(r"reported (\d+) fds; (\d+) answers", name).groups())
    assert ready >= 16 and answered >= 16, name
    wait_line = lines[index[name] - 1]
    raw = int(wait_line.split()[0])
    wait = next(r for r in trace.records if (r["resumed_line"] or r["line"]) == raw)
    # The fds it reported: the clients with a request in, and the listening socket if a connection
    # was pending too.
    clients = [x for x in wait["ready"] if x["role"] == "client-connection"]
    assert wait["thread"] == "loop" and len(wait["ready"]) == ready and len(clients) >= 16, show([wait])
    # Between that wait and the loop's next one that reports fds: the answers, each to a client.
    after = [r for r in trace.records if r["line"] > wait["line"] and r["tid"] == wait["tid"]]
    nxt = next(r["line"] for r in after if r["syscall"] == wait["syscall"] and r["ready"])
    answers = [r for r in after if r["line"] < nxt and r["syscall"] == "sendto" and r["errno"] is None]
    assert len(answers) == answered and len({r["fds"][0]["detail"] for r in answers}) == answered


def test_annotated_log_shows_the_first_requests_then_folds_the_repeats_with_counts(loaded):
    _, trace = loaded
    text = (trace.out / "annotated.log").read_text()
    fold = re.search(r"\[the next ([\d,]+) requests on (\d+) connections repeat this sequence, per request "
                     r"\(an answer written to a client\): (.*?) \(raw lines (\d+)-(\d+): ([\d,]+) calls\)", text)
    assert fold, text[:3000]
    n, conns = int(fold.group(1).replace(",", "")), int(fold.group(2))
    assert n > 300 and conns == 64, fold.group(0)
    assert fold.group(3).startswith("recvfrom, sendto, 0.") and "epoll_wait" in fold.group(3), fold.group(3)
    first, last = int(fold.group(4)), int(fold.group(5))
    folded = [r for r in trace.records if first <= r["line"] <= last and r["kind"] == "syscall"]
    assert len(folded) == int(fold.group(6).replace(",", ""))
    sent = [r for r in folded if r["syscall"] == "sendto" and r["thread"] == "loop" and r["errno"] is None]
    assert len(sent) == n, "a request is an answer the loop writes to a client"
    raw = count_lines(trace.out / "raw.strace")
    assert len(text.splitlines()) < raw / 3, "the repeats are counted, not printed"
    assert covered(trace.records) == list(range(1, raw + 1)), "events.jsonl keeps every line"


def test_the_summary_gives_syscalls_and_cpu_per_request(loaded):
    p, trace = loaded
    got = json.loads((trace.out / "summary.json").read_text())["load"]
    (row,) = [r for r in trace.requests if r["path"] == "load"]
    in_load = [r for r in trace.records if r.get("request") == "load" and r["kind"] == "syscall"]
    assert got["requests"] == row["requests"] and got["syscalls"] == len(in_load), got
    assert got["syscalls_per_request"] == round(len(in_load) / row["requests"], 3)
    assert 0.9 <= got["per_request"]["loop sendto"] <= 1.1 and got["per_request"]["loop epoll_wait"] < 0.5, got
    cpu = row["cpu"]
    assert got["cpu_per_request_us"] == round((cpu["user"] + cpu["system"]) / row["requests"] * 1e6, 1) > 0
    assert re.search(r"^load: [\d,]+ requests in \d\.\d s on 64 connections \(wrk\), [\d,]+ req/s under strace$",
                     p.stdout, re.M), p.stdout
    assert re.search(r"^  per request: \d+\.\d\d traced syscalls \(loop recvfrom", p.stdout, re.M), p.stdout
    assert re.search(r"^  per request: [\d,]+ µs of CPU \(user [\d,]+, system [\d,]+\)", p.stdout, re.M), p.stdout


def test_look_first_points_at_the_busy_cycle(loaded):
    p, _ = loaded
    assert re.search(r"look first: \S+annotated\.log line \d+ \(a wait-serve cycle under load", p.stdout), p.stdout


def test_without_wrk_a_built_in_client_loads_it_and_load_alone_is_short(tools_present, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("strace", "true"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    out, port = tmp_path / "o", free_port()
    p = run_cli("trace", "--out", str(out), "--port", str(port), "--load", "--", PY, str(SERVER), str(port),
                env={**os.environ, "PATH": str(bin_dir)})
    assert p.returncode == 0, p.stderr
    (row,) = [r for r in Trace.load(out).requests if r["path"] == "load"]
    assert row["tool"] == "built-in client" and row["connections"] == 16 and row["seconds"] == 1, row
    assert row["requests"] > 50 and row["errors"] == 0 and row["non_2xx"] == 0, row
    assert "load: 16 connections for 1 s (GET /) against" in p.stderr and "with built-in client" in p.stderr
    assert "[the next " in (out / "annotated.log").read_text()
