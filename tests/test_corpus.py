"""The annotator on real logs of programs nobody here wrote: each folder of
tests/fixtures/kinds holds a log, the record.sh that made it and expectations
written by reading it (its README says why each holds). Every check of every
log must hold, and every claim a note makes must name its evidence."""

from __future__ import annotations

import pytest

from tests.corpus import CORPUS, check, expectations, log_of
from tracing.understand.annotate import annotate_file
from tracing.understand.claims import check_all


@pytest.fixture(scope="module", params=CORPUS, ids=[p.name for p in CORPUS])
def annotated(request):
    folder = request.param
    return folder, list(annotate_file(str(log_of(folder)))[0])


def test_the_corpus_holds_twenty_distinct_programs_at_least():
    # The kinds of issue 15 (flat files) plus one folder per program.
    flat = {"memcached", "go", "uvloop-signal", "http-server", "redis-tt", "select", "stall-tt"}
    assert len(CORPUS) + len(flat) >= 20, [p.name for p in CORPUS]


def test_every_expectation_read_off_the_log_holds(annotated):
    folder, records = annotated
    fails = check(log_of(folder), records, expectations(folder))
    assert not fails, f"{folder.name}:\n  " + "\n  ".join(fails[:25])


def test_no_note_makes_a_claim_without_its_evidence(annotated):
    folder, records = annotated
    bad = check_all(records)
    assert not bad, f"{folder.name}:\n  " + "\n  ".join(bad[:15])
