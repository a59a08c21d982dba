"""The run's summary as people read it (the Summary itself, and summary.json's
fields, are tracing.understand.records')."""

from __future__ import annotations


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
    return "\n".join(lines)
