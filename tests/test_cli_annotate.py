"""`python -m tracing annotate` as a user runs it: files, -ff names, stdin,
JSON Lines, the summary and the exit codes. Inputs are the recorded logs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tracing.views import JSONL_FIELDS

FIXTURES = Path(__file__).parent / "fixtures"


def annotate(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tracing", "annotate", *args], input=stdin,
                          capture_output=True, text=True, timeout=60, env={"NO_COLOR": "1", "PATH": "/usr/bin:/bin"})


def test_jsonl_has_one_record_per_call_with_the_documented_fields():
    log = FIXTURES / "tiny-f-ttt-T-yy.strace"
    got = annotate(str(log), "--format", "jsonl")
    assert got.returncode == 0, got.stderr
    recs = [json.loads(line) for line in got.stdout.splitlines()]
    assert all(list(r)[:len(JSONL_FIELDS)] == list(JSONL_FIELDS) for r in recs)
    lines = sorted([r["line"] for r in recs] + [r["resumed_line"] for r in recs if r["resumed_line"]])
    assert lines == list(range(1, len(log.read_text().splitlines()) + 1))


def test_the_name_given_to_strace_ff_reads_all_its_per_pid_files():
    got = annotate(str(FIXTURES / "ff" / "tiny.strace"), "--format", "jsonl", "--summary")
    assert got.returncode == 0, got.stderr
    recs = [json.loads(line) for line in got.stdout.splitlines()]
    files = {r["source"].rsplit(":", 1)[0] for r in recs}
    assert files == {p.name for p in (FIXTURES / "ff").glob("tiny.strace.*")}
    assert "loop" in got.stderr and "pool" in got.stderr


def test_stdin_is_annotated_in_one_pass_and_the_text_keeps_every_line():
    log = (FIXTURES / "others" / "redis.strace").read_text()
    got = annotate("-", stdin=log)
    assert got.returncode == 0, got.stderr
    assert all(line in got.stdout for line in log.splitlines())
    assert "\x1b[" not in got.stdout, "no colour when NO_COLOR is set or stdout is a pipe"
    assert "-> [pollable] accept4 on the listening socket 127.0.0.1:18182" in got.stdout


def test_a_missing_log_is_a_set_up_error_with_exit_code_3():
    got = annotate(str(FIXTURES / "no-such.strace"))
    assert got.returncode == 3 and "no such file" in got.stderr and "Traceback" not in got.stderr


def test_help_explains_the_recommended_strace_flags():
    got = subprocess.run([sys.executable, "-m", "tracing", "annotate", "--help"],
                         capture_output=True, text=True, timeout=60)
    assert got.returncode == 0
    for flag in ("-f ", "-ttt", "-T ", "-yy", "-ff"):
        assert flag in got.stdout, flag
