"""Property tests: hostile input never raises and never writes bad JSON.

Real lines from the recorded fixtures get numbers far past Python's 4,300
digit limit (pids, `[pid N]`, fd arguments, epoll `u64`, `tv_sec`, `<pid
changed to N>`), results with leading zeros, 400-digit timestamps, latin-1
bytes and lone carriage returns. Every record must still write one line of
valid UTF-8 JSON (no NaN or Infinity, no integer JSON readers refuse), and
lines are what "\\n" separates, from a file or from standard input."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import covered
from tracing.read import inputs
from tracing.understand.annotate import Annotator, annotate_file
from tracing.read.parse import events
from tracing.render.jsonl import jsonl_line

FIXTURES = Path(__file__).parent / "fixtures"
REAL = [line for p in sorted(FIXTURES.rglob("*.strace")) for line in p.read_text().splitlines()]
# Where a number sits in a strace line, as the issue found them.
NUMBER_SPOTS = [r"^\d+", r"(?<=\[pid )\s*\d+", r"(?<=\()\d+(?=[<,])", r"(?<=u64=)\d+", r"(?<=tv_sec=)\d+",
                r"(?<=pid changed to )\d+", r"(?<= = )\d+", r"(?<=\d\.)\d+", r"(?<=<)\d+(?=\.\d+>$)"]
WITH_NUMBERS = [line for line in REAL if any(re.search(p, line) for p in NUMBER_SPOTS)]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def no_constants(name: str):
    raise ValueError(f"{name} is not JSON")


def assert_valid_jsonl(records) -> list[dict]:
    """Each record's JSON line parses with Python's own limits and is UTF-8."""
    out = []
    for rec in records:
        if rec["kind"] == "started":
            continue
        line = jsonl_line(rec)
        line.encode("utf-8")  # no lone surrogates
        out.append(json.loads(line, parse_constant=no_constants))
    return out


def annotate(lines: list[str]) -> list[dict]:
    return assert_valid_jsonl(Annotator().run(events(lines)))


@st.composite
def huge_number_line(draw) -> str:
    line = draw(st.sampled_from(WITH_NUMBERS))
    spots = [m for p in NUMBER_SPOTS for m in re.finditer(p, line)]
    m = draw(st.sampled_from(spots))
    digits = draw(st.sampled_from(["9", "1", "0"])) * draw(st.integers(4301, 6000))
    return line[:m.start()] + "7" + digits + line[m.end():]


@SETTINGS
@given(st.lists(huge_number_line(), min_size=1, max_size=12))
def test_numbers_past_4300_digits_never_raise_and_write_valid_json(lines):
    recs = annotate(lines)
    assert covered(recs) == list(range(1, len(lines) + 1))


@SETTINGS
@given(st.lists(st.sampled_from([line for line in REAL if re.search(r" = \d+", line)]), min_size=1, max_size=12),
       st.integers(1, 5))
def test_results_with_leading_zeros_name_real_fds(lines, zeros):
    padded = [re.sub(r" = (\d+)", lambda m: " = " + "0" * zeros + m.group(1), line, count=1) for line in lines]
    for rec in annotate(padded):
        assert all(isinstance(f["fd"], int) for f in rec["fds"]), rec


@SETTINGS
@given(st.lists(st.sampled_from([line for line in REAL if re.search(r"\d+\.\d+ ", line)]), min_size=1, max_size=12),
       st.integers(300, 500))
def test_huge_timestamps_are_never_written_as_infinity(lines, width):
    stamped = [re.sub(r"\d+\.(\d+) ", lambda m: "9" * width + "." + m.group(1) + " ", line, count=1)
               for line in lines]
    for rec in annotate(stamped):
        assert rec["ts"] is None or rec["ts"] < 1e13, rec


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(REAL), st.binary(min_size=1, max_size=6).map(
    lambda b: bytes(x | 0x80 for x in b)), st.integers(0, 200)), min_size=1, max_size=12))
def test_latin1_bytes_from_standard_input_write_valid_utf8_json(salted):
    lines = [line.encode()[:i] + junk + line.encode()[i:] for line, junk, i in salted]
    stdin = inputs.as_text(io.BytesIO(b"\n".join(lines) + b"\n"))
    recs = assert_valid_jsonl(Annotator().run(events(stdin)))
    assert covered(recs)[-1] == len(lines)


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(REAL), st.integers(0, 200)), min_size=1, max_size=12))
def test_a_lone_carriage_return_never_splits_a_line_from_a_file_or_stdin(tmp_path_factory, cut):
    lines = [line[:i] + "\r" + line[i:] for line, i in cut]
    raw = "\n".join(lines) + "\n"
    path = tmp_path_factory.mktemp("cr") / "cr.strace"
    path.write_bytes(raw.encode())
    from_file = assert_valid_jsonl(annotate_file(str(path))[0])
    from_stdin = assert_valid_jsonl(Annotator().run(events(inputs.as_text(io.BytesIO(raw.encode())))))
    for recs in (from_file, from_stdin):
        assert covered(recs) == list(range(1, len(lines) + 1))
        # Each unparsed record's text is line N exactly as `sed -n Np` prints it.
        assert all(r["text"] == lines[r["line"] - 1] for r in recs if r["kind"] == "unparsed")
