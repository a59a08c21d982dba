"""python -m server [--port N] [--loop uvloop|asyncio]: the demo server, one process."""

from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m server",
        description="The epoll-lab Sanic demo server: single process on 127.0.0.1. "
        "Routes: / /json /file /dns?host=localhost /sleep?ms=200 /subprocess.")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop",
                   help="event loop: uvloop (libuv, default) or the stdlib asyncio loop")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.loop == "asyncio":
        # Sanic reads this when it builds the loop; the config flag alone is
        # overridden by the environment default in some Sanic versions.
        os.environ["SANIC_USE_UVLOOP"] = "false"
    from .app import create_app
    from .framing import StrictProtocol

    app = create_app()
    app.config.USE_UVLOOP = args.loop == "uvloop"
    print(f"epoll-lab server: loop={args.loop} http://{args.host}:{args.port}/",
          file=sys.stderr, flush=True)
    app.run(host=args.host, port=args.port, single_process=True,
            access_log=False, motd=False, protocol=StrictProtocol)
    return 0


if __name__ == "__main__":
    sys.exit(main())
