"""The table of claims (tracing/understand/claims.py), each held to its two tests: on a real log,
the note at the example line makes the claim and names evidence of the kind the
claim needs; with the evidence lines removed from the same log, the same call's
note no longer makes it. docs/claims.md is the table as rendered."""

from __future__ import annotations

import re

import pytest

from tests.helpers import FIXTURES, LOGS, ROOT, show
from tracing.understand import claims
from tracing.understand.annotate import annotate_items
from tracing.understand.claims import CLAIMS, check_all, made

FROM_LOGS = [c for c in CLAIMS if c.example[1]]


def annotated(lines: list[str]) -> list[dict]:
    return [r for r in annotate_items(lambda: enumerate(lines, 1))[0] if r["kind"] != "started"]


def without(lines: list[str], drop: tuple) -> list[str]:
    """The log with the evidence gone: listed line numbers, and lines a listed pattern matches."""
    patterns = [re.compile(p) for p in drop if isinstance(p, str)]
    return [line for n, line in enumerate(lines, 1)
            if n not in drop and not any(p.search(line) for p in patterns)]


def makes(rec: dict, claim) -> bool:
    return claim.key in {c.key for c in made(rec["note"])}


@pytest.mark.parametrize("claim", FROM_LOGS, ids=[c.key for c in FROM_LOGS])
def test_a_claim_is_made_with_its_evidence_and_not_without_it(claim):
    log, line = claim.example
    lines = (FIXTURES / log).read_text(errors="replace").splitlines(keepends=True)
    recs = annotated(lines)
    rec = next(r for r in recs if r["line"] == line)
    cited = [e for e in rec["evidence"] if e["claim"] == claim.key]
    assert makes(rec, claim) and cited, show([rec])
    assert not check_all(recs), check_all(recs)[:5]
    kept = without(lines, claim.without)
    assert len(kept) < len(lines), "the evidence lines are not in the log"
    again = next(r for r in annotated(kept) if r["text"] == lines[line - 1].rstrip("\n"))
    assert not makes(again, claim), f"{claim.key} still made without its evidence:\n{show([again])}"


def test_uvloop_says_a_client_was_registered_through_the_ring_only_with_the_wait_that_returns_it(uvloop_trace):
    claim = claims.BY_KEY["ring-registration"]
    lines = (uvloop_trace.out / "raw.strace").read_text().splitlines(keepends=True)
    rec = next((r for r in uvloop_trace.records if makes(r, claim)), None)
    if rec is None:  # io_uring refused here (a container): libuv registers with plain epoll_ctl
        assert any(r["syscall"] == "io_uring_setup" and r["errno"] for r in uvloop_trace.records)
        return
    waits = {e["line"] for e in rec["evidence"] if e["claim"] == claim.key} - {rec["line"] - 1}
    by = {r["line"]: r for r in uvloop_trace.records}
    drop = tuple(waits | {by[w]["resumed_line"] for w in waits if by[w].get("resumed_line")})
    # Without the waits that return the client, no note may say where it was registered.
    kept = without(lines, drop + tuple(n for n, t in enumerate(lines, 1)
                                       if n > max(waits) and f"data={{u32={_fd(rec)}," in t))
    again = next(r for r in annotated(kept) if r["text"] == lines[rec["line"] - 1].rstrip("\n"))
    assert makes(rec, claim) and not makes(again, claim), show([rec, again])


def _fd(rec: dict) -> int:
    return int(re.search(r"client fd (\d+)", rec["note"]).group(1))


@pytest.mark.parametrize("log", LOGS, ids=[str(p.relative_to(FIXTURES)) for p in LOGS])
def test_no_note_of_any_recorded_log_makes_a_claim_without_its_evidence(log):
    lines = log.read_text(errors="replace").splitlines(keepends=True)
    bad = check_all(annotated(lines))
    assert not bad, "\n".join(bad[:15])


def test_docs_claims_md_is_the_table_as_rendered():
    assert (ROOT / "docs" / "claims.md").read_text() == claims.markdown(), \
        "run: .venv/bin/python -m tracing.understand.claims > docs/claims.md"


def test_every_claim_has_a_real_log_where_it_is_made():
    # Two are made only in live runs, tested above: uvloop's ring registrations, getaddrinfo.
    live = {c.key for c in CLAIMS if not c.example[1]}
    assert live == {"ring-registration", "getaddrinfo"}, live


def test_getaddrinfo_is_named_only_where_its_own_record_is(uvloop_kernel_trace, uvloop_trace):
    # The kernel tracer's uprobe gives a getaddrinfo record: the claim's evidence is the
    # record itself. strace sees no library call: no note of the same server says it.
    claim = claims.BY_KEY["getaddrinfo"]
    calls = [r for r in uvloop_kernel_trace.records if r["syscall"] == "getaddrinfo"]
    assert calls and all(makes(r, claim) for r in calls), show(calls)
    assert not check_all(uvloop_kernel_trace.records), check_all(uvloop_kernel_trace.records)[:5]
    assert not [r for r in uvloop_trace.records if makes(r, claim)], show(
        [r for r in uvloop_trace.records if makes(r, claim)])
