"""A line that repeats a call the annotator kept is copied, not parsed, and each
renderer fills its form of the call (tracing/read/scan.py's copy_lines,
tracing/render/fill.py's fill, and their compiled twins in tracing/_core.c).
That must never show: the same bytes as when every line goes through its
handler, with the compiled twins or the Python ones, on every recorded log,
on real lines shuffled with new times, and where a loop thread stalls between
two identical calls."""

from __future__ import annotations

import io
import math
import os
import random
import re
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracing.read import scan
from tracing.read.inputs import opener
from tracing.render import fill
from tracing.render.annotated_log import AnnotatedLog
from tracing.render.jsonl import Jsonl
from tracing.render.renderer import fan_out
from tracing.render.trace_event import Exporter
from tracing.understand.annotate import annotate_items

from tests.helpers import FIXTURES, LOAD, LOGS, MIXED, PROGRAMS, ROOT, SPLIT


def outputs(open_items, check: bool = False) -> tuple[dict[str, str], dict, int]:
    """Every renderer's output of one read, the summary, and how many lines were copied."""
    records, ann = annotate_items(open_items, check_reuse=check, copies=True)
    jsonl, text, trace = io.StringIO(), io.StringIO(), io.StringIO()
    fan_out(records, [Jsonl(jsonl), AnnotatedLog(text), Exporter(trace)])
    return ({"jsonl": jsonl.getvalue(), "text": text.getvalue(), "trace-event": trace.getvalue()},
            ann.summary.as_dict(), ann.reused)


def first_difference(want: dict[str, str], got: dict[str, str]) -> str:
    for name in want:
        for n, (w, g) in enumerate(zip(want[name].splitlines(), got[name].splitlines()), 1):
            if w != g:
                return f"{name}, output line {n}:\n  every line parsed: {w}\n  copies:            {g}"
        if want[name] != got[name]:
            return f"{name}: {len(want[name].splitlines())} lines parsed, {len(got[name].splitlines())} with copies"
    return "the same"


def test_the_compiled_twins_are_built():
    assert scan.compiled() and fill.fill is not fill._fill and fill.slices is not fill._slices, \
        "tracing/_core.c is not built: `make setup` builds it (needs Python's C headers)"


@pytest.mark.parametrize("log", LOGS, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_copies_are_what_the_handlers_say_with_either_twin(log, monkeypatch):
    # check: every line goes through its handler, and the row a copy would have
    # made of it is compared with that record (an AssertionError names the line).
    want, summary, _ = outputs(opener([str(log)]), check=True)
    got, got_summary, _ = outputs(opener([str(log)]))
    assert got == want, first_difference(want, got)
    assert got_summary == summary
    monkeypatch.setattr(scan, "copy_lines", scan._copy_lines)
    monkeypatch.setattr(fill, "fill", fill._fill)
    monkeypatch.setattr(fill, "slices", fill._slices)
    twin, twin_summary, _ = outputs(opener([str(log)]))
    assert twin == want, first_difference(want, twin)
    assert twin_summary == summary


def test_a_server_under_repeated_requests_is_mostly_copied():
    _, summary, copied = outputs(opener([str(LOAD)]))
    calls = summary["kinds"]["syscall"]
    # Every tenth request opens a file on a pool thread, which changes the model:
    # a third of the calls are copies here (under wrk's GET / alone, nearly all).
    assert copied > calls / 4, (copied, calls)


def test_a_loop_busy_between_two_identical_calls_is_said_so(tmp_path):
    # Real strace: five identical writes, 200 ms of computing with no syscall,
    # five more. The sixth is the same call as the fifth, but its note must say
    # that the thread made no call for 200 ms: it is not copied.
    log = tmp_path / "busy.strace"
    subprocess.run(["strace", "-f", "-ttt", "-T", "-yy", "-o", str(log), sys.executable,
                    str(PROGRAMS / "busy_between_writes.py")], check=True, timeout=60)
    want, _, _ = outputs(opener([str(log)]), check=True)
    got, _, copied = outputs(opener([str(log)]))
    assert got == want, first_difference(want, got)
    lines = log.read_text().splitlines()
    ticks = [n for n, line in enumerate(lines, 1) if re.search(r' write\(\d+</dev/null.*"tick\\n"', line)]
    assert len(ticks) == 10, ticks
    stalled = [n for n in ticks if "made no traced call for" in next(
        line for line in want["jsonl"].splitlines() if line.startswith(f'{{"line": {n},'))]
    assert stalled == [ticks[5]], (stalled, ticks)
    assert copied >= 8, copied  # the writes but the first and the stalled one


# A real call line with its own time and duration put back: digits of other
# lengths, no time, no duration. Copies are keyed on the text between them.
_PREFIX = re.compile(r"^(\[pid +\d+\] |\d+ +)? *(\d+\.\d+ +)?")
_DURATION = re.compile(r" <\d+\.\d+>$")
# Times of every length (13 digits: not a time; a fraction of 70 digits), and a few close
# together, so a call's resumed half can end before or well after it began.
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


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(st.one_of(st.lists(st.sampled_from(MIXED), min_size=1, max_size=300), real_calls_retimed()))
def test_copies_hold_for_real_lines_in_any_order_at_any_time(lines):
    def items():
        return enumerate((line + "\n" for line in lines), 1)
    want, summary, _ = outputs(items, check=True)
    got, got_summary, _ = outputs(items)
    assert got == want, first_difference(want, got)
    assert got_summary == summary


def test_a_copy_after_a_call_in_two_halves_is_checked_for_a_stall():
    # Real lines of the pool server's loop thread, with -r's times (each the time
    # since the line before): a wait strace printed in two halves, its resumed
    # half 1 ms after its start, then a repeated call 70 ms after that. The stall
    # check reads the wait's end off its resumed half: 69 ms, said as a stall,
    # though the wait began only 40 ms before.
    wait = next(pair for pair in SPLIT if pair[0].startswith(LOOP_TID) and " epoll_wait(" in pair[0])
    brk = next(line for line in MIXED if line.startswith(LOOP_TID) and " brk(NULL)" in line)
    halves = [retime(wait[0], "0.030", None), retime(wait[1], "0.001", None)]
    lines = halves + [retime(brk, "0.001", None)] * 3 + halves + [retime(brk, "0.070", None)]

    def items():
        return enumerate((line + "\n" for line in lines), 1)
    want, _, _ = outputs(items, check=True)
    assert "made no traced call for 69 ms" in want["jsonl"].splitlines()[-1], want["jsonl"].splitlines()[-1]
    got, _, copied = outputs(items)
    assert got == want, first_difference(want, got)
    assert copied == 2, copied  # the second and third brk; the last stalls


# -- the twins, line by line --------------------------------------------------
_real = [line + "\n" for line in MIXED[:400]]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(_real), st.builds(retime, st.sampled_from(MIXED[:400]), times, times),
                          st.text(max_size=80)), min_size=1, max_size=40),
       st.data())
def test_the_compiled_scanner_takes_what_its_twin_takes(lines, data):
    keys = [scan.scan(line)[0] for line in lines]
    live = {k: (object(), i % 3, i % 8, {}) if i % 5 else False
            for i, k in enumerate(keys) if data.draw(st.booleans())}
    at = {0: 1.0, 1: None, 2: float("-inf")}
    window = data.draw(st.sampled_from([None, 0.05]))
    most = data.draw(st.integers(1, 50))
    brief = data.draw(st.sampled_from([0.001, 0.5]))  # flag 4: only lines that slept less
    learning = data.draw(st.booleans())  # rows None: the learning pass makes none
    results = []
    for copy in (scan.copy_lines, scan._copy_lines):
        items = iter(enumerate(lines, 1))
        rows: list | None = None if learning else []
        last, seen = {}, dict(at)
        got = copy(items, live, last, seen, window, rows, most, brief)
        results.append((got, rows, last, seen, list(items)))
    assert results[0] == results[1]


def test_the_compiled_scanner_reads_a_logs_times_as_float_does():
    # Times and durations of every length, dense where the compiled reader stops doing
    # the sum itself (digits past 2**53, more than 22 places): each line's row holds
    # the floats Python's float() reads from its text.
    rng = random.Random(25)
    texts = []
    for digits in range(1, 26):
        for _ in range(200):
            d = "".join(rng.choice("0123456789") for _ in range(digits))
            dot = rng.randrange(0, digits + 1)
            texts.append(f"{d[:dot] or '0'}.{d[dot:] or '0'}")
    for n in range(2 ** 53 - 300, 2 ** 53 + 300):
        d = str(n)
        texts += [f"{d[:10]}.{d[10:]}", f"{d[:1]}.{d[1:]}", f"0.{'0' * 6}{d}"]
    texts += [f"0.{'0' * zeros}{rng.randrange(1, 10 ** 6)}" for zeros in range(26) for _ in range(20)]
    line = next(m for m in MIXED if _DURATION.search(m) and _PREFIX.match(m).group(2))
    lines = [retime(line, t, rng.choice(texts)) + "\n" for t in texts]
    live = {scan.scan(x)[0]: (object(), 0, 0, {}) for x in lines}
    results = []
    for copy in (scan.copy_lines, scan._copy_lines):
        rows: list = []
        got = copy(iter(enumerate(lines, 1)), live, {}, {}, None, rows, len(lines) + 1, 0.5)
        results.append((got, rows))
    assert len(results[1][1]) > len(lines) // 2
    wrong = [(a, b) for a, b in zip(*(r[1] for r in results)) if a != b]
    assert not wrong and results[0] == results[1], wrong[:5]


forms = st.lists(st.sampled_from([fill.slot(f, h) for f in range(1, 7) for h in range(4)]), max_size=6)
# Decimals of up to six places, as a log's times and durations are: the compiled writer
# spells these itself; the edges of that way (1e-4, 2**33, -0.0) beside them.
decimals = st.one_of(st.integers(-10**16, 10**16).map(lambda n: n / 1e6),
                     st.integers(-10**13, 10**13).map(lambda n: n / 1e3),
                     st.sampled_from([1e-4, 9.99999e-5, 5e-05, 1.2e-05, 0.000123, 2.0**33, 2.0**33 - 1e-6, 8589934591.999999,
                                      -0.0, 0.0, 5e-324, 1.7e9 + 0.5, 12.0, 100.000001]))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**9), st.one_of(st.none(), st.floats(allow_nan=False), decimals),
                          st.one_of(st.none(), st.floats(0, 1e6), decimals), st.text(), st.one_of(st.none(), st.text()),
                          st.one_of(st.none(), st.text()), forms, st.text()), max_size=20),
       st.integers(0, 3))
def test_the_compiled_filler_writes_what_its_twin_writes(specs, start):
    rows = []
    for line, ts, dur, text, source, request, slots, lit in specs:
        if any(s & 3 == fill.WIDE and s >> 2 != fill.LINE for s in slots) or any(
                s & 3 == fill.AS_IS and s >> 2 not in (fill.TEXT,) for s in slots) or any(
                s & 3 == fill.NUMBER and s >> 2 in (fill.TEXT, fill.SOURCE, fill.REQUEST) for s in slots):
            continue  # slots the renderers never make: a number written as text, and so on
        form = (lit, *[p for s in slots for p in (s, lit)])
        forms_of = {"k": form} if len(rows) % 4 != 3 else {}
        rows.append((object(), line, ts, dur, text, source, request, forms_of))
    quote = repr
    assert fill.fill(rows, start, "k", quote) == fill._fill(rows, start, "k", quote)


def test_the_compiled_filler_spells_a_logs_decimals_as_repr_does():
    # Whole numbers, and times and durations of six places and fewer, where the compiled
    # writer spells the digits itself, dense around its edges (1e-4, where repr turns to
    # an exponent; 2**33, past which doubles are more than 10**-6 apart; 2**53, past which
    # they are more than 1 apart); each through one fill.
    rng = random.Random(25)
    edges = [2.0 ** 33, 1e-4, 1.0, 2.0 ** 53, 1e16, 1796659720534247.0]
    values = [n / 1e6 for n in range(-2000, 2000)] + [n / 1e3 for n in range(-2000, 2000)]
    for edge in edges:
        n = round(edge * 1e6)
        values += [(n + k) / 1e6 for k in range(-20000, 20000)]
        values += [math.nextafter(edge, d) for d in (0, math.inf)]
    values += [rng.randrange(-10 ** 16, 10 ** 16) / 10 ** rng.randrange(0, 7) for _ in range(100000)]
    values += [float(rng.randrange(-2 ** 54, 2 ** 54)) for _ in range(20000)]  # whole numbers
    values += [rng.uniform(-1e10, 1e10) for _ in range(20000)] + [0.0, -0.0, 5e-324, 1e300, -1e-300]
    form = {"k": ("", fill.slot(fill.TS, fill.NUMBER), " ", fill.slot(fill.DURATION, fill.NUMBER), "")}
    rows = [(None, 1, v, -v, "", None, None, form) for v in values]
    got, _ = fill.fill(rows, 0, "k", repr)
    want, _ = fill._fill(rows, 0, "k", repr)
    wrong = [(g, w) for g, w in zip(got.split("\n"), want.split("\n")) if g != w]
    assert not wrong and got == want, wrong[:10]


slice_times = st.one_of(st.none(), st.floats(allow_nan=False), st.floats(1.7e9, 1.9e9), decimals,
                        st.sampled_from([0.0, -0.0, 1e300]))
slice_durations = st.one_of(st.none(), st.floats(0, 10), st.floats(-1e-6, 1e-6),
                            st.sampled_from([0.0, -0.0, 2.5e-7, 1e-6, 1.0005e-6, 2.5e-9, 1.2345e-7, 3600.0]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**12), slice_times, slice_durations, st.sampled_from([None, "", "GET /"]),
                          st.integers(0, 3), st.integers(0, 4), st.booleans()), max_size=25),
       st.integers(0, 3), st.lists(st.integers(0, 3), max_size=3))
def test_the_compiled_slices_are_what_their_twin_writes(specs, start, wanted_tids):
    # Rows of a few threads, some without a form, some not plain, some in a request or wanted,
    # times and durations close together (slices moved, zero-length edges); both from one state.
    rows = []
    for line, ts, dur, request, tid, kind, loop in specs:
        form = {0: None, 1: False}.get(kind, ("{h", ", a", "}", f"X:c{kind}", "loop" if loop else "pool", tid, tid + 1))
        rows.append((object(), line, ts, dur, None, None, request or None, {} if form is None else {"k": form}))
    wanted = {rows[t][1]: [] for t in wanted_tids if t < len(rows)}

    def state():
        return ({0: "loop"}, {1: 1.8e15, 2: 1.8e15 + 0.25}, {2: True}, {"X:c2": 4})

    got, want = state(), state()
    assert fill.slices(rows, start, "k", wanted, got[0], "loop", *got[1:]) == \
        fill._slices(rows, start, "k", wanted, want[0], "loop", *want[1:])
    assert repr(got) == repr(want)  # a time past 1e302 ends at inf - inf: nan, which no == holds


def test_the_compiled_twins_under_address_sanitizer(tmp_path):
    # tracing/_core.c built with ASan and UBSan (as the C server's sanitizer build), run on
    # every recorded log, copies on and in check mode: a bad read, write, free or overflow aborts.
    import shutil
    import sysconfig
    pkg = tmp_path / "tracing"
    shutil.copytree(ROOT / "tracing", pkg, ignore=shutil.ignore_patterns("*.so", "__pycache__", "build"))
    build = subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-g", "-fno-omit-frame-pointer",
                            "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-Wall", "-Wextra",
                            "-Werror", f"-I{sysconfig.get_paths()['include']}", str(pkg / "_core.c"), "-o",
                            str(pkg / f"_core{sysconfig.get_config_var('EXT_SUFFIX')}")],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    asan = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    script = ("import io, sys\n"
              "from tracing import _core\n"
              "from tracing.read.inputs import opener\n"
              "from tracing.render.jsonl import Jsonl\n"
              "from tracing.render.annotated_log import AnnotatedLog\n"
              "from tracing.render.renderer import fan_out\n"
              "from tracing.render.trace_event import Exporter\n"
              "from tracing.understand.annotate import annotate_items\n"
              "assert _core.__file__.startswith(sys.argv[1]), _core.__file__\n"
              "for log in sys.argv[2:]:\n"
              "    for check in (False, True):\n"
              "        records, _ = annotate_items(opener([log]), check_reuse=check, copies=True)\n"
              "        fan_out(records, [Jsonl(io.StringIO()), AnnotatedLog(io.StringIO()), Exporter(io.StringIO())])\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "LD_PRELOAD": asan,
           "PYTHONMALLOC": "malloc",  # every block its own, so ASan sees each one's bounds
           "ASAN_OPTIONS": "detect_leaks=0"}  # CPython keeps memory for good at exit
    p = subprocess.run([sys.executable, "-c", script, str(tmp_path), *map(str, LOGS)], env=env, cwd=tmp_path,
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-4000:]


def test_annotate_jsonl_writes_what_the_handlers_say(tmp_path):
    from tests.helpers import run_cli
    out = tmp_path / "load.jsonl"
    p = run_cli("annotate", "--format", "jsonl", "-o", str(out), str(LOAD))
    assert p.returncode == 0, p.stderr
    want, _, _ = outputs(opener([str(LOAD)]), check=True)
    assert out.read_text() == want["jsonl"], first_difference({"jsonl": want["jsonl"]},
                                                              {"jsonl": out.read_text()})

