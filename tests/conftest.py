"""Shared fixtures: real traces made once per session, real servers, real curl."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

from tracing.run import recipes, tracers
from tracing.run.orchestrate import trace

from tests.helpers import Trace, free_port, serving, stop_leftovers

pytest_plugins = ["tests.seed"]


# A skip that says a tool is missing is a missing install step (scripts/setup.sh), not a
# property of the machine: make test fails on it. A skip for what the machine may not allow
# (no root, no private namespaces in a container) stays a skip.
MISSING_TOOL = re.compile(r"\b(is missing|is not installed|not installed|apt-get install)\b", re.I)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    if report.skipped and isinstance(report.longrepr, tuple):
        reason = report.longrepr[2]
        if MISSING_TOOL.search(reason):
            report.outcome = "failed"
            report.longrepr = (f"{reason}\n-> a test skipped for a missing tool is a missing install "
                               "step: scripts/setup.sh must install it (make test runs it)")


@pytest.fixture(autouse=True)
def stopped_leftovers():
    """A cleanup check that finds a server or strace still running fails the test; this stops
    what it found, by PID, so the next tests do not run beside it."""
    yield
    for done in stop_leftovers():
        print(f"[teardown] {done}")


@pytest.fixture(scope="session")
def tools_present():
    missing = [t for t in ("strace", "curl") if shutil.which(t) is None]
    if missing:
        pytest.fail(f"missing {missing}: run `make setup` (the suite must not skip live traces)")


def run_recipe(tmp_path_factory, target) -> Trace:
    """Trace `target` once with the real recipe; every scenario request must answer 200."""
    assert Path(target.argv[0]).exists(), f"{target.argv[0]} missing: run `make build-c` (make test does)"
    out = tmp_path_factory.mktemp(f"trace-{target.name}")
    result = trace(target, out)
    steps = [r for r in result["requests"] if r["path"] != "start-up"]
    # /timeout's lesson is a 504; every other request must succeed.
    assert steps and all(r["status"] == (504 if r["path"].startswith("/timeout") else 200)
                         for r in steps), result["requests"]
    return Trace.load(out)


@pytest.fixture(scope="session")
def uvloop_trace(tools_present, tmp_path_factory) -> Trace:
    return run_recipe(tmp_path_factory, recipes.sanic(loop="uvloop", port=free_port()))


@pytest.fixture(scope="session")
def asyncio_trace(tools_present, tmp_path_factory) -> Trace:
    return run_recipe(tmp_path_factory, recipes.sanic(loop="asyncio", port=free_port()))


@pytest.fixture(scope="session")
def uvloop_no_io_uring_trace(tools_present, tmp_path_factory) -> Trace:
    return run_recipe(tmp_path_factory, recipes.sanic(loop="uvloop", io_uring=False, port=free_port()))


@pytest.fixture(scope="session", params=["uvloop", "asyncio"])
def sanic_trace(request) -> Trace:
    return request.getfixturevalue(f"{request.param}_trace")


@pytest.fixture(scope="session")
def c_trace(tools_present, tmp_path_factory) -> Trace:
    return run_recipe(tmp_path_factory, recipes.c(pool=False, port=free_port()))


@pytest.fixture(scope="session")
def c_pool_trace(tools_present, tmp_path_factory) -> Trace:
    return run_recipe(tmp_path_factory, recipes.c(pool=True, port=free_port()))


@pytest.fixture(scope="session")
def uring_trace(tools_present, tmp_path_factory) -> Trace:
    return run_recipe(tmp_path_factory, recipes.uring(port=free_port()))


@pytest.fixture(scope="session")
def lessons_trace(tools_present, tmp_path_factory) -> Trace:
    return run_recipe(tmp_path_factory, recipes.sanic(scenario="lessons", port=free_port()))


@pytest.fixture(scope="session")
def asyncio_lessons_trace(tools_present, tmp_path_factory) -> Trace:
    return run_recipe(tmp_path_factory, recipes.sanic(loop="asyncio", scenario="lessons", port=free_port()))


@pytest.fixture(scope="session")
def c_load(tools_present, tmp_path_factory) -> Trace:
    if shutil.which("wrk") is None:
        pytest.fail("wrk is missing: run `make setup` (it installs wrk)")
    return run_recipe(tmp_path_factory, recipes.c(recipe="load", port=free_port()))


@pytest.fixture(scope="session")
def ltrace_present():
    if shutil.which("ltrace") is None:
        pytest.fail("ltrace is missing: run `make setup` (the suite must not skip live traces)")


@pytest.fixture(scope="session")
def sanic_ltrace(tools_present, ltrace_present, tmp_path_factory) -> Trace:
    target = recipes.sanic(loop="uvloop", port=free_port())
    return run_recipe(tmp_path_factory, tracers.get("ltrace").prepare(target))


@pytest.fixture(scope="session")
def c_pool_ltrace(tools_present, ltrace_present, tmp_path_factory) -> Trace:
    target = recipes.c(pool=True, port=free_port())
    return run_recipe(tmp_path_factory, tracers.get("ltrace").prepare(target))


@pytest.fixture(scope="session")
def c_ltrace(tools_present, ltrace_present, tmp_path_factory) -> Trace:
    target = recipes.c(pool=False, port=free_port())
    return run_recipe(tmp_path_factory, tracers.get("ltrace").prepare(target))


@pytest.fixture(scope="session")
def sanic_server(tools_present):
    """The demo server, untraced, for route tests."""
    with serving([sys.executable, "-m", "server"]) as port:
        yield port


@pytest.fixture(scope="session")
def kernel_ready():
    """The kernel tracer's checks (root, BTF, tracefs, tracepoints, its build); skip only where they fail."""
    if why := tracers.get("kernel").unavailable():
        print(f"kernel tracer unavailable: {why}")
        pytest.skip(f"kernel tracer unavailable: {why}")


@pytest.fixture(scope="session")
def uvloop_kernel_trace(tools_present, kernel_ready, tmp_path_factory) -> Trace:
    target = recipes.sanic(loop="uvloop", port=free_port())
    return run_recipe(tmp_path_factory, tracers.get("kernel").prepare(target))


@pytest.fixture(scope="session")
def c_kernel_trace(tools_present, kernel_ready, tmp_path_factory) -> Trace:
    target = recipes.c(pool=False, port=free_port())
    return run_recipe(tmp_path_factory, tracers.get("kernel").prepare(target))


@pytest.fixture(scope="session")
def c_pool_kernel_trace(tools_present, kernel_ready, tmp_path_factory) -> Trace:
    target = recipes.c(pool=True, port=free_port())
    return run_recipe(tmp_path_factory, tracers.get("kernel").prepare(target))


@pytest.fixture(scope="session")
def uring_kernel_trace(tools_present, kernel_ready, tmp_path_factory) -> Trace:
    target = recipes.uring(port=free_port())
    return run_recipe(tmp_path_factory, tracers.get("kernel").prepare(target))


@pytest.fixture(scope="session")
def uring_pool_kernel_trace(tools_present, kernel_ready, tmp_path_factory) -> Trace:
    target = recipes.uring(pool=True, port=free_port())
    return run_recipe(tmp_path_factory, tracers.get("kernel").prepare(target))
