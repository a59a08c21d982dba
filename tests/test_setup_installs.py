"""A fresh machine runs every test: `make setup` installs each tool a test
looks for, and a test skipped for a missing tool fails the run instead."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from tests.helpers import ROOT
from tests.netns import TOOLS as NETNS_TOOLS

SETUP = ROOT / "scripts" / "setup.sh"


def looked_for() -> set[str]:
    """The tools the tests ask shutil.which for, and those tests/netns.py needs."""
    text = "".join(p.read_text() for p in (ROOT / "tests").glob("*.py"))
    return set(re.findall(r'shutil\.which\("([\w.-]+)"\)', text)) | set(NETNS_TOOLS)


def installed_by_setup() -> set[str]:
    text = SETUP.read_text()
    return {tool for group in re.findall(r"^\s*tools\+?=\(([^)]*)\)", text, re.M) for tool in group.split()}


def test_setup_installs_every_tool_a_test_looks_for():
    missing = looked_for() - installed_by_setup()
    assert not missing, f"tests look for {sorted(missing)}, which scripts/setup.sh does not install"
    assert {"iptables", "ip", "unshare"} <= installed_by_setup()


@pytest.mark.parametrize("tool", sorted(installed_by_setup()))
def test_every_tool_setup_installs_is_here(tool):
    # make test ran scripts/setup.sh --for-tests first.
    assert shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin"), f"{tool}: run `make setup`"


SKIPS = '''
import pytest

def test_for_a_missing_tool():
    pytest.skip("iptables is missing: cannot build a private network for this test")

def test_for_what_the_machine_does_not_allow():
    pytest.skip("unshare -n -m refused here (Operation not permitted): no private network")
'''


def test_a_skip_for_a_missing_tool_fails_the_run_and_a_machine_limit_stays_a_skip(tmp_path):
    test = tmp_path / "test_skips.py"
    test.write_text(SKIPS)
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "tests.conftest", "-p",
                        "no:cacheprovider", str(test)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 1, p.stdout[-2000:]
    assert re.search(r"FAILED \S+::test_for_a_missing_tool", p.stdout), p.stdout[-2000:]
    assert "missing install step" in p.stdout
    assert re.search(r"SKIPPED \[1\] \S+: unshare -n -m refused here", p.stdout), p.stdout[-2000:]
