"""The timeline page in a real browser window of 1,024 and 1,400 px: a time
axis with readable ticks, nothing cut off, no large empty area, #zoom= still
opens on one request. The page's own layout is measured (element boxes, by
JavaScript in headless Chromium); the screenshots go to test-artifacts/."""

from __future__ import annotations

import re

import pytest

from tests.helpers import artifacts
from tracing.render import browser
from tracing.render.webdriver import Browser

# Every box the page shows, measured against the window and against the drawing.
MEASURE = """
var W = document.documentElement.clientWidth, svg = document.getElementById("tl").getBoundingClientRect();
var wrap = document.getElementById("wrap").getBoundingClientRect(), out = [];
function visible(e) { var r = e.getBoundingClientRect(); return e.offsetParent !== null && r.width > 0; }
document.querySelectorAll("h1, #legend span, #bar button, .lab, .tag, .tick span, #tl").forEach(function (e) {
  if (!visible(e)) return;
  var r = e.getBoundingClientRect();
  if (r.left < -0.5 || r.right > W + 0.5) out.push("cut by the window: " + e.className + " " + e.textContent.slice(0, 30));
  if (e.matches(".tick span, .lab") && (r.right > wrap.right + 0.5 || r.bottom > wrap.bottom + 0.5))
    out.push("cut by the drawing: " + e.textContent);
  if (e.matches(".tag") && (r.left < svg.left - 0.5 || r.right > svg.right + 0.5))
    out.push("request label outside the drawing: " + e.textContent);
});
var marks = Array.prototype.map.call(document.querySelectorAll("#tl .mark, #tl .wait"), function (m) {
  return m.getBoundingClientRect(); }).filter(function (r) { return r.right > svg.left && r.left < svg.right; });
var ticks = Array.prototype.filter.call(document.querySelectorAll(".tick span"), visible).map(function (s) {
  var r = s.getBoundingClientRect(); return [s.textContent, r.left, r.right]; });
return {problems: out, pageWidth: document.documentElement.scrollWidth, window: W,
        svgWidth: svg.width, svgLeft: svg.left, svgRight: svg.right,
        drawnFrom: Math.min.apply(null, marks.map(function (r) { return r.left; })),
        drawnTo: Math.max.apply(null, marks.map(function (r) { return r.right; })),
        ticks: ticks, viewBox: document.getElementById("tl").getAttribute("viewBox")};
"""
TICK = re.compile(r"^\d+(\.\d)? (s|ms|µs)$")


@pytest.fixture(scope="module")
def page(uvloop_trace):
    return uvloop_trace.out / "timeline.html"


@pytest.mark.parametrize("width", [1024, 1400])
def test_the_timeline_fits_the_window_with_a_readable_time_axis(page, width):
    with Browser(width, browser.page_height(page)) as b:
        b.get(page.as_uri())
        b.fit_height()  # the buttons wrap onto more rows on a narrow window
        got = b.run(MEASURE)
        b.screenshot(artifacts(f"timeline-{width}.png"))
        console = [m for m in b.console() if m["level"] in ("WARNING", "SEVERE")]
    assert not console, console
    assert not got["problems"], "\n".join(got["problems"])
    assert got["pageWidth"] <= got["window"], "the page scrolls sideways: something is wider than the window"
    # The drawing takes the window's width, and the requests it opens on fill it.
    assert got["svgWidth"] >= got["window"] - 200, got
    assert got["drawnFrom"] - got["svgLeft"] < 0.1 * got["svgWidth"], got
    assert got["svgRight"] - got["drawnTo"] < 0.1 * got["svgWidth"], got
    labels = [t for t, *_ in got["ticks"]]
    assert len(labels) >= 4 and all(TICK.match(t) for t in labels), labels
    for (t1, _, right), (t2, left, _) in zip(got["ticks"], got["ticks"][1:]):
        assert right <= left, f"tick {t1!r} overprints {t2!r}"


def test_zoom_still_opens_on_one_request_at_1024_px(page):
    with Browser(1024, 700) as b:
        b.get(page.as_uri())
        whole = b.run(MEASURE)
        b.get(page.as_uri() + "#zoom=" + "request 2: GET /file".replace(" ", "%20"))
        b.run("location.reload()")
        b.fit_height()
        got = b.run(MEASURE)
        zoomed = got["viewBox"]
        b.screenshot(artifacts("timeline-1024-file.png"))
    assert float(zoomed.split()[2]) < float(whole["viewBox"].split()[2]) / 5, (zoomed, whole["viewBox"])
    assert not got["problems"], got["problems"]
    assert any(t.endswith("ms") or t.endswith("µs") for t, *_ in got["ticks"]), got["ticks"]
