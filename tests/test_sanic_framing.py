"""Request framing the C server refuses, the lab's Sanic server refuses too,
before routing: a 400 (413 for a body: the lab takes none) with the reason,
and the connection closes, so nothing a lenient parser would take for a body
is read as a next request. What only Sanic's own parser decides is pinned
below: if an upgrade changes it, these fail, and docs/sanic.md's table must
change with them."""

from __future__ import annotations

import json
import re
import socket
import sys

import pytest

from server.framing import BadFraming, BodyRefused, check_head
from tests.cserver import read_to_eof
from tests.helpers import PROGRAMS, ROOT, Server, free_port

C_SERVER = ROOT / "cdemo" / "bin" / "epoll_server"
NEXT = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"  # what a smuggled body would be

# (name, the request's raw bytes, status, the reason both servers give)
REFUSED = [
    ("space before the colon of Content-Length",
     b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length : 41\r\n\r\n" + NEXT, 400, "no space before the colon"),
    ("space before the colon of Transfer-Encoding",
     b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + NEXT, 400,
     "no space before the colon"),
    ("obs-fold of Transfer-Encoding",
     b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + NEXT, 400, "obs-fold"),
    ("chunk data not followed by CRLF",
     b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxyZZ3\r\nabc\r\n0\r\n\r\n", 413,
     "request bodies are not accepted"),
    ("chunk size 0x2", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\nxy\r\n0\r\n\r\n",
     413, "request bodies are not accepted"),
    ("chunk size ' 2 '", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n 2 \r\nxy\r\n0\r\n\r\n",
     413, "request bodies are not accepted"),
    ("chunk size 1_0", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1_0\r\n" + b"a" * 16
     + b"\r\n0\r\n\r\n", 413, "request bodies are not accepted"),
    ("Content-Length in Arabic-Indic digits", "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: \u0662\r\n\r\nxy".encode()
     + NEXT, 400, "an invalid Content-Length"),
    ("a duplicate Host", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "exactly one Host"),
    ("no Host in HTTP/1.1", b"GET / HTTP/1.1\r\n\r\n", 400, "exactly one Host"),
    ("a bare LF inside the head", b"GET / HTTP/1.1\r\nHost: x\nContent-Length: 5\r\n\r\nGET /", 400, "bare LF"),
    ("a NUL in a header", b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n", 400, "NUL byte"),
    ("a body with a valid length", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nxy", 413,
     "request bodies are not accepted"),
]


def send(port: int, raw: bytes, seconds: float = 5) -> bytes:
    """The bytes the server answers until it closes ("that was all" sent after the request)."""
    with socket.create_connection(("127.0.0.1", port), timeout=seconds) as s:
        s.sendall(raw)
        s.shutdown(socket.SHUT_WR)
        return read_to_eof(s, seconds)


def statuses(raw: bytes) -> list[int]:
    return [int(s) for s in re.findall(rb"HTTP/1\.[01] (\d{3}) ", raw)]


@pytest.fixture(scope="module")
def c_server():
    port = free_port()
    server = Server([str(C_SERVER), "--port", str(port), "--data", str(ROOT / "server/data/lab.txt")], port)
    yield port
    server.stop()


@pytest.fixture(scope="module")
def bare_sanic():
    port = free_port()
    server = Server([sys.executable, str(PROGRAMS / "bare_sanic.py"), "--port", str(port)], port)
    yield port
    out = server.stop()
    assert "Traceback" not in out, out


@pytest.mark.parametrize("name, raw, status, why", REFUSED, ids=[c[0] for c in REFUSED])
def test_framing_the_c_server_refuses_the_sanic_server_refuses_before_routing(sanic_server, c_server,
                                                                              name, raw, status, why):
    got = send(sanic_server, raw)
    assert statuses(got) == [status], f"{name}: Sanic answered {got[:300]!r}"
    assert why in json.loads(got.split(b"\r\n\r\n", 1)[1])["message"], got[:300]
    assert b"connection: close" in got.lower()
    assert statuses(send(c_server, raw)) == [status], f"{name}: the C server no longer answers {status}"


@pytest.mark.parametrize("name, raw, status, why", REFUSED, ids=[c[0] for c in REFUSED])
def test_the_head_check_alone_gives_the_same_answer(name, raw, status, why):
    head = raw.split(b"\r\n\r\n", 1)[0]
    with pytest.raises(BodyRefused if status == 413 else BadFraming, match=re.escape(why)):
        check_head(head)


@pytest.mark.parametrize("head", [
    b"GET / HTTP/1.1\r\nHost: x",
    b"GET / HTTP/1.0",
    b"GET /file?name=lab.txt HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nAccept: */*\r\nUser-Agent: curl/7.88",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: keep-alive, Close",
    b"GET / HTTP/1.1\r\nhost:\tx\t\r\nX-Empty:",
])
def test_a_well_framed_head_passes_the_check(head):
    check_head(head)


# -- what only Sanic's parser decides (pinned: Sanic 25.12) --------------------

PINNED = "Sanic's own parser changed: update docs/sanic.md's table and this pin"


@pytest.mark.parametrize("raw, answer", [
    # Chunk framing: the lab refuses every body first; Sanic alone reads these.
    (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxyZZ3\r\nabc\r\n0\r\n\r\n",
     b"body=b'xyabc'"),
    (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\nxy\r\n0\r\n\r\n", b"body=b'xy'"),
    (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n 2 \r\nxy\r\n0\r\n\r\n", b"body=b'xy'"),
    ("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: \u0662\r\n\r\nxy".encode(), b"body=b'xy'"),
    (b"GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", b"hosts=['a', 'b']"),
    (b"GET /echo HTTP/1.1\r\n\r\n", b"hosts=[]"),
], ids=["chunk-data-without-crlf", "chunk-size-0x2", "chunk-size-spaces", "arabic-indic-length",
        "two-hosts", "no-host"])
def test_sanic_alone_accepts_what_the_c_server_refuses(bare_sanic, raw, answer):
    got = send(bare_sanic, raw)
    assert statuses(got) == [200] and answer in got, f"{PINNED}: {got[:300]!r}"


@pytest.mark.parametrize("raw, answers", [
    (b"GET /echo HTTP/1.1\r\nHost: x\r\nContent-Length : 41\r\n\r\n" + NEXT.replace(b"GET /", b"GET /echo"),
     [200, 200]),
    (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\n", [200, 400]),
    (b"POST /echo HTTP/1.1\r\nHost: x\r\nX: a\r\n Transfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\n", [200, 400]),
], ids=["content-length-space-colon", "transfer-encoding-space-colon", "obs-fold"])
def test_sanic_alone_reads_what_follows_an_ignored_header_as_the_next_request(bare_sanic, raw, answers):
    assert statuses(send(bare_sanic, raw)) == answers, PINNED


@pytest.mark.parametrize("raw, answer", [
    (b"GET /echo HTTP/1.1\r\nHost: x\nContent-Length: 5\r\n\r\n", b"hosts=['x\\nContent-Length: 5']"),
    (b"GET /echo HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n", b"hosts=['x']"),
], ids=["bare-lf-inside-the-head", "nul-in-a-header"])
def test_sanic_alone_takes_a_bare_lf_or_a_nul_inside_the_head(bare_sanic, raw, answer):
    got = send(bare_sanic, raw)
    assert statuses(got) == [200] and answer in got, f"{PINNED}: {got[:300]!r}"


@pytest.mark.parametrize("length", [b"+2", b"2, 2"])
def test_sanic_alone_refuses_a_signed_or_listed_length(bare_sanic, length):
    got = send(bare_sanic, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: " + length + b"\r\n\r\nxy")
    assert statuses(got) == [400] and b"Bad content-length" in got, f"{PINNED}: {got[:300]!r}"


def test_sanic_alone_refuses_chunk_size_1_0(bare_sanic):
    raw = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1_0\r\n" + b"a" * 16 + b"\r\n0\r\n\r\n"
    got = send(bare_sanic, raw)
    assert statuses(got) == [400] and b"Bad chunked encoding" in got, f"{PINNED}: {got[:300]!r}"


@pytest.mark.parametrize("raw", [
    b"GET / HTTP/1.1\r\nHost: x\r\nfolded\r\n\r\n",  # a line without a colon
    b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",  # two spaces in the request line
    b"GET / HTTP/2.0\r\nHost: x\r\n\r\n",  # the C server: 505
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
], ids=["no-colon", "two-spaces", "http-2.0", "length-and-chunked"])
def test_sanic_refuses_these_itself_before_the_lab_check_with_a_plain_reason(sanic_server, raw):
    got = send(sanic_server, raw)
    assert statuses(got) == [400] and json.loads(got.split(b"\r\n\r\n", 1)[1])["message"] == "Bad Request", \
        f"{PINNED}: {got[:300]!r}"


def test_sanic_waits_for_the_end_of_a_head_written_with_bare_lf(sanic_server):
    # The head never ends in CRLF CRLF: Sanic keeps reading until its request timeout
    # (the C server answers 400 at once); the lab's check never sees it.
    with socket.create_connection(("127.0.0.1", sanic_server), timeout=2) as s:
        s.sendall(b"GET / HTTP/1.1\nHost: x\n\n")
        with pytest.raises(socket.timeout):
            s.recv(100)
