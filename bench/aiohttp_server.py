"""The bench's aiohttp server: GET / and GET /json with Sanic's bodies, one
process on the stdlib asyncio loop (aiohttp's default). Its HTTP parser is
aiohttp's own C extension (llhttp); JSON is the stdlib's (C-accelerated).

Usage: .venv/bin/python bench/aiohttp_server.py --port N
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from server.bodies import INDEX, json_body  # noqa: E402

# Compact separators: the same bytes as Sanic's ujson body.
dumps = partial(json.dumps, separators=(",", ":"))


async def index(request: web.Request) -> web.Response:
    return web.json_response(INDEX, dumps=dumps)


async def json_route(request: web.Request) -> web.Response:
    return web.json_response(json_body(), dumps=dumps)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    port = ap.parse_args().port
    app = web.Application()
    app.add_routes([web.get("/", index), web.get("/json", json_route)])
    print(f"aiohttp server: http://127.0.0.1:{port}/", file=sys.stderr, flush=True)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
