"""The Sanic server's guards hold for the odd spellings a hostile client tries:
a 400 with a reason, never a 500, and never a DNS query off the machine."""

from __future__ import annotations

import json

import pytest

from tests.helpers import curl


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
