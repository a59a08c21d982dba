"""Every output of every recorded log is byte-identical to the hashes kept in
tests/fixtures/golden.json: a restructure or a faster path must not change a word.
When words are meant to change, `python -m tests.golden` rewrites them (say so in the commit)."""

from __future__ import annotations

import json

import pytest

from tests.golden import GOLDEN, differences, outputs
from tests.helpers import FIXTURES, LOGS

WANT = json.loads(GOLDEN.read_text())


@pytest.mark.parametrize("log", LOGS, ids=[str(p.relative_to(FIXTURES)) for p in LOGS])
def test_every_output_is_byte_identical_to_the_kept_one(log):
    name = str(log.relative_to(FIXTURES))
    assert name in WANT, f"{name} has no kept outputs: run python -m tests.golden"
    diff = differences({name: WANT[name]}, {name: outputs(log)})
    assert not diff, f"outputs changed: {diff} (python -m tests.golden --check lists them all)"
