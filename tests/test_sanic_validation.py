"""The Sanic server's guards hold for the odd spellings a hostile client tries:
a 400 with a reason, never a 500, and never a DNS query off the machine."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid

import pytest

from server.app import BadInput, check_host, create_app
from tests.helpers import curl
from tests.netns import NOT_LOCAL


def refused(port, path) -> str:
    status, raw = curl(port, path)
    assert status == 400, f"{path}: {status} {raw[:300]}"
    return json.loads(raw)["message"]


@pytest.mark.parametrize("length", [256, 300, 5000])
def test_a_file_name_longer_than_name_max_is_a_400(sanic_server, length):
    assert f"at most 255 bytes, got {length}" in refused(sanic_server, "/file?name=" + "a" * length)


@pytest.mark.parametrize("path, name", [
    ("/sleep?ms=", "ms"),
    ("/file?name=", "name"),
    ("/timeout?ms=10&limit=", "limit"),
    ("/dns?host=", "host"),
    ("/cpu?ms=10&yield=", "yield"),
])
def test_a_blank_value_is_a_400_not_the_default(sanic_server, path, name):
    assert f"{name} is blank" in refused(sanic_server, path)


def test_values_that_are_given_still_work(sanic_server):
    assert curl(sanic_server, "/sleep?ms=0")[0] == 200
    assert curl(sanic_server, "/dns?host=localhost")[0] == 200
    assert curl(sanic_server, "/file?name=lab.txt")[0] == 200


@pytest.mark.parametrize("path", ["/nope", "/sleep?ms=x"])
def test_an_error_answer_does_not_read_a_malformed_accept_header(sanic_server, path):
    # Found by tests/test_hostile_clients: Sanic picked the error page's
    # format from Accept, and a bad byte in it made every 4xx a 500.
    status, raw = curl(sanic_server, path, "-H", "Accept: *\xaf*")
    assert 400 <= status < 500 and json.loads(raw)["status"] == status, raw[:300]


# -- the /dns guard, in-process: no server, no network -------------------------
# test_dns_never_asks_the_network_for_a_name_not_in_etc_hosts asks these in a private
# network, where a guard that broke shows only as a lookup that overruns its time.
# Here the route runs through Sanic's ASGI entry with the loop's getaddrinfo replaced.

def asgi_get(path: str, query: bytes) -> tuple[int, dict, list]:
    """GET path?query through the lab's app as ASGI; (status, JSON body, the lookups tried)."""
    app = create_app(f"asgi_{uuid.uuid4().hex}")
    lookups: list = []

    async def run():
        started = asyncio.Event()
        lifespan = [{"type": "lifespan.startup"}]

        async def life_in():
            return lifespan.pop() if lifespan else await asyncio.Event().wait()

        async def life_out(message):
            started.set()

        life = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}}, life_in, life_out))
        await asyncio.wait_for(started.wait(), 10)

        async def no_lookup(host, *args, **kwargs):  # noted, and answered without a resolver
            lookups.append(host)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 0))]

        asyncio.get_running_loop().getaddrinfo = no_lookup
        request = [{"type": "http.request", "body": b"", "more_body": False}]
        out: list[dict] = []

        async def req_in():
            return request.pop() if request else await asyncio.Event().wait()

        async def req_out(message):
            out.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query,
                 "root_path": "", "headers": [(b"host", b"lab")], "client": ("127.0.0.1", 1),
                 "server": ("127.0.0.1", 80)}
        await asyncio.wait_for(app(scope, req_in, req_out), 10)
        life.cancel()
        status = next(m["status"] for m in out if m["type"] == "http.response.start")
        body = b"".join(m.get("body", b"") for m in out if m["type"] == "http.response.body")
        return status, json.loads(body)

    status, body = asyncio.run(run())
    return status, body, lookups


@pytest.mark.parametrize("host, why", sorted(NOT_LOCAL.items()))
def test_dns_refuses_a_name_not_in_etc_hosts_before_any_lookup(host, why):
    status, body, lookups = asgi_get("/dns", b"host=" + host.encode())
    assert status == 400 and why in body["message"], body
    assert lookups == [], f"{host!r} reached getaddrinfo"


def test_the_trailing_dot_check_itself_names_the_absolute_name():
    # "localhost." skips /etc/hosts in getaddrinfo: the one spelling that must never pass.
    for host in ("localhost.", "LOCALHOST.", "localhost.."):
        with pytest.raises(BadInput, match="is not a valid host name"):
            check_host(host)
    assert check_host("localhost") == "localhost"


def test_the_in_process_dns_check_sees_a_lookup_when_one_is_made():
    # The control: a name /etc/hosts lists reaches getaddrinfo, so an empty list above means none.
    status, body, lookups = asgi_get("/dns", b"host=localhost")
    assert lookups == ["localhost"] and status == 200 and body["addresses"] == ["127.0.0.1"], body
