"""CPU time per request: the C epoll server beside nginx, measured in one run.

Not a test: a benchmark. Rounds are interleaved; each runs wrk on CPU 0
against the server pinned to CPU 1 (when there are two), and reads the
server's CPU time from /proc. Prints a table and the ratio C / nginx.
Usage: .venv/bin/python bench/c_vs_nginx.py [--rounds 3] [--seconds 3]
"""

from __future__ import annotations

import argparse
import re
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from helpers import ROOT, cpu_seconds, need, pin, wait_port

from tests.helpers import free_port, stop_server


def start(name: str, port: int, tmp: Path) -> subprocess.Popen:
    if name == "c":
        cmd = [str(ROOT / "cdemo/bin/epoll_server"), "--port", str(port)]
    else:
        conf = tmp / f"nginx-{port}.conf"
        conf.write_text((ROOT / "bench/nginx.conf.in").read_text()
                        .replace("@PORT@", str(port)).replace("@PREFIX@", str(tmp)))
        cmd = [need("nginx", "nginx"), "-c", str(conf), "-p", str(tmp)]
    proc = subprocess.Popen(pin(1) + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc


def one_round(name: str, seconds: int, tmp: Path) -> dict:
    port = free_port()
    proc = start(name, port, tmp)
    try:
        url = f"http://127.0.0.1:{port}/"
        before = cpu_seconds(proc.pid)
        out = subprocess.run(pin(0) + [need("wrk", "wrk"), "-t1", "-c32", f"-d{seconds}s", url],
                             capture_output=True, text=True, check=True).stdout
        cpu = cpu_seconds(proc.pid) - before
    finally:
        stop_server(proc, traced=False, first=signal.SIGTERM)
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return {"rps": rps, "cpu_us": cpu / requests * 1e6}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=3)
    args = ap.parse_args()
    if not (ROOT / "cdemo/bin/epoll_server").exists():
        sys.exit("build the C server first: make build-c")
    results: dict[str, list[dict]] = {"c": [], "nginx": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name in results:
                print(f"round {r + 1}/{args.rounds}: {name} ...", file=sys.stderr, flush=True)
                results[name].append(one_round(name, args.seconds, Path(tmp)))
    print(f"{'server':<8} {'req/s (median)':>15} {'CPU us/req (median)':>20} {'min-max':>14}")
    med = {}
    for name, rows in results.items():
        cpu = [x["cpu_us"] for x in rows]
        med[name] = statistics.median(cpu)
        print(f"{name:<8} {statistics.median(x['rps'] for x in rows):>15.0f} {med[name]:>20.2f} "
              f"{min(cpu):>6.2f}-{max(cpu):<6.2f}")
    print(f"ratio C / nginx CPU per request: {med['c'] / med['nginx']:.2f} (goal <= 0.90)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
