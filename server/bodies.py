"""The bodies of GET / and GET /json, shared by the Sanic app and the bench's
aiohttp and tornado servers, so every server writes the same bytes."""

from __future__ import annotations

INDEX = {"mechanism": "socket", "pollable": True,
         "note": "socket reads and writes only, driven by epoll"}


def json_body() -> dict:
    # Built per request, as a real handler would; "encoder" names Sanic's.
    items = [{"n": i, "square": i * i} for i in range(10)]
    return {"mechanism": "socket", "pollable": True, "encoder": "ujson", "items": items}
