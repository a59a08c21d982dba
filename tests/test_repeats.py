"""A line that repeats a call already annotated is written by the compiled
core from the record the annotator wrote for it (tracing/render/repeats.py). That
must never show: the same bytes as the annotator alone writes, on every
recorded log, on real lines shuffled with new times, and where a loop thread
stalls between two identical calls."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracing.render import repeats
from tracing.understand.annotate import annotate_file, annotate_items
from tracing.read.inputs import opener
from tracing.render.views import write_outputs

from tests.helpers import FIXTURES, LOAD, LOGS, MIXED, PROGRAMS, ROOT, SPLIT, run_cli


def by_the_annotator_alone(open_items) -> tuple[str, dict]:
    records, ann = annotate_items(open_items)
    out = io.StringIO()
    write_outputs(records, None, out)
    return out.getvalue(), ann.summary.as_dict()


def with_the_core(open_items, check: bool = False, path=None):
    if path is None:
        out = io.StringIO()
        ann = repeats.write_jsonl(open_items, out, check=check)
        return out.getvalue(), ann
    with open(path, "w", encoding="utf-8") as out:
        ann = repeats.write_jsonl(open_items, out, check=check)
    return path.read_text(encoding="utf-8"), ann


def first_difference(want: str, got: str) -> str:
    for n, (w, g) in enumerate(zip(want.splitlines(), got.splitlines()), 1):
        if w != g:
            return f"output line {n}:\n  annotator: {w}\n  core:      {g}"
    return f"{len(want.splitlines())} lines from the annotator, {len(got.splitlines())} with the core"


def test_the_compiled_core_is_built():
    assert repeats.compiled(), "tracing/_repeats.c is not built: `make setup` builds it (needs python3-dev)"


@pytest.mark.parametrize("log", LOGS, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_repeats_are_written_as_the_annotator_alone_writes_them(log, tmp_path):
    want, summary = by_the_annotator_alone(opener([str(log)]))
    got, ann = with_the_core(opener([str(log)]), path=tmp_path / "out.jsonl")
    assert got == want, first_difference(want, got)
    assert ann.summary.as_dict() == summary


@pytest.mark.parametrize("log", LOGS, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_the_core_would_answer_every_line_as_the_annotator_does(log):
    # check: every line goes through the annotator, and each the core would
    # have written is compared with it (an AssertionError names the line).
    want, _ = by_the_annotator_alone(opener([str(log)]))
    got, _ = with_the_core(opener([str(log)]), check=True)
    assert got == want, first_difference(want, got)


def test_a_server_under_repeated_requests_is_written_by_the_core():
    records, _ = annotate_file(str(LOAD))
    calls = sum(1 for r in records if r["kind"] == "syscall")
    _, ann = with_the_core(opener([str(LOAD)]))
    _, checked = with_the_core(opener([str(LOAD)]), check=True)
    # As many as the annotator reuses verdicts for (a third here: every tenth
    # request opens a file on a pool thread, which changes the model).
    assert ann.repeated > calls / 4, (ann.repeated, calls)
    assert len(checked.checked) == ann.repeated


def test_a_loop_busy_between_two_identical_calls_is_said_so(tmp_path):
    # Real strace: five identical writes, 200 ms of computing with no syscall,
    # five more. The sixth is the same call as the fifth, but its note must say
    # that the thread made no call for 200 ms, so the core must leave it to the annotator.
    log = tmp_path / "busy.strace"
    subprocess.run(["strace", "-f", "-ttt", "-T", "-yy", "-o", str(log), sys.executable,
                    str(PROGRAMS / "busy_between_writes.py")], check=True, timeout=60)
    want, _ = by_the_annotator_alone(opener([str(log)]))
    got, ann = with_the_core(opener([str(log)]), check=True)
    assert got == want, first_difference(want, got)
    fast, _ = with_the_core(opener([str(log)]))
    assert fast == want, first_difference(want, fast)
    lines = log.read_text().splitlines()
    ticks = [n for n, line in enumerate(lines, 1) if re.search(r' write\(\d+</dev/null.*"tick\\n"', line)]
    assert len(ticks) == 10, ticks
    stalled = [n for n in ticks if "made no traced call for" in next(line for line in want.splitlines()
                                                            if line.startswith(f'{{"line": {n},'))]
    assert stalled == [ticks[5]], (stalled, ticks)
    assert ticks[5] not in ann.checked, "the stalled call was written from a template"
    assert set(ticks[1:5]) | set(ticks[6:]) <= set(ann.checked), (ticks, ann.checked[-20:])


# A real call line with its own time and duration put back: digits of other
# lengths, no time, no duration. The core keys lines on the text between them.
_PREFIX = re.compile(r"^(\[pid +\d+\] |\d+ +)? *(\d+\.\d+ +)?")
_DURATION = re.compile(r" <\d+\.\d+>$")
# Times of every length the core must take or leave (13 digits: not a time; a fraction
# of 70 digits, which it leaves to the annotator), and a few close together, so a
# call's resumed half can end before or well after it began.
times = st.one_of(st.none(), st.from_regex(r"\A[0-9]{1,14}\.[0-9]{1,9}\Z"),
                  st.sampled_from(["1.0", "1.02", "1.04", "1.1", "0.9", "100.000001", "123456789012.5",
                                   "1234567890123.5", "1." + "1" * 70]))
# The pool server's loop thread: its calls, and those strace printed in two halves.
LOOP_TID = "19937 "
LOOP = ([(line,) for line in MIXED if line.startswith(LOOP_TID)]
        + [pair for pair in SPLIT if pair[0].startswith(LOOP_TID)])


def retime(line: str, ts: str | None, dur: str | None) -> str:
    head = _PREFIX.match(line)
    pid, body = head.group(1) or "", line[head.end():]
    body = _DURATION.sub("" if dur is None else f" <{dur}>", body)
    return f"{pid}{'' if ts is None else ts + ' '}{body}"


@st.composite
def real_calls_retimed(draw) -> list[str]:
    """A few real calls (some in two halves, as strace prints a call another thread
    interrupts), each repeated with other times and durations, in any order."""
    family = draw(st.sampled_from([LOOP, [(line,) for line in MIXED] + SPLIT]))
    calls = draw(st.lists(st.sampled_from(family), min_size=1, max_size=6))
    lines = []
    for _ in range(draw(st.integers(1, 60))):
        call = draw(st.sampled_from(calls))
        kept = draw(st.booleans())
        lines += [line if kept else retime(line, draw(times), draw(times)) for line in call]
    return lines


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.lists(st.sampled_from(MIXED), min_size=1, max_size=300), real_calls_retimed()))
def test_repeats_hold_for_real_lines_in_any_order_at_any_time(lines):
    def items():
        return enumerate((line + "\n" for line in lines), 1)
    want, summary = by_the_annotator_alone(items)
    got, ann = with_the_core(items, check=True)
    assert got == want, first_difference(want, got)
    got, ann = with_the_core(items)
    assert got == want, first_difference(want, got)
    assert ann.summary.as_dict() == summary


def test_annotate_jsonl_writes_the_annotators_records(tmp_path):
    out = tmp_path / "load.jsonl"
    p = run_cli("annotate", "--format", "jsonl", "-o", str(out), str(LOAD))
    assert p.returncode == 0, p.stderr
    want, _ = by_the_annotator_alone(opener([str(LOAD)]))
    assert out.read_text() == want, first_difference(want, out.read_text())


def test_a_repeat_after_a_call_in_two_halves_is_checked_for_a_stall():
    # Real lines of the pool server's loop thread, with -r's times (each the time
    # since the line before): a wait strace printed in two halves, its resumed
    # half 1 ms after its start, then a repeated call 70 ms after that. The stall
    # check reads the wait's end off its resumed half: 69 ms, said as a stall,
    # though the wait began only 40 ms before. The first wait teaches the model;
    # the repeats after it are kept, and the second wait changes nothing.
    wait = next(pair for pair in SPLIT if pair[0].startswith(LOOP_TID) and " epoll_wait(" in pair[0])
    brk = next(line for line in MIXED if line.startswith(LOOP_TID) and " brk(NULL)" in line)
    halves = [retime(wait[0], "0.030", None), retime(wait[1], "0.001", None)]
    lines = halves + [retime(brk, "0.001", None)] * 3 + halves + [retime(brk, "0.070", None)]

    def items():
        return enumerate((line + "\n" for line in lines), 1)
    want, _ = by_the_annotator_alone(items)
    assert "made no traced call for 69 ms" in want.splitlines()[-1], want.splitlines()[-1]
    got, ann = with_the_core(items, check=True)
    assert got == want, first_difference(want, got)
    assert ann.checked == [4, 5], ann.checked  # the core took the repeats, and left the last
    got, ann = with_the_core(items)
    assert got == want, first_difference(want, got)


def test_the_core_under_address_sanitizer(tmp_path):
    # The core built with ASan and UBSan (as the C server's sanitizer build), run on
    # every recorded log in both modes: a bad read, write, free or overflow aborts.
    import shutil
    import sysconfig
    pkg = tmp_path / "tracing"
    shutil.copytree(ROOT / "tracing", pkg, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    build = subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-g", "-fno-omit-frame-pointer",
                            "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-Wall", "-Wextra",
                            "-Werror", f"-I{sysconfig.get_paths()['include']}", str(pkg / "_repeats.c"), "-o",
                            str(pkg / f"_repeats{sysconfig.get_config_var('EXT_SUFFIX')}")],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    asan = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    script = ("import io, sys\n"
              "from tracing.render import repeats\n"
              "from tracing.read.inputs import opener\n"
              "assert repeats._repeats.__file__.startswith(sys.argv[1]), repeats._repeats.__file__\n"
              "for log in sys.argv[2:]:\n"
              "    for check in (False, True):\n"
              "        repeats.write_jsonl(opener([log]), io.StringIO(), check=check)\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "LD_PRELOAD": asan,
           "PYTHONMALLOC": "malloc",  # every block its own, so ASan sees each one's bounds
           "ASAN_OPTIONS": "detect_leaks=0"}  # CPython keeps memory for good at exit
    p = subprocess.run([sys.executable, "-c", script, str(tmp_path), *map(str, LOGS)], env=env, cwd=tmp_path,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-4000:]
