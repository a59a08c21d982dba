"""A trace run that fails says why and leaves no server or strace behind."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys

import pytest

from tests.helpers import ROOT, free_port, processes_running, run_cli
from tracing.run import recipes
from tracing.run.recipes import Request, Target
from tracing.errors import EXIT_SCENARIO, EXIT_SETUP, EXIT_START, TraceError
from tracing.run.orchestrate import trace
from tracing.run.procs import alive, port_free


def test_after_a_run_no_server_or_strace_is_left_and_the_port_is_free(tools_present, tmp_path):
    target = recipes.sanic(port=free_port())
    target.requests = target.requests[:1]
    result = trace(target, tmp_path)
    assert result["pids"]["server"], result["pids"]
    assert not alive(result["pids"]["server"]) and not alive(result["pids"]["strace"])
    assert port_free(target.port)
    assert not processes_running(f"--port {target.port}")


def test_after_a_failed_scenario_no_server_or_strace_is_left(tools_present, tmp_path):
    target = recipes.sanic(port=free_port())
    # curl gives up on a sleep longer than its time limit: the scenario fails.
    target.requests = [Request("/", "ok"), Request("/sleep?ms=3000", "too slow", timeout=0.5)]
    with pytest.raises(TraceError) as err:
        trace(target, tmp_path)
    assert err.value.code == EXIT_SCENARIO
    assert "curl GET /sleep?ms=3000 failed" in str(err.value)
    assert port_free(target.port)
    assert not processes_running(f"--port {target.port}")
    assert (tmp_path / "raw.strace").stat().st_size > 0, "the partial trace should be kept"


def test_port_in_use_is_refused_before_anything_starts(tools_present, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(TraceError) as err:
            trace(recipes.sanic(port=port), tmp_path)
    assert err.value.code == EXIT_SETUP and f"port {port}" in str(err.value) and "in use" in str(err.value)
    assert not (tmp_path / "raw.strace").exists()


def test_a_server_that_does_not_start_is_reported_with_its_output(tools_present, tmp_path):
    port = free_port()
    crash = Target("crash", [sys.executable, "-c",
                             "import sys; print('boom: no config', file=sys.stderr); sys.exit(3)"], port)
    with pytest.raises(TraceError) as err:
        trace(crash, tmp_path)
    assert err.value.code == EXIT_START
    assert "did not start" in str(err.value) and "boom: no config" in str(err.value)
    assert not processes_running("boom: no config")


def test_missing_strace_is_named_with_the_install_command(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "curl").symlink_to(shutil.which("curl"))
    p = run_cli("trace", "sanic", "--port", str(free_port()), "--out", str(tmp_path / "o"),
                env={**os.environ, "PATH": str(bin_dir)})
    assert p.returncode == EXIT_SETUP, p.stderr
    assert "strace is not installed" in p.stderr and "apt-get install -y strace" in p.stderr


def test_ptrace_not_permitted_is_explained(tools_present, tmp_path):
    # A traced process cannot trace: run the recipe under an outer strace.
    port = free_port()
    p = subprocess.run(["strace", "-f", "-o", os.devnull, sys.executable, "-m", "tracing", "trace",
                        "sanic", "--port", str(port), "--out", str(tmp_path / "o")],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == EXIT_SETUP, p.stderr
    assert "ptrace is not permitted" in p.stderr and "SYS_PTRACE" in p.stderr, p.stderr
    assert not processes_running(f"--port {port}")


def test_cli_help_explains_flags_and_exit_codes():
    p = run_cli("--help")
    assert p.returncode == 0
    assert "-yy" in p.stdout and "exit codes" in p.stdout
