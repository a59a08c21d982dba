"""Malformed requests, seeded, and a client that throws them at a server.

`requests(seed, n)` yields (kind, bytes): a well-formed request bent one of
the ways a hostile or broken client bends it. `throw(port, cases)` sends each
on its own connection, half-closes ("that was all") and reads until the
server closes, bounded in time per case and in total.
No /dns here: a mutated host name must never reach a resolver; test_c_rules
and test_sanic_validation check that guard on its own.
"""

from __future__ import annotations

import random
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

PATHS = ["/", "/file", "/file?name=lab.txt", "/sleep?ms=5", "/nope", "/sleep?ms=", "/json"]
METHODS = [b"GET", b"HEAD", b"POST", b"OPTIONS", b"get"]
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# The first bytes of a TLS 1.2 ClientHello, as a client that dialled https sends them.
TLS_HELLO = bytes.fromhex("16030100a5010000a10303") + bytes(range(32)) + bytes.fromhex(
    "000020c02bc02fc02cc030cca9cca8c013c014009c009d002f0035c012000a0100005800000014")


def well_formed(rng: random.Random) -> bytes:
    path = rng.choice(PATHS).encode()
    extra = rng.choice([b"", b"Accept: */*\r\n", b"User-Agent: fuzz\r\nAccept: */*\r\n"])
    return b"GET " + path + b" HTTP/1.1\r\nHost: lab\r\n" + extra + b"\r\n"


def _flip(rng, raw):
    b = bytearray(raw)
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)
    return bytes(b)


def _truncate(rng, raw):
    return raw[:rng.randrange(1, len(raw))]


def _nul(rng, raw):
    i = rng.randrange(len(raw))
    return raw[:i] + b"\x00" + raw[i:]


def _bare_lf(rng, raw):
    return raw.replace(b"\r\n", b"\n", rng.choice([1, -1]))


def _huge_line(rng, raw):
    size = rng.choice([4096, 9000, 20000, 70000])
    if rng.random() < 0.5:
        return raw.replace(b"HTTP/1.1\r\n", b"HTTP/1.1\r\nX-Big: " + b"a" * size + b"\r\n", 1)
    return raw.replace(b" HTTP/1.1", b"?x=" + b"b" * size + b" HTTP/1.1", 1)


def _content_length(rng, raw):
    value = rng.choice([b"-1", b"abc", b"99999999999999999999999", b"5, 6", b"0x10", b" ", b"3", b"100000"])
    body = rng.choice([b"", b"abc", b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n"])
    headers = b"Content-Length: " + value + b"\r\n"
    if rng.random() < 0.3:
        headers += b"Content-Length: 7\r\n"
    return raw[:-2] + headers + b"\r\n" + body


def _chunked(rng, raw):
    body = rng.choice([b"5\r\nhello\r\n0\r\n\r\n", b"zz\r\nhello\r\n0\r\n\r\n", b"ffffffffffffffff\r\n",
                       b"5\r\nhel", b"0\r\n\r\nGET / HTTP/1.1\r\nHost: lab\r\n\r\n"])
    te = rng.choice([b"chunked", b"gzip, chunked", b" chunked", b"identity"])
    cl = b"Content-Length: 4\r\n" if rng.random() < 0.3 else b""
    return raw[:-2] + b"Transfer-Encoding: " + te + b"\r\n" + cl + b"\r\n" + body


def _method(rng, raw):
    return rng.choice(METHODS) + raw[3:]


def _version(rng, raw):
    v = rng.choice([b"HTTP/1.0", b"HTTP/1.", b"HTTP/2.0", b"HTTP/9.9", b"http/1.1", b"HTTP/1.1 x", b""])
    return raw.replace(b"HTTP/1.1", v, 1)


def _preface(rng, raw):
    return HTTP2_PREFACE + (raw if rng.random() < 0.3 else b"")


def _tls(rng, raw):
    return TLS_HELLO[:rng.randrange(5, len(TLS_HELLO) + 1)]


def _noise(rng, raw):
    return bytes(rng.randrange(256) for _ in range(rng.randint(1, 300)))


def _pipelined(rng, raw):
    return raw * rng.randint(2, 40) + _flip(rng, raw)


MUTATIONS = {f.__name__.lstrip("_"): f for f in (
    _flip, _truncate, _nul, _bare_lf, _huge_line, _content_length, _chunked, _method, _version,
    _preface, _tls, _noise, _pipelined)}


def requests(seed: int, n: int):
    """n (mutation name, bytes) pairs, the same for the same seed."""
    rng = random.Random(seed)
    names = sorted(MUTATIONS)
    for _ in range(n):
        name = rng.choice(names)
        yield name, MUTATIONS[name](rng, well_formed(rng))


@dataclass
class Outcome:
    sent: int = 0
    statuses: dict = field(default_factory=dict)      # status -> count
    open_: list = field(default_factory=list)         # (kind, bytes) the server did not close in time
    five_xx: list = field(default_factory=list)       # (kind, bytes, status)


STATUS = re.compile(rb"HTTP/1\.[01] (\d{3}) ")


def _one(port: int, kind: str, raw: bytes, timeout: float):
    """Send raw, half-close, read to EOF. Returns (statuses, hung)."""
    got = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            try:
                s.sendall(raw)
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass            # the server may close early on a huge or bad head
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                chunk = s.recv(65536)
                if not chunk:
                    return [int(x) for x in STATUS.findall(got)], False
                got += chunk
            return [int(x) for x in STATUS.findall(got)], True
    except socket.timeout:
        return [int(x) for x in STATUS.findall(got)], True
    except OSError:             # a reset after the answer: the server's right
        return [int(x) for x in STATUS.findall(got)], False


def throw(port: int, cases, budget_s: float, per_case_s: float = 5.0, workers: int = 4) -> Outcome:
    """Every case on its own connection, `workers` at a time, until the cases
    or the time budget run out."""
    out = Outcome()
    stop_at = time.monotonic() + budget_s
    cases = list(cases)
    with ThreadPoolExecutor(workers) as pool:
        for i in range(0, len(cases), 64):
            if time.monotonic() > stop_at:
                break
            batch = cases[i:i + 64]
            for (kind, raw), (codes, hung) in zip(batch, pool.map(lambda c: _one(port, *c, per_case_s), batch)):
                out.sent += 1
                for code in codes:
                    out.statuses[code] = out.statuses.get(code, 0) + 1
                    if code >= 500:
                        out.five_xx.append((kind, raw[:200], code))
                if hung:
                    out.open_.append((kind, raw[:200]))
    return out
