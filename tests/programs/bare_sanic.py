"""Sanic as it comes, without the lab's framing check (server/framing.py), with a
route that reads bodies: what Sanic's own HTTP/1 parser decides, for the
tests that pin it (tests/test_sanic_framing.py). python bare_sanic.py --port N"""
import sys

from sanic import Sanic
from sanic.response import text

app = Sanic("bare")


@app.route("/echo", methods=["GET", "POST"])
async def echo(request):
    return text(f"body={request.body!r} hosts={request.headers.getall('host', [])!r}")


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[sys.argv.index("--port") + 1]), single_process=True,
            access_log=False, motd=False)
