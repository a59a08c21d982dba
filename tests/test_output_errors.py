"""A run that cannot write its folder (read-only, full, not a folder) says so
in one line with exit code 7, and leaves no process behind."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from tests.helpers import ROOT, free_port, still_alive_after_a_while
from tracing.errors import EXIT_OUTPUT


def in_own_mounts(tmp_path, options: str, *args: str) -> subprocess.CompletedProcess:
    """The CLI with a tmpfs (mounted with `options`) at tmp_path/mnt, in a private mount namespace."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not installed: cannot make a read-only or full folder")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = (f"mount -t tmpfs -o {options} tmpfs {mnt} || exit 99; "
              f"exec {sys.executable} -m tracing {' '.join(args)}")
    p = subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=ROOT, capture_output=True, text=True,
                       timeout=180)
    if p.returncode == 99 or "unshare failed" in p.stderr:
        pytest.skip(f"no private mount namespace here: {p.stderr.strip()}")
    return p


def one_error(p) -> str:
    errors = [l for l in p.stderr.splitlines() if l.startswith("epoll-lab: error:")]
    assert p.returncode == EXIT_OUTPUT and len(errors) == 1 and "Traceback" not in p.stderr, p.stderr
    return errors[0]


def test_a_read_only_folder_is_refused_before_anything_starts(tools_present, tmp_path):
    p = in_own_mounts(tmp_path, "ro,size=1m", "trace", "c", "--port", str(free_port()), "--out",
                      str(tmp_path / "mnt" / "run"))
    assert "Read-only file system" in one_error(p)
    assert "starting:" not in p.stderr, "nothing is started when the folder cannot be written"


def test_a_full_disk_while_writing_the_views_is_one_line_and_no_process_is_left(tools_present, tmp_path):
    p = in_own_mounts(tmp_path, "size=96k", "trace", "c", "--port", str(free_port()), "--out",
                      str(tmp_path / "mnt" / "run"))
    assert "No space left on device" in one_error(p)
    pids = [int(x) for x in re.findall(r"runs as PID (\d+)", p.stderr) + re.findall(r"\(strace (\d+)\)", p.stderr)]
    assert pids and not still_alive_after_a_while(pids), p.stderr


def test_an_out_folder_under_a_file_is_one_line(tmp_path):
    (tmp_path / "afile").write_text("")
    p = subprocess.run([sys.executable, "-m", "tracing", "trace", "c", "--port", str(free_port()),
                        "--out", str(tmp_path / "afile" / "run")], cwd=ROOT, capture_output=True, text=True)
    assert "Not a directory" in one_error(p)


def test_a_run_folder_removed_during_the_run_is_one_line(tools_present, tmp_path):
    out = tmp_path / "run"
    p = subprocess.run([sys.executable, "-m", "tracing", "trace", "--out", str(out), "--",
                        "sh", "-c", f"sleep 0.3; rm -rf {out}"], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert "is gone (was the run folder removed while it ran?)" in one_error(p)


def test_an_out_folder_that_cannot_be_made_is_not_called_removed_during_the_run(tmp_path):
    # /proc refuses mkdir with ENOENT, before anything has run
    p = subprocess.run([sys.executable, "-m", "tracing", "trace", "--out", "/proc/epoll-lab-run", "--", "true"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    error = one_error(p)
    assert "cannot write /proc/epoll-lab-run" in error and "removed while it ran" not in error, p.stderr
    assert "starting:" not in p.stderr, "nothing is started when the folder cannot be made"


@pytest.mark.parametrize("fmt", ["jsonl", "text"])
def test_annotate_onto_a_full_disk_is_one_line(tmp_path, fmt):
    # jsonl: the compiled core writes the repeats itself (tracing/render/repeats.py).
    log = ROOT / "tests" / "fixtures" / "load" / "c-pool-keepalive.strace"
    p = in_own_mounts(tmp_path, "size=64k", "annotate", "--format", fmt, "-o",
                      str(tmp_path / "mnt" / "out"), str(log))
    assert "No space left on device" in one_error(p)


def test_a_folder_that_fills_while_the_server_starts_is_exit_7_naming_it(tools_present, tmp_path):
    # 256 KiB: the probe before the start passes, then strace's start-up lines fill it, the
    # server cannot write server.log and exits 1. That was "the server did not start" (exit 4).
    run = tmp_path / "mnt" / "run"
    p = in_own_mounts(tmp_path, "size=256k", "trace", "sanic", "--port", str(free_port()), "--out", str(run))
    error = one_error(p)
    assert f"cannot write {run}: No space left on device" in error, p.stderr
    assert "did not start" not in p.stderr, p.stderr
    pids = [int(x) for x in re.findall(r"runs as PID (\d+)", p.stderr)]
    assert pids and not still_alive_after_a_while(pids), p.stderr
