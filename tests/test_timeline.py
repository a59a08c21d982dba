"""The timeline page every trace run writes (traces/<run>/timeline.html):
a self-contained page, one lane per thread, the /file read on a pool lane,
wakeup arrows ending on the loop's lane; rendered by real headless Chromium."""

from __future__ import annotations

import re
import shutil
import xml.etree.ElementTree as ET

import pytest

from tests.helpers import run_cli, show
from tracing import browser, timeline


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
