"""Every run's randomised tests draw from one seed that the run prints, so a
failure seen once (in CI, say) can be replayed with --hypothesis-seed."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.helpers import ROOT

# The same file for both runs, read from the same place: Hypothesis also draws constants
# from the source it has loaded, so the runs may differ in their seed and nothing else.
DRAWS = '''
import os
import sys

from hypothesis import given, settings, strategies as st
from hypothesis.internal.constants_ast import is_local_module_file


@settings(max_examples=20, database=None)
@given(st.integers())
def test_draws(n):
    with open(os.environ["DRAWS_OUT"], "a") as f:
        f.write(f"{n}\\n")


def test_what_else_hypothesis_read():
    files = sorted(m.__file__ for m in list(sys.modules.values())
                   if getattr(m, "__file__", None) and is_local_module_file(m.__file__))
    with open(os.environ["DRAWS_OUT"] + ".local", "w") as f:
        f.write("\\n".join(files))
'''


def run(tmp_path, name: str, *extra: str) -> str:
    test = tmp_path / "test_draws.py"
    test.write_text(DRAWS)
    # a cold store of Hypothesis's own for each run, so neither reads what the other cached
    env = {**os.environ, "DRAWS_OUT": str(tmp_path / name),
           "HYPOTHESIS_STORAGE_DIRECTORY": str(tmp_path / f"{name}.hypothesis")}
    env.pop("HYPOTHESIS_SEED", None)
    p = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.seed", "-p", "no:cacheprovider",
                        *extra, str(test)], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    return p.stdout


def test_a_run_prints_its_hypothesis_seed_and_the_seed_replays_the_same_draws(tmp_path):
    first = run(tmp_path, "first")
    seeds = re.findall(r"hypothesis seed: (\d+) \(replay: make test PYTEST_ARGS='--hypothesis-seed=\d+'", first)
    assert len(seeds) == 2 and seeds[0] == seeds[1], first  # in the header and at the end
    run(tmp_path, "again", f"--hypothesis-seed={seeds[0]}")
    drawn, again = ((tmp_path / name).read_text().split() for name in ("first", "again"))
    local = {name: (tmp_path / f"{name}.local").read_text() or "(none)" for name in ("first", "again")}
    assert len(drawn) == 20 and drawn == again, (
        f"seed {seeds[0]}: the replay drew other numbers; the local source Hypothesis took "
        f"constants from, first run: {local['first']}; replay: {local['again']}")
