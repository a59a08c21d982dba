"""make bench: throughput, latency, CPU per request and tracing overhead of
the C servers (epoll, and io_uring as c-uring), nginx, Sanic on uvloop and Sanic on the stdlib loop, aiohttp and
tornado (both on the stdlib loop), each untraced, under the lab's story recipe
(the trace targets' full syscall set), under the load recipe (epoll/accept
only, --seccomp-bpf), under kernel-floor (empty BPF programs on the kernel
tracer's syscall tracepoints: what the tracepoints alone cost) and under
kernel-story (the kernel tracer on the story's syscall set; both left out,
with the reason, where it cannot run), in one run. Then, per server, a short counted run
(`strace -c -f` attached under the same wrk load) for syscalls per request.

Not a test: a benchmark. Rounds are interleaved (every server and condition
once per round). wrk runs on CPU 0, the server (and strace) on CPU 1 when
there are two. CPU time comes from /proc (utime and stime apart): the
server's whole process tree, and strace's own, separately; wrk saturates near
the C server's speed, so CPU per request is the honest figure there.

Writes bench/results.json, bench/results.md and bench/results.png.
Usage: .venv/bin/python bench/bench.py [--rounds 3] [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from helpers import ROOT, cpu_split, need, pin, wait_http

from tests.helpers import free_port, stop_server
from tracing.run.procs import descendants

sys.path.insert(0, str(ROOT))
from tracing.run.tracers.kernel import tracer as kernel, records as kernel_records  # noqa: E402
from tracing.run.recipes import STORY_SYSCALLS  # noqa: E402
from tracing.run.tracers import load_flags, strace_flags  # noqa: E402

SERVERS = ["c", "c-uring", "nginx", "sanic-uvloop", "sanic-asyncio", "aiohttp", "tornado"]
# Each server beside the one it is best compared with: the frameworks beside the Sanic run on the
# same (stdlib) loop, the io_uring C server beside the epoll one (same routes, same code but the loop).
FRAMEWORKS = {"aiohttp": "sanic-asyncio", "tornado": "sanic-asyncio", "sanic-uvloop": "sanic-asyncio",
              "c-uring": "c"}
# kernel-story: the kernel tracer (a BPF program, tracing/bpf) on the story's syscall set, as
# story-recipe's strace; kernel-floor: empty BPF programs on the same tracepoints, its floor.
CONDITIONS = ["untraced", "story-recipe", "load-recipe", "kernel-floor", "kernel-story"]
KERNEL = ("kernel-floor", "kernel-story")
# The issue's goals for kernel-story: what it keeps of untraced req/s, and of the floor's.
KEEP_GOAL = {"c": 0.85, "nginx": 0.85, "sanic-uvloop": 0.95}
FLOOR_GOAL = 0.9
# Not run, and why (said in the table's notes).
NOT_RUN = {("c-uring", "load-recipe"): "the load recipe traces epoll_wait and accept calls, which the "
           "io_uring server does not make (it submits them with io_uring_enter): it would trace nothing"}


def conditions(name: str) -> list[str]:
    return [c for c in CONDITIONS if (name, c) not in NOT_RUN]
PY = ROOT / ".venv" / "bin" / "python"


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def server_cmd(name: str, port: int, tmp: Path) -> list[str]:
    if name == "c":
        return [str(ROOT / "cdemo/bin/epoll_server"), "--port", str(port)]
    if name == "c-uring":
        return [str(ROOT / "cdemo/bin/uring_server"), "--port", str(port)]
    if name == "nginx":
        conf = tmp / f"nginx-{port}.conf"
        conf.write_text((ROOT / "bench/nginx.conf.in").read_text()
                        .replace("@PORT@", str(port)).replace("@PREFIX@", str(tmp)))
        return [need("nginx", "nginx"), "-c", str(conf), "-p", str(tmp)]
    if name in ("aiohttp", "tornado"):
        return [str(PY), str(ROOT / "bench" / f"{name}_server.py"), "--port", str(port)]
    loop = name.split("-", 1)[1]
    return [str(PY), "-m", "server", "--loop", loop, "--port", str(port)]


def tracer(condition: str, out: Path) -> list[str]:
    if condition == "untraced":
        return []
    flags = strace_flags() if condition == "story-recipe" else load_flags()
    return [need("strace", "strace"), *flags, "-o", str(out)]


def parse_wrk(text: str) -> dict:
    def ms(value: str, unit: str) -> float:
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    lat = dict((p, ms(v, u)) for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", text, re.M))
    return {"requests": int(re.search(r"(\d+) requests in", text).group(1)),
            "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),
            "p50_ms": lat.get("50"), "p99_ms": lat.get("99"),
            "errors": int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", text)) else 0}


def run_wrk(port: int, seconds: int) -> dict:
    return parse_wrk(subprocess.run(pin(0) + [need("wrk", "wrk"), "-t1", "-c32", f"-d{seconds}s", "--latency",
                                              f"http://127.0.0.1:{port}/"], capture_output=True, text=True,
                                    check=True).stdout)


def one(name: str, condition: str, seconds: int, tmp: Path) -> dict:
    if condition == "kernel-story":
        return one_kernel(name, seconds, tmp)
    if condition == "kernel-floor":
        return one_floor(name, seconds, tmp)
    port = free_port()
    log = tmp / f"{name}-{condition}.strace"
    top = subprocess.Popen(pin(1) + tracer(condition, log) + server_cmd(name, port, tmp), cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    traced = condition != "untraced"
    try:
        wait_http(port)
        server = descendants(top.pid) if traced else [top.pid, *descendants(top.pid)]

        def cpu() -> tuple[tuple[float, float], tuple[float, float]]:
            procs = descendants(top.pid) if traced else [top.pid, *descendants(top.pid)]
            own = [_cpu(p) for p in procs]
            return (sum(u for u, _ in own), sum(k for _, k in own)), (_cpu(top.pid) if traced else (0.0, 0.0))

        s0, t0 = cpu()
        got = run_wrk(port, seconds)
        s1, t1 = cpu()
    finally:
        _stop(top, traced)
        log.unlink(missing_ok=True)
    return per_request(got, s0, s1, t0, t1, len(server))


def one_kernel(name: str, seconds: int, tmp: Path) -> dict:
    """The server under the kernel tracer, both pinned to CPU 1 as strace and its server are.
    The BPF programs run in the server's own syscalls, so their cost is in the server's CPU;
    the loader's (copying the ring to the records file) is the tracer's, from the start of
    the load to its exit (it takes what is left in the ring when stopped)."""
    port = free_port()
    out = tmp / f"{name}-kernel"
    traced = kernel.launch(kernel.preflight(), server_cmd(name, port, tmp), out,
                           STORY_SYSCALLS.split(","), log=tmp / f"{name}-kernel.log", pin=pin(1))
    try:
        wait_http(port)
        server = traced.server.pid

        def cpu() -> tuple[tuple[float, float], tuple[float, float]]:
            own = [_cpu(p) for p in (server, *descendants(server))]
            return (sum(u for u, _ in own), sum(k for _, k in own)), (_run_time(traced.loader.pid), 0.0)

        s0, t0 = cpu()
        got = run_wrk(port, seconds)
        s1, t1 = cpu()
        t1 = (_run_time_until_exit(traced.loader, t1[0]), 0.0)
        stats = kernel_records.stats(traced.records) or {}
    finally:
        traced.stop(port)
        shutil.rmtree(out, ignore_errors=True)
    calls = stats.get("records", 0)
    return {**per_request(got, s0, s1, t0, t1, 1 + len(descendants(server))),
            "kernel_calls": calls, "kernel_dropped": stats.get("lost"),
            "tracer_us_per_call": (t1[0] - t0[0]) * 1e6 / calls if calls else None}


def one_floor(name: str, seconds: int, tmp: Path) -> dict:
    """The untraced server with empty BPF programs on the kernel tracer's tracepoints
    (raw_syscalls sys_enter and sys_exit): every syscall on the machine runs them."""
    port = free_port()
    top = subprocess.Popen(pin(1) + server_cmd(name, port, tmp), cwd=ROOT, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    ready_r, ready_w = os.pipe()
    floor = subprocess.Popen([kernel.preflight(), "--floor", "--ready-fd", str(ready_w)], pass_fds=(ready_w,),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    os.close(ready_w)
    try:
        if os.read(ready_r, 1) != b"1":
            raise RuntimeError(f"the floor's programs did not attach: {floor.communicate()[1].decode()}")
        wait_http(port)
        pids = [top.pid, *descendants(top.pid)]
        s0 = [sum(x) for x in zip(*(_cpu(p) for p in pids))]
        got = run_wrk(port, seconds)
        s1 = [sum(x) for x in zip(*(_cpu(p) for p in pids))]
    finally:
        os.close(ready_r)
        kernel.stop_loader(floor)
        _stop(top, False)
    return per_request(got, s0, s1, (0.0, 0.0), (0.0, 0.0), len(pids))


# Per call, on CPU time (steady on a shared machine, unlike req/s): dd makes 1M reads and
# 1M writes of 64 bytes; its user+system time per syscall untraced, under the floor, and
# under the kernel tracer following it (read and write in the story, as every server's are).
DD = ["dd", "if=/dev/zero", "of=/dev/null", "bs=64", "count=1000000"]
DD_CALLS = 2_000_000


def per_call(reps: int = 3) -> dict:
    """ns of CPU per syscall of a syscall-bound program: untraced, kernel-floor, kernel-story
    (the least of `reps` runs each), and the loader's CPU per record it wrote."""
    loader = kernel.preflight()
    got: dict = {}
    for cond in ("untraced", "kernel-floor", "kernel-story"):
        runs = [_dd_under(loader, cond) for _ in range(reps)]
        best = min(runs, key=lambda r: r[0])
        got[cond] = {"ns_per_syscall": best[0] * 1e9 / DD_CALLS,
                     "loader_ns_per_record": best[1] * 1e9 / best[2] if best[2] else None,
                     "records": best[2], "lost": best[3]}
    return got


def _dd_under(loader: str, cond: str) -> tuple[float, float, int, int | None]:
    """(dd's CPU s, the loader's CPU s, records, lost): dd on CPU 1, the loader beside it."""
    gate_r, gate_w = os.pipe()
    dd = subprocess.Popen(pin(1) + ["/bin/sh", "-c", kernel.GATE, "sh", *DD], stdin=gate_r,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(gate_r)
    ready_r, ready_w = os.pipe()
    tmp = Path(tempfile.mkdtemp(dir=scratch_dir()))
    argv = ([loader, "--floor"] if cond == "kernel-floor" else
            [loader, "--out", str(tmp / "dd.records"), "--exec", str(dd.pid), "--syscalls", "0,1"])
    tracer = None if cond == "untraced" else subprocess.Popen(
        pin(1) + [*argv, "--ready-fd", str(ready_w)], pass_fds=(ready_w,), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    os.close(ready_w)
    try:
        if tracer is not None and os.read(ready_r, 1) != b"1":
            raise RuntimeError(f"the kernel tracer did not attach ({cond})")
        os.write(gate_w, b"go\n")
        _, _, used = os.wait4(dd.pid, 0)
        dd.returncode = 0
        loader_cpu = 0.0
        if tracer is not None:
            tracer.send_signal(signal.SIGINT)
            _, _, tru = os.wait4(tracer.pid, 0)
            tracer.returncode = 0
            loader_cpu = tru.ru_utime + tru.ru_stime
        stats = kernel_records.stats(tmp / "dd.records") or {}
    finally:
        os.close(ready_r)
        os.close(gate_w)
        for p in (dd, tracer):
            if p is not None and p.returncode is None:
                p.kill()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    # (the loader's CPU includes loading and verifying the programs, a few ms)
    return used.ru_utime + used.ru_stime, loader_cpu, stats.get("records", 0), stats.get("lost")


def _run_time(pid: int) -> float:
    """Seconds a process (one thread: the loader) has run, to the nanosecond (/proc/PID/schedstat)."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


def _run_time_until_exit(proc: subprocess.Popen, last: float) -> float:
    """SIGINT the loader (it drains the ring and exits); its run time at the end, read
    while it is a zombie, before it is reaped."""
    proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        last = _run_time(proc.pid) or last
        try:
            state = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            break
        if state in ("Z", "X"):
            break
        time.sleep(0.01)
    return last


def per_request(got: dict, s0, s1, t0, t1, pids: int) -> dict:
    """wrk's figures with the server's and the tracer's CPU (user, system) per request."""
    per = 1e6 / max(got["requests"], 1)
    user, sys_, t_user, t_sys = ((s1[0] - s0[0]) * per, (s1[1] - s0[1]) * per,
                                 (t1[0] - t0[0]) * per, (t1[1] - t0[1]) * per)
    return {**got, "cpu_us_per_req": user + sys_, "user_us_per_req": user, "sys_us_per_req": sys_,
            "tracer_cpu_us_per_req": t_user + t_sys, "tracer_user_us_per_req": t_user,
            "tracer_sys_us_per_req": t_sys, "server_pids": pids}


def _cpu(pid: int) -> tuple[float, float]:
    try:
        return cpu_split(pid)
    except OSError:
        return 0.0, 0.0


def parse_strace_counts(text: str):
    """(syscall, calls, errors) from the table `strace -c` writes; the total line left out."""
    for line in text.splitlines():
        f = line.split()
        if len(f) in (5, 6) and f[0][0].isdigit() and f[-1] != "total":
            yield f[-1], int(f[3]), int(f[4]) if len(f) == 6 else 0


def count_syscalls(name: str, seconds: int, tmp: Path) -> dict:
    """Syscalls per request: `strace -c -f` attached to the running server (after its
    start-up) while wrk loads it as in the other runs. strace slows the server, so the
    loop batches more events per wait than untraced; reads, writes and accepts per
    request do not depend on that."""
    port = free_port()
    top = subprocess.Popen(pin(1) + server_cmd(name, port, tmp), cwd=ROOT, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    out = tmp / f"{name}.count"
    tracer_proc = None
    try:
        wait_http(port)
        pids = [top.pid, *descendants(top.pid)]
        tracer_proc = subprocess.Popen(pin(1) + [need("strace", "strace"), "-c", "-f", "-o", str(out),
                                                 *[a for p in pids for a in ("-p", str(p))]],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        attached = 0
        while attached < len(pids):  # "Process N attached" once per thread
            line = tracer_proc.stderr.readline()
            if not line:
                raise RuntimeError(f"strace -c could not attach to {name}")
            attached += " attached" in line
        got = run_wrk(port, seconds)
        tracer_proc.send_signal(signal.SIGINT)  # detach and write the table
        tracer_proc.communicate(timeout=15)
    finally:
        if tracer_proc and tracer_proc.poll() is None:
            tracer_proc.kill()
            tracer_proc.wait()
        _stop(top, False)
    calls = {sc: n for sc, n, _ in parse_strace_counts(out.read_text())}
    n = max(got["requests"], 1)
    return {"requests": got["requests"], "rps": got["rps"], "calls": calls,
            "per_req": {sc: c / n for sc, c in sorted(calls.items(), key=lambda kv: -kv[1])},
            "syscalls_per_req": sum(calls.values()) / n}


def _stop(top: subprocess.Popen, traced: bool) -> None:
    """SIGINT the server (under strace: strace's child), then make sure, by PID."""
    stop_server(top, traced)


def summarize(runs: dict, counted: dict) -> list[dict]:
    rows = []
    for name in SERVERS:
        base = statistics.median(r["rps"] for r in runs[(name, "untraced")])
        for cond in conditions(name):
            got = runs[(name, cond)]
            med = lambda k: statistics.median(r[k] for r in got if r[k] is not None)  # noqa: E731
            rows.append({"server": name, "condition": cond, "rps": med("rps"), "p50_ms": med("p50_ms"),
                         "p99_ms": med("p99_ms"), "cpu_us_per_req": med("cpu_us_per_req"),
                         "user_us_per_req": med("user_us_per_req"), "sys_us_per_req": med("sys_us_per_req"),
                         "tracer_cpu_us_per_req": med("tracer_cpu_us_per_req"),
                         "ratio_vs_untraced": med("rps") / base, "runs": got})
            if cond == "untraced":  # the counted run belongs to the server, shown once
                rows[-1].update(syscalls_per_req=counted[name]["syscalls_per_req"],
                                syscalls_by_name=counted[name]["per_req"])
    return rows


def span(row: dict, key: str) -> tuple[float, float]:
    vals = [r[key] for r in row["runs"] if r[key] is not None]
    return min(vals), max(vals)


def spread(row: dict, key: str, fmt: str) -> str:
    lo, hi = span(row, key)
    return f"{format(row[key], fmt)} ({format(lo, fmt)}–{format(hi, fmt)})"


def present(rows: list[dict]) -> list[str]:
    """SERVERS that rows hold (a results.json from before a server was added lacks it)."""
    return [s for s in SERVERS if any(r["server"] == s for r in rows)]


def markdown(rows: list[dict], machine: dict, per_call: dict | None = None) -> str:
    lines = [f"# make bench: {machine['cpus']} CPUs, {machine['rounds']} rounds of {machine['seconds']} s, "
             f"wrk -t1 -c32 on CPU 0, server on CPU 1", "",
             "Medians, with min–max over the rounds. CPU µs/req is the server's own, split into user "
             "and system time (/proc utime, stime); the tracer's is beside it. syscalls/req: a separate "
             "run of each server with `strace -c -f` attached under the same load. ratio = traced "
             "req/s ÷ untraced req/s of the same server.", "",
             "| server | condition | req/s | p50 ms | p99 ms | CPU µs/req | user µs/req | sys µs/req "
             "| tracer µs/req | syscalls/req | ratio |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        calls = f"{r['syscalls_per_req']:.2f}" if "syscalls_per_req" in r else ""
        lines.append(f"| {r['server']} | {r['condition']} | {spread(r, 'rps', '.0f')} | {r['p50_ms']:.2f} | "
                     f"{r['p99_ms']:.2f} | {spread(r, 'cpu_us_per_req', '.1f')} | {r['user_us_per_req']:.1f} | "
                     f"{r['sys_us_per_req']:.1f} | {r['tracer_cpu_us_per_req']:.1f} | {calls} | "
                     f"{r['ratio_vs_untraced']:.2f} |")
    c = {(r["server"], r["condition"]): r for r in rows}
    servers = present(rows)
    lines += [f"\nNot run: {name} {cond}: {why}." for (name, cond), why in NOT_RUN.items() if name in servers]
    lines += ["", *kernel_table(c, per_call)]
    if all((n, "untraced") in c for n in ("c", "nginx", "sanic-uvloop", "sanic-asyncio")):
        cpu = lambda name: c[(name, "untraced")]["cpu_us_per_req"]  # noqa: E731
        uring = (f"C io_uring / C epoll CPU per request (untraced): {cpu('c-uring') / cpu('c'):.2f}; "
                 f"C io_uring / nginx: {cpu('c-uring') / cpu('nginx'):.2f}; "
                 if "c-uring" in servers else "")
        lines += ["", f"C server / nginx CPU per request (untraced): "
                  f"{c[('c', 'untraced')]['cpu_us_per_req'] / c[('nginx', 'untraced')]['cpu_us_per_req']:.2f}; {uring}"
                  f"Sanic uvloop / stdlib req/s: "
                  f"{c[('sanic-uvloop', 'untraced')]['rps'] / c[('sanic-asyncio', 'untraced')]['rps']:.2f}; "
                  f"Sanic stdlib / uvloop CPU per request (steadier on a shared machine): "
                  f"{c[('sanic-asyncio', 'untraced')]['cpu_us_per_req'] / c[('sanic-uvloop', 'untraced')]['cpu_us_per_req']:.2f}"]
    lines += ["", "## Where each server's time goes (untraced)", "",
              "| server | CPU µs/req | user | system | syscalls/req | system µs per syscall | "
              "syscalls per request (strace -c) |", "|---|---|---|---|---|---|---|"]
    for name in servers:
        r = c[(name, "untraced")]
        top = ", ".join(f"{sc} {n:.2f}" for sc, n in r["syscalls_by_name"].items() if n >= 0.01)
        lines.append(f"| {name} | {r['cpu_us_per_req']:.1f} | {r['user_us_per_req']:.1f} "
                     f"({r['user_us_per_req'] / r['cpu_us_per_req']:.0%}) | {r['sys_us_per_req']:.1f} | "
                     f"{r['syscalls_per_req']:.2f} | {r['sys_us_per_req'] / r['syscalls_per_req']:.2f} | {top} |")
    lines += ["", *where_time_goes(c)]
    return "\n".join(lines) + "\n"


def kernel_table(c: dict, calls: dict | None) -> list[str]:
    """kernel-story beside its floor and beside strace: what each keeps of the untraced
    req/s (same run), the tracer's own CPU per call, and the calls it dropped."""
    out = ["## The kernel tracer", "",
           "kernel-story: BPF programs on raw_syscalls sys_enter/sys_exit write each story call into a "
           "ring buffer; the loader copies it to a file. kernel-floor: empty BPF programs on the same "
           "tracepoints. keeps: traced req/s ÷ untraced req/s, same run; the issue's goals: ≥0.85 (C, "
           "nginx), ≥0.95 (Sanic on uvloop), ≥0.9 of the floor, 0 dropped. CPU-bound keeps: what keeps "
           "would be if the server's core were the limit (untraced CPU/req ÷ kernel-story CPU/req with "
           "the loader's, both on that core): steadier than req/s where other jobs share the machine. "
           "loader µs/call: the loader's CPU from the load's start to its exit (ring drained) per record.",
           "", "| server | floor keeps | kernel-story keeps | keeps goal | ÷ floor (≥0.9) | CPU-bound keeps "
           "| strace keeps | loader µs/call | server +µs/req | calls traced | calls dropped |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in SERVERS:
        u, f, k, s = (c.get((name, cond)) for cond in ("untraced", "kernel-floor", "kernel-story",
                                                        "story-recipe"))
        if u is None or k is None:
            continue
        keep = k["ratio_vs_untraced"]
        goal = KEEP_GOAL.get(name)
        vs_floor = keep / f["ratio_vs_untraced"] if f else None
        dropped = [r.get("kernel_dropped") for r in k["runs"]]
        lost = sum(d for d in dropped if d is not None)
        per_call = [r["tracer_us_per_call"] for r in k["runs"] if r.get("tracer_us_per_call") is not None]
        bound = u["cpu_us_per_req"] / (k["cpu_us_per_req"] + k["tracer_cpu_us_per_req"])
        out.append(" | ".join([
            f"| {name}", f"{f['ratio_vs_untraced']:.2f}" if f else "", f"{keep:.2f}",
            f"≥{goal:.2f} {'met' if keep >= goal else 'MISSED'}" if goal else "",
            f"{vs_floor:.2f} {'met' if vs_floor >= FLOOR_GOAL else 'MISSED'}" if vs_floor is not None else "",
            f"{bound:.2f}", f"{s['ratio_vs_untraced']:.2f}" if s else "",
            f"{statistics.median(per_call):.2f}" if per_call else "?",
            f"{k['cpu_us_per_req'] - u['cpu_us_per_req']:+.1f}",
            f"{sum(r.get('kernel_calls', 0) for r in k['runs']):,}",
            f"{lost:,}" + (" (a round without the loader's count)" if None in dropped else "") + " |"]))
    if calls:
        u, f, k = (calls[x] for x in ("untraced", "kernel-floor", "kernel-story"))
        out += ["", "Per call, on CPU time (a syscall-bound program: dd making 1M reads and 1M writes of "
                "64 bytes on CPU 1, the least of three runs; read and write are in the story, as for "
                "every server):", "",
                "| condition | ns per syscall | ÷ untraced | loader ns per record | records | lost |",
                "|---|---|---|---|---|---|",
                f"| untraced | {u['ns_per_syscall']:.0f} | 1.00 | | | |",
                f"| kernel-floor | {f['ns_per_syscall']:.0f} | {f['ns_per_syscall'] / u['ns_per_syscall']:.2f} | | | |",
                f"| kernel-story | {k['ns_per_syscall']:.0f} | {k['ns_per_syscall'] / u['ns_per_syscall']:.2f} | "
                f"{k['loader_ns_per_record'] or 0:.0f} | {k['records']:,} | {k['lost']} |", "",
                f"The tracer's cost per traced call: {k['ns_per_syscall'] - u['ns_per_syscall']:.0f} ns in the "
                f"program's own syscall (of which the floor's tracepoints {f['ns_per_syscall'] - u['ns_per_syscall']:.0f}) "
                f"and {k['loader_ns_per_record'] or 0:.0f} ns in the loader: "
                f"{(k['ns_per_syscall'] - u['ns_per_syscall'] + (k['loader_ns_per_record'] or 0)) / 1000:.2f} µs "
                "(bpftrace's map: ~7 µs of tracer CPU per call); a syscall-bound program keeps "
                f"{u['ns_per_syscall'] / (k['ns_per_syscall'] + (k['loader_ns_per_record'] or 0)):.2f} of its speed, "
                f"{f['ns_per_syscall'] / (k['ns_per_syscall'] + (k['loader_ns_per_record'] or 0)):.2f} of the floor's."]
    return out


def where_time_goes(c: dict) -> list[str]:
    """Sentences from the numbers: each framework beside Sanic on the same loop."""
    out = []
    for name, ref in FRAMEWORKS.items():
        if (name, "untraced") not in c or (ref, "untraced") not in c:
            continue
        a, b = c[(name, "untraced")], c[(ref, "untraced")]
        du, ds = a["user_us_per_req"] - b["user_us_per_req"], a["sys_us_per_req"] - b["sys_us_per_req"]
        lo_a, hi_a = span(a, "cpu_us_per_req")
        lo_b, hi_b = span(b, "cpu_us_per_req")
        if lo_a <= hi_b and lo_b <= hi_a:
            verdict = "The CPU per request is the same within the rounds' spread."
        else:
            verdict = "The difference is mostly " + (
                "user time, the process's own code (loop, HTTP parsing, framework), not the kernel."
                if abs(du) >= abs(ds) else "system time, in the kernel.")
        out.append(f"- {name} vs {ref}: {a['syscalls_per_req']:.2f} vs {b['syscalls_per_req']:.2f} syscalls "
                   f"per request; {a['cpu_us_per_req']:.1f} vs {b['cpu_us_per_req']:.1f} µs CPU per request "
                   f"(medians apart: user {du:+.1f}, system {ds:+.1f}). {verdict}")
    return out


COND_COLORS = {"untraced": "#4c72b0", "story-recipe": "#dd8452", "load-recipe": "#55a868",
               "kernel-floor": "#bbbbbb", "kernel-story": "#8172b3"}


def series(rows: list[dict]) -> tuple[list[str], list[str], dict]:
    """What the plot draws, from whatever rows exist: the servers and conditions present
    (the lab's order first, any other after), and per (server, condition) the median and
    each round's value of CPU per request and of the throughput ratio to untraced."""
    servers = [s for s in SERVERS if any(r["server"] == s for r in rows)]
    servers += sorted({r["server"] for r in rows} - set(servers))
    conds = [c for c in CONDITIONS if any(r["condition"] == c for r in rows)]
    conds += sorted({r["condition"] for r in rows} - set(conds))
    base = {r["server"]: r["rps"] for r in rows if r["condition"] == "untraced" and r.get("rps")}
    got = {}
    for r in rows:
        runs = r.get("runs") or [r]
        one = base.get(r["server"])
        got[(r["server"], r["condition"])] = {
            "cpu": r.get("cpu_us_per_req"), "cpu_rounds": [x.get("cpu_us_per_req") for x in runs],
            "ratio": r.get("ratio_vs_untraced"),
            "ratio_rounds": [x["rps"] / one for x in runs if one and x.get("rps") is not None],
        }
    return servers, conds, got


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    servers, conds, got = series(rows)
    fig, (a, b, w) = plt.subplots(1, 3, figsize=(18, 4.8))
    width = 0.8 / max(1, len(conds))
    palette = ["#937860", "#da8bc3", "#8c8c8c", "#ccb974"]
    # Bars: the median round; dots: every round, so the spread shows as what it is (a ratio
    # above 1 in one round is noise between rounds, not tracing making a server faster).
    for i, cond in enumerate(conds):
        color = COND_COLORS.get(cond) or palette[i % len(palette)]
        at = [j + (i - (len(conds) - 1) / 2) * width for j in range(len(servers))]
        cells = [got.get((s, cond)) for s in servers]
        a.bar(at, [c["cpu"] if c and c["cpu"] is not None else float("nan") for c in cells], width,
              label=cond, color=color)
        for x, c in zip(at, cells):
            vals = [v for v in (c or {}).get("cpu_rounds", []) if v is not None]
            a.plot([x] * len(vals), vals, "o", color="#222", ms=3)
        if cond != "untraced":
            b.bar(at, [c["ratio"] if c and c["ratio"] is not None else float("nan") for c in cells], width,
                  label=cond, color=color)
            for x, c in zip(at, cells):
                vals = (c or {}).get("ratio_rounds", [])
                b.plot([x] * len(vals), vals, "o", color="#222", ms=3)
    idle = [(j, got[(s, "untraced")]) for j, s in enumerate(servers) if (s, "untraced") in got]
    rows_idle = {r["server"]: r for r in rows if r["condition"] == "untraced"}
    user = [rows_idle[servers[j]]["user_us_per_req"] for j, _ in idle]
    w.bar([j for j, _ in idle], user, 0.6, label="user (in the process)", color="#4c72b0")
    w.bar([j for j, _ in idle], [rows_idle[servers[j]]["sys_us_per_req"] for j, _ in idle], 0.6, bottom=user,
          label="system (in the kernel)", color="#a6bddb")
    for j, _ in idle:
        r = rows_idle[servers[j]]
        w.annotate(f"{r['user_us_per_req'] / r['cpu_us_per_req']:.0%} user\n{r['syscalls_per_req']:.1f} syscalls",
                   (j, r["cpu_us_per_req"]), ha="center", va="bottom", fontsize=8)
    w.set_ylabel("server CPU µs per request, untraced")
    w.set_title("where the time goes: user vs system (label: per request)")
    w.set_ylim(0, max(rows_idle[servers[j]]["cpu_us_per_req"] for j, _ in idle) * 1.25)
    for ax in (a, b, w):
        ax.set_xticks(range(len(servers)), servers, rotation=20)
        ax.legend(fontsize=8)
    a.set_ylabel("server CPU µs per request (lower is better)")
    a.set_title("CPU per request (bar: median round; dots: each round)")
    b.set_ylabel("traced req/s ÷ untraced median req/s")
    b.set_title("what tracing keeps of the throughput (dots: each round)")
    b.axhline(1.0, color="grey", lw=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def scratch_dir() -> str | None:
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "bench")
    ap.add_argument("--replot", action="store_true",
                    help="rewrite results.md and results.png from results.json")
    ap.add_argument("--servers", help=f"a comma-separated subset of {','.join(SERVERS)} (a short run; "
                    "its results go to --out, so give another folder than bench/)")
    ap.add_argument("--conditions", help=f"a comma-separated subset of {','.join(CONDITIONS)} "
                    "(untraced is always run: the ratios are against it)")
    args = ap.parse_args()
    for opt, full in (("servers", SERVERS), ("conditions", CONDITIONS)):
        if getattr(args, opt):
            wanted = getattr(args, opt).split(",")
            if bad := [w for w in wanted if w not in full]:
                ap.error(f"--{opt}: unknown {', '.join(bad)}")
            full[:] = [x for x in full if x in wanted or x == "untraced"]
    if args.replot:
        got = json.loads((args.out / "results.json").read_text())
        (args.out / "results.md").write_text(markdown(got["rows"], got["machine"], got.get("per_call")))
        plot(got["rows"], args.out / "results.png")
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not all((ROOT / "cdemo/bin" / f"{n}_server").exists() for n in ("epoll", "uring")):
        sys.exit("build the C servers first: make build-c")
    need("wrk", "wrk"), need("nginx", "nginx"), need("strace", "strace")
    try:
        kernel.preflight()
    except kernel.KernelError as e:
        say(f"[bench] kernel-floor and kernel-story left out: {e}")
        CONDITIONS[:] = [c for c in CONDITIONS if c not in KERNEL]
    runs: dict = {(s, c): [] for s in SERVERS for c in conditions(s)}
    total, done = len(runs) * args.rounds, 0
    # The runs' traces go to a tmpfs where there is one: this VM's disk page cache costs the
    # kernel tracer's loader ~0.4 µs per record (tmpfs: ~0.1); every condition writes there.
    with tempfile.TemporaryDirectory(dir=scratch_dir()) as tmp:
        for r in range(args.rounds):
            for name in SERVERS:
                for cond in conditions(name):
                    done += 1
                    say(f"[bench] {done}/{total} round {r + 1}: {name} {cond} ...")
                    got = one(name, cond, args.seconds, Path(tmp))
                    runs[(name, cond)].append(got)
                    say(f"[bench]     {got['rps']:.0f} req/s, {got['cpu_us_per_req']:.1f} µs CPU/req"
                        + (f" (+{got['tracer_cpu_us_per_req']:.1f} tracer)" if cond != "untraced" else "")
                        + (f", {got['kernel_calls']:,} calls traced, {got['kernel_dropped']} dropped"
                           if cond == "kernel-story" else ""))
        counted = {}
        for name in SERVERS:
            say(f"[bench] syscalls per request: {name} under strace -c ...")
            counted[name] = count_syscalls(name, args.seconds, Path(tmp))
            say(f"[bench]     {counted[name]['syscalls_per_req']:.2f} syscalls/req over "
                f"{counted[name]['requests']} requests")
    calls = None
    if "kernel-story" in CONDITIONS:
        say("[bench] the kernel tracer per call: dd's 2M syscalls untraced, under the floor, traced ...")
        calls = per_call()
        say("[bench]     " + ", ".join(f"{c} {v['ns_per_syscall']:.0f} ns" for c, v in calls.items()))
    rows = summarize(runs, counted)
    machine = {"cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
               "rounds": args.rounds, "seconds": args.seconds, "date": time.strftime("%Y-%m-%d")}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"machine": machine, "rows": rows, "per_call": calls},
                                                      indent=1) + "\n")
    md = markdown(rows, machine, calls)
    (args.out / "results.md").write_text(md)
    plot(rows, args.out / "results.png")
    print(md, end="")
    say(f"[bench] wrote {args.out / 'results.json'}, results.md, results.png")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit("[bench] interrupted; the servers it started were stopped")
    except (RuntimeError, subprocess.SubprocessError, OSError) as e:
        sys.exit(f"[bench] stopped: {e}")
