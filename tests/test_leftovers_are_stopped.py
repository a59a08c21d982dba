"""When a cleanup check finds a process still running, the test fails and the
process is stopped by PID in the teardown, not left beside the tests after it."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.helpers import ROOT, wait_for
from tracing.run.procs import alive

FAILING_CHECK = '''
import subprocess
from pathlib import Path
from tests.helpers import processes_running, wait_for

def test_a_check_that_finds_a_leftover(tmp_path_factory):
    left = subprocess.Popen(["sleep", "61.{tag}"], start_new_session=True, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    open("{pids}", "w").write(str(left.pid))
    # Until it has run exec: before, its command line is still this interpreter's.
    assert wait_for(lambda: b"sleep" in Path(f"/proc/{{left.pid}}/cmdline").read_bytes(), 10)
    assert not processes_running("sleep 61.{tag}"), "a leftover was found"
'''


def test_a_leftover_a_cleanup_check_finds_is_stopped_by_pid_in_the_teardown(tmp_path):
    pids = tmp_path / "pids"
    test = tmp_path / "test_leftover_found.py"
    test.write_text(FAILING_CHECK.format(tag=os.getpid(), pids=pids))
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "tests.conftest", "-p", "no:cacheprovider",
                        str(test)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    left = int(pids.read_text())
    try:
        assert p.returncode == 1 and "a leftover was found" in p.stdout, p.stdout[-2000:]
        assert wait_for(lambda: not alive(left), 5), f"the leftover {left} runs on after its test"
        assert f"[teardown] sent SIGTERM to {left} (sleep 61." in p.stdout, p.stdout[-2000:]
    finally:
        if alive(left):
            subprocess.run(["kill", "-9", str(left)])
