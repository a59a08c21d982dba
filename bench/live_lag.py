"""Does live mode keep up with strace under load? A benchmark, not a test.

Runs `python -m tracing live c --recipe load` (the C server under strace,
epoll and accept calls only, --seccomp-bpf) while wrk sends keep-alive
requests for --seconds, then stops it with SIGINT as a person would. Every
chunk of live's output is stamped with the time it arrived here.

Lines strace wrote: the lines of the run's raw.strace (live copies each chunk
it reads from strace's pipe there before parsing it). Lines accounted: the
screen's lines are walked in step with the run's events.jsonl (one record per
call, the same order): a shown line stands for its record, a folded burst
(`… N more like the line above`) for the next N; each record covers one raw
line, or two when strace split the call (unfinished, then resumed). Every
shown line's time must match its record's, or the walk stops there.

Beside each live run, the same strace, server and wrk with strace writing to
a file, nobody reading: strace blocks on a full pipe, so a live mode that
cannot keep up slows the traced server rather than losing lines; the ratio
of requests wrk got answered (live / file) shows that.

Lag: when a record reached the screen (the arrival of its line, or of the
count of the burst it was folded into) minus when strace wrote its line
(the call's end: -ttt start plus -T duration). Goal (issue 18): nothing lost,
p99 lag <= 1 s, and no growth from a 10 s run to a 30 s one; live mode's cost
to the traced server's requests (issue 25) <= 15%.
Usage: .venv/bin/python bench/live_lag.py [--seconds 10 30]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from helpers import ROOT, cpu_seconds, need, wait_port

from tests.helpers import count_lines, free_port, stop_server

sys.path.insert(0, str(ROOT))
from tracing.modes.live import clock  # noqa: E402
from tracing.run.tracers import load_flags  # noqa: E402

OUT = ROOT / "traces" / "bench-live"
PY = ROOT / ".venv" / "bin" / "python"
RESULTS = ROOT / "bench" / "live-results.json"
# A record's line on live's screen: clock (12 wide), role, tid, call, note.
RECORD = re.compile(r"^([ \d:.]{12}) (?:loop |pool |other) ")
FOLDED = re.compile(r"… (\d+) more like the line above")


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def read_stamped(fd: int, into: list[tuple[float, str]]) -> None:
    """Lines of a pipe with the time each arrived (chunks, not lines: cheap)."""
    rest = b""
    while True:
        chunk = os.read(fd, 1 << 16)
        now = time.time()
        if not chunk:
            break
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        into += [(now, line.decode(errors="replace")) for line in lines]
    if rest:
        into.append((time.time(), rest.decode(errors="replace")))


def live_run(seconds: int) -> dict:
    out = OUT / f"{seconds}s"
    port = free_port()
    cmd = [str(PY), "-m", "tracing", "live", "c", "--recipe", "load", "--load-seconds", str(seconds),
           "--port", str(port), "--out", str(out)]
    say(f"live run of {seconds} s: {' '.join(cmd)}")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    shown: list[tuple[float, str]] = []
    errs: list[tuple[float, str]] = []
    readers = [threading.Thread(target=read_stamped, args=(proc.stdout.fileno(), shown)),
               threading.Thread(target=read_stamped, args=(proc.stderr.fileno(), errs))]
    for t in readers:
        t.start()
    try:
        deadline = time.monotonic() + seconds + 120
        while not any("requests under strace" in line or "wrk failed" in line for _, line in errs):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"live ended or hung before wrk finished: {[e for _, e in errs][-5:]}")
            time.sleep(0.2)
        cpu = cpu_seconds(proc.pid)  # live's own CPU time (all its threads) under the load
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for t in readers:
            t.join()
    if proc.returncode != 0:
        raise SystemExit(f"live exited with {proc.returncode}: {[e for _, e in errs][-5:]}")
    # What the screen showed, each line after the time it arrived.
    (out / "screen.txt").write_text("".join(f"{t:.6f} {line}\n" for t, line in shown))
    got = measure(seconds, out, shown)
    got["live_cpu_s"] = round(cpu, 2)
    got["requests"] = max([requests(line) for _, line in errs if "requests under strace" in line] or [0])
    return got


def file_run(seconds: int) -> tuple[int, int]:
    """The reference: the same strace, server and wrk, strace writing to a file
    (nothing reads it meanwhile). Lines it wrote, requests wrk got answered."""
    strace, wrk = need("strace", "strace"), need("wrk", "wrk")
    port = free_port()
    log = OUT / f"{seconds}s-to-a-file.strace"
    say(f"reference run of {seconds} s: strace -o {log}")
    tracer = subprocess.Popen([strace, *load_flags(), "-o", str(log), "--",
                               str(ROOT / "cdemo/bin/epoll_server"), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_port(port)
        done = subprocess.run([wrk, "-t1", "-c16", f"-d{seconds}s", f"http://127.0.0.1:{port}/"],
                              capture_output=True, text=True, check=True)
    finally:
        stop_server(tracer, traced=True)  # SIGINT to the server, then strace ends with it
    return count_lines(log), requests(done.stdout)


def requests(wrk_output: str) -> int:
    m = re.search(r"(\d+) requests", wrk_output)
    return int(m.group(1)) if m else 0


def measure(seconds: int, out: Path, shown: list[tuple[float, str]]) -> dict:
    written = count_lines(out / "raw.strace")
    with open(out / "events.jsonl") as f:
        records = [json.loads(line) for line in f]
    lags: list[float] = []
    accounted, i, problem = 0, 0, None

    def take(rec: dict, arrived: float) -> None:
        nonlocal accounted
        accounted += 2 if rec["resumed_line"] else 1
        if rec["ts"] is not None:
            lags.append(arrived - (rec["ts"] + (rec["duration"] or 0.0)))

    for arrived, line in shown:
        if problem:
            break
        if (m := FOLDED.search(line)) and not RECORD.match(line):
            n = int(m.group(1))
            if i + n > len(records):
                problem = f"a burst of {n} folded past the last record"
                break
            for rec in records[i:i + n]:
                take(rec, arrived)
            i += n
        elif m := RECORD.match(line):
            if i >= len(records):
                problem = f"a line with no record left: {line[:80]!r}"
                break
            rec = records[i]
            if m.group(1).strip() != (clock(rec["ts"]) if rec["ts"] else ""):
                problem = f"screen line {line[:60]!r} is not record {i} (ts {rec['ts']})"
                break
            take(rec, arrived)
            i += 1
    if not problem and i != len(records):
        problem = f"{len(records) - i} records never reached the screen"
    lags.sort()

    def pct(p: float) -> float:
        return round(lags[min(len(lags) - 1, int(p * len(lags)))], 4) if lags else float("nan")

    return {"seconds": seconds, "lines_written": written, "lines_accounted": accounted,
            "lag_p50_s": pct(0.50), "lag_p99_s": pct(0.99), "lag_max_s": round(lags[-1], 4) if lags else None,
            "records": len(records), "problem": problem}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, nargs="+", default=[10, 30], help="wrk run lengths")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not (ROOT / "cdemo/bin/epoll_server").exists():
        sys.exit("build the C server first: make build-c")
    OUT.mkdir(parents=True, exist_ok=True)
    runs = []
    for s in args.seconds:
        run = live_run(s)
        run["lines_to_a_file"], run["requests_to_a_file"] = file_run(s)
        runs.append(run)
    print(f"{'seconds':>7} {'lines written':>14} {'accounted':>10} {'lost':>5} {'lag p50 s':>10} "
          f"{'p99 s':>6} {'max s':>6} {'live CPU s':>10} {'req/s live':>11} {'req/s to a file':>16} {'ratio':>6}")
    for r in runs:
        live_rate, file_rate = r["requests"] / r["seconds"], r["requests_to_a_file"] / r["seconds"]
        print(f"{r['seconds']:>7} {r['lines_written']:>14,} {r['lines_accounted']:>10,} "
              f"{r['lines_written'] - r['lines_accounted']:>5} {r['lag_p50_s']:>10.3f} "
              f"{r['lag_p99_s']:>6.3f} {r['lag_max_s']:>6.3f} {r['live_cpu_s']:>10.1f} {live_rate:>11,.0f} {file_rate:>16,.0f} "
              f"{live_rate / file_rate if file_rate else float('nan'):>6.2f}"
              + (f"  ({r['problem']})" if r["problem"] else ""))
    lost = any(r["lines_written"] != r["lines_accounted"] for r in runs)
    worst = max(r["lag_p99_s"] for r in runs)
    print(f"nothing lost: {'yes' if not lost else 'NO'}; worst p99 lag {worst:.3f} s "
          f"(goal <= 1 s: {'met' if worst <= 1 else 'NOT met'})")
    cost = max(1 - (r["requests"] / r["requests_to_a_file"]) for r in runs if r["requests_to_a_file"])
    print(f"live mode's cost to the server's requests (1 - req/s live / req/s to a file, the worst run): "
          f"{cost:.0%} (goal <= 15%: {'met' if cost <= 0.15 else 'NOT met'})")
    RESULTS.write_text(json.dumps(runs, indent=1) + "\n")
    say(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
