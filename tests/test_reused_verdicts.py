"""A server repeats itself, so the annotator reuses a verdict while the model
has not changed (tracing/changes.py). Reuse must never show: these tests hold
it to exactly what the handlers say, on every recorded log and on lines of
real logs shuffled into orders no program made."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracing import changes
from tracing.annotate import Annotator, annotate_file
from tracing.parse import events
from tracing.views import jsonl_line

FIXTURES = Path(__file__).parent / "fixtures"
LOAD = FIXTURES / "load" / "c-pool-keepalive.strace"
LOGS = sorted(p for p in FIXTURES.rglob("*") if p.is_file() and ".strace" in p.name)


def test_the_logs_cover_a_server_under_repeated_requests():
    assert LOAD in LOGS and len(LOGS) >= 25, [p.name for p in LOGS]


@pytest.mark.parametrize("log", LOGS, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_a_reused_verdict_is_the_one_its_handler_gives(log):
    # check_reuse works out every verdict and raises where a reuse would have differed.
    checked, _ = annotate_file(str(log), check_reuse=True)
    reused, ann = annotate_file(str(log))
    want, got = [jsonl_line(r) for r in checked], [jsonl_line(r) for r in reused]
    differ = [(w, g) for w, g in zip(want, got) if w != g]
    assert len(want) == len(got) and not differ, differ[:3]


def test_a_server_under_repeated_requests_gets_verdicts_reused():
    records, ann = annotate_file(str(LOAD))
    calls = sum(1 for r in records if r["kind"] == "syscall")
    # 300 keep-alive requests: the same read, write and EAGAIN read each time.
    # Every tenth opens and closes a file on a pool thread, which changes the
    # model, so the reads and writes after it are worked out afresh: about a
    # third of the calls are reused here (under wrk's GET / alone, nearly all).
    assert ann.reused > calls / 4, (ann.reused, calls)


@pytest.mark.parametrize("log", LOGS, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_every_container_of_the_model_counts_its_changes(log):
    records, ann = annotate_file(str(log))
    for _ in records:
        pass
    assert changes.untracked(ann.model) == []


def _calls(path: Path) -> list[str]:
    return [line for line in path.read_text(errors="replace").splitlines()
            if "(" in line and "resumed>" not in line and "<unfinished" not in line]


MIXED = _calls(LOAD) + _calls(FIXTURES / "kinds" / "go.strace") + _calls(FIXTURES / "kinds" / "memcached.strace")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(MIXED), min_size=1, max_size=400))
def test_reuse_holds_for_lines_in_any_order(lines):
    # Lines of three real logs, repeated and interleaved in orders no program
    # made: fds unknown, reused, closed twice. One pass, as stdin is read.
    ann = Annotator(check_reuse=True)
    for _ in ann.run(events(lines)):
        pass
    assert changes.untracked(ann.model) == []
