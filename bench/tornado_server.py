"""The bench's tornado server: GET / and GET /json with Sanic's bodies, one
process on the stdlib asyncio loop (tornado 6 runs on it). Tornado parses
HTTP in Python; JSON is the stdlib's (C-accelerated).

Usage: .venv/bin/python bench/tornado_server.py --port N
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

import tornado.web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from server.bodies import INDEX, json_body  # noqa: E402


class JSONHandler(tornado.web.RequestHandler):
    def answer(self, body: dict) -> None:
        # tornado's own json_encode uses ", " separators: write Sanic's bytes instead.
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps(body, separators=(",", ":")))


class Index(JSONHandler):
    def get(self) -> None:
        self.answer(INDEX)


class Items(JSONHandler):
    def get(self) -> None:
        self.answer(json_body())


async def serve(port: int) -> None:
    app = tornado.web.Application([(r"/", Index), (r"/json", Items)])
    app.listen(port, address="127.0.0.1")
    print(f"tornado server: http://127.0.0.1:{port}/", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    asyncio.run(serve(ap.parse_args().port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
