"""The C server's rules for a request head (cdemo/http.c, RFC 9112), applied to
the raw head Sanic has read, before the request is routed.

Sanic 25 parses HTTP/1 itself and is lenient where the RFC lets a server
choose: `Content-Length : 2` (space before the colon) is a header it ignores,
so the body is read as the next request; a folded line is a header of its
own; `Content-Length: ٢` is 2. Two parsers that disagree about where a
request ends are how request smuggling happens, so the lab refuses these
the way its C server does: a 400 (or 413: the lab takes no bodies) that says
why, and the connection closes. What Sanic decides before this runs (the
request line, a line without a colon, a head that never ends in CRLF CRLF,
chunk sizes) is pinned by tests/test_sanic_framing.py; docs/sanic.md has the
table.

The check runs in Sanic's own header step (StrictHttp, through the protocol
class `python -m server` runs with), not in a signal handler: an exception
there is reported through a task, and that await lets a half-closed client's
EOF close the connection before the 400 is written.
"""

from __future__ import annotations

import re
from asyncio import CancelledError

from sanic.exceptions import SanicException
from sanic.http import Http, Stage
from sanic.server.protocols.http_protocol import HttpProtocol

# RFC 9110 5.6.2: a field name is one or more tchars, and the colon follows at once.
_FIELD = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):(.*)\Z", re.S)
_CTL = re.compile(rb"[\x00-\x08\x0a-\x1f]")  # RFC 9110 5.5: no controls in a value (tab is fine)
_HOST = re.compile(rb"[A-Za-z0-9\-._~!$&'()*+,;=:\[\]%]*\Z")
_LENGTH = re.compile(rb"[0-9]{1,15}\Z")  # ASCII digits only: int() would read "٢" as 2


class BadFraming(SanicException):
    """A head the lab refuses, with the reason the C server gives."""

    status_code = 400
    quiet = True


class BodyRefused(SanicException):
    status_code = 413
    quiet = True


def check_head(head: bytes) -> None:
    """Raise BadFraming or BodyRefused for a head the C server refuses; return if it serves it."""
    if b"\0" in head:
        raise BadFraming("a NUL byte in the request head")
    lines = head.split(b"\r\n")
    if any(b"\n" in line for line in lines):
        raise BadFraming("a bare LF: lines end with CRLF (RFC 9112 section 2.2)")
    if any(b"\r" in line for line in lines):
        raise BadFraming("a bare CR in the request head (RFC 9112 section 2.2)")
    http11 = lines[0].endswith(b" HTTP/1.1")
    hosts, chunked, length = 0, False, None
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):
            raise BadFraming("a folded header line (obs-fold, RFC 9112 section 5.2)")
        m = _FIELD.match(line)
        if m is None:
            raise BadFraming("malformed header field: Name: value, no space before the colon")
        name, value = m.group(1).lower(), m.group(2).strip(b" \t")
        if _CTL.search(value):
            raise BadFraming("a control character in a header value")
        if name == b"host":
            hosts += 1
            if not _HOST.match(value):
                raise BadFraming("an invalid Host value")
        elif name == b"content-length":
            # RFC 9112 6.3: an invalid length, or a second one that differs, cannot be recovered.
            if not _LENGTH.match(value) or (length is not None and int(value) != length):
                raise BadFraming("an invalid Content-Length")
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = True
    if hosts > 1 or (http11 and hosts != 1):
        raise BadFraming("an HTTP/1.1 request needs exactly one Host header")
    if chunked and (length is not None or not http11):
        raise BadFraming("Transfer-Encoding with Content-Length or in HTTP/1.0")
    if chunked or (length or 0) > 0:
        raise BodyRefused("request bodies are not accepted")


class StrictHttp(Http):
    """Sanic's HTTP/1 with the head checked once parsed, before routing."""

    async def http1_request_header(self) -> None:
        try:
            # Named, not super(): Sanic rewrites Http's method at start-up (its touchup).
            await Http.http1_request_header(self)
        except CancelledError:
            # Closed while the client was still sending its head (a stop, see StrictProtocol):
            # Sanic's handler of this logs the request's method, and there is no request yet
            # (an AttributeError and two tracebacks per such connection). An empty one it has.
            if self.request is None:
                self.create_empty_request()
            raise
        try:
            check_head(self.request.head)
        except (BadFraming, BodyRefused):
            self.request_body = None  # refused: its body is not read (the connection closes)
            raise


class StrictProtocol(HttpProtocol):
    HTTP_CLASS = StrictHttp

    def close_if_idle(self) -> bool:
        """At a stop, Sanic closes idle connections and waits for the rest (up to
        GRACEFUL_SHUTDOWN_TIMEOUT). A client still sending its head has made no request
        to finish: it is closed with the idle ones, not waited for."""
        http = self.http
        if http is not None and http.stage is Stage.REQUEST and http.request is None:
            self.close()
            return True
        return super().close_if_idle()
