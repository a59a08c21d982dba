"""The run's summary as people read it (the Summary itself, and summary.json's
fields, are tracing.understand.records')."""

from __future__ import annotations

from .per_request import figures_text
from .timing import latency_lines, stall_text


def threads_by_role(threads: dict[str, str]) -> str:
    """{"12": "loop", "13": "pool"} -> "loop 12; pool 13"."""
    roles: dict[str, list[str]] = {}
    for tid, role in threads.items():
        roles.setdefault(role, []).append(tid)
    return "; ".join(f"{r} {' '.join(ts)}" for r, ts in sorted(roles.items()))


def summary_text(summary: dict) -> str:
    cats = ", ".join(f"{k} {v}" for k, v in sorted(summary["categories"].items()))
    threads = threads_by_role(summary["threads"])
    top = ", ".join(f"{k} {v}" for k, v in list(summary["syscalls"].items())[:8])
    lines = [
        f"lines traced: {summary['lines']} ({summary['records']} records, "
        f"{summary['unparsed']} not understood)",
        f"threads: {len(summary['threads'])} ({threads})",
        f"categories: {cats}",
        f"busiest syscalls: {top}",
    ]
    if summary.get("load"):
        lines += figures_text(summary["load"])
    lines += time_text(summary)
    return "\n".join(lines)


def time_text(summary: dict) -> list[str]:
    """Where the time went, for the end of a run: each loop thread's longest stalls, the latency
    table's busiest rows (all of it is in summary.json and annotated.log's index)."""
    out = []
    for tid, rows in (summary.get("stalls") or {}).items():
        if rows:
            out.append(f"longest stalls of loop {tid} (outside any wait; raw.strace lines):")
            out += [f"  {stall_text(row)}" for row in rows[:3]]
    if summary.get("stalls_unnamed") and any(not r.get("held_by") for rows in summary["stalls"].values()
                                             for r in rows[:3]):
        out.append(f"  ({summary['stalls_unnamed']})")
    if summary.get("latency"):
        out.append("latency (ms), the busiest by total time:")
        out += [f"  {line}" for line in latency_lines(summary["latency"], 6)]
    return out
