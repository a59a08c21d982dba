"""`python -m tracing annotate` as a user runs it: files, -ff names, stdin,
JSON Lines, the summary and the exit codes. Inputs are the recorded logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from tests.helpers import LOAD, ROOT, count_lines, run_cli, trace_c_under_wrk
from tracing.render.jsonl import JSONL_FIELDS

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


def annotate_bytes(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tracing", "annotate", *args], input=stdin,
                          capture_output=True, timeout=60, env={"NO_COLOR": "1", "PATH": "/usr/bin:/bin"})


def one_line_error(got, code: int, *words: str) -> None:
    err = got.stderr if isinstance(got.stderr, str) else got.stderr.decode()
    assert got.returncode == code, (got.returncode, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert all(w in err for w in words), err


def test_a_directory_is_named_as_one_with_the_fix(tmp_path):
    one_line_error(annotate(str(tmp_path)), 3, "is a directory", "raw.strace")


def test_a_fifo_is_read_once_as_a_stream(tmp_path):
    fifo = tmp_path / "live.strace"
    os.mkfifo(fifo)
    log = (FIXTURES / "others" / "redis.strace").read_bytes()
    # A writer on the FIFO, as strace -o FIFO would be; the annotator reads it once.
    writer = subprocess.Popen(["dd", f"of={fifo}", "status=none"], stdin=subprocess.PIPE)
    try:
        writer.stdin.write(log)
        writer.stdin.close()
        got = annotate_bytes(str(fifo), "--format", "jsonl")
    finally:
        if writer.poll() is None:  # nobody opened the FIFO: do not leave dd blocked on it
            writer.kill()
        writer.wait(timeout=60)
    assert got.returncode == 0, got.stderr
    assert len(got.stdout.decode().splitlines()) > 100


def test_output_into_a_missing_folder_or_onto_a_folder_is_a_one_line_error(tmp_path):
    log = str(FIXTURES / "tiny-f-ttt-T-yy.strace")
    one_line_error(annotate(log, "-o", str(tmp_path / "nope" / "out.log")), 7, "does not exist", "mkdir -p")
    one_line_error(annotate(log, "-o", str(tmp_path)), 7, "is a directory", "annotated.log")


def test_random_bytes_and_a_readme_are_not_strace_logs(tmp_path):
    junk = bytes(range(256)) * 20 + b"\n\x00\xff\xfe"
    got = annotate_bytes("-", stdin=junk)
    lines = len(junk.split(b"\n"))
    one_line_error(got, 8, f"none of its {lines} lines is strace output", "strace -f")
    readme = Path(__file__).parents[1] / "README.md"
    n = len(readme.read_bytes().split(b"\n")) - 1
    one_line_error(annotate(str(readme)), 8, f"none of its {n} lines is strace output")


def test_a_log_with_some_foreign_lines_annotates_and_says_how_many():
    log = (FIXTURES / "tiny-f-ttt-T-yy.strace").read_text()
    got = annotate("-", stdin=log + "not strace\nneither is this\n")
    assert got.returncode == 0, got.stderr
    assert "2 of the" in got.stderr and "not strace output" in got.stderr, got.stderr


def test_latin1_bytes_on_stdin_come_out_as_valid_utf8_json():
    log = (FIXTURES / "others" / "redis.strace").read_bytes().replace(b"ping", b"p\xe9ng\xff")
    got = annotate_bytes("-", "--format", "jsonl", stdin=log)
    assert got.returncode == 0, got.stderr
    recs = [json.loads(line) for line in got.stdout.decode("utf-8").splitlines()]
    assert any("p\ufffdng\ufffd" in r["args"] for r in recs)


def _on_a_terminal(cmd: list[str]) -> tuple[int, str]:
    """Run `cmd` with stderr on a pty (stdout to /dev/null); its exit code and what the pty showed."""
    import pty
    master, slave = pty.openpty()
    proc = subprocess.run(cmd, stderr=slave, stdout=subprocess.DEVNULL, timeout=120)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the pty is drained
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    return proc.returncode, seen.decode(errors="replace")


def test_a_long_annotation_says_how_far_it_has_read_on_a_terminal_and_nowhere_else(tmp_path):
    log = tmp_path / "big.strace"
    lines = trace_c_under_wrk(log, 20_000, seconds=60)
    assert lines > 2 * 8192, lines  # the status line is first drawn after 8,192 lines
    cmd = [sys.executable, "-m", "tracing", "annotate", str(log), "--format", "jsonl",
           "-o", str(tmp_path / "out.jsonl"), "--summary"]
    code, tty = _on_a_terminal(cmd)
    assert code == 0, tty
    assert "pass 1 of 2: learning thread roles" in tty, tty[-2000:]
    assert f" of {lines:,} lines (" in tty, tty[-2000:]  # pass 2 knows the total from pass 1
    # Wiped before the summary: the summary's first line starts clean.
    assert "\r\x1b[Klines traced:" in tty, tty[-2000:]
    assert count_lines(tmp_path / "out.jsonl") == lines
    # The output on standard output (maybe a pager's screen): nothing drawn over it.
    code, tty = _on_a_terminal(cmd[:-3] + ["--summary"])
    assert code == 0 and "pass 1 of 2" not in tty and "lines traced:" in tty, tty[-2000:]
    piped = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0 and "pass 1 of 2" not in piped.stderr and "\x1b" not in piped.stderr, \
        piped.stderr


def test_a_message_printed_while_the_status_line_is_up_starts_on_a_clean_line(monkeypatch):
    # An error or a Ctrl-C's one line can come while the line is drawn (in pass 1, say).
    import io
    from tracing import log as progress
    from tracing import log

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    line = progress.Progress(screen)
    line.show("pass 1 of 2: learning thread roles", 8192, None)
    log.eprint("epoll-lab: interrupted (SIGINT); nothing was left running")
    assert screen.getvalue().endswith("lines\x1b[K\r\x1b[Kepoll-lab: interrupted (SIGINT); nothing was left "
                                      "running\n"), repr(screen.getvalue())
    assert progress._drawn == []


def test_format_all_writes_a_runs_files_from_one_read(tmp_path):
    log = str(LOAD.relative_to(ROOT))
    folder = tmp_path / "views"
    p = run_cli("annotate", log, "--format", "all", "-o", str(folder))
    assert p.returncode == 0, p.stderr
    assert sorted(f.name for f in folder.iterdir()) == ["annotated.log", "events.jsonl", "summary.json",
                                                       "timeline.html", "trace.json"]
    for fmt, name in (("jsonl", "events.jsonl"), ("trace-event", "trace.json")):
        alone = tmp_path / f"alone.{fmt}"
        q = run_cli("annotate", log, "--format", fmt, "-o", str(alone))
        assert q.returncode == 0, q.stderr
        assert (folder / name).read_text() == alone.read_text(), f"{name} differs from --format {fmt}'s"
    assert "# Index (line numbers in this file):" in (folder / "annotated.log").read_text()
    assert json.loads((folder / "summary.json").read_text())["kinds"]["syscall"] > 1000
    assert run_cli("annotate", log, "--format", "all").returncode == 2  # a folder must be named


def test_format_all_over_an_earlier_run_writes_new_files_and_leaves_what_they_linked_to(tmp_path):
    # The earlier run's files are unlinked, not truncated (render.renderer.new_file): a file an
    # old one was hard-linked to keeps its text, and a FIFO in the folder is written, not replaced.
    log = str(LOAD.relative_to(ROOT))
    folder = tmp_path / "views"
    assert run_cli("annotate", log, "--format", "all", "-o", str(folder)).returncode == 0
    kept = tmp_path / "kept.jsonl"
    os.link(folder / "events.jsonl", kept)
    before = kept.read_text()
    os.unlink(folder / "trace.json")
    os.mkfifo(folder / "trace.json")
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append((folder / "trace.json").read_bytes()), daemon=True)
    reader.start()
    p = run_cli("annotate", log, "--format", "all", "-o", str(folder))
    reader.join(timeout=60)
    assert p.returncode == 0, p.stderr
    assert kept.read_text() == before and (folder / "events.jsonl").read_text() == before
    assert not os.path.samefile(kept, folder / "events.jsonl")
    assert got and json.loads(got[0])["traceEvents"], "the FIFO was not written through"


def test_a_batch_of_output_lines_reuses_the_heap_instead_of_faulting_in_new_pages():
    # Each renderer writes a batch of lines as one big string and drops it; the command line
    # keeps glibc's heap (tracing.heap), so the next batch reuses those pages. Counted in page
    # faults, not time: 200 batches of 260 KB with and without it.
    code = textwrap.dedent("""
        import os, resource, sys
        from tracing import heap
        if sys.argv[1] == "kept":
            heap.keep()
        out = open(os.devnull, "w")
        batch = ["x" * 2000] * 130
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(200):
            out.write("\\n".join(batch + [""]))
        print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """)
    faults = {how: int(subprocess.run([sys.executable, "-c", code, how], cwd=ROOT, capture_output=True,
                                      text=True, check=True).stdout) for how in ("kept", "given back")}
    assert faults["given back"] > 200 * 50, faults  # a 260 KB batch is 64 pages
    assert faults["kept"] < faults["given back"] / 20, faults
