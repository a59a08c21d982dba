"""How fast `python -m tracing annotate` reads a big real log, in each output
format and all of a trace run's outputs from one read, beside
strace-process-tree on the same file, in one run.

Not a test: a benchmark. The log is real: the C server traced with the lab's
story flags (strace -f -ttt -T -yy) while wrk sends keep-alive requests (a
wait, a read, a write and the EAGAIN read per request, with accepts and
registrations as wrk connects), until the log has --lines lines. It is kept
in traces/bench-annotate/ and reused while it is big enough. Rounds are
interleaved; each tool runs as its own process, timed on the wall clock and
in CPU seconds, with its peak RSS (GNU time).

strace-process-tree (PyPI) only splits each line and builds a process tree;
the annotator parses every call it has not seen, keeps the fd and interest
tables, decides thread roles over the whole log (two passes), and writes its
records. Goals (issue 25), each against strace-process-tree's lines/s: jsonl
>= 0.8, text >= 0.5, trace-event >= 0.5, all of a run's outputs from one read
(annotate --format all) >= 0.4; peak RSS <= 64 MB. Two more rows say what
the parts cost: jsonl with the Python twins only (EPOLL_LAB_PURE_PYTHON=1:
what tracing/_core.c pays), and bench/python_floor.py (the lab's Event,
record and JSON line per line with no annotation: CPython's floor without
copies). --profile prints where the jsonl run's time goes.
Usage: .venv/bin/python bench/annotate_speed.py [--lines 1000000] [--rounds 3] [--profile]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from helpers import ROOT, need, pin

from tests.helpers import count_lines, trace_c_under_wrk

OUT = ROOT / "traces" / "bench-annotate"
PY = ROOT / ".venv" / "bin" / "python"


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def make_log(path: Path, lines: int) -> int:
    """Trace the C server under wrk until the log has `lines` lines."""
    need("strace", "strace"), need("wrk", "wrk")
    return trace_c_under_wrk(path, lines, seconds=600, poll=2, say=say, server_prefix=pin(1), load_prefix=pin(0))


def run(cmd: list[str]) -> tuple[float, int, float, str]:
    """(wall seconds, peak RSS in KiB, CPU seconds, stderr) of one process.

    The peak and the CPU time come from GNU time: a child forked from this
    Python would carry this process's own peak through exec, and wait4()
    would report that.
    """
    timer = need("time", "time")
    with open(OUT / "rss.txt", "w+") as rss:
        t0 = time.perf_counter()
        proc = subprocess.run([timer, "-f", "%M %U %S", "-o", rss.name, *cmd], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - t0
        peak, user, system = rss.read().split()[-3:]
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr[-500:]}")
    return wall, int(peak), float(user) + float(system), proc.stderr


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=1_000_000, help="size of the log to annotate")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--fresh", action="store_true", help="trace a new log even if one is kept")
    ap.add_argument("--profile", action="store_true", help="print where --format jsonl's time goes")
    args = ap.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the traced server and wrk are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not (ROOT / "cdemo/bin/epoll_server").exists():
        sys.exit("build the C server first: make build-c")
    spt = ROOT / ".venv" / "bin" / "strace-process-tree"
    if not spt.exists():
        sys.exit("strace-process-tree is missing: .venv/bin/pip install -e '.[bench]'")
    OUT.mkdir(parents=True, exist_ok=True)
    log = OUT / "c-under-wrk.strace"
    have = count_lines(log) if log.exists() and not args.fresh else 0
    if have < args.lines:
        say(f"tracing the C server under wrk until the log has {args.lines:,} lines ...")
        have = make_log(log, args.lines)
    say(f"log: {log} ({have:,} lines, {log.stat().st_size / 1e6:.0f} MB)")
    core = subprocess.run([str(PY), "-c", "from tracing.read import scan; print(scan.compiled())"],
                          capture_output=True, text=True).stdout.strip() == "True"

    annotate = [str(PY), "-m", "tracing", "annotate", str(log), "--summary", "--format"]
    views = OUT / "views"
    tools = {
        "epoll-lab annotate --format jsonl": [*annotate, "jsonl", "-o", os.devnull],
        "strace-process-tree": [str(spt), str(log)],
        "epoll-lab annotate --format text": [*annotate, "text", "-o", os.devnull],
        "epoll-lab annotate --format trace-event": [*annotate, "trace-event", "-o", os.devnull],
        "epoll-lab annotate --format all (one read)": [*annotate, "all", "-o", str(views)],
        "jsonl, Python twins only": ["env", "EPOLL_LAB_PURE_PYTHON=1", *annotate, "jsonl", "-o", os.devnull],
        # The floor: per line only the lab's Event, record, count and JSON line, no annotation.
        "floor: bench/python_floor.py": [str(PY), str(ROOT / "bench" / "python_floor.py"), str(log)],
    }
    runs: dict[str, list[tuple[float, int, float]]] = {name: [] for name in tools}
    unparsed = None
    for r in range(args.rounds):
        for name, cmd in tools.items():
            say(f"round {r + 1}/{args.rounds}: {name} ...")
            wall, rss, cpu, err = run(cmd)
            runs[name].append((wall, rss, cpu))
            if "not understood" in err:
                unparsed = err.split("records, ")[1].split(" not understood")[0]

    # Wall clock is what a user waits; on a shared machine other work stretches
    # it, so the least CPU time of the rounds is shown too, with its ratio.
    print(f"log: {have:,} lines of real strace output (the C server under wrk)")
    print(f"{'tool':<40} {'wall s (median, min-max)':>24} {'lines/s':>9} {'ratio':>5} "
          f"{'CPU s (min)':>11} {'ratio':>5} {'peak RSS MB':>11}")
    rate, cpu_rate = {}, {}
    rows = []
    ref_wall = have / statistics.median(w for w, _, _ in runs["strace-process-tree"])
    ref_cpu = have / min(c for _, _, c in runs["strace-process-tree"])
    for name, got in runs.items():
        walls = [w for w, _, _ in got]
        med = statistics.median(walls)
        rate[name] = have / med
        cpu_rate[name] = have / min(c for _, _, c in got)
        rss = max(m for _, m, _ in got) / 1024
        print(f"{name:<40} {med:>8.2f} ({min(walls):.2f}-{max(walls):.2f}) {rate[name]:>9,.0f} "
              f"{rate[name] / ref_wall:>5.2f} {have / cpu_rate[name]:>11.2f} {cpu_rate[name] / ref_cpu:>5.2f} "
              f"{rss:>11.1f}")
        rows.append({"tool": name, "seconds": walls, "cpu_seconds": [c for _, _, c in got],
                     "lines_per_s": rate[name], "ratio": rate[name] / ref_wall,
                     "lines_per_cpu_s": cpu_rate[name], "cpu_ratio": cpu_rate[name] / ref_cpu,
                     "peak_rss_mb": rss})
    goals = {"epoll-lab annotate --format jsonl": 0.8, "epoll-lab annotate --format text": 0.5,
             "epoll-lab annotate --format trace-event": 0.5, "epoll-lab annotate --format all (one read)": 0.4}
    by_name = {r["tool"]: r for r in rows}
    print("goals (issue 25), the lower of the wall and CPU ratios:")
    for name, goal in goals.items():
        got = min(by_name[name]["ratio"], by_name[name]["cpu_ratio"])
        print(f"  {name[len('epoll-lab annotate '):]:<28} {got:.2f} (goal >= {goal:.1f}: "
              f"{'met' if got >= goal else 'NOT met'})")
    worst_rss = max(by_name[name]["peak_rss_mb"] for name in goals)
    print(f"  peak RSS, any format          {worst_rss:.1f} MB (goal <= 64 MB: {'met' if worst_rss <= 64 else 'NOT met'})")
    twins = by_name["jsonl, Python twins only"]["cpu_seconds"]
    print(f"the compiled twins (tracing/_core.c): {'built' if core else 'NOT built (make setup builds them)'}; "
          f"jsonl takes {min(twins) / min(by_name['epoll-lab annotate --format jsonl']['cpu_seconds']):.2f}x the CPU "
          "without them")
    print(f"lines it did not understand: {unparsed}")
    (OUT / "results.json").write_text(json.dumps({"lines": have, "rows": rows, "compiled_core": core}, indent=1))
    if args.profile:
        profile(log)
    return 0


def profile(log: Path) -> None:
    """The jsonl run under cProfile: the functions that take the most time of their own."""
    import io
    import pstats
    say("profiling annotate --format jsonl ...")
    prof = OUT / "jsonl.prof"
    got = subprocess.run([str(PY), "-m", "cProfile", "-o", str(prof), "-m", "tracing", "annotate", str(log),
                          "-o", os.devnull, "--format", "jsonl"], capture_output=True, text=True, cwd=ROOT)
    if got.returncode != 0:
        print(f"the profiled run failed: {got.stderr[-500:]}")
        return
    text = io.StringIO()
    pstats.Stats(str(prof), stream=text).sort_stats("tottime").print_stats(12)
    print("where --format jsonl's time goes (cProfile, tottime; the profiler slows Python, not C):")
    print("\n".join(line for line in text.getvalue().splitlines()[text.getvalue().splitlines().index(
        next(line for line in text.getvalue().splitlines() if "ncalls" in line)):] if line.strip()))


if __name__ == "__main__":
    sys.exit(main())
