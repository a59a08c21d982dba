"""Runs that need a resolver which never answers, in a private network.

`in_private_net(scenario, *args)` re-runs this module as
`unshare -n -m python -m tests.netns SCENARIO ARGS`: a network namespace with
only lo up, the resolver's address put on lo and port 53 dropped on input by
iptables (so a lookup waits instead of failing), resolv.conf and
nsswitch.conf bind-mounted in a private mount namespace. Nothing can leave
the machine from there. The scenario prints one JSON line; the test reads it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.cserver import Server, get, read_to_eof
from tests.helpers import ROOT, free_port, wait_port

RESOLVER = "10.53.0.53"
TOOLS = ("unshare", "ip", "iptables", "strace")  # scripts/setup.sh installs them (--for-tests)


def in_private_net(scenario: str, *args: str, timeout: float = 90) -> dict:
    """The scenario's JSON result; skips (with the reason) where unshare is refused."""
    for tool in TOOLS:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is missing: cannot build a private network for this test")
    probe = subprocess.run(["unshare", "-n", "-m", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        reason = f"unshare -n -m refused here ({probe.stderr.strip()}): no private network"
        print(reason)
        pytest.skip(reason)
    # Its own session, so a scenario that overruns goes with all it started.
    p = subprocess.Popen(["unshare", "-n", "-m", sys.executable, "-m", "tests.netns", scenario, *args],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        pytest.fail(f"scenario {scenario} overran {timeout} s:\n{out}\n{err[-3000:]}")
    assert p.returncode == 0, f"scenario {scenario} failed:\n{out}\n{err[-3000:]}"
    return json.loads(out.strip().splitlines()[-1])


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def private_resolver(tmp: Path, dns_only: bool) -> None:
    """Inside the namespaces: lo up, a resolver on lo that swallows queries;
    with dns_only even a name /etc/hosts lists goes to it (and waits)."""
    _run("ip", "link", "set", "lo", "up")
    _run("ip", "addr", "add", f"{RESOLVER}/32", "dev", "lo")
    for proto in ("udp", "tcp"):
        # INPUT, not OUTPUT: a drop on output fails sendto at once (EPERM);
        # on input the query goes out and no answer ever comes.
        _run("iptables", "-A", "INPUT", "-p", proto, "--dport", "53", "-j", "DROP")
    (tmp / "resolv.conf").write_text(f"nameserver {RESOLVER}\noptions timeout:30 attempts:1\n")
    _run("mount", "--bind", str(tmp / "resolv.conf"), "/etc/resolv.conf")
    if dns_only:
        (tmp / "nsswitch.conf").write_text("hosts: dns\n")
        _run("mount", "--bind", str(tmp / "nsswitch.conf"), "/etc/nsswitch.conf")


def stalled_lookups(build: str) -> dict:
    """Both pool threads stuck in getaddrinfo, more jobs queued, then SIGTERM."""
    srv = Server("--pool", build=build)
    stuck = [srv.connect() for _ in range(2)]
    for s in stuck:
        s.sendall(get("/dns?host=localhost"))
    time.sleep(0.5)
    for _ in range(3):          # queued behind them, then the client resets
        s = srv.connect()
        s.sendall(get("/dns?host=localhost"))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    queued = [srv.connect() for _ in range(3)]
    for s in queued:            # still queued when the server stops
        s.sendall(get("/file"))
    with srv.connect() as s:    # the loop itself is not blocked
        s.sendall(get("/", b"Connection: close\r\n"))
        root = read_to_eof(s, timeout=5).split(b"\r\n", 1)[0].decode()
    code, err, took = srv.stop(signal.SIGTERM, timeout=30)
    for s in stuck + queued:
        s.close()
    return {"code": code, "took": took, "err": err[-4000:], "root": root}


# Names /etc/hosts does not list as given: each would reach the nameserver if a
# server's guard let it through ("localhost." is an absolute name: getaddrinfo
# skips /etc/hosts for it), so they are asked only here. The reason each
# refusal must give.
NOT_LOCAL = {"example.com": "not in /etc/hosts", "nonexistent.invalid": "not in /etc/hosts",
             "vm.": "valid host name", "localhost.": "valid host name", "LOCALHOST.": "valid host name",
             "LOCALHOST..": "valid host name", ".localhost": "valid host name",
             "-leading.example": "valid host name", "bad_name!": "valid host name"}


def dns_under_strace(server: str) -> dict:
    """Ask /dns for names /etc/hosts does not list, the server (C loop, C pool, C uring or
    sanic) under strace -f."""
    log = Path(tempfile.mkdtemp()) / "net.strace"
    port = free_port()
    cmd = ([sys.executable, "-m", "server"] if server == "sanic" else
           [str(ROOT / "cdemo/bin/uring_server")] if server == "uring" else
           [str(ROOT / "cdemo/bin/epoll_server")] + (["--pool"] if server == "pool" else []))
    argv = ["strace", "-f", "-qq", "-e", "trace=%network,io_uring_enter", "-o", str(log), *cmd,
            "--port", str(port)]
    tracer = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    answers = {}
    try:
        assert wait_port(port, 60), "the server under strace did not listen"
        for host in (*NOT_LOCAL, "localhost"):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(get(f"/dns?host={host}", b"Connection: close\r\n"))
                answers[host] = read_to_eof(s, timeout=45).decode(errors="replace")
    finally:
        # SIGINT to the server, not to strace (which keeps it running here).
        children = Path(f"/proc/{tracer.pid}/task/{tracer.pid}/children").read_text().split()
        for pid in children:
            os.kill(int(pid), signal.SIGINT)
        try:
            tracer.wait(timeout=15)
        except subprocess.TimeoutExpired:
            for pid in [*children, tracer.pid]:
                os.kill(int(pid), signal.SIGKILL)
            tracer.wait()
    lines = log.read_text().splitlines()
    return {"answers": answers, "lines": len(lines),
            "port53": [l for l in lines if "htons(53)" in l],
            "accepts": sum("accept4(" in l for l in lines),
            "enters": sum("io_uring_enter(" in l for l in lines)}


# name: (scenario, does every lookup go to the silent resolver)
SCENARIOS = {"stalled-lookups": (stalled_lookups, True), "dns-under-strace": (dns_under_strace, False)}

if __name__ == "__main__":
    run, dns_only = SCENARIOS[sys.argv[1]]
    with tempfile.TemporaryDirectory() as tmp:
        private_resolver(Path(tmp), dns_only)
        print(json.dumps(run(*sys.argv[2:])))
