"""Property tests: whatever text comes in, the annotator never raises and
every input line ends up in exactly one record (as `line` or `resumed_line`).

The inputs are real lines from the recorded fixtures, mutated (cut, spliced,
doubled, salted with the characters strace's syntax hangs on), and plain
random text."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import covered
from tracing.understand.annotate import Annotator
from tracing.read.parse import events
from tracing.render.jsonl import JSONL_FIELDS, jsonl_line
from tracing.render.text import text_lines

FIXTURES = Path(__file__).parent / "fixtures"
REAL = [line for p in sorted(FIXTURES.rglob("*.strace"))
        for line in p.read_text().splitlines()]
SYNTAX = list('()[]{}<>",=?.\\ ') + ["<unfinished ...>", "<... read resumed>", " = ", "[pid 7] ",
                                     "+++ ", "--- ", "strace: ", ") = ? <unavailable>", "\n"]


def annotate(lines: list[str]) -> list[dict]:
    return [r for r in Annotator().run(events(lines)) if r["kind"] != "started"]


def assert_each_line_once(lines: list[str], recs: list[dict]) -> None:
    seen = covered(recs)
    assert seen == list(range(1, len(lines) + 1)), (seen, lines)


@st.composite
def mutated(draw) -> str:
    line = draw(st.sampled_from(REAL))
    how = draw(st.sampled_from(["keep", "cut", "insert", "delete", "splice", "double"]))
    i = draw(st.integers(0, len(line)))
    if how == "cut":
        return line[:i]
    if how == "insert":
        return line[:i] + draw(st.sampled_from(SYNTAX) | st.text(max_size=5)) + line[i:]
    if how == "delete":
        return line[:i] + line[i + draw(st.integers(1, 20)):]
    if how == "splice":
        other = draw(st.sampled_from(REAL))
        return line[:i] + other[draw(st.integers(0, len(other))):]
    if how == "double":
        return line + line
    return line


def no_newlines(lines: list[str]) -> list[str]:
    # A line is what the file reader hands over: no newline inside it.
    return [line.replace("\n", " ").replace("\r", " ") for line in lines]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutated(), min_size=1, max_size=40))
def test_mutated_real_lines_never_raise_and_every_line_is_kept(lines):
    lines = no_newlines(lines)
    recs = annotate(lines)
    assert_each_line_once(lines, recs)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(max_size=80), min_size=1, max_size=30))
def test_random_text_never_raises_and_every_line_is_kept(lines):
    lines = no_newlines(lines)
    recs = annotate(lines)
    assert_each_line_once(lines, recs)
    assert all(r["text"] == lines[r["line"] - 1] for r in recs if r["kind"] == "unparsed")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutated(), min_size=1, max_size=20))
def test_every_record_writes_valid_json_lines_and_text(lines):
    lines = no_newlines(lines)
    recs = list(Annotator().run(events(lines)))
    for rec in recs:
        if rec["kind"] == "started":
            continue
        out = json.loads(jsonl_line(rec))
        assert list(out)[:len(JSONL_FIELDS)] == list(JSONL_FIELDS)
    text = "\n".join(text_lines(recs))
    assert all(line in text for line in lines)
