"""The live page is safe on a laptop: a page that starts programs is a target
for any website its user visits. It listens on 127.0.0.1 only, refuses a Host
that is not its own (DNS rebinding), a WebSocket or a POST from another
Origin, and anything that starts, stops, sends or downloads without the token
printed at start; it never takes a command to run from the page."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import aiohttp
import pytest

from tests.helpers import WebPage


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    p = WebPage(tmp_path_factory.mktemp("web-security"))
    yield p
    assert p.stop() == 0, "".join(p.output)


def call(page, path: str, body: dict | None = None, token: str | None = "", headers: dict | None = None
         ) -> tuple[int, dict]:
    """One HTTP request with the page's token (token="") or another (None: none at all)."""
    h = {"Content-Type": "application/json", **(headers or {})}
    if token is not None:
        h["X-Epoll-Lab-Token"] = token or page.token
    req = urllib.request.Request(page.base + path, data=None if body is None else json.dumps(body).encode(),
                                 method="GET" if body is None else "POST", headers=h)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def raw_status(page, request: bytes) -> int:
    with socket.create_connection(("127.0.0.1", page.port), timeout=10) as s:
        s.sendall(request)
        return int(s.recv(200).split()[1])


def test_it_listens_on_127_0_0_1_only(page):
    listening = [line.split() for line in open("/proc/net/tcp").read().splitlines()[1:]
                 if line.split()[1].endswith(f":{page.port:04X}") and line.split()[3] == "0A"]
    assert listening and all(l[1].startswith("0100007F:") for l in listening), listening
    assert not [l for l in open("/proc/net/tcp6").read().splitlines()[1:] if f":{page.port:04X} " in l]


def test_a_request_for_another_host_is_refused_dns_rebinding(page):
    for host in (b"evil.example:%d" % page.port, b"127.0.0.1.nip.io:%d" % page.port, b"127.0.0.1:1"):
        got = raw_status(page, b"GET /api/state?token=%s HTTP/1.1\r\nHost: %s\r\n\r\n" % (page.token.encode(), host))
        assert got == 421, host
    assert raw_status(page, b"GET /api/state?token=%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n"
                      % (page.token.encode(), page.port)) == 200


@pytest.mark.parametrize("path, body", [("/api/state", None), ("/api/start", {"target": "c"}),
                                        ("/api/stop", {}), ("/api/send", {"what": "request", "index": 0}),
                                        ("/api/download/annotated.log", None)])
@pytest.mark.parametrize("token", [None, "not-the-token"])
def test_no_token_or_a_wrong_one_is_refused(page, path, body, token):
    status, got = call(page, path, body, token=token)
    assert status == 403 and "token" in got["error"], (status, got)
    assert not page.pids(), "nothing was started"


def test_a_post_from_another_origin_is_refused_even_with_the_token(page):
    status, got = call(page, "/api/start", {"target": "c"}, headers={"Origin": "http://evil.example"})
    assert status == 403 and "Origin" in got["error"], got


def test_the_page_cannot_name_a_command_to_run(page):
    for target in ("/bin/sh", "sh -c 'touch /tmp/pwned'", "command"):
        status, got = call(page, "/api/start", {"target": target})
        assert status == 400 and "no such target" in got["error"], (target, got)
    status, got = call(page, "/api/send", {"what": "path", "index": 0, "path": "/etc/passwd"})
    assert status == 400, got
    assert not page.pids(), "the page started something"


@pytest.mark.asyncio
async def test_a_websocket_from_another_origin_or_without_the_token_is_refused(page):
    ws_url = f"ws://127.0.0.1:{page.port}/api/stream"
    async with aiohttp.ClientSession() as s:
        for origin, token in (("http://evil.example", page.token), (None, page.token),
                              (f"http://127.0.0.1:{page.port}", "wrong")):
            headers = {"Origin": origin} if origin else {}
            with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                await s.ws_connect(f"{ws_url}?token={token}", headers=headers)
            assert e.value.status == 403, (origin, token)
        async with s.ws_connect(f"{ws_url}?token={page.token}&since=0",
                                headers={"Origin": f"http://127.0.0.1:{page.port}"}) as ws:
            frame = await ws.receive_json(timeout=10)
            assert frame == [{"type": "hello", "now": 0}], frame
