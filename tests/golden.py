"""Every output of every recorded log, as hashes: what a change that means to keep the
words (a restructure, a faster path) must leave byte-identical.

    .venv/bin/python -m tests.golden          # rewrite tests/fixtures/golden.json
    .venv/bin/python -m tests.golden --check  # say which outputs differ

Rewrite it only when the words are meant to change, and say so in the commit.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sys
import tempfile
from pathlib import Path

from tests.helpers import FIXTURES, LOGS, ROOT
from tracing import cli

GOLDEN = FIXTURES / "golden.json"
FORMATS = ("text", "jsonl", "trace-event")


def outputs(log: Path) -> dict[str, str]:
    """sha256 of each output `annotate` writes for `log` (each format, and each file of --format all), and
    of the timeline drawn from its JSON Lines."""
    rel = str(log.relative_to(ROOT))  # outputs name the log as given: from the checkout's root
    got = {}
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stderr(io.StringIO()), _in(ROOT):
        for fmt in FORMATS:
            out = Path(tmp) / f"out.{fmt}"
            code = cli.main(["annotate", rel, "--format", fmt, "-o", str(out)])
            got[fmt] = f"exit {code}" if code else hashlib.sha256(out.read_bytes()).hexdigest()
        folder = Path(tmp) / "all"  # a trace run's files from one read: the index, the time tables, the summary
        code = cli.main(["annotate", rel, "--format", "all", "-o", str(folder)])
        for f in sorted(folder.glob("*")) if not code else ():
            got[f"all/{f.name}"] = hashlib.sha256(f.read_bytes()).hexdigest()
        if code:
            got["all"] = f"exit {code}"
        page = Path(tmp) / "timeline.html"
        code = cli.main(["timeline", str(Path(tmp) / "out.jsonl"), "-o", str(page), "--title", rel])
        got["timeline"] = f"exit {code}" if code else hashlib.sha256(page.read_bytes()).hexdigest()
    return got


@contextlib.contextmanager
def _in(folder: Path):
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(cwd)


def all_outputs() -> dict[str, dict[str, str]]:
    return {str(log.relative_to(FIXTURES)): outputs(log) for log in LOGS}


def differences(want: dict, got: dict) -> list[str]:
    out = []
    for log in sorted(set(want) | set(got)):
        for fmt in sorted(set(want.get(log, {})) | set(got.get(log, {}))):
            if want.get(log, {}).get(fmt) != got.get(log, {}).get(fmt):
                out.append(f"{log}: {fmt}")
    return out


if __name__ == "__main__":
    now = all_outputs()
    if "--check" in sys.argv:
        diff = differences(json.loads(GOLDEN.read_text()), now)
        print("\n".join(diff) or "identical")
        sys.exit(1 if diff else 0)
    GOLDEN.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN} ({len(now)} logs)")
