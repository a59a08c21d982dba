"""The rules a correct event loop keeps under a hostile client, one test each,
against both C servers' ASan builds, the epoll one and the io_uring one (and
their TSan builds where the epoll server's pool runs, and for the uring loop)."""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import threading
import time

import pytest

from tests.helpers import curl, wait_for
from tests.cserver import (HOST, KINDS, REPORTS, Server, closed_within, get, read_responses,
                           read_to_close, read_to_eof)
from tests.netns import NOT_LOCAL, in_private_net

ROUTES = ["/", "/file", "/sleep?ms=50", "/dns?host=localhost"]
# (server, flags, build): the pool mode and the uring loop run under both sanitizers.
MODES = [("epoll", (), "asan"), ("epoll", ("--pool",), "asan"), ("epoll", ("--pool",), "tsan"),
         ("uring", (), "asan"), ("uring", (), "tsan")]
MODE_IDS = ["loop-asan", "pool-asan", "pool-tsan", "uring-asan", "uring-tsan"]


@pytest.fixture(params=MODES, ids=MODE_IDS)
def any_server(request):
    kind, flags, build = request.param
    s = Server(*flags, kind=kind, build=build, idle_ms=10000)
    yield s
    s.stop_clean()


@pytest.fixture(params=KINDS)
def server(request):
    s = Server(kind=request.param)
    yield s
    s.stop_clean()


def statuses(raw: bytes) -> list[str]:
    return re.findall(r"HTTP/1\.1 (\d{3}) ", raw.decode(errors="replace"))


def test_a_pipelining_client_gets_every_answer(server):
    # 2,000 requests in flight, more answers than the 16 KiB output buffer
    # holds: the server must stop reading until they drain, not drop the
    # connection. A thread writes while this one reads, as a real client would.
    n = 2000
    with server.connect() as s:
        burst = get("/") * (n - 1) + get("/", b"Connection: close\r\n")
        writer = threading.Thread(target=s.sendall, args=(burst,))
        writer.start()
        time.sleep(0.3)     # let the output side fill up before reading
        raw = read_to_eof(s, timeout=20)
        writer.join()
    codes = statuses(raw)
    assert codes == ["200"] * n, f"{len(codes)} answers of {n}; last bytes: {raw[-200:]!r}"
    assert server.back_to_baseline()


@pytest.mark.parametrize("path", ROUTES)
def test_a_half_closed_request_is_still_answered(any_server, path):
    with any_server.connect() as s:
        s.sendall(get(path))
        s.shutdown(socket.SHUT_WR)  # "that was all": the answer must still come
        raw = read_to_eof(s)
    assert statuses(raw) == ["200"], raw[:300]
    assert any_server.back_to_baseline()


def test_the_loop_sleeps_while_an_answer_is_owed(server):
    # A /sleep answer is owed and 16 KiB more wait to be read: with
    # EPOLLIN still watched the level-triggered loop would spin.
    s = server.connect()
    s.sendall(get("/sleep?ms=3000") + b"x" * 16384)
    time.sleep(0.3)
    before = server.cpu_ticks()
    time.sleep(1.0)
    spent = server.cpu_ticks() - before
    assert spent <= 20, f"{spent} ticks of CPU in 1 s while only a timer was pending: the loop spins"
    s.close()       # the client leaves: still no spin
    time.sleep(0.2)
    before = server.cpu_ticks()
    time.sleep(0.6)
    spent = server.cpu_ticks() - before
    assert spent <= 12, f"{spent} ticks of CPU in 0.6 s after the client left: the loop spins"
    assert server.back_to_baseline()
    assert curl(server.port, "/")[0] == 200


DEFERRED = [("/sleep?ms=50", "epoll", ()), ("/file", "epoll", ("--pool",)),
            ("/dns?host=localhost", "epoll", ("--pool",)), ("/sleep?ms=50", "uring", ()),
            ("/file", "uring", ()), ("/dns?host=localhost", "uring", ())]


@pytest.mark.parametrize("path, kind, flags", DEFERRED,
                         ids=["sleep", "pool-file", "pool-dns", "uring-sleep", "uring-file", "uring-dns"])
@pytest.mark.parametrize("ask", ["connection-close", "http-1.0"])
def test_a_deferred_answer_keeps_the_clients_connection_close(path, kind, flags, ask):
    # idle_ms is long: a connection left open would outlive read_to_eof's 5 s.
    srv = Server(*flags, kind=kind, idle_ms=30000)
    try:
        req = get(path, b"Connection: close\r\n") if ask == "connection-close" else get(path, version=b"HTTP/1.0")
        with srv.connect() as s:
            s.sendall(req)
            raw = read_to_eof(s)
        assert statuses(raw) == ["200"] and b"Connection: close\r\n" in raw, raw[:300]
    finally:
        srv.stop_clean()


def test_a_head_request_does_not_make_the_next_answer_bodyless(server):
    with server.connect() as s:
        s.sendall(get("/").replace(b"GET", b"HEAD", 1) + b"garbage\r\n\r\n")
        raw = read_to_eof(s)
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert statuses(head) == ["200"], raw
    second, _, body = rest.partition(b"\r\n\r\n")
    length = int(re.search(rb"Content-Length: (\d+)", second).group(1))
    assert statuses(second) == ["400"] and len(body) == length, raw


# The epoll server's pool jobs, and the uring server's reads in the ring.
WAITING = [("epoll", ("--pool",), "asan"), ("epoll", ("--pool",), "tsan"), ("uring", (), "asan"),
           ("uring", (), "tsan")]


@pytest.mark.parametrize("kind, flags, build", WAITING, ids=["pool-asan", "pool-tsan", "uring-asan", "uring-tsan"])
def test_a_client_that_resets_while_its_job_waits_is_freed(kind, flags, build):
    # Jobs queue behind each other (or are in flight in the ring); clients reset (RST) at
    # once. LeakSanitizer reports any connection nobody frees (the uring server may free
    # one only once all its operations have come back), TSan any unguarded shared field.
    srv = Server(*flags, kind=kind, build=build)
    try:
        for _ in range(20):
            s = srv.connect()
            s.sendall(get("/file") + get("/dns?host=localhost"))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        assert srv.back_to_baseline()
        assert curl(srv.port, "/dns?host=localhost")[0] == 200
        # Stop with jobs still queued: they and their connections are freed.
        socks = [srv.connect() for _ in range(10)]
        for s in socks:
            s.sendall(get("/file"))
    finally:
        srv.stop_clean()
        for s in socks:
            s.close()


# Names that would reach the nameserver if the guard broke are asked only in
# the private network (test_dns_never_asks_the_network_for_a_name_not_in_etc_hosts).
def test_dns_answers_400_for_a_blank_host(server):
    status, body = curl(server.port, "/dns?host=")
    assert status == 400 and "host is blank" in body, body


@pytest.mark.parametrize("raw, status, why", [
    (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\nContent-Length: 5\r\n\r\nGET /", 400, "NUL"),
    (b"GET / HTTP/1.1\nHost: x\n\n", 400, "bare LF"),
    (b"GET / HTTP/1.1\r\nHost: x\nContent-Length: 5\r\n\r\nGET /", 400, "bare LF"),
    (b"GET / HTTP/1.1\r\nHost: x\rY: z\r\n\r\n", 400, "bare CR"),
    (b"GET / HTTP/1.\r\nHost: x\r\n\r\n", 400, "HTTP version"),
    (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505, "HTTP/1.x"),
    (b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n", 400, "HTTP version"),
    (b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400, "request line"),
    (b"GET / HTTP/1.1\r\n\r\n", 400, "Host"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "Host"),
    (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400, "colon"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400, "obs-fold"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5x\r\n\r\n", 400, "Content-Length"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400, "Content-Length"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 413, "bodies"),
    (b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "too long"),
])
def test_a_request_the_rfc_calls_invalid_gets_a_4xx_and_the_connection_closes(server, raw, status, why):
    with server.connect() as s:
        s.sendall(raw)
        out = read_to_eof(s).decode(errors="replace")   # closed: nothing after it is a request
    assert statuses(out.encode()) == [str(status)] and why in out, out[:400]
    assert server.back_to_baseline()


@pytest.mark.parametrize("raw", [
    b"GET / HTTP/1.1\r\nHost: x\r\nConnection:close\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Close\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
])
def test_connection_close_is_read_as_a_token_list(server, raw):
    with server.connect() as s:
        s.sendall(raw)
        out = read_to_eof(s)
    assert statuses(out) == ["200"] and b"Connection: close\r\n" in out, out


def test_the_rfc_leniencies_the_server_keeps(server):
    # RFC 9110 2.5: HTTP/1.9 is served as 1.1; RFC 9112 2.2: empty lines
    # before a request are ignored; 3.2.2: the absolute-form is accepted.
    raw = (b"\r\nGET / HTTP/1.9\r\n" + HOST + b"\r\n"
           + b"GET http://lab/file HTTP/1.1\r\n" + HOST + b"Connection: close\r\n\r\n")
    with server.connect() as s:
        s.sendall(raw)
        out = read_to_eof(s)
    assert statuses(out) == ["200", "200"] and b'"bytes":' in out, out


@pytest.mark.parametrize("path", ["/sleep?ms=", "/dns?host=", "/sleep?ms"])
def test_a_blank_value_is_a_400_as_on_the_sanic_server(server, path):
    status, body = curl(server.port, path)
    assert status == 400 and "is blank; give a value or leave it out" in body, body


@pytest.mark.parametrize("build", ["asan", "tsan"])
def test_the_pool_stops_soon_even_with_lookups_stuck_and_frees_every_queued_client(build):
    # Both pool threads wait on a resolver that never answers (private
    # network); three clients reset while queued, three more are still
    # queued at SIGTERM. The stop must not wait out the 30 s lookup, and
    # LeakSanitizer / TSan must find nothing.
    r = in_private_net("stalled-lookups", build)
    assert r["root"].startswith("HTTP/1.1 200"), f"the loop did not answer GET / meanwhile: {r}"
    assert "not waiting for 2 lookup(s)" in r["err"], f"the lookups did not stall, the test proves nothing:\n{r['err']}"
    assert r["code"] == 0 and r["took"] < 6, f"exit {r['code']} after {r['took']:.1f} s\n{r['err']}"
    assert not [x for x in REPORTS if x in r["err"]], r["err"]


@pytest.mark.parametrize("server", ["loop", "pool", "sanic", "uring"])
def test_dns_never_asks_the_network_for_a_name_not_in_etc_hosts(server):
    r = in_private_net("dns-under-strace", server)
    # The uring server accepts in the ring, where strace sees only io_uring_enter (and would
    # not see a query sent through the ring either: for it, the refusals below are the proof).
    seen = r["enters"] if server == "uring" else r["accepts"]
    assert seen >= 6, f"strace saw {r['lines']} calls, {r['accepts']} accept4, {r['enters']} io_uring_enter: not a real trace"
    assert not r["port53"], "\n".join(r["port53"])
    refused = {h: a for h, a in r["answers"].items() if h != "localhost"}
    assert all(a.startswith("HTTP/1.1 400") for a in refused.values()), r["answers"]
    assert set(refused) == set(NOT_LOCAL) and all(NOT_LOCAL[h] in a for h, a in refused.items()), r["answers"]
    assert r["answers"]["localhost"].startswith("HTTP/1.1 200"), r["answers"]


# ---- every slot taken: what nginx does under the same attack ----------------------

SLOTS = 512     # the server's connection cap


def open_connections(srv, n):
    """n connections the server has accepted (its fd count says so)."""
    socks = [srv.connect() for _ in range(n)]
    assert wait_for(lambda: srv.fds() >= srv.baseline + n, 10), \
        f"the server holds {srv.fds() - srv.baseline} of {n} connections"
    return socks


def answer(sock, raw: bytes) -> str:
    sock.sendall(raw)
    try:
        return read_responses(sock, 1)
    except ConnectionResetError:
        return "(reset by the server)"


@pytest.mark.parametrize("kind", KINDS)
def test_idle_connections_cannot_lock_out_a_new_client(kind):
    # 512 connections that never send a byte take every slot; the header timeout is long, so
    # only reuse lets anyone in. Each newcomer stays connected, so each needs a slot: the
    # oldest idle connection's, closed for it.
    srv = Server(kind=kind, idle_ms=30000, header_ms=30000)
    idle, newcomers = [], []
    try:
        idle = open_connections(srv, SLOTS)
        for i in range(3):
            newcomers.append(srv.connect())
            got = answer(newcomers[-1], get("/"))
            assert statuses(got.encode()) == ["200"], f"newcomer {i + 1} with every slot idle: {got[:300]}"
            assert closed_within(idle[i], 2), f"idle connection {i}, the oldest left, was not the one reused"
        assert not closed_within(idle[3], 0.2), "an idle connection newer than the oldest was closed"
    finally:
        for s in idle + newcomers:
            s.close()
        srv.stop_clean()


@pytest.mark.parametrize("kind", KINDS)
def test_a_connection_that_never_sends_is_closed_sooner_than_an_idle_keep_alive(kind):
    # Before its first byte a connection gets the header timeout (0.4 s here), not the
    # keep-alive one (4 s): an idle attacker frees its slot ten times sooner.
    srv = Server(kind=kind, idle_ms=4000, header_ms=400)
    try:
        with srv.connect() as silent, srv.connect() as kept:
            assert statuses(answer(kept, get("/")).encode()) == ["200"]
            assert closed_within(silent, 3), "a connection that never sent a byte outlived the 0.4 s header timeout"
            assert not closed_within(kept, 0.5), "a keep-alive connection was cut at the header timeout"
    finally:
        srv.stop_clean()


@pytest.mark.parametrize("kind", KINDS)
def test_refusal_arrives_as_a_response_not_a_reset(kind):
    # Every slot busy with a request whose answer is owed (/sleep): nobody may be evicted, so
    # the newcomer is refused. Its request is already in the socket when the server accepts
    # (the server is stopped meanwhile): closing with it unread would be an RST, which can
    # destroy the 503 before the client reads it.
    srv = Server(kind=kind, idle_ms=30000, header_ms=30000)
    busy = []
    try:
        busy = open_connections(srv, SLOTS)
        for s in busy:
            s.sendall(get("/sleep?ms=4000"))
        time.sleep(1.0)     # every request read and its timer armed
        os.kill(srv.pid, signal.SIGSTOP)
        try:
            late = srv.connect()        # completes in the listen backlog
            late.sendall(get("/"))
        finally:
            os.kill(srv.pid, signal.SIGCONT)
        with late:
            raw, how = read_to_close(late)
        assert how == "eof", f"the refusal ended in a TCP reset; got before it: {raw[:300]!r}"
        assert statuses(raw) == ["503"] and b"busy" in raw and b"Connection: close" in raw, raw[:400]
        answers = [statuses(read_responses(s, 1, timeout=10).encode()) for s in busy]
        assert answers == [["200"]] * SLOTS, "a busy connection lost its answer to the newcomer"
    finally:
        for s in busy:
            s.close()
        srv.stop_clean()


def test_an_answer_before_a_close_is_not_lost_to_a_reset(server):
    # A head over 8 KiB with 50 KiB behind it: the server answers 431 with bytes still unread.
    # It must shut its side, read the rest, and close when the client does, as nginx's
    # lingering close does: a close with unread bytes is an RST.
    with server.connect() as s:
        s.sendall(get("/", b"X-Big: " + b"a" * 60000 + b"\r\n"))
        raw, how = read_to_close(s)
    assert how == "eof", f"the 431 ended in a TCP reset; got before it: {raw[:300]!r}"
    assert statuses(raw) == ["431"], raw[:300]
    assert server.back_to_baseline()


def test_a_client_that_keeps_a_finished_connection_open_is_let_go(server):
    # After the answer and the server's FIN the client neither closes nor sends: the server's
    # lingering close is bounded, so its fd and slot come back while the client still holds on.
    with server.connect() as s:
        s.sendall(b"garbage\r\n\r\n")
        raw, how = read_to_close(s)
        assert how == "eof" and statuses(raw) == ["400"], raw[:300]
        assert server.back_to_baseline(), f"{server.fds()} fds open, {server.baseline} before"
