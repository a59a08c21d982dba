"""A server repeats itself, so the annotator reuses a verdict while the model
has not changed (tracing/understand/changes.py). Reuse must never show: these tests hold
it to exactly what the handlers say, on every recorded log and on lines of
real logs shuffled into orders no program made."""

from __future__ import annotations


import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracing.understand import changes
from tracing.understand.annotate import Annotator, annotate_file
from tracing.read.parse import events
from tracing.render.jsonl import jsonl_line

from tests.helpers import FIXTURES, LOAD, LOGS, MIXED



def test_the_logs_cover_a_server_under_repeated_requests():
    assert LOAD in LOGS and len(LOGS) >= 25, [p.name for p in LOGS]


@pytest.mark.parametrize("log", LOGS, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_a_reused_verdict_is_the_one_its_handler_gives(log):
    # check_reuse works out every verdict and raises where a reuse would have differed.
    checked, _ = annotate_file(str(log), check_reuse=True)
    reused, ann = annotate_file(str(log))
    want, got = [jsonl_line(r) for r in checked], [jsonl_line(r) for r in reused]
    differ = [(w, g) for w, g in zip(want, got) if w != g]
    assert len(want) == len(got) and not differ, differ[:3]


def test_a_server_under_repeated_requests_gets_verdicts_reused():
    records, ann = annotate_file(str(LOAD))
    calls = sum(1 for r in records if r["kind"] == "syscall")
    # 300 keep-alive requests: the same read, write and EAGAIN read each time.
    # Every tenth opens and closes a file on a pool thread, which changes the
    # model, so the reads and writes after it are worked out afresh: about a
    # third of the calls are reused here (under wrk's GET / alone, nearly all).
    assert ann.reused > calls / 4, (ann.reused, calls)


@pytest.mark.parametrize("log", LOGS, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_every_container_of_the_model_counts_its_changes(log):
    records, ann = annotate_file(str(log))
    for _ in records:
        pass
    assert changes.untracked(ann.model) == []


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(MIXED), min_size=1, max_size=400))
def test_reuse_holds_for_lines_in_any_order(lines):
    # Lines of real logs, repeated and interleaved in orders no program made:
    # fds unknown, reused, closed twice. One pass, as stdin is read.
    ann = Annotator(check_reuse=True)
    for _ in ann.run(events(lines)):
        pass
    assert changes.untracked(ann.model) == []


def _a_read_line() -> str:
    return next(line for line in LOAD.read_text().splitlines() if " read(" in line and "GET / " in line)


@pytest.mark.parametrize("reads", ["ev.line", "ev.ts", "ev.duration", "ev.text", "m.last"])
def test_a_verdict_whose_handler_read_its_line_or_the_call_before_is_not_kept(monkeypatch, reads):
    # A note that says "slept 3 ms" or "right after accept4" belongs to its line: a
    # handler that reads any of these gets asked again for every line.
    from tracing.understand import annotate as A

    def probe(c):
        c.m.last.get(c.ev.tid) if reads == "m.last" else getattr(c.ev, reads.split(".")[1])
        return c.say("a probe's note")
    monkeypatch.setitem(A.HANDLERS, "read", probe)
    ann = Annotator()
    for _ in ann.run(events([_a_read_line()] * 5)):
        pass
    assert ann.reused == 0


def test_a_verdict_whose_handler_read_only_the_call_is_kept(monkeypatch):
    from tracing.understand import annotate as A
    monkeypatch.setitem(A.HANDLERS, "read", lambda c: c.say(f"read {c.ev.args[:10]} = {c.ev.ret}"))
    ann = Annotator()
    for _ in ann.run(events([_a_read_line()] * 5)):
        pass
    # The first makes the thread's fd table (a change); the second is worked out under
    # a model that stands still and kept; the other three reuse it.
    assert ann.reused == 3


def test_every_change_to_a_counting_container_moves_the_count():
    from tracing.understand.fds import Fd
    d, s, li = changes.Dict(a=1, b=2, c=3), changes.Set({1, 2, 3}), changes.List([3, 1, 2])
    fd = Fd(7, "client")
    moves = {
        "Dict[k] = v": lambda: d.__setitem__("x", 1), "del Dict[k]": lambda: d.__delitem__("x"),
        "Dict.pop": lambda: d.pop("a"), "Dict.popitem": d.popitem, "Dict.setdefault (new)": lambda: d.setdefault("n", 0),
        "Dict.update": lambda: d.update(z=1), "Dict |=": lambda: d.__ior__({"y": 2}), "Dict.clear": d.clear,
        "Set.add (new)": lambda: s.add(9), "Set.discard (there)": lambda: s.discard(9), "Set.remove": lambda: s.remove(1),
        "Set.pop": s.pop, "Set.update": lambda: s.update({5}), "Set.difference_update": lambda: s.difference_update({5}),
        "Set.intersection_update": lambda: s.intersection_update({3}),
        "Set.symmetric_difference_update": lambda: s.symmetric_difference_update({4}),
        "Set |=": lambda: s.__ior__({6}), "Set &=": lambda: s.__iand__({6}), "Set -=": lambda: s.__isub__({6}),
        "Set ^=": lambda: s.__ixor__({7}), "Set.clear": s.clear,
        "List.append": lambda: li.append(4), "List.extend": lambda: li.extend([5]), "List.insert": lambda: li.insert(0, 6),
        "List.pop": li.pop, "List.remove": lambda: li.remove(6), "List.sort": li.sort, "List.reverse": li.reverse,
        "List[i] = v": lambda: li.__setitem__(0, 9), "del List[i]": lambda: li.__delitem__(0),
        "List +=": lambda: li.__iadd__([1]), "List *=": lambda: li.__imul__(2), "List.clear": li.clear,
        "Fd.role = ...": lambda: setattr(fd, "role", "listening"),
    }
    still = []
    for what, change in moves.items():
        before = changes.count()
        change()
        if changes.count() == before:
            still.append(what)
    assert still == []
    # What changes nothing counts nothing: every epoll wait asks these again.
    d2, s2 = changes.Dict(a=1), changes.Set({1})
    before = changes.count()
    d2.pop("missing", None), d2.setdefault("a", 5), s2.add(1), s2.discard(2)
    assert changes.count() == before
