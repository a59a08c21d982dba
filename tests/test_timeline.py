"""The timeline page every trace run writes (traces/<run>/timeline.html):
a self-contained page, one lane per thread, the /file read on a pool lane,
wakeup arrows ending on the loop's lane; rendered by real headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET

import pytest

from tests.helpers import run_cli, show
from tracing.render import browser, timeline


def page(trace) -> str:
    return (trace.out / "timeline.html").read_text()


def test_every_trace_run_writes_a_self_contained_page(uvloop_trace, c_trace):
    for trace in (uvloop_trace, c_trace):
        text = page(trace)
        assert text.startswith("<!DOCTYPE html>")
        assert not re.search(r'(src|href)="(https?:)?//', text), "the page fetches nothing"
        assert "<link" not in text and "<script src" not in text


def test_the_svg_is_well_formed(uvloop_trace):
    svg = re.search(r"<svg.*?</svg>", page(uvloop_trace), re.S).group()
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg") and len(root) > 10


def test_every_thread_of_the_trace_has_a_labelled_lane(uvloop_trace):
    text = page(uvloop_trace)
    threads = {(r["tid"], r["thread"]) for r in uvloop_trace.records
               if r["kind"] == "syscall" and r["ts"] is not None}
    tids = {tid for tid, _ in threads}
    for tid in tids:
        assert re.search(rf'class="lab (loop|pool|other)"[^>]*>(loop|pool|other) {tid}<', text), tid
    assert re.search(r">loop \d+<", text) and re.search(r">pool \d+<", text)


def lane_centres(text: str) -> dict[str, set[float]]:
    out: dict[str, set[float]] = {}
    for role, top in re.findall(r'class="lab (\w+)" style="top:([\d.]+)px"', text):
        out.setdefault(role, set()).add(float(top) + timeline.LANE_H / 2)
    return out


def test_the_file_read_sits_on_a_pool_lane_while_the_loop_waits(uvloop_trace):
    data = timeline.collect(uvloop_trace.records)
    (label,) = [k for k in data["requests"] if k.endswith("GET /file")]
    a, b = data["requests"][label]
    pooled = [(lane.tid, m) for lane in data["lanes"].values() if lane.role == "pool"
              for m in lane.marks if m.category == "thread-pooled" and a <= m.start <= b]
    assert pooled, show(uvloop_trace.in_request("/file"))
    loops = [lane for lane in data["lanes"].values() if lane.role == "loop"]
    # On a loaded machine the pool may finish before the loop is back in epoll; the
    # loop still waits there, in the request, until the pool's wakeup ends the wait.
    first = min(m.start for _, m in pooled)
    assert any(w.start <= b and w.end >= first for lane in loops for w in lane.waits), \
        "the loop does not wait in epoll while the pool works for it"


def test_a_wakeup_arrow_goes_from_a_pool_lane_to_the_loop_lane(uvloop_trace):
    text = page(uvloop_trace)
    lanes = lane_centres(text)
    arrows = [(float(y1), float(y2)) for y1, y2 in
              re.findall(r'<line class="arrow" x1="[^"]+" y1="([^"]+)" x2="[^"]+" y2="([^"]+)"', text)]
    assert arrows, "no wakeup arrow"
    assert all(y1 in lanes["pool"] and y2 in lanes["loop"] for y1, y2 in arrows), (arrows, lanes)


def test_a_long_trace_stays_small(c_load):
    lines = len((c_load.out / "raw.strace").read_text().splitlines())
    size = (c_load.out / "timeline.html").stat().st_size
    # wrk's throughput under strace varies with the machine's load; past MAX_MARKS
    # records the page must already thin its marks, which is what keeps it small.
    assert lines > timeline.MAX_MARKS and size < 3_000_000, (lines, size)


def test_headless_chromium_renders_the_timeline_without_console_errors(uvloop_trace, tmp_path):
    if shutil.which("chromium") is None:
        pytest.fail("chromium is missing: run `make test` as root (it installs it) or "
                    "sudo apt-get install -y chromium")
    from PIL import Image

    png = tmp_path / "timeline.png"
    console = browser.screenshot(uvloop_trace.out / "timeline.html", png, 1600, 420)
    assert not console, console
    img = Image.open(png).convert("RGB")
    assert img.size == (1600, 420)
    colors = img.getcolors(maxcolors=1 << 20)  # [(count, (r, g, b))]
    total = img.size[0] * img.size[1]
    ink = sum(n for n, c in colors if c != (255, 255, 255)) / total
    assert ink > 0.05, f"the page looks blank ({ink:.1%} non-white)"
    pixels = [c for _, c in colors]

    def near(rgb, hexcolor, tol=40):
        want = tuple(int(hexcolor[i:i + 2], 16) for i in (1, 3, 5))
        return all(abs(a - b) <= tol for a, b in zip(rgb, want))

    assert any(near(p, timeline.COLORS["thread-pooled"]) for p in pixels), "no pool work drawn"
    assert any(near(p, timeline.COLORS["wakeup"]) for p in pixels), "no wakeup drawn"


@pytest.mark.parametrize("content", [b"# not JSON Lines\n", b"1\n", b"\x7fELF\x02\x01\x01\x00\xff\xfe\n"])
def test_timeline_of_a_file_that_is_not_events_jsonl_is_one_line_exit_2(tmp_path, content):
    bad = tmp_path / "notes.jsonl"
    bad.write_bytes(content)
    p = run_cli("timeline", str(bad), "-o", str(tmp_path / "t.html"))
    errors = [l for l in p.stderr.splitlines() if l.startswith("epoll-lab: error:")]
    assert p.returncode == 2 and len(errors) == 1 and "line 1" in errors[0], p.stderr
    assert "Traceback" not in p.stderr, p.stderr


# -- hostile events.jsonl (issue 27 item 5): one line and exit 2, never a traceback ---------------
GOOD = {"line": 1, "tid": 7, "kind": "syscall", "syscall": "read", "ts": 1.0, "duration": 0.001,
        "thread": "loop", "category": "pollable", "note": "a read", "request": None}


@pytest.mark.parametrize("field, value, says", [
    ("ts", "1.0", "'ts' is a string"),
    ("duration", "0.1", "'duration' is a string"),
    ("tid", [7], "'tid' is a list"),
    ("note", {"a": 1}, "'note' is an object"),
    ("request", 5, "'request' is a number"),
    ("ts", 10 ** 400, "'ts' is out of range"),
])
def test_a_wrong_typed_field_is_one_line_and_exit_2(tmp_path, field, value, says):
    bad = tmp_path / "events.jsonl"
    bad.write_text(json.dumps(GOOD) + "\n" + json.dumps({**GOOD, field: value}) + "\n")
    p = run_cli("timeline", str(bad), "-o", str(tmp_path / "t.html"))
    errors = [l for l in p.stderr.splitlines() if l.startswith("epoll-lab: error:")]
    assert p.returncode == 2 and len(errors) == 1 and says in errors[0] and "line 2" in errors[0], p.stderr
    assert "Traceback" not in p.stderr and not (tmp_path / "t.html").exists(), p.stderr


def test_100k_nested_arrays_are_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "events.jsonl"
    bad.write_text("[" * 100_000 + "\n")
    p = run_cli("timeline", str(bad), "-o", str(tmp_path / "t.html"))
    assert p.returncode == 2 and "nested too deeply" in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_5000_threads_draw_capped_lanes_and_say_so(tmp_path):
    many = tmp_path / "events.jsonl"
    with open(many, "w") as f:
        for t in range(5000):
            role = "loop" if t == 4999 else "other"  # the loop comes last and is kept all the same
            for i in range(1 + t % 3):
                f.write(json.dumps({**GOOD, "line": t * 3 + i, "tid": 10_000 + t, "thread": role,
                                    "ts": 1.0 + t * 1e-4 + i * 1e-5}) + "\n")
    out = tmp_path / "t.html"
    p = run_cli("timeline", str(many), "-o", str(out))
    assert p.returncode == 0, p.stderr
    text = out.read_text()
    lanes = re.findall(r'class="lab (\w+)"[^>]*>\w+ (\d+)<', text)
    assert len(lanes) == timeline.MAX_LANES and ("loop", "14999") in lanes, lanes[:5]
    assert f"left out {5000 - timeline.MAX_LANES:,}" in p.stderr, p.stderr
    assert f"showing {timeline.MAX_LANES} of 5,000 threads" in text
    assert out.stat().st_size < 1_000_000


def test_timeline_of_dev_null_says_it_is_empty(tmp_path):
    p = run_cli("timeline", "/dev/null", "-o", str(tmp_path / "t.html"))
    assert p.returncode == 2 and "/dev/null is empty" in p.stderr and "no such file" not in p.stderr, p.stderr
    assert not (tmp_path / "t.html").exists()
