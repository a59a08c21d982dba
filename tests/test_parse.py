"""The parser and annotator on logs real strace printed (see fixtures/record.sh)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracing.annotate import annotate_file, Annotator
from tracing.parse import Started, epoll_items, events, split_args, split_result

FIXTURES = Path(__file__).parent / "fixtures"
LOGS = sorted(FIXTURES.glob("*.strace"))


def complete(lines):
    return [e for e in events(lines) if not isinstance(e, Started)]


@pytest.mark.parametrize("log", LOGS, ids=[p.name for p in LOGS])
def test_every_line_of_a_real_log_is_covered_exactly_once(log):
    lines = log.read_text().splitlines()
    seen = []
    for ev in complete(lines):
        seen.append(ev.line)
        if ev.resumed_line:
            seen.append(ev.resumed_line)
    assert sorted(seen) == list(range(1, len(lines) + 1))


# strace writing to stderr can cut a call in two with its own "Process N
# attached" message; the annotator does not stitch those yet, so they must be
# kept verbatim and flagged (and nothing else may be unparsed).
INTERLEAVED = "strace: Process"


@pytest.mark.parametrize("log", LOGS, ids=[p.name for p in LOGS])
def test_real_logs_have_no_unparsed_lines_but_interleaved_strace_messages(log):
    lines = log.read_text().splitlines()
    bad = [(e.line, e.text) for e in complete(lines) if e.kind == "unparsed"]
    cut = [i + 1 for i, line in enumerate(lines) if INTERLEAVED in line and not line.startswith("strace:")]
    allowed = set(cut) | {n + 1 for n in cut} | {
        i + 1 for i, line in enumerate(lines) if line.startswith(" => ")}
    assert all(n in allowed for n, _ in bad), bad[:5]
    assert all(text == lines[n - 1] for n, text in bad)


def test_unfinished_and_resumed_halves_fold_into_one_call():
    evs = complete((FIXTURES / "tiny-f-ttt-T-yy.strace").read_text().splitlines())
    merged = [e for e in evs if e.resumed_line]
    assert merged, "the fixture has <unfinished ...> pairs"
    for e in merged:
        assert e.ret is not None and e.duration is not None and e.resumed_line > e.line, e
        assert "resumed" in e.resumed_text and "unfinished" in e.text


def test_pid_prefixes_from_stderr_and_from_o_files_are_read():
    stderr = complete((FIXTURES / "tiny-f-tt-stderr.strace").read_text().splitlines())
    ofile = complete((FIXTURES / "tiny-f-ttt-T-yy.strace").read_text().splitlines())
    assert len({e.tid for e in stderr if e.tid}) >= 2
    assert all(e.tid for e in ofile)
    assert all(e.ts and e.ts > 1e9 for e in ofile)  # -ttt: epoch seconds
    assert all(e.ts is None or e.ts < 86400 for e in stderr)  # -tt: time of day


def test_relative_times_and_durations_are_read():
    evs = complete((FIXTURES / "single-r-T.strace").read_text().splitlines())
    calls = [e for e in evs if e.kind == "syscall" and e.ret != "?"]
    assert all(e.ts is not None and e.ts < 1 for e in calls)
    assert all(e.duration is not None for e in calls)


def test_killed_process_and_unknown_result_are_events():
    evs = complete((FIXTURES / "killed.strace").read_text().splitlines())
    assert evs[0].syscall == "kill" and evs[0].ret == "?"
    assert evs[-1].kind == "exit" and evs[-1].syscall == "SIGKILL"


def test_a_line_it_does_not_understand_is_kept_verbatim_and_flagged():
    lines = (FIXTURES / "single-t-y.strace").read_text().splitlines()
    junk = "this line is not strace output ) = ( <"
    lines.insert(3, junk)
    ann = Annotator()
    recs = list(ann.run(events(lines)))
    bad = [r for r in recs if r["kind"] == "unparsed"]
    assert len(bad) == 1 and bad[0]["text"] == junk and bad[0]["line"] == 4
    assert "kept verbatim" in bad[0]["note"]
    assert ann.summary.as_dict()["unparsed"] == 1


def test_a_resumed_line_with_no_start_is_kept():
    line = "123 1.5 <... read resumed>\"abc\", 10) = 3 <0.000010>"
    (ev,) = complete([line])
    assert ev.syscall == "read" and ev.ret == "3" and "without a start" in ev.problem


def test_a_call_that_never_resumes_is_kept_at_the_end():
    line = "123 1.5 epoll_wait(4, <unfinished ...>"
    (ev,) = complete([line])
    assert ev.line == 1 and ev.ret is None and "never resumed" in ev.problem


def test_results_with_decorations_errors_and_durations():
    assert split_result(" = 19</dev/null<char 1:3>> <0.000026>") == ("19", "/dev/null<char 1:3>", None, 0.000026)
    assert split_result(" = -1 EAGAIN (Resource temporarily unavailable) <0.000052>") == (
        "-1", "Resource temporarily unavailable", "EAGAIN", 0.000052)
    assert split_result(" = ?") == ("?", None, None, None)
    assert split_result(" = 0 (Timeout)")[1] == "(Timeout)"


def test_arguments_split_at_top_level_commas_only():
    args = split_args('12<UNIX-STREAM:[3594->3595]>, "a, b)", {events=EPOLLIN, data={u32=1, u64=1}}, [1, 2]')
    assert args == ['12<UNIX-STREAM:[3594->3595]>', '"a, b)"',
                    '{events=EPOLLIN, data={u32=1, u64=1}}', '[1, 2]']


def test_the_three_epoll_event_formats_strace_has_printed():
    # Formats as strace's NEWS describes them: up to 5.10, from 5.11, from 6.13.
    assert epoll_items("[{EPOLLIN, {u32=5, u64=5}}]") == [("EPOLLIN", 5)]
    assert epoll_items("[{events=EPOLLIN|EPOLLHUP, data={u32=5, u64=5}}]") == [("EPOLLIN|EPOLLHUP", 5)]
    assert epoll_items("[{events=EPOLLOUT, data=0x5}]") == [("EPOLLOUT", 5)]


def test_annotator_finds_the_loop_the_pool_and_the_wakeup_in_a_real_log():
    records, ann = annotate_file(str(FIXTURES / "tiny-f-ttt-T-yy.strace"))
    recs = [r for r in records if r["kind"] != "started"]
    loops = {r["tid"] for r in recs if r["thread"] == "loop"}
    assert len(loops) == 1
    hostname = [r for r in recs if r["syscall"] == "read" and any(
        f["detail"] == "/etc/hostname" for f in r["fds"])]
    assert hostname and all(r["thread"] == "pool" and r["category"] == "thread-pooled" for r in hostname)
    wake = [r for r in recs if r["category"] == "wakeup"]
    assert wake and all(r["tid"] not in loops for r in wake)
