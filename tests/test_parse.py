"""The parser on logs real strace printed (see fixtures/record.sh for how
each was made, and fixtures/others/record.sh for nginx, redis, node and
asyncio). fixtures/formats/ holds logs made with flags the lab does not use
(-Y, -i, -n, -k, no -f; its record.sh), and formats strace 6.1 cannot print,
made from a real log by re-printing it as other strace versions do."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracing.read import inputs, parse
from tracing.understand.annotate import Annotator, annotate_file, annotate_items
from tracing.read.parse import (Started, epoll_items, events, numbered_events, parse_line,
                           parse_line_carefully, split_args)

FIXTURES = Path(__file__).parent / "fixtures"
LOGS = sorted(p for p in FIXTURES.rglob("*.strace") if p.parent.name != "ff")
FF = sorted((FIXTURES / "ff").glob("tiny.strace.*"))
OWN_OUTPUT = "printed by the traced program"


def complete(lines):
    return [e for e in events(lines, stacks=True) if not isinstance(e, Started)]


def read(name: str) -> list[str]:
    return (FIXTURES / name).read_text().splitlines()


def covered(evs) -> list[int]:
    seen = []
    for ev in evs:
        seen.append(ev.line)
        if ev.resumed_line:
            seen.append(ev.resumed_line)
        seen += [n for n, _ in ev.stack or ()]  # strace -k: the call's stack lines
    return sorted(seen)


@pytest.mark.parametrize("log", LOGS + FF, ids=[str(p.relative_to(FIXTURES)) for p in LOGS + FF])
def test_every_line_of_a_real_log_is_covered_exactly_once(log):
    lines = log.read_text().splitlines()
    assert covered(complete(lines)) == list(range(1, len(lines) + 1))


@pytest.mark.parametrize("log", LOGS + FF, ids=[str(p.relative_to(FIXTURES)) for p in LOGS + FF])
def test_real_logs_leave_nothing_unparsed_but_the_programs_own_output(log):
    lines = log.read_text().splitlines()
    bad = [(e.line, e.text, e.problem) for e in complete(lines)
           if e.kind == "unparsed" and OWN_OUTPUT not in (e.problem or "")]
    assert not bad, bad[:5]


@pytest.mark.parametrize("log", LOGS + FF, ids=[str(p.relative_to(FIXTURES)) for p in LOGS + FF])
def test_the_fast_path_reads_every_real_line_as_the_careful_parser_does(log):
    for n, text in enumerate(log.read_text().splitlines(), 1):
        assert parse_line(n, text) == parse_line_carefully(n, text), text


def test_unfinished_and_resumed_halves_fold_into_one_call():
    merged = [e for e in complete(read("tiny-f-ttt-T-yy.strace")) if e.resumed_line]
    assert merged, "the fixture has <unfinished ...> pairs"
    for e in merged:
        assert e.ret is not None and e.duration is not None and e.resumed_line > e.line, e
        assert "resumed" in e.resumed_text and "unfinished" in e.text


def test_pid_prefixes_from_stderr_and_from_o_files_are_read():
    stderr = complete(read("tiny-f-tt-stderr.strace"))
    ofile = complete(read("tiny-f-ttt-T-yy.strace"))
    assert len({e.tid for e in stderr if e.tid}) >= 2
    assert all(e.tid for e in ofile)
    assert all(e.ts and e.ts > 1e9 for e in ofile)  # -ttt: epoch seconds
    assert all(e.ts is None or e.ts < 86400 for e in stderr)  # -tt: time of day


def test_a_log_without_timestamps_or_pids_still_parses():
    single = complete(read("single-t-y.strace"))
    assert all(e.tid is None for e in single)
    notime = [e for e in complete(read("notime-f-o.strace")) if e.kind == "syscall"]
    assert notime and all(e.ts is None and e.tid for e in notime)


def test_relative_times_and_durations_are_read():
    calls = [e for e in complete(read("single-r-T.strace")) if e.kind == "syscall" and e.ret != "?"]
    assert all(e.ts is not None and e.ts < 1 for e in calls)
    assert all(e.duration is not None for e in calls)


def test_killed_process_and_unknown_result_are_events():
    evs = complete(read("killed.strace"))
    assert evs[0].syscall == "kill" and evs[0].ret == "?"
    assert evs[-1].kind == "exit" and evs[-1].syscall == "SIGKILL"


def test_signals_and_strace_messages_get_their_own_kinds():
    evs = complete(read("cut-stderr.strace")) + complete(read("detach-p.strace"))
    kinds = {e.kind for e in evs}
    assert {"signal", "strace", "exit"} <= kinds
    assert all(e.text.startswith("strace: ") for e in evs if e.kind == "strace")


def test_a_line_cut_by_straces_attach_message_is_stitched_back():
    # clone3(...}strace: Process 3688 attached / => {parent_tid=[3688]}, 88) = 3688
    clones = [e for e in complete(read("tiny-f-tt-stderr.strace")) if e.syscall == "clone3"]
    assert clones and all(e.ret and e.ret.isdigit() and e.resumed_line == e.line + 1 for e in clones)
    assert all("strace: Process" in e.problem for e in clones)


def test_a_line_cut_by_the_programs_own_output_is_stitched_and_the_output_kept():
    evs = complete(read("cut-stderr.strace"))
    writes = [e for e in evs if e.syscall == "write"]
    assert [e.ret for e in writes] == ["23", "10", "10"], [e.text for e in writes]
    # "two\nlines\n": "two" ends strace's line, "lines" is a line of its own
    own = [e for e in evs if e.kind == "unparsed"]
    assert [e.text for e in own] == ["lines"] and OWN_OUTPUT in own[0].problem
    assert writes[1].args.endswith(", 10"), "the program's 'two' is not part of the count"


def test_resumed_then_unfinished_on_one_line_is_one_call_without_a_result():
    reads = [e for e in complete(read("resumed-unfinished.strace")) if e.syscall == "read" and e.resumed_line]
    (last,) = [e for e in reads if "<unfinished ...>)" in e.resumed_text]
    assert last.ret == "?" and "unfinished" in last.text


def test_a_resumed_line_with_no_start_is_kept_and_flagged():
    first = complete(read("window-resumed-first.strace"))[0]
    assert first.syscall == "epoll_wait" and first.ret == "1" and "without a start" in first.problem


def test_a_call_that_never_resumes_is_kept_at_the_end():
    lines = read("window-unfinished-last.strace")
    last = complete(lines)[-1]
    assert last.line == len(lines) and last.ret is None and "never resumed" in last.problem


def test_execve_in_a_thread_resumes_under_the_leaders_pid():
    evs = complete(read("exec-thread.strace"))
    (ex,) = [e for e in evs if e.syscall == "execve" and e.resumed_line]
    assert "pid changed to" in ex.text and ex.ret == "0"
    assert any(e.kind == "exit" and "superseded by execve" in e.args for e in evs)


def test_a_call_in_flight_when_strace_detached_is_one_record():
    evs = complete(read("detach-p.strace"))
    (call,) = [e for e in evs if e.kind == "syscall"]
    assert call.syscall == "restart_syscall" and call.resumed_line == call.line + 1
    assert "detached" in call.problem


def test_truncated_strings_end_the_arguments_where_strace_closed_them():
    cut = [e for e in complete(read("tiny-f-ttt-T-yy.strace")) if '"...' in e.args]
    assert cut, "the -s 64 fixture has truncated strings"
    assert all(e.ret is not None and e.kind == "syscall" for e in cut)


def test_a_lost_tracees_result_is_unavailable_not_a_crash():
    (lost,) = [e for e in complete(read("formats/unavailable.strace")) if "unavailable" in (e.resumed_text or "")]
    assert lost.ret == "?" and "could not read the result" in lost.problem


@pytest.mark.parametrize("version", ["5.10", "6.13"])
def test_epoll_events_of_other_strace_versions_resolve_to_the_same_fds(version):
    def ready(name):
        recs = annotate_file(str(FIXTURES / name))[0]
        return [(r["line"], [(x["fd"], x["events"]) for x in r["ready"]]) for r in recs if r.get("ready")]

    expected = ready("tiny-f-ttt-T-yy.strace")
    assert expected and ready(f"formats/epoll-{version}.strace") == expected


def test_the_three_epoll_event_formats_read_alike():
    # One event from log 1 as strace <= 5.10, 5.11-6.12 and >= 6.13 print it.
    forms = [read(f"formats/epoll-{v}.strace")[604] for v in ("5.10", "6.13")] + [
        read("tiny-f-ttt-T-yy.strace")[604]]
    assert {tuple(epoll_items(f)) for f in forms} == {(("EPOLLIN", 4),)}, forms


def test_a_ready_array_cut_at_its_separators_reads_as_findall_reads_it():
    # epoll_items cuts today's format at "}}, {" and looks each item up; every line of
    # every recorded log, and the shapes that must go to findall instead, read alike.
    lines = [line for log in LOGS + FF for line in log.read_text(errors="replace").splitlines() if "{" in line]
    item = "{events=EPOLLIN, data={u32=5, u64=5}}"
    lines += [
        f"3, [{item}, {item.replace('5', '7')}], 64, -1",
        f"3, [{item},  {item}], 64, -1",  # two spaces
        f"3, [{item}, {{events=EPOLLIN, data=0x5}}], 64, -1",  # 6.13's item among today's
        f"3, [{item.replace('u32=5', 'u32=12345678901')}], 64, -1",  # too long for a u32
        f"3, [{item}], 64, {{tv_sec=0, tv_nsec=0}}, NULL, 8",
        f"{{x}}, [{item}], 64, -1", f"3, [{item}]",
        f"3, [{item.replace('EPOLLIN', '0x1')}, {item.replace('EPOLLIN', '0')}], 64, -1",
        "3, [{events=EPOLLIN, data={u32=5, u64=5}}}, {events=EPOLLIN, data={u32=5, u64=5}}], 64, -1",
    ]
    wrong = [(line, epoll_items(line)) for line in lines if epoll_items(line) != parse._found_items(line)]
    assert not wrong, wrong[:3]
    assert sum(parse._modern_items(line) is not None for line in lines) > 500  # the cut is taken


def test_arguments_split_at_top_level_commas_only():
    (ctl,) = [e for e in complete(read("tiny-f-ttt-T-yy.strace")) if e.syscall == "epoll_ctl"
              and "ADD" in e.args]
    args = split_args(ctl.args)
    assert args[1] == "EPOLL_CTL_ADD" and args[3].startswith("{events=") and len(args) == 4
    (sp,) = [e for e in complete(read("tiny-f-ttt-T-yy.strace")) if e.syscall == "socketpair"]
    assert len(split_args(sp.args)) == 4 and split_args(sp.args)[3].count("UNIX-STREAM") == 2


def test_ff_files_merge_into_one_stream_in_time_order():
    items = list(inputs.merged(FF))
    stamps = [ev.ts for ev in numbered_events(items) if getattr(ev, "ts", None) is not None]
    assert stamps == sorted(stamps)
    sources = sorted(item[2] for item in items)
    expected = sorted(f"{p.name}:{n}" for p in FF for n in range(1, len(p.read_text().splitlines()) + 1))
    assert sources == expected


def test_ff_merge_finds_the_same_roles_as_a_single_f_log():
    records, ann = annotate_items(inputs.opener([str(FIXTURES / "ff" / "tiny.strace")]))
    recs = [r for r in records if r["kind"] != "started"]
    roles = {r["thread"] for r in recs}
    assert {"loop", "pool"} <= roles
    assert any(r["category"] == "wakeup" for r in recs)
    assert all(r["source"] for r in recs)


def test_a_line_it_does_not_understand_is_kept_verbatim_and_flagged():
    lines = read("single-t-y.strace")
    junk = "this line is not strace output ) = ( <"
    lines.insert(3, junk)
    ann = Annotator()
    recs = list(ann.run(events(lines)))
    bad = [r for r in recs if r["kind"] == "unparsed"]
    assert len(bad) == 1 and bad[0]["text"] == junk and bad[0]["line"] == 4
    assert "kept verbatim" in bad[0]["note"]
    assert ann.summary.as_dict()["unparsed"] == 1


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


def test_without_decorations_the_fd_table_alone_names_the_fds():
    # notime-f-o: no -y, so every role comes from the call that made the fd.
    records, _ = annotate_file(str(FIXTURES / "notime-f-o.strace"))
    recs = [r for r in records if r["kind"] == "syscall"]
    wait = next(r for r in recs if r["syscall"] == "epoll_wait" and r["ready"])
    assert wait["ready"][0]["role"] == "wakeup", wait
    hostname = [r for r in recs if r["syscall"] == "read" and any(f["detail"] == "/etc/hostname" for f in r["fds"])]
    assert hostname and all(r["thread"] == "pool" for r in hostname)
    assert any(r["category"] == "wakeup" for r in recs)


def test_an_fd_the_log_never_shows_made_is_said_to_be_not_known():
    # notime-f-o lines 643-645: close(6) = 0 three times; no traced call makes a new fd 6
    # between them, and without -y nothing names it: the note says so instead of guessing.
    records, _ = annotate_file(str(FIXTURES / "notime-f-o.strace"))
    recs = {r["line"]: r for r in records if r["kind"] == "syscall"}
    assert "unicodedata" in recs[643]["note"]
    for n in (644, 645):
        assert recs[n]["syscall"] == "close" and "not known" in recs[n]["note"] and "-yy" in recs[n]["note"], recs[n]


def test_a_thread_whose_clone_is_not_in_the_log_is_said_to_be_unplaced_once():
    # window-resumed-first starts mid-run: 3681 (line 1) is the first thread seen, 3682
    # first shows at line 6 with no clone3 returning 3682 before it; 3683 is made by the
    # clone3 at line 46. Only 3682's first record says what the log cannot show.
    records, _ = annotate_file(str(FIXTURES / "window-resumed-first.strace"))
    said = [r for r in records if r["kind"] != "started" and "without the clone that made it" in r["note"]]
    assert [(r["line"], r["tid"]) for r in said] == [(6, 3682)], said
