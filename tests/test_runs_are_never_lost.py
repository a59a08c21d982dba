"""No lost or silent runs: the program's exit status is the command's, Ctrl-C on a
command exits 130 with its files written, a default folder is never written over, a
folder another run is writing is refused, and the PID said is the program's."""

from __future__ import annotations

import re
import signal
import threading
import time

from tests.helpers import cli_process, run_cli, still_alive_after_a_while, wait_for
from tracing.errors import EXIT_OUTPUT


class Reading:
    """A CLI run started in the background, its stderr collected line by line."""

    def __init__(self, *args: str, cwd=None) -> None:
        self.proc = cli_process(*args, **({"cwd": cwd} if cwd else {}))
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stderr), daemon=True)
        self.reader.start()

    def wait_for(self, words: str, seconds: float = 60) -> str:
        assert wait_for(lambda: any(words in line for line in self.lines), seconds, 0.05), "".join(self.lines)
        return next(line for line in self.lines if words in line)

    def finish(self, sig: int | None = None) -> int:
        if sig is not None:
            self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=90)
        self.reader.join(10)
        return rc

    @property
    def err(self) -> str:
        return "".join(self.lines)


def test_the_programs_exit_status_becomes_the_commands(tools_present, tmp_path):
    p = run_cli("trace", "--out", str(tmp_path / "o"), "--", "sh", "-c", "exit 3")
    assert p.returncode == 3, p.stderr
    assert "stopped: the program exited with status 3" in p.stderr, p.stderr
    assert (tmp_path / "o" / "annotated.log").exists(), "the files are written all the same"


def test_a_program_killed_by_a_signal_exits_128_plus_its_number(tools_present, tmp_path):
    p = run_cli("trace", "--out", str(tmp_path / "o"), "--", "sh", "-c", "kill -SEGV $$")
    assert p.returncode == 128 + signal.SIGSEGV, p.stderr
    assert "the program exited (killed by SIGSEGV)" in p.stderr, p.stderr


def test_ctrl_c_on_a_command_exits_130_with_its_files_written_and_nothing_left(tools_present, tmp_path):
    run = Reading("trace", "--out", str(tmp_path / "o"), "--", "sleep", "60")
    pid = int(re.search(r"runs as PID (\d+)", run.wait_for("the program runs as PID")).group(1))
    run.wait_for("until it exits")
    rc = run.finish(signal.SIGINT)
    assert rc == 130, run.err
    assert "stopped: stopped by SIGINT" in run.err and "Traceback" not in run.err, run.err
    assert (tmp_path / "o" / "annotated.log").stat().st_size > 0
    assert not still_alive_after_a_while([pid])


def test_a_default_folder_is_never_written_over(tools_present, tmp_path):
    first = run_cli("trace", "--", "sh", "-c", "echo first", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    kept = (tmp_path / "traces" / "sh" / "raw.strace").read_text()
    second = run_cli("trace", "--", "sh", "-c", "echo second", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "writing traces/sh-2: traces/sh holds an earlier run" in second.stderr, second.stderr
    assert "--force" in second.stderr and "--out" in second.stderr
    assert (tmp_path / "traces" / "sh" / "raw.strace").read_text() == kept
    assert "echo second" in (tmp_path / "traces" / "sh-2" / "raw.strace").read_text()
    assert "traces/sh-2/annotated.log" in second.stdout, "the summary names the folder it wrote"
    forced = run_cli("trace", "--force", "--", "sh", "-c", "echo third", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert "echo third" in (tmp_path / "traces" / "sh" / "raw.strace").read_text()
    assert not (tmp_path / "traces" / "sh-3").exists()


def test_a_second_run_into_a_folder_in_use_is_refused_and_the_first_is_untouched(tools_present, tmp_path):
    out = tmp_path / "o"
    first = Reading("trace", "--out", str(out), "--", "sleep", "60")
    try:
        first.wait_for("until it exits")
        before = (out / "raw.strace").read_text()
        second = run_cli("trace", "--out", str(out), "--", "sh", "-c", "echo intruder")
        errors = [line for line in second.stderr.splitlines() if line.startswith("epoll-lab: error:")]
        assert second.returncode == EXIT_OUTPUT, second.stderr
        assert len(errors) == 1 and f"{out} is in use by another epoll-lab run" in errors[0], second.stderr
        assert "--out" in errors[0]
        assert "intruder" not in (out / "raw.strace").read_text()
        assert (out / "raw.strace").read_text().startswith(before.splitlines()[0])
    finally:
        rc = first.finish(signal.SIGINT)
    assert rc == 130, first.err
    assert "intruder" not in (out / "raw.strace").read_text()


def test_the_pid_said_is_the_programs_even_with_a_long_argv_and_a_child_it_leaves(tools_present, tmp_path):
    # The execve line is longer than any fixed prefix, and the shell's child outlives it: the
    # tracer's children then hold only the child, which is not the program.
    long_args = [f"argument-{i}-" + "x" * 40 for i in range(12)]
    t0 = time.monotonic()
    p = run_cli("trace", "--out", str(tmp_path / "o"), "--", "sh", "-c", "sleep 30 & exit 0", "sh", *long_args)
    took = time.monotonic() - t0
    assert p.returncode == 0, p.stderr
    said = int(re.search(r"the program runs as PID (\d+)", p.stderr).group(1))
    first = (tmp_path / "o" / "raw.strace").read_text().splitlines()[0]
    assert len(first) > 300 and " execve(" in first, first[:120]
    assert said == int(first.split()[0]), (said, first[:80])
    # What it left (the shell's child: `sleep 30`, or still the shell's fork if it had not run exec
    # yet) is stopped and named, and is not the program.
    left = re.search(r"sent SIGTERM to (\d+) \((.*?)\): left running by the program", p.stderr)
    assert "the program exited with status 0" in p.stderr and left and int(left.group(1)) != said, p.stderr
    assert left.group(2).startswith(("sleep 30", "sh -c sleep 30")), p.stderr
    assert took < 20, f"the run ends when the program exits, not when its child does ({took:.0f} s)"
