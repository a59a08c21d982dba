"""annotated.log opens with an index whose line numbers are right, and the
start-up imports are one counted line (all still in raw.strace and
events.jsonl), so the first request is near the top."""

from __future__ import annotations

import re

from tests.helpers import free_port, run_cli
from tracing.render.annotated_log import AnnotatedLog, is_import
from tracing.render.renderer import fan_out
from tracing.understand.annotate import annotate_file
from tracing.run.scenario import load_steps

FOLD = re.compile(r"\[(\d+) start-up file calls folded .*?raw lines (\d+)-(\d+): ")


def index_of(text: str) -> list[tuple[str, int]]:
    head = text.split("\n\n", 1)[0].splitlines()
    at = head.index("# Index (line numbers in this file):")
    return [(m.group(1).strip(), int(m.group(2))) for m in
            (re.match(r"#   (.*?)\s+line (\d+)$", line) for line in head[at + 1:]) if m]


def test_the_index_names_each_section_and_the_line_it_starts_on(uvloop_trace):
    text = (uvloop_trace.out / "annotated.log").read_text()
    lines = text.splitlines()
    index = index_of(text)
    sections = [name for name, _ in index if not name.startswith("the first")]
    paths = [r["path"] for r in uvloop_trace.requests if r["path"].startswith("/")]
    assert sections == ["start-up", *(f"request {i}: GET {p}" for i, p in enumerate(paths, 1)),
                        "shutdown"], index
    for name, at in index:
        line = lines[at - 1]
        if name.startswith("the first"):
            assert re.match(r"\s*\d+ ", line), (name, line)
        else:
            assert line.startswith(f"==== {name}"), (name, at, line)


def test_the_landmarks_point_at_their_calls(uvloop_trace):
    text = (uvloop_trace.out / "annotated.log").read_text()
    lines = text.splitlines()
    marks = dict(index_of(text))
    assert "epoll_pwait(" in lines[marks["the first epoll wait"] - 1] \
        or "epoll_wait(" in lines[marks["the first epoll wait"] - 1]
    assert "accept4(" in lines[marks["the first accepted connection"] - 1]
    assert "[wakeup]" in lines[marks["the first wakeup"]]


def test_start_up_imports_are_one_counted_line_and_stay_in_the_raw_trace(uvloop_trace):
    text = (uvloop_trace.out / "annotated.log").read_text()
    folds = FOLD.findall(text)
    assert len(folds) == 1, folds
    count, first, last = map(int, folds[0])
    assert count > 500, "a Sanic server loads hundreds of modules"
    folded = [r for r in uvloop_trace.records if first <= r["line"] <= last and is_import(r)]
    assert len(folded) == count, "every folded call is still in events.jsonl"
    raw = (uvloop_trace.out / "raw.strace").read_text().splitlines()
    assert all(".pyc" in raw[r["line"] - 1] or "openat(" in raw[r["line"] - 1] or r["fds"]
               for r in folded)
    shown = {int(m.group(1)) for m in re.finditer(r"^\s*(\d+) \w", text, re.M)}
    assert not shown & {r["line"] for r in folded}, "a folded call is not printed as well"
    first_request = dict(index_of(text))["request 1: GET /"]
    assert first_request < len(text.splitlines()) / 2, "the first request is in the first half now"


def test_nothing_before_the_first_listen_or_wait_is_folded_if_it_is_not_a_file_call(uvloop_trace):
    text = (uvloop_trace.out / "annotated.log").read_text()
    for r in uvloop_trace.records:
        if r["syscall"] in ("socket", "bind", "listen", "epoll_create1", "clone3", "socketpair"):
            assert re.search(rf"^\s*{r['line']} ", text, re.M), f"line {r['line']} ({r['syscall']}) is shown"


def test_full_shows_every_call(uvloop_trace, tmp_path):
    steps, headers = load_steps(uvloop_trace.out)
    records, _ = annotate_file(str(uvloop_trace.out / "raw.strace"), steps, copies=True)
    out = tmp_path / "annotated.log"
    fan_out(records, [AnnotatedLog(out, "# full\n", headers, full=True)])
    text = out.read_text()
    assert not FOLD.search(text)
    shown = {int(m.group(1)) for m in re.finditer(r"^\s*(\d+) \w", text, re.M)}
    assert {r["resumed_line"] or r["line"] for r in uvloop_trace.records} <= shown


def test_a_run_says_where_to_look(tmp_path):
    p = run_cli("trace", "c", "--port", str(free_port()),
                "--out", str(tmp_path / "c"))
    assert p.returncode == 0, p.stderr
    m = re.search(r"look first: (\S+) line (\d+) \(request 1: GET /\)", p.stdout)
    assert m, p.stdout
    lines = (tmp_path / "c" / "annotated.log").read_text().splitlines()
    assert lines[int(m.group(2)) - 1].startswith("==== request 1: GET /")
    assert "trace.json at https://ui.perfetto.dev" in p.stdout and "timeline.html" in p.stdout


def test_the_body_is_the_same_where_the_kernel_cannot_copy_files(tmp_path, monkeypatch):
    """annotated.log's body follows its index as bytes, by copy_file_range; where that is refused
    (an old kernel, another file system), by hand, to the same bytes."""
    import os

    from tests.helpers import FIXTURES, ROOT
    from tracing import cli

    log = str((FIXTURES / "load" / "c-pool-keepalive.strace").relative_to(ROOT))
    monkeypatch.chdir(ROOT)
    assert cli.main(["annotate", log, "--format", "all", "-o", str(tmp_path / "kernel")]) == 0

    def refused(*args):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "copy_file_range", refused)
    assert cli.main(["annotate", log, "--format", "all", "-o", str(tmp_path / "by-hand")]) == 0
    kernel, by_hand = ((tmp_path / d / "annotated.log").read_bytes() for d in ("kernel", "by-hand"))
    assert len(kernel) > 100_000 and kernel == by_hand
