"""strace output made with flags the lab's recipes do not use is read, not
refused or drawn empty: -Y (a process name after each pid), -i (the
instruction pointer), -n (the syscall number), -k (a stack after each call),
no -f (no pid column), one -ff file named directly, and a compressed log.
Each log was recorded by real strace (tests/fixtures/formats/record.sh);
the expectations below were written by reading them."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import subprocess
import sys

import pytest

from tests.helpers import FIXTURES, covered, run_cli
from tracing.understand.annotate import Annotator, annotate_file
from tracing.errors import EXIT_SETUP
from tracing.read.parse import events

FORMATS = FIXTURES / "formats"
PLAIN = FIXTURES / "tiny-f-ttt-T-yy.strace"  # the same program, the lab's own flags


def jsonl(tmp_path, *args: str) -> list[dict]:
    out = tmp_path / "out.jsonl"
    p = run_cli("annotate", *args, "--format", "jsonl", "-o", str(out), timeout=120)
    assert p.returncode == 0, p.stderr
    return [json.loads(line) for line in out.read_text().splitlines()]


def story(records: list[dict]) -> list[tuple]:
    """The lab's story of a run, without pids and times: the calls a loop, a pool or a wakeup
    makes, in order per thread role (start-up file calls, and how threads interleave, differ
    from run to run)."""
    return sorted(((r["thread"], r["syscall"], r["category"]) for r in records
                   if r["kind"] == "syscall" and r["category"] != "other"), key=lambda c: c[0])


@pytest.mark.parametrize("name, flag", [("decode-pids-Y.strace", "-Y"), ("ip-i.strace", "-i"),
                                        ("scno-n.strace", "-n")])
def test_a_prefix_strace_adds_after_the_pid_or_time_is_read_like_the_plain_log(tmp_path, name, flag):
    # tiny_loop.py, as in the plain log; each was refused before ("none of its lines is strace output").
    got = jsonl(tmp_path, str(FORMATS / name))
    lines = (FORMATS / name).read_text().splitlines()
    assert covered(got) == list(range(1, len(lines) + 1))
    assert not [r for r in got if r["kind"] == "unparsed"], flag
    plain = jsonl(tmp_path, str(PLAIN))
    assert story(got) == story(plain), f"{flag}: the loop, pool and wakeups read otherwise than in the plain log"
    assert len({r["tid"] for r in got}) == 3 and all(r["tid"] for r in got)


def test_decode_pids_comm_reads_the_pid_before_the_name_and_in_the_clone_result(tmp_path):
    # 21772<python3> 1796652785.944240 clone3({...} => {parent_tid=[21775<python3>]}, 88) = 21775<python3>
    got = jsonl(tmp_path, str(FORMATS / "decode-pids-Y.strace"))
    clone = next(r for r in got if r["syscall"] == "clone3")
    assert (clone["tid"], clone["ret"]) == (21772, "21775")
    hostname = [r for r in got if "/etc/hostname" in r["args"]]
    assert hostname and {r["tid"] for r in hostname} == {21775} and {r["thread"] for r in hostname} == {"pool"}


def test_decode_pids_comm_on_stderr_reads_the_bracketed_pid(tmp_path):
    got = jsonl(tmp_path, str(FORMATS / "decode-pids-Y-stderr.strace"))
    # [pid 21782<python3>] 14:13:06.224497 sendto(5, "\0", 1, 0, NULL, 0 <unfinished ...>
    sends = [r for r in got if r["syscall"] == "sendto"]
    assert sends and {r["tid"] for r in sends} <= {21782, 21784}
    assert not [r for r in got if r["kind"] == "unparsed"]


def test_k_stack_lines_go_with_the_call_they_follow_and_are_kept_verbatim(tmp_path):
    log = FORMATS / "stack-k.strace"
    lines = log.read_text().splitlines()
    got = jsonl(tmp_path, str(log))
    assert covered(got) == list(range(1, len(lines) + 1)), "every line once, stack lines included"
    assert not [r for r in got if r["kind"] == "unparsed"], "a stack line is not 'not strace output'"
    first = got[0]  # line 1 epoll_create1, then its 50 frames, then line 52 the next call
    assert first["syscall"] == "epoll_create1" and [n for n, _ in first["stack"]] == list(range(2, 52))
    assert first["stack"][0][1] == lines[1] == " > /usr/lib/x86_64-linux-gnu/libc.so.6(epoll_create1+0x7) [0x109be7]"
    # 151 epoll_wait(3,  <unfinished ...> ... 167 <... epoll_wait resumed> ... = 1: its stack follows
    # the resumed line, and starts in libc's epoll_wait.
    wait = next(r for r in got if r["line"] == 151)
    assert wait["resumed_line"] == 167 and wait["stack"][0] == [168, lines[167]]
    assert "(epoll_wait+0x56)" in wait["stack"][0][1]
    # 426 exit_group(0) = ?, 427 +++ exited with 0 +++, then the exit_group's stack.
    exit_group = next(r for r in got if r["syscall"] == "exit_group")
    assert exit_group["line"] == 426 and [n for n, _ in exit_group["stack"]] == list(range(428, 434))
    summary = run_cli("annotate", str(log), "--summary", "-o", str(tmp_path / "a.log"))
    assert f"lines traced: {len(lines)} " in summary.stderr and "0 not understood" in summary.stderr
    text = (tmp_path / "a.log").read_text()
    assert all(line in text for line in lines), "the text view keeps every stack line"


@pytest.mark.parametrize("fmt", ["trace-event", "timeline"])
@pytest.mark.parametrize("log, tid", [(FORMATS / "single-no-f.strace", 0), (FIXTURES / "ff" / "tiny.strace.15055", 15055)],
                         ids=["no-f", "one-ff-file"])
def test_a_log_without_a_pid_column_is_drawn_not_left_empty(tmp_path, log, tid, fmt):
    # Both gave text and JSON Lines, but 0 trace events and 0 timeline marks, and exit 0.
    recs = jsonl(tmp_path, str(log))
    calls = [r for r in recs if r["kind"] == "syscall" and r["ts"] is not None]
    assert calls and {r["tid"] for r in calls} == ({None} if tid == 0 else {tid})
    if fmt == "trace-event":
        out = tmp_path / "trace.json"
        p = run_cli("annotate", str(log), "--format", "trace-event", "-o", str(out))
        assert p.returncode == 0, p.stderr
        slices = [e for e in json.loads(out.read_text())["traceEvents"] if e["ph"] == "X"]
        assert len(slices) == len(calls) and {e["tid"] for e in slices} == {tid}, p.stderr
    else:
        events = tmp_path / "events.jsonl"
        events.write_text("".join(json.dumps(r) + "\n" for r in recs))
        p = run_cli("timeline", str(events), "-o", str(tmp_path / "t.html"))
        page = (tmp_path / "t.html").read_text()
        assert p.returncode == 0 and page.count('<rect class="mark') + page.count('<rect class="wait') > 0, p.stderr
        assert f">loop {tid}<" in page


@pytest.mark.parametrize("pack", [gzip.compress, bz2.compress, lzma.compress], ids=["gzip", "bzip2", "xz"])
def test_a_compressed_log_reads_as_the_log_itself(tmp_path, pack):
    packed = tmp_path / "app.strace.z"
    packed.write_bytes(pack(PLAIN.read_bytes()))
    assert jsonl(tmp_path, str(packed)) == jsonl(tmp_path, str(PLAIN))


def test_a_cut_gzip_log_is_one_line_that_says_gzip(tmp_path):
    cut = tmp_path / "app.strace.gz"
    cut.write_bytes(gzip.compress(PLAIN.read_bytes())[:3000])
    as_file = run_cli("annotate", str(cut), "-o", str(tmp_path / "out"), timeout=60)
    piped = subprocess.run([sys.executable, "-m", "tracing", "annotate", "-"], input=cut.read_bytes(),
                           capture_output=True, timeout=60)
    for code, err in ((as_file.returncode, as_file.stderr), (piped.returncode, piped.stderr.decode())):
        errors = [line for line in err.splitlines() if line.startswith("epoll-lab: error:")]
        assert code == EXIT_SETUP and len(errors) == 1 and "gzip-compressed" in errors[0], err
        assert "Traceback" not in err


def test_a_stack_line_with_no_call_before_it_is_kept_and_said_so():
    # The log cut to start at its second line: 50 frames whose call is not in it.
    lines = (FORMATS / "stack-k.strace").read_text().splitlines()[1:60]
    recs = [r for r in Annotator().run(events(lines, stacks=True)) if r["kind"] != "started"]
    assert covered(recs) == list(range(1, len(lines) + 1))
    stray = [r for r in recs if r["kind"] == "unparsed"]
    assert len(stray) == 50 and all("no call before it" in r["note"] for r in stray)


def test_the_two_pass_file_reader_attaches_every_stack_line():
    log = FORMATS / "stack-k.strace"
    recs = [r for r in annotate_file(str(log))[0] if r["kind"] != "started"]
    frames = [n for n, line in enumerate(log.read_text().splitlines(), 1) if line.startswith(" > ")]
    assert sorted(n for r in recs for n, _ in r.get("stack", ())) == frames


def test_a_reader_that_passes_each_call_on_at_once_keeps_stack_lines_as_lines():
    # Live mode and the web page read without stacks: no call waits for the next line; a -k
    # frame is then a line of its own (never in the lab's own traces, which have no -k).
    lines = (FORMATS / "stack-k.strace").read_text().splitlines()
    recs = [r for r in Annotator().run(events(lines)) if r["kind"] != "started"]
    assert covered(recs) == list(range(1, len(lines) + 1))
    assert not [r for r in recs if "stack" in r]
    assert {r["line"] for r in recs if r["kind"] == "unparsed"} == \
        {n for n, line in enumerate(lines, 1) if line.startswith(" > ")}
