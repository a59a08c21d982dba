"""The C servers' sanitizer builds, started by hand for tests that speak raw HTTP.

Two servers with the same routes and rules: `epoll` (readiness, with an
optional thread pool) and `uring` (completions through io_uring). ASan
(+UBSan, LeakSanitizer at exit) for the loops, TSan for the epoll loop beside
its pool threads (and for the uring one, which must have none). A test ends
with `stop_clean()`: exit 0, no sanitizer report.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import time

from tests.helpers import ROOT, free_port, wait_for
from tracing.run.procs import port_answers

KINDS = ["epoll", "uring"]     # parametrize a test over both servers with these
BIN = ROOT / "cdemo" / "bin"
REPORTS = ("AddressSanitizer", "LeakSanitizer", "ThreadSanitizer", "runtime error")
HOST = b"Host: lab\r\n"


def get(path: str, *headers: bytes, version: bytes = b"HTTP/1.1") -> bytes:
    """One well-formed request (with a Host header on 1.1)."""
    host = HOST if version == b"HTTP/1.1" else b""
    return b"GET " + path.encode() + b" " + version + b"\r\n" + host + b"".join(headers) + b"\r\n"


class Server:
    def __init__(self, *args, kind: str = "epoll", build: str = "asan", nofile=None, idle_ms=1500,
                 header_ms=400):
        self.kind = kind
        binary = BIN / f"{kind}_server-{build}"
        assert binary.exists(), f"{binary} missing: run `make build-c` (make test does)"
        self.port = free_port()
        limit = (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))) if nofile else None
        self.proc = subprocess.Popen(
            [str(binary), "--port", str(self.port), "--data", str(ROOT / "server/data/lab.txt"),
             "--idle-ms", str(idle_ms), "--header-ms", str(header_ms), *args],
            stderr=subprocess.PIPE, preexec_fn=limit,
            env={**os.environ, "ASAN_OPTIONS": "detect_leaks=1", "UBSAN_OPTIONS": "halt_on_error=1",
                 "TSAN_OPTIONS": "halt_on_error=0"})
        assert wait_for(self.answers, 10), "the sanitizer build did not start"
        # The start-up probe's connection may still be open: take the count
        # once it has held still for a few readings.
        readings = []

        def settled():
            readings.append(self.fds())
            return len(readings) >= 5 and len(set(readings[-5:])) == 1

        assert wait_for(settled, 5, step=0.05)
        self.baseline = readings[-1]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def answers(self):
        return port_answers(self.port)

    def fds(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def cpu_ticks(self):
        fields = open(f"/proc/{self.proc.pid}/stat").read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def back_to_baseline(self):
        return wait_for(lambda: self.fds() == self.baseline, 5)

    def stop(self, sig=signal.SIGINT, timeout=15):
        """Signal it; returns (exit code, stderr, seconds it took to exit)."""
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        took = time.monotonic() - t0
        return self.proc.returncode, self.proc.stderr.read().decode(errors="replace"), took

    def stop_clean(self):
        code, err, _ = self.stop()
        assert code == 0, f"exit {code}\n{err}"
        bad = [r for r in REPORTS if r in err]
        assert not bad, err


def read_responses(sock, n, timeout=5.0):
    """Read until n HTTP responses (or EOF); returns the raw text."""
    sock.settimeout(timeout)
    data = b""
    while data.count(b"HTTP/1.1 ") < n or not data.endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace")


def read_to_eof(sock, timeout=5.0) -> bytes:
    """Everything until the server closes; socket.timeout if it never does."""
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def read_to_close(sock, timeout=5.0) -> tuple[bytes, str]:
    """Everything until the server closes, and how it closed: "eof" (a FIN: every byte it
    sent arrived) or "reset" (an RST, which may destroy an answer not yet read)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        return data, "reset"
    return data, "eof"


def closed_within(sock, seconds: float) -> bool:
    """Whether the server closes sock (FIN or RST) within `seconds`; sock must have nothing to read."""
    sock.settimeout(seconds)
    try:
        return sock.recv(1) == b""
    except socket.timeout:
        return False
    except ConnectionResetError:
        return True


def exchange(server, raw: bytes, n=1):
    with server.connect() as s:
        s.sendall(raw)
        return read_responses(s, n)
