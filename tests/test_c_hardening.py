"""Bad input against the C server's sanitizer build (ASan + UBSan): a clear
answer, no crash, no leak, and its fd count back to the baseline after each."""

from __future__ import annotations

import os
import re
import resource
import signal
import socket
import struct
import subprocess
import time

import pytest

from tests.helpers import ROOT, curl, free_port, wait_for
from tracing.procs import port_answers

ASAN = ROOT / "cdemo" / "bin" / "epoll_server-asan"


class Server:
    def __init__(self, *args, nofile=None):
        assert ASAN.exists(), "run `make build-c` (make test does)"
        self.port = free_port()
        limit = (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))) if nofile else None
        self.proc = subprocess.Popen(
            [str(ASAN), "--port", str(self.port), "--data", str(ROOT / "server/data/lab.txt"),
             "--idle-ms", "1500", "--header-ms", "400", *args],
            stderr=subprocess.PIPE, preexec_fn=limit,
            env={**os.environ, "ASAN_OPTIONS": "detect_leaks=1", "UBSAN_OPTIONS": "halt_on_error=1"})
        assert wait_for(self.answers, 10), "the sanitizer build did not start"
        # The start-up probe's connection may still be open: take the count
        # once it has held still for a few readings.
        readings = []

        def settled():
            readings.append(self.fds())
            return len(readings) >= 5 and len(set(readings[-5:])) == 1

        assert wait_for(settled, 5, step=0.05)
        self.baseline = readings[-1]

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

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail("the server did not stop on SIGINT")
        return self.proc.returncode, self.proc.stderr.read().decode(errors="replace")


@pytest.fixture
def server():
    s = Server()
    yield s
    code, err = s.stop()
    assert code == 0, f"exit {code}\n{err}"
    for bad in ("AddressSanitizer", "LeakSanitizer", "runtime error"):
        assert bad not in err, err


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


def exchange(server, raw: bytes, n=1):
    with server.connect() as s:
        s.sendall(raw)
        return read_responses(s, n)


def test_a_request_split_across_many_packets_is_answered(server):
    with server.connect() as s:
        for b in b"GET / HTTP/1.1\r\nHost: x\r\n\r\n":
            s.send(bytes([b]))
            time.sleep(0.002)
        assert "200 OK" in read_responses(s, 1)
    assert server.back_to_baseline()


def test_pipelined_requests_are_answered_in_order(server):
    out = exchange(server, b"GET / HTTP/1.1\r\n\r\nGET /file HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\n\r\n", 3)
    codes = re.findall(r"HTTP/1\.1 (\d{3}) ", out)
    assert codes == ["200", "200", "404"], out
    assert server.back_to_baseline()


@pytest.mark.parametrize("raw, status", [
    (b"GET / HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n", "431"),
    (b"garbage\r\n\r\n", "400"),
    (b"GET nope HTTP/1.1\r\n\r\n", "400"),
    (b"GET / SPDY/9\r\n\r\n", "400"),
    (b"GET /missing HTTP/1.1\r\n\r\n", "404"),
    (b"DELETE / HTTP/1.1\r\n\r\n", "405"),
    (b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", "413"),
    (b"GET /sleep?ms=abc HTTP/1.1\r\n\r\n", "400"),
    (b"GET /sleep?ms=10001 HTTP/1.1\r\n\r\n", "400"),
    (b"GET /dns?host=bad_name! HTTP/1.1\r\n\r\n", "400"),
])
def test_bad_requests_get_a_clear_status_and_the_server_goes_on(server, raw, status):
    out = exchange(server, raw)
    assert out.startswith(f"HTTP/1.1 {status} "), out[:200]
    assert '"error"' in out
    assert server.back_to_baseline()
    assert curl(server.port, "/")[0] == 200


def test_head_gets_headers_without_a_body(server):
    out = exchange(server, b"HEAD /file HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nConnection: close\r\n\r\n", 2)
    first, _, rest = out.partition("\r\n\r\n")
    assert first.startswith("HTTP/1.1 200 ") and "Content-Length: 44" in first, out
    assert rest.startswith("HTTP/1.1 200 "), f"HEAD sent a body: {rest[:80]!r}"
    assert server.back_to_baseline()


def test_slow_headers_are_cut_off(server):
    with server.connect() as s:
        s.sendall(b"GET / HTTP/1.1\r\nX-Slow: ")
        s.settimeout(5)
        t0 = time.monotonic()
        assert s.recv(100) == b"", "the server should close a connection whose headers never end"
        assert time.monotonic() - t0 < 3
    assert server.back_to_baseline()


def test_idle_keep_alive_connections_are_closed(server):
    with server.connect() as s:
        s.sendall(b"GET / HTTP/1.1\r\n\r\n")
        assert "200 OK" in read_responses(s, 1)
        s.settimeout(6)
        assert s.recv(100) == b""
    assert server.back_to_baseline()


def test_a_peer_reset_while_waiting_for_a_timer_is_survived(server):
    s = server.connect()
    s.sendall(b"GET /sleep?ms=300 HTTP/1.1\r\n\r\n")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()  # RST
    assert server.back_to_baseline()
    assert curl(server.port, "/sleep?ms=1")[0] == 200


def test_running_out_of_fds_sheds_connections_without_spinning():
    srv = Server(nofile=32)
    try:
        socks = []
        for _ in range(40):
            try:
                socks.append(srv.connect())
            except OSError:
                break
        time.sleep(0.3)  # let it run into EMFILE
        assert srv.fds() >= 30, f"only {srv.fds()} fds open: the test did not reach the limit"
        before = srv.cpu_ticks()
        time.sleep(0.5)
        spent = srv.cpu_ticks() - before
        assert spent <= 10, f"{spent} ticks of CPU in 0.5 s: the accept loop is spinning"
        for s in socks:
            s.close()
        assert srv.back_to_baseline()
        assert curl(srv.port, "/")[0] == 200
    finally:
        code, err = srv.stop()
    assert code == 0 and "AddressSanitizer" not in err and "runtime error" not in err, err


def test_pool_mode_survives_a_client_that_leaves_mid_job():
    srv = Server("--pool")
    try:
        for _ in range(5):
            s = srv.connect()
            s.sendall(b"GET /dns?host=localhost HTTP/1.1\r\n\r\n")
            s.close()
        assert srv.back_to_baseline()
        status, body = curl(srv.port, "/dns?host=localhost")
        assert status == 200 and "thread-pool" in body
    finally:
        code, err = srv.stop()
    assert code == 0 and "AddressSanitizer" not in err and "LeakSanitizer" not in err, err
