"""A number the command line cannot use (a port out of range, PID 0, a time
that is nan, infinite or negative) is one line and exit 2 before anything
starts: never a traceback, never a silent default. A PID no process can have
is "no such process", exit 6, as documented."""

from __future__ import annotations

import pytest

from tests.helpers import run_cli
from tracing.errors import EXIT_PID

USAGE = 2


def one_line(p, code: int) -> str:
    errors = [line for line in p.stderr.splitlines() if line.startswith("epoll-lab: error:")]
    assert p.returncode == code, (p.returncode, p.stderr)
    assert len(p.stderr.strip().splitlines()) == 1 and len(errors) == 1, p.stderr
    assert "Traceback" not in p.stderr and "starting:" not in p.stderr, p.stderr
    return errors[0]


@pytest.mark.parametrize("args, says", [
    (["--pid", "0"], "--pid: 0 is not a PID"),
    (["--pid", "-3"], "--pid: -3 is not a PID"),
    (["--port", "70000", "--", "/bin/true"], "--port: 70000 is not a port number (1 to 65535)"),
    (["--port", "-1", "--", "/bin/true"], "--port: -1 is not a port number"),
    (["c", "--port", "99999"], "--port: 99999 is not a port number"),
    (["sanic", "--port", "-1"], "--port: -1 is not a port number"),
    # 0 was taken as "no port given": `trace c` silently used 8080.
    (["c", "--port", "0"], "--port: 0 is not a port number"),
    (["--seconds", "nan", "--", "/bin/true"], "--seconds: nan is not a time"),
    (["--seconds", "-5", "--", "/bin/true"], "--seconds: -5 is not a time"),
    (["--seconds", "inf", "--", "/bin/true"], "--seconds: inf is not a time"),
    (["--wait", "nan", "--port", "23601", "--", "/bin/true"], "--wait: nan is not a time"),
    (["--wait", "-1", "--port", "23601", "--", "/bin/true"], "--wait: -1 is not a time"),
    (["--wait", "0", "--port", "23601", "--", "/bin/true"], "--wait: 0 is not a time"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_a_number_the_run_cannot_use_is_one_line_and_exit_2(tmp_path, args, says):
    p = run_cli("trace", "--out", str(tmp_path / "o"), *args, timeout=60)
    assert says in one_line(p, USAGE), p.stderr
    assert not (tmp_path / "o").exists(), "nothing is made for a run that cannot start"


@pytest.mark.parametrize("args, says", [
    (["--port", "0"], "--port: 0 is not a port number"),
    (["--load-seconds", "0"], "--load-seconds: 0 is not a time"),
])
def test_live_refuses_the_same_numbers_in_one_line(tmp_path, args, says):
    p = run_cli("live", "c", "--out", str(tmp_path / "o"), *args, timeout=60)
    assert says in one_line(p, USAGE), p.stderr


def test_a_pid_no_process_can_have_is_no_such_process_exit_6(tmp_path):
    p = run_cli("trace", "--pid", "99999999999", "--out", str(tmp_path / "o"), timeout=60)
    assert "no process with PID 99999999999" in one_line(p, EXIT_PID)
