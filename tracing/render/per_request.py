"""The load step's figures per request, once the trace is annotated: traced syscalls (by
thread role and call) and the program's CPU, from the step's own count of completed
requests (tracing.run.load records it in scenario.jsonl)."""

from __future__ import annotations

from .renderer import Renderer

LABEL = "load"  # the load step's section (scenario.jsonl's path)


class Counted(Renderer):
    """A renderer of the load section's calls, by thread role and name (copies included)."""

    def __init__(self) -> None:
        self.calls: dict[tuple[str, str], int] = {}

    def add(self, rec: dict) -> None:
        if rec.get("request") == LABEL and rec["kind"] == "syscall":
            key = (rec["thread"], rec["syscall"])
            self.calls[key] = self.calls.get(key, 0) + 1

    def add_copies(self, rows) -> None:
        for row in rows:
            if row[6] == LABEL:
                rec = row[0].rec
                key = (rec["thread"], rec["syscall"])
                self.calls[key] = self.calls.get(key, 0) + 1


def figures(row: dict, counted: Counted) -> dict:
    """The load step's figures per request: traced syscalls (by thread role and call) and the
    program's CPU, from the step's own count of completed requests."""
    n = row["requests"]
    took = row["end"] - row["start"]
    calls = sum(counted.calls.values())
    by = sorted(counted.calls.items(), key=lambda kv: -kv[1])
    out = {"tool": row["tool"], "connections": row["connections"], "seconds": row["seconds"], "requests": n,
           "took_s": round(took, 3), "req_per_s": round(n / took, 1) if took > 0 else None,
           "errors": row.get("errors", 0), "non_2xx": row.get("non_2xx", 0),
           "syscalls": calls, "syscalls_per_request": round(calls / n, 3),
           "per_request": {f"{role} {name}": float(f"{c / n:.3g}") for (role, name), c in by},
           "caveat": "under strace: each traced call stops the program while strace reads it, so these are "
                     "the traced program's figures, not its speed untraced (make bench measures that)"}
    cpu = row.get("cpu")
    if cpu:
        out["cpu_per_request_us"] = round((cpu["user"] + cpu["system"]) / n * 1e6, 1)
        out["cpu_user_per_request_us"] = round(cpu["user"] / n * 1e6, 1)
        out["cpu_system_per_request_us"] = round(cpu["system"] / n * 1e6, 1)
        out["cpu_of"] = f"process {cpu['of']} (all its threads; not its child processes)"
    return out


def figures_text(f: dict) -> list[str]:
    """The load's figures as the end of a run prints them."""
    top = ", ".join(f"{k} {v:.3g}" for k, v in list(f["per_request"].items())[:6] if v >= 0.001)
    lines = [f"load: {f['requests']:,} requests in {f['took_s']:.1f} s on {f['connections']} connections "
             f"({f['tool']}), {f['req_per_s']:,.0f} req/s under strace"
             + (f"; {f['errors'] + f['non_2xx']:,} failed or not 2xx/3xx" if f["errors"] + f["non_2xx"] else ""),
             f"  per request: {f['syscalls_per_request']:.2f} traced syscalls ({top})"]
    if "cpu_per_request_us" in f:
        lines.append(f"  per request: {f['cpu_per_request_us']:,.0f} µs of CPU (user {f['cpu_user_per_request_us']:,.0f}, "
                     f"system {f['cpu_system_per_request_us']:,.0f}) in {f['cpu_of']}")
    lines.append(f"  ({f['caveat']})")
    return lines
