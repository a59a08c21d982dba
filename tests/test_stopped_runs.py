"""A stopped run leaves nothing behind: SIGTERM and SIGHUP (to the command or
to make) are handled like Ctrl-C; a signal while it starts is one line; every
process seen is checked by PID afterwards."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.helpers import ROOT, free_port, still_alive_after_a_while, processes_running, wait_for
from tracing.run.procs import port_free


class Watch:
    """Collect, by PID, every live process whose command line names the port."""

    def __init__(self, port: int) -> None:
        self.needle, self.pids, self.done = f"--port {port}", set(), threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.wait(0.05):
            for line in processes_running(self.needle):
                self.pids.add(int(line.split(":")[0]))

    def stop(self) -> set[int]:
        self.done.set()
        self.thread.join()
        return self.pids


def _cli(port: int, out) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tracing", "trace", "sanic", "--port", str(port),
                             "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_to_the_command_stops_strace_and_the_server(tools_present, tmp_path, sig):
    port = free_port()
    watch = Watch(port)
    cli = _cli(port, tmp_path / "o")
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(cli.stderr), daemon=True)
    reader.start()
    assert wait_for(lambda: any("is up on" in l for l in lines), 90, 0.1), "".join(lines)
    up = next(l for l in lines if "is up on" in l)
    server, strace = map(int, re.search(r"server (\d+) is up .*\(strace (\d+)\)", up).groups())
    cli.send_signal(sig)
    rc = cli.wait(timeout=60)
    reader.join(10)
    seen = watch.stop() | {server, strace}
    err = "".join(lines)
    assert rc == 128 + sig, err
    assert not still_alive_after_a_while(seen), f"left running: {[p for p in seen if os.path.exists(f'/proc/{p}')]}"
    assert port_free(port)
    assert "Traceback" not in err and f"interrupted ({signal.Signals(sig).name})" in err, err


@pytest.mark.parametrize("sig", ["TERM", "HUP"])
def test_timeout_on_make_leaves_no_strace_or_server(tools_present, sig):
    # Set-up first (it may reinstall the package), so the timeout lands in the trace.
    subprocess.run(["make", "--no-print-directory", "setup"], cwd=ROOT, check=True, capture_output=True)
    port = free_port()
    watch = Watch(port)
    p = subprocess.run(["timeout", "-s", sig, "3", "make", "--no-print-directory", "trace-sanic",
                        "SCENARIO=lessons", f"PORT={port}"], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    time.sleep(0.5)
    seen = watch.stop()
    assert seen, f"the run never started in 3 s, so nothing was tested:\n{p.stderr}"
    assert not still_alive_after_a_while(seen), f"left running: {processes_running(f'--port {port}')}"
    assert wait_for(lambda: port_free(port), 10)
    assert "Traceback" not in p.stderr, p.stderr


@pytest.mark.parametrize("after", [0.2, 0.5, 0.9])
def test_ctrl_c_in_the_first_second_is_one_line_not_a_traceback(tmp_path, after):
    port = free_port()
    watch = Watch(port)
    cli = subprocess.Popen([sys.executable, "-m", "tracing", "trace", "sanic", "--port", str(port),
                            "--out", str(tmp_path / "o")], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(after)  # in the interpreter's imports, the set-up, or strace's start
    cli.send_signal(signal.SIGINT)
    out, err = cli.communicate(timeout=60)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert cli.returncode == 130 and "interrupted (SIGINT)" in err, (cli.returncode, err)
    assert not still_alive_after_a_while(watch.stop()), "nothing it started is left"
