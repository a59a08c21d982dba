"""The timeline page as Chromium lays it out: request labels never overprint,
the page says how tall its lanes need, and #zoom= opens on one request."""

from __future__ import annotations

import re
import shutil

import pytest

from tracing.render import browser

TAG = re.compile(r'<div class="tag" data-a="[^"]+"(?: data-row="(\d*)")?(?: data-w="(\d+)")?'
                 r' style="([^"]*)">([^<]*)</div>')


@pytest.fixture(scope="module")
def chromium_present():
    if shutil.which("chromium") is None:
        pytest.fail("chromium is missing: run `make test` as root (it installs it)")


def placed(dom: str) -> list[tuple[int, float, float, str]]:
    """(row, left, right, text) of each label shown."""
    out = []
    for row, width, style, text in TAG.findall(dom):
        if "display: none" in style or row == "":
            continue
        left = float(re.search(r"left: ([-\d.]+)px", style).group(1))
        out.append((int(row), left, left + float(width), text))
    return out


@pytest.mark.parametrize("trace_name", ["uvloop_trace", "lessons_trace"])
def test_request_labels_never_overprint(chromium_present, request, trace_name):
    page = request.getfixturevalue(trace_name).out / "timeline.html"
    tags = placed(browser.dom(page, 1600, browser.page_height(page)))
    assert tags, "no request label is shown"
    for row in {r for r, *_ in tags}:
        spans = sorted((a, b, t) for r, a, b, t in tags if r == row)
        for (a1, b1, t1), (a2, b2, t2) in zip(spans, spans[1:]):
            assert b1 <= a2, f"{t1!r} ({a1:.0f}-{b1:.0f}px) overprints {t2!r} ({a2:.0f}px) on row {row}"


def test_the_page_is_as_tall_as_its_lanes(chromium_present, lessons_trace):
    page = lessons_trace.out / "timeline.html"
    text = page.read_text()
    svg_h = int(re.search(r'<svg id="tl"[^>]* height="(\d+)"', text).group(1))
    lanes = len(re.findall(r'<div class="lab ', text))
    assert svg_h >= 30 + 34 * lanes, "every lane is inside the drawing"
    assert svg_h < browser.page_height(page) < svg_h + 200, "the screenshot height fits the page"


def test_zoom_opens_on_one_request_with_its_pool_work_and_wakeup(chromium_present, uvloop_trace):
    page = uvloop_trace.out / "timeline.html"
    whole = browser.dom(page, 1600, 420)
    zoomed = browser.dom(page, 1600, 420, zoom="request 2: GET /file")
    box = lambda d: re.search(r'<svg id="tl"[^>]* viewBox="([-\d.]+) 0 ([\d.]+)', d).groups()  # noqa: E731
    assert float(box(zoomed)[1]) < float(box(whole)[1]) / 5, "the view narrowed to one request"
