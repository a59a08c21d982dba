"""Every run's randomised tests draw from one seed that the run prints, so a
failure seen once (in CI, say) can be replayed with --hypothesis-seed."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.helpers import ROOT

DRAWS = '''
from hypothesis import given, settings, strategies as st

@settings(max_examples=20, database=None)
@given(st.integers())
def test_draws(n):
    with open({out!r}, "a") as f:
        f.write(f"{{n}}\\n")
'''


def run(tmp_path, out, *extra: str) -> str:
    test = tmp_path / "test_draws.py"
    test.write_text(DRAWS.format(out=str(out)))
    p = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.seed", "-p", "no:cacheprovider",
                        *extra, str(test)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    return p.stdout


def test_a_run_prints_its_hypothesis_seed_and_the_seed_replays_the_same_draws(tmp_path):
    first = run(tmp_path, tmp_path / "first")
    seeds = re.findall(r"hypothesis seed: (\d+) \(replay: make test PYTEST_ARGS='--hypothesis-seed=\d+'", first)
    assert len(seeds) == 2 and seeds[0] == seeds[1], first  # in the header and at the end
    run(tmp_path, tmp_path / "again", f"--hypothesis-seed={seeds[0]}")
    drawn = (tmp_path / "first").read_text().split()
    assert len(drawn) == 20 and drawn == (tmp_path / "again").read_text().split()
