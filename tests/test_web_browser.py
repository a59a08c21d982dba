"""The live page end to end in a real browser (headless Debian Chromium through
chromedriver): open it, start Sanic traced, press "GET /file", and within a
second see the pool lane's work and the wakeup arrow; click a line for its
evidence; download trace.json; press stop and find no process left."""

from __future__ import annotations

import json
import urllib.request

from tests.helpers import WebPage, artifacts, still_alive_after_a_while
from tracing.render.webdriver import Browser

POOL_WORK = "return document.querySelectorAll('#markg rect.thread-pooled[data-role=pool]').length"
ARROWS = "return document.querySelectorAll('#arrowg line.arrow').length"


def test_press_get_file_and_see_the_pool_work_and_the_wakeup_live_then_stop_leaves_nothing(tmp_path):
    page = WebPage(tmp_path)
    started: list[int] = []
    try:
        with Browser(1280, 900) as b:
            b.get(page.url)
            assert b.wait("return document.querySelectorAll('#target option').length", 10) >= 4
            b.run("document.getElementById('target').value = 'sanic'")
            b.click("#start")
            assert b.wait("return document.querySelector('#requests button[title*=\"thread pool\"]')", 90), \
                b.run("return document.getElementById('status').textContent")
            started = page.pids()
            assert started, "the page started nothing"
            # The page times itself: the click, and the first moment both the pool's work and a wakeup
            # arrow are drawn (a MutationObserver), so a slow webdriver round trip is not counted.
            b.run(f"""
                var before = [{POOL_WORK[7:]}, {ARROWS[7:]}];
                window.seenAfter = null;
                var t0 = performance.now();
                new MutationObserver(function (_, obs) {{
                    if ({POOL_WORK[7:]} > before[0] && {ARROWS[7:]} > before[1]) {{
                        window.seenAfter = performance.now() - t0; obs.disconnect();
                    }}
                }}).observe(document.body, {{childList: true, subtree: true}});
                Array.prototype.find.call(document.querySelectorAll('#requests button'),
                    function (x) {{ return x.textContent === 'GET /file'; }}).click();""")
            b.wait("return window.seenAfter !== null", 30, 0.05)
            took = b.run("return window.seenAfter")
            b.fit_height(1400)
            b.screenshot(artifacts("web-page.png"))
            assert took is not None and took <= 1000, \
                f"the pool's work and the wakeup arrow were drawn {took} ms after the click (goal: within a " \
                f"second): {b.run(POOL_WORK)} pool marks, {b.run(ARROWS)} arrows"
            # A line's evidence: the annotator's "evidence" field when it gives one, else it says none.
            b.run("document.querySelector('#lines li[data-line]').click()")
            assert "line" in b.run("return document.getElementById('why').textContent")
            # The downloads carry the token; trace.json is a Trace Event file of this run.
            link = b.run("return document.getElementById('dl-trace').href")
            with urllib.request.urlopen(link, timeout=60) as r:
                events = json.load(r)["traceEvents"]
            assert any(e.get("cat") == "thread-pooled" for e in events)
            console = [m for m in b.console() if m["level"] == "SEVERE"]
            assert not console, console
            b.click("#stop")
            assert b.wait("return document.getElementById('status').textContent.indexOf('stopped') >= 0", 60)
        assert not still_alive_after_a_while(started), "the stop left processes running"
        assert not page.pids(), page.pids()
    finally:
        rc = page.stop()
    assert rc == 0, "".join(page.output[-20:])
    assert not still_alive_after_a_while(started)
    assert not any("Traceback" in line for line in page.output), "".join(page.output)
