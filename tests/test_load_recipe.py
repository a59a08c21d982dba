"""The load recipe (make trace-c RECIPE=load): only epoll and accept calls,
filtered in the kernel, while wrk loads the server; the annotator reads it."""

from __future__ import annotations

from tests.helpers import show
from tracing.run import recipes


def test_the_load_recipe_traces_only_the_loops_epoll_and_accept_calls(c_load):
    calls = {r["syscall"] for r in c_load.records if r["kind"] == "syscall"}
    assert calls <= set(recipes.LOAD_SYSCALLS.split(",")), calls
    assert {"epoll_wait", "accept4", "epoll_ctl"} <= calls
    (load,) = [r for r in c_load.requests if r["path"] == "load"]
    assert load["requests"] > 1000, load


def test_a_load_log_annotates_with_no_line_lost(c_load):
    summary = (c_load.out / "summary.json").read_text()
    assert '"unparsed": 0' in summary
    raw = (c_load.out / "raw.strace").read_text().splitlines()
    seen = sorted([r["line"] for r in c_load.records] +
                  [r["resumed_line"] for r in c_load.records if r["resumed_line"]])
    assert seen == list(range(1, len(raw) + 1))


def test_without_decorations_the_ready_fds_of_a_load_log_are_still_named(c_load):
    # No -yy in the load recipe: accept4's result and the epoll_ctl data name the fds.
    ready = [x for r in c_load.records for x in r["ready"]]
    assert ready
    clients = [x for x in ready if x["role"] == "client-connection"]
    assert len(clients) > len(ready) // 2, show([r for r in c_load.records if r["ready"]][:10])
    loops = {r["tid"] for r in c_load.records if r["thread"] == "loop"}
    assert len(loops) == 1
