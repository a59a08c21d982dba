"""The corpus: real strace logs of programs nobody here wrote, each with expectations
written by reading the log (tests/fixtures/kinds/NAME/NAME.expect.json; the README
beside them says why each holds). One checker for every key they use:

  loop_tids, pool_tids, other_tids   every record of the thread has that role
  lines: {"N": {...}}                the record of the call that starts at line N:
      thread, category               its role and category
      role                           one of its fds has this role
      ready_fd, ready_role           its ready list holds this fd (with this role)
      note_has, note_lacks           words its note must (not) hold (a string or a list)
      evidence                       lines its `evidence` must name
Every line of the log must be in some record, and no syscall record may have an empty note.
"""

from __future__ import annotations

import json
from pathlib import Path

KINDS = Path(__file__).parent / "fixtures" / "kinds"
CORPUS = sorted(p for p in KINDS.iterdir() if p.is_dir() and (p / f"{p.name}.expect.json").exists())


def log_of(folder: Path) -> Path:
    return folder / f"{folder.name}.strace"


def expectations(folder: Path) -> dict:
    return json.loads((folder / f"{folder.name}.expect.json").read_text())


def _words(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def check(log: Path, records: list[dict], expect: dict) -> list[str]:
    """What in `records` (the annotator's, for `log`) breaks `expect`; empty when all hold."""
    fails = []
    n_lines = sum(1 for _ in open(log, errors="replace"))
    covered = {r[k] for r in records for k in ("line", "resumed_line") if isinstance(r.get(k), int)}
    missing = set(range(1, n_lines + 1)) - covered
    if missing:
        fails.append(f"{len(missing)} of {n_lines} lines have no record (first: {sorted(missing)[:5]})")
    by_line = {r["line"]: r for r in records if r.get("kind") != "started"}
    roles: dict = {}
    for r in records:
        if r.get("tid") is not None and r.get("thread"):
            roles.setdefault(r["tid"], set()).add(r["thread"])
    for key, role in (("loop_tids", "loop"), ("pool_tids", "pool"), ("other_tids", "other")):
        for tid in expect.get(key, []):
            if roles.get(tid) != {role}:
                fails.append(f"thread {tid} should be {role}, is {roles.get(tid)}")
    for ln, want in expect.get("lines", {}).items():
        r = by_line.get(int(ln))
        if r is None:
            fails.append(f"line {ln}: no record")
            continue
        said = f"line {ln} ({r.get('syscall') or r.get('kind')}, {r.get('thread')} {r.get('tid')}): "
        for key in ("thread", "category"):
            if key in want and r.get(key) != want[key]:
                fails.append(f"{said}{key} {r.get(key)!r}, want {want[key]!r}")
        if "role" in want and want["role"] not in {f.get("role") for f in r.get("fds") or []}:
            fails.append(f"{said}no fd with role {want['role']!r} in {r.get('fds')}")
        if "ready_fd" in want:
            ready = {x.get("fd"): x.get("role") for x in r.get("ready") or []}
            if want["ready_fd"] not in ready or ("ready_role" in want and ready[want["ready_fd"]] != want["ready_role"]):
                fails.append(f"{said}ready should hold fd {want['ready_fd']} as {want.get('ready_role', 'any')}, "
                             f"got {r.get('ready')}")
        note = (r.get("note") or "").lower()
        for w in _words(want.get("note_has", [])):
            if w.lower() not in note:
                fails.append(f"{said}note lacks {w!r}: {r.get('note')!r}")
        for w in _words(want.get("note_lacks", [])):
            if w.lower() in note:
                fails.append(f"{said}note wrongly says {w!r}: {r.get('note')!r}")
        if "evidence" in want:
            named = {e.get("line") for e in r.get("evidence") or []}
            gone = [m for m in want["evidence"] if m not in named]
            if gone:
                fails.append(f"{said}evidence should name line(s) {gone}, names {sorted(named)}: {r.get('note')!r}")
    empty = [r["line"] for r in records if r.get("kind") == "syscall" and not (r.get("note") or "").strip()]
    if empty:
        fails.append(f"{len(empty)} syscall records with an empty note (first: line {empty[0]})")
    return fails
