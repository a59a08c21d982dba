"""Routes of the Sanic demo server, one event-loop mechanism each.

Every answer is JSON naming the mechanism, so a reader of the trace can match
the bytes written on the client socket to the route that produced them.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import ujson
from sanic import Sanic
from sanic.errorpages import JSONRenderer, exception_response
from sanic.exceptions import SanicException
from sanic.handlers import ErrorHandler
from sanic.request import Request
from sanic.response import HTTPResponse, json

from .bodies import INDEX, json_body

DATA_DIR = (Path(__file__).parent / "data").resolve()
DEFAULT_FILE = "lab.txt"
MAX_SLEEP_MS = 10_000
HOSTS_FILE = Path("/etc/hosts")
# RFC 1123 labels; the whole name at most 253 characters.
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


SHUTDOWN_S = 3.0


class BadInput(SanicException):
    """A 400 whose message tells the caller what to send instead."""

    status_code = 400
    quiet = True


def _body(mechanism: str, **fields) -> HTTPResponse:
    return json({"mechanism": mechanism, **fields}, dumps=ujson.dumps)


def parse_ms(raw: str | None, default: int, name: str = "ms") -> int:
    if raw is None:
        return default
    try:
        ms = int(raw)
    except ValueError:
        raise BadInput(f"{name} must be a whole number of milliseconds, got {raw!r}")
    if not 0 <= ms <= MAX_SLEEP_MS:
        raise BadInput(f"{name} must be between 0 and {MAX_SLEEP_MS}, got {ms}")
    return ms


MAX_BLOCK_MS = 5_000  # a blocked loop serves nobody: keep the lesson short
MAX_TIMERS = 10


def parse_busy_ms(raw: str | None, route: str) -> int:
    """ms for the routes that hold the loop on purpose, kept short."""
    ms = parse_ms(raw, 300)
    if ms > MAX_BLOCK_MS:
        raise BadInput(f"ms must be at most {MAX_BLOCK_MS} for {route}, got {ms}")
    return ms


def elapsed_ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


def parse_ms_list(raw: str | None, route: str = "/gather") -> list[int]:
    if not raw:
        raise BadInput(f"ms is required, e.g. {route}?ms=100,200,300")
    parts = raw.split(",")
    if len(parts) > MAX_TIMERS:
        raise BadInput(f"at most {MAX_TIMERS} timers, got {len(parts)}")
    return [parse_ms(p.strip(), 0) for p in parts]


def query_arg(request: Request, name: str) -> str | None:
    """The query value `name`, None when absent; present but blank (`ms=`) is a 400,
    not a silent default."""
    raw = request.get_args(keep_blank_values=True).get(name)
    if raw is not None and not raw.strip():
        raise BadInput(f"{name} is blank; give a value or leave it out")
    return raw


MIN_TICK_MS = 10  # a faster tick would fill the trace with waits and teach nothing more


def parse_tick_ms(raw: str | None) -> int:
    every = parse_ms(raw, 50, "every")
    if every < MIN_TICK_MS:
        raise BadInput(f"every must be at least {MIN_TICK_MS} ms, got {every}")
    return every


class LessonFailure(Exception):
    """The failure /taskgroup raises on purpose in its first task to finish."""


def parse_flag(raw: str | None, name: str) -> bool:
    if raw in (None, "0"):
        return False
    if raw == "1":
        return True
    raise BadInput(f"{name} must be 0 or 1, got {raw!r}")


NAME_MAX = 255  # bytes in one file name (Linux); a longer one is ENAMETOOLONG, not a 500


def data_path(name: str) -> Path:
    """The file `name` inside the lab's data folder, or BadInput."""
    if not name or "\x00" in name:
        raise BadInput("name must be a file name inside the lab's data folder")
    size = len(name.encode())
    if size > NAME_MAX:
        raise BadInput(f"name must be at most {NAME_MAX} bytes, got {size}")
    path = (DATA_DIR / name).resolve()
    if path.parent != DATA_DIR:
        raise BadInput(f"{name!r} is outside the lab's data folder")
    try:
        found = path.is_file()
    except OSError as e:
        raise BadInput(f"{name!r} cannot be a file in the lab's data folder ({e.strerror})")
    if not found:
        raise BadInput(f"no file {name!r} in the lab's data folder")
    return path


def local_names() -> set[str]:
    """Names this machine resolves without asking a DNS server."""
    names = {"localhost"}
    try:
        text = HOSTS_FILE.read_text(errors="replace")
    except OSError:
        return names
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        names.update(f.lower() for f in fields[1:])
    return names


def check_host(host: str | None) -> str:
    if not host:
        raise BadInput("host is required, e.g. /dns?host=localhost")
    # No trailing dot: "localhost." is an absolute name that getaddrinfo
    # sends to the nameserver instead of matching /etc/hosts.
    if len(host) > 253 or not all(_LABEL.match(p) for p in host.split(".")):
        raise BadInput(f"{host[:80]!r} is not a valid host name")
    if host.lower() not in LOCAL_NAMES:
        # The lab must never send a query off the machine.
        raise BadInput(f"{host!r} is not in /etc/hosts; the lab only resolves local names")
    return host


# Read once at import: reading /etc/hosts per request would be a blocking
# file read on the loop thread, the very thing the lab teaches to avoid.
LOCAL_NAMES = local_names()


class JSONErrors(ErrorHandler):
    """Every error as JSON without reading Accept: Sanic's own guess parses it,
    and a malformed Accept turned any 4xx into a 500."""

    def default(self, request: Request, exception: Exception) -> HTTPResponse:
        self.log(request, exception)
        return exception_response(request, exception, debug=self.debug, fallback="json",
                                  base=JSONRenderer, renderer=JSONRenderer)


def create_app(name: str = "epoll_lab") -> Sanic:
    app = Sanic(name, error_handler=JSONErrors())
    app.config.FALLBACK_ERROR_FORMAT = "json"
    # A stop (SIGINT, SIGTERM) waits this long for handlers still running (Sanic: 15 s);
    # idle clients, and clients still sending a head, are closed at once (server/framing.py).
    app.config.GRACEFUL_SHUTDOWN_TIMEOUT = SHUTDOWN_S

    @app.before_server_start
    async def quiet_first_requests(app, loop):
        # Work Python would otherwise do lazily on the loop thread during the
        # first /file or /dns (importing the idna codec, counting CPUs for the
        # executor) is done here, so request traces show only the mechanism.
        "localhost".encode("idna")
        loop.set_default_executor(ThreadPoolExecutor(max_workers=4, thread_name_prefix="pool"))

    @app.get("/")
    async def index(request: Request):
        return json(INDEX, dumps=ujson.dumps)

    @app.get("/json")
    async def json_route(request: Request):
        return json(json_body(), dumps=ujson.dumps)

    @app.get("/file")
    async def file_route(request: Request):
        path = data_path(query_arg(request, "name") or DEFAULT_FILE)
        loop = asyncio.get_running_loop()
        # Regular files are always "ready"; epoll cannot wait for them, so the
        # read runs on the default executor (a thread pool) and the pool wakes
        # the loop when it is done.
        data = await loop.run_in_executor(None, path.read_bytes)
        return _body("thread-pool", pollable=False, file=path.name, bytes=len(data))

    @app.get("/dns")
    async def dns_route(request: Request):
        host = check_host(query_arg(request, "host"))
        loop = asyncio.get_running_loop()
        # getaddrinfo is a blocking libc call: the loop hands it to a pool.
        infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        addresses = sorted({info[4][0] for info in infos})
        return _body("thread-pool", pollable=False, host=host, addresses=addresses)

    @app.get("/sleep")
    async def sleep_route(request: Request):
        ms = parse_ms(query_arg(request, "ms"), 200)
        started = time.monotonic()
        # No thread, no fd: the timer becomes the timeout of the next epoll wait.
        await asyncio.sleep(ms / 1000)
        return _body("timer", pollable=True, ms=ms,
                     elapsed_ms=elapsed_ms(started))

    @app.get("/block")
    async def block_route(request: Request):
        ms = parse_busy_ms(query_arg(request, "ms"), "/block")
        started = time.monotonic()
        # The lesson's mistake, on purpose: time.sleep blocks the loop thread,
        # so no epoll wait happens and every other client waits too.
        time.sleep(ms / 1000)
        return _body("blocking", pollable=False, ms=ms,
                     elapsed_ms=elapsed_ms(started))

    @app.get("/cpu")
    async def cpu_route(request: Request):
        ms = parse_busy_ms(query_arg(request, "ms"), "/cpu")
        give_way = parse_flag(query_arg(request, "yield"), "yield")
        started = time.monotonic()
        deadline, last_yield = started + ms / 1000, started
        spins = yields = 0
        while time.monotonic() < deadline:
            spins += 1
            if give_way and time.monotonic() - last_yield >= 0.005:
                # sleep(0) hands control back to the loop: it polls (a
                # zero-timeout epoll wait) and serves whoever is ready.
                await asyncio.sleep(0)
                last_yield, yields = time.monotonic(), yields + 1
        return _body("cpu", pollable=False, ms=ms, yielded=give_way, yields=yields, spins=spins,
                     elapsed_ms=elapsed_ms(started))

    @app.get("/gather")
    async def gather_route(request: Request):
        timers = parse_ms_list(query_arg(request, "ms"))
        started = time.monotonic()
        # Concurrent timers: the total is the longest, not the sum.
        await asyncio.gather(*(asyncio.sleep(ms / 1000) for ms in timers))
        return _body("timers", pollable=True, ms=timers, sum_ms=sum(timers),
                     elapsed_ms=elapsed_ms(started))

    @app.get("/timeout")
    async def timeout_route(request: Request):
        ms = parse_ms(query_arg(request, "ms"), 500)
        limit = parse_ms(query_arg(request, "limit"), 100)
        started = time.monotonic()
        try:
            async with asyncio.timeout(limit / 1000):
                await asyncio.sleep(ms / 1000)
        except TimeoutError:
            return json({"mechanism": "timeout", "error": "the work overran its limit",
                         "reason": f"the work needed {ms} ms; asyncio.timeout cancelled it after "
                                   f"{limit} ms", "limit_ms": limit,
                         "elapsed_ms": elapsed_ms(started)},
                        status=504, dumps=ujson.dumps)
        return _body("timeout", pollable=True, ms=ms, limit_ms=limit,
                     elapsed_ms=elapsed_ms(started))

    @app.get("/taskgroup")
    async def taskgroup_route(request: Request):
        timers = parse_ms_list(query_arg(request, "ms"), "/taskgroup")
        fail = parse_flag(query_arg(request, "fail"), "fail")
        first = min(range(len(timers)), key=timers.__getitem__)
        finished: list[int] = []
        tasks: list[asyncio.Task] = []

        async def work(i: int, ms: int) -> None:
            await asyncio.sleep(ms / 1000)
            if fail and i == first:
                raise LessonFailure(f"task {i} ({ms} ms) failed on purpose")
            finished.append(i)

        started = time.monotonic()
        try:
            # The tasks start at the first await (here the end of `async with`);
            # when one raises, the group cancels its siblings, and their timers
            # leave the loop: the next epoll wait no longer counts down to them.
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(work(i, ms)) for i, ms in enumerate(timers)]
        except* LessonFailure:
            pass
        failed = [i for i, t in enumerate(tasks) if not t.cancelled() and t.exception() is not None]
        cancelled = [i for i, t in enumerate(tasks) if t.cancelled()]
        return _body("taskgroup", pollable=True, ms=timers, fail=fail, finished=sorted(finished),
                     failed=failed, cancelled=cancelled, elapsed_ms=elapsed_ms(started))

    @app.get("/cancel")
    async def cancel_route(request: Request):
        every = parse_tick_ms(query_arg(request, "every"))
        after = parse_ms(query_arg(request, "after"), 175, "after")
        ticks = 0
        loop = asyncio.get_running_loop()
        begin = loop.time()

        def until(ms: int) -> float:
            # Sleeps run to fixed marks from `begin` (50, 100, 150 ms...), so ticks do not
            # drift by the loop's lateness, which would shift them past the cancel.
            return max(0.0, begin + ms / 1000 - loop.time())

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(until((ticks + 1) * every))
                ticks += 1

        started = time.monotonic()
        task = asyncio.create_task(ticker())
        await asyncio.sleep(until(after))
        # cancel() drops the ticker's pending timer from the loop; the
        # CancelledError is thrown into it at its await.
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        return _body("cancel", pollable=True, every_ms=every, after_ms=after, ticks=ticks,
                     cancelled=task.cancelled(), elapsed_ms=elapsed_ms(started))

    @app.get("/subprocess")
    async def subprocess_route(request: Request):
        proc = await asyncio.create_subprocess_exec(
            "/bin/echo", "hello from a child process",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        out, _ = await proc.communicate()
        return _body("pipe", pollable=True, child_exit=proc.returncode,
                     output=out.decode(errors="replace").strip())

    return app
