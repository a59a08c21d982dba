"""trace.json in a real viewer: speedscope (npm, pinned in tests/viewers, served
on 127.0.0.1, no network) imports every trace the lab writes in headless
Chromium with no warning, and shows the threads and slices we wrote.

speedscope is strict about nesting: a slice ending at the very time its parent
ends, or two overlapping slices on one thread, make it warn ("Tried to end …",
"… still open at end of profile") and draw the rest of the thread wrongly. What
it imported is read back through its own Export (the speedscope file format)."""

from __future__ import annotations

import functools
import http.server
import io
import json
import threading
from pathlib import Path

import pytest

from tests.helpers import LOGS, ROOT, artifacts
from tracing.render import trace_event
from tracing.understand.annotate import annotate_file
from tracing.render.webdriver import Browser

RELEASE = ROOT / "tests" / "viewers" / "node_modules" / "speedscope" / "dist" / "release"
# Click speedscope's Export tab and catch the file it makes (a Blob) instead of a download.
EXPORT = """
var done = arguments[arguments.length - 1], made = URL.createObjectURL.bind(URL);
URL.createObjectURL = function (blob) { blob.text().then(done); return made(blob); };
Array.prototype.find.call(document.querySelectorAll("div"), function (d) {
  return d.textContent.trim().endsWith("Export") && d.children.length <= 2; }).click();
"""
LOADED = ("return Array.prototype.some.call(document.querySelectorAll('div'), function (d) {"
          " return d.textContent.trim().endsWith('Export'); })")


class Viewer:
    """speedscope and the traces served from one folder on 127.0.0.1, one browser."""

    def __init__(self, folder: Path) -> None:
        if not (RELEASE / "index.html").exists():
            pytest.fail("speedscope is missing: run `make test` (scripts/setup.sh --for-tests installs it)")
        self.folder = folder
        (folder / "speedscope").symlink_to(RELEASE)

        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                    functools.partial(Quiet, directory=str(folder)))
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.browser = Browser(1400, 900)

    def open(self, name: str, text: str) -> tuple[dict, list[str]]:
        """Import one trace; returns speedscope's export of it and its console's warnings."""
        (self.folder / name).write_text(text)
        b = self.browser
        b.get("about:blank")
        b.console()
        b.get(f"http://127.0.0.1:{self.http.server_address[1]}/speedscope/index.html#profileURL=/{name}")
        assert b.wait(LOADED, 30), f"speedscope did not load {name}"
        exported = json.loads(b.run_async(EXPORT))
        said = [f"{m['source']}: {m['message'][:300]}" for m in b.console()
                if m["level"] in ("WARNING", "SEVERE") and m.get("source") in ("console-api", "javascript")]
        return exported, said

    def close(self) -> None:
        self.browser.close()
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture(scope="module")
def viewer(tmp_path_factory):
    v = Viewer(tmp_path_factory.mktemp("speedscope"))
    yield v
    v.close()


def ours(events: list[dict]) -> dict[str, int]:
    """speedscope's name for each thread track, and the slices it keeps (it drops zero-length ones)."""
    procs = {e["pid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "process_name"}
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    counts = {}
    for (pid, tid), name in names.items():
        counts[f"{procs[pid]} (pid {pid}), {name} (tid {tid})"] = sum(
            1 for e in events if e["ph"] == "X" and e["pid"] == pid and e["tid"] == tid and e["dur"] > 0)
    return counts


def check(viewer: Viewer, name: str, text: str) -> dict:
    exported, said = viewer.open(name, text)
    assert not said, f"speedscope warned on {name}:\n" + "\n".join(said[:5])
    theirs = {p["name"]: sum(1 for e in p["events"] if e["type"] == "O") for p in exported["profiles"]}
    want = {k: v for k, v in ours(json.loads(text)["traceEvents"]).items() if v or k in theirs}
    assert theirs == want, f"{name}: speedscope shows {theirs}, we wrote {want}"
    return theirs


def trace_json(log: Path) -> str:
    out = io.StringIO()
    trace_event.write(annotate_file(str(log))[0], out, log.name)
    return out.getvalue()


def test_speedscope_imports_every_recorded_log_without_a_warning(viewer):
    checked = 0
    for log in LOGS:
        text = trace_json(log)
        if '"ph": "X"' in text:  # a log of no timed call makes no thread to show
            check(viewer, log.name + ".json", text)
            checked += 1
    assert checked >= 15, checked


@pytest.mark.parametrize("trace_name", ["uvloop_trace", "asyncio_trace", "c_pool_trace", "lessons_trace"])
def test_speedscope_imports_each_run_with_its_threads_and_slices(viewer, request, trace_name):
    trace = request.getfixturevalue(trace_name)
    shown = check(viewer, f"{trace_name}.json", (trace.out / "trace.json").read_text())
    assert any(", loop " in name for name in shown), shown
    if trace_name == "uvloop_trace":
        # The requests track comes first; `n` (speedscope's own key) steps on to the loop's.
        b = viewer.browser
        for _ in range(len(shown)):
            if ", loop " in b.run("return document.body.innerText.split('\\n').join(' ')"):
                break
            b.run("window.dispatchEvent(new KeyboardEvent('keypress', {key: 'n'}))")
        b.screenshot(artifacts("speedscope-sanic.png"))
