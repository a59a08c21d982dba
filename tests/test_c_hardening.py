"""Bad input against the C servers' sanitizer builds (ASan + UBSan), the epoll
and the io_uring one alike: a clear answer, no crash, no leak, and the fd count
back to the baseline after each."""

from __future__ import annotations

import re
import socket
import struct
import time

import pytest

from tests.helpers import curl
from tests.cserver import KINDS, Server, exchange, read_responses


@pytest.fixture(params=KINDS)
def server(request):
    s = Server(kind=request.param)
    yield s
    s.stop_clean()


def test_a_request_split_across_many_packets_is_answered(server):
    with server.connect() as s:
        for b in b"GET / HTTP/1.1\r\nHost: x\r\n\r\n":
            s.send(bytes([b]))
            time.sleep(0.002)
        assert "200 OK" in read_responses(s, 1)
    assert server.back_to_baseline()


def test_pipelined_requests_are_answered_in_order(server):
    out = exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /file HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n", 3)
    codes = re.findall(r"HTTP/1\.1 (\d{3}) ", out)
    assert codes == ["200", "200", "404"], out
    assert server.back_to_baseline()


@pytest.mark.parametrize("raw, status", [
    (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 9000 + b"\r\n\r\n", "431"),
    (b"garbage\r\n\r\n", "400"),
    (b"GET nope HTTP/1.1\r\nHost: x\r\n\r\n", "400"),
    (b"GET / SPDY/9\r\n\r\n", "400"),
    (b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n", "404"),
    (b"DELETE / HTTP/1.1\r\nHost: x\r\n\r\n", "405"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", "413"),
    (b"GET /sleep?ms=abc HTTP/1.1\r\nHost: x\r\n\r\n", "400"),
    (b"GET /sleep?ms=10001 HTTP/1.1\r\nHost: x\r\n\r\n", "400"),
    (b"GET /dns?host= HTTP/1.1\r\nHost: x\r\n\r\n", "400"),  # names that could reach DNS: tests/netns.py
])
def test_bad_requests_get_a_clear_status_and_the_server_goes_on(server, raw, status):
    out = exchange(server, raw)
    assert out.startswith(f"HTTP/1.1 {status} "), out[:200]
    assert '"error"' in out
    assert server.back_to_baseline()
    assert curl(server.port, "/")[0] == 200


def test_head_gets_headers_without_a_body(server):
    length = len(curl(server.port, "/file")[1])     # the body a GET gets
    out = exchange(server, b"HEAD /file HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 2)
    first, _, rest = out.partition("\r\n\r\n")
    assert first.startswith("HTTP/1.1 200 ") and f"Content-Length: {length}\r\n" in first, out
    assert rest.startswith("HTTP/1.1 200 "), f"HEAD sent a body: {rest[:80]!r}"
    assert server.back_to_baseline()


def test_slow_headers_are_cut_off(server):
    with server.connect() as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        s.settimeout(5)
        t0 = time.monotonic()
        assert s.recv(100) == b"", "the server should close a connection whose headers never end"
        assert time.monotonic() - t0 < 3
    assert server.back_to_baseline()


def test_idle_keep_alive_connections_are_closed(server):
    with server.connect() as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert "200 OK" in read_responses(s, 1)
        s.settimeout(6)
        assert s.recv(100) == b""
    assert server.back_to_baseline()


def test_a_peer_reset_while_waiting_for_a_timer_is_survived(server):
    s = server.connect()
    s.sendall(b"GET /sleep?ms=300 HTTP/1.1\r\nHost: x\r\n\r\n")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()  # RST
    assert server.back_to_baseline()
    assert curl(server.port, "/sleep?ms=1")[0] == 200


@pytest.mark.parametrize("kind", KINDS)
def test_running_out_of_fds_sheds_connections_without_spinning(kind):
    # The header time-out is long: the connections must stay until the test closes them.
    srv = Server(kind=kind, nofile=32, header_ms=10000)
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
        srv.stop_clean()


def test_pool_mode_survives_a_client_that_leaves_mid_job():
    srv = Server("--pool")
    try:
        for _ in range(5):
            s = srv.connect()
            s.sendall(b"GET /dns?host=localhost HTTP/1.1\r\nHost: x\r\n\r\n")
            s.close()
        assert srv.back_to_baseline()
        status, body = curl(srv.port, "/dns?host=localhost")
        assert status == 200 and "thread-pool" in body
    finally:
        srv.stop_clean()
