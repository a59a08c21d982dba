"""Hypothesis draws from one seed per run, named in the header and at the end, so a failure
can be replayed (--hypothesis-seed=N); the example counts stay the tests' own.

A plugin of its own, importing nothing of the lab: Hypothesis also draws constants found in
the local modules a process has loaded, so test_hypothesis_seed runs this plugin alone and
its draws depend on the seed only."""

from __future__ import annotations

import os
import random

import pytest

HYPOTHESIS_SEED = pytest.StashKey[object]()


def pytest_configure(config):
    from hypothesis import core

    seed = config.getoption("--hypothesis-seed", None)
    if seed is None:
        seed = int(os.environ.get("HYPOTHESIS_SEED") or random.SystemRandom().randrange(2 ** 32))
        core.global_force_seed = seed
    config.stash[HYPOTHESIS_SEED] = seed


def _replay(config) -> str:
    seed = config.stash[HYPOTHESIS_SEED]
    return (f"hypothesis seed: {seed} (replay: make test PYTEST_ARGS='--hypothesis-seed={seed}', "
            f"or HYPOTHESIS_SEED={seed})")


def pytest_report_header(config):
    return _replay(config)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    terminalreporter.write_line(_replay(config))
