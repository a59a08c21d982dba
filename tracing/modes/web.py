"""`epoll-lab web`: the lab on a projector. A page, served by the lab's own Sanic
on 127.0.0.1, that starts a target traced, sends it the scenario's requests,
the lessons or a short load burst when a button is pressed, and streams the
annotated lines over a WebSocket while per-thread lanes grow.

The pieces, each doing one job:
  - Hub: the stream. Messages get a sequence number and go into one bounded
    ring; each tab reads from the ring at its own pace. Publishing never waits
    for a tab, so a slow or closed tab costs the traced server nothing: strace's
    pipe is drained by the reader thread whatever the tabs do. A tab that falls
    behind the ring is told how many messages it missed and goes on.
  - Session: one traced run (tracing.modes.live.start: the tracer writing into a
    pipe), its reader thread (annotating as live mode does) and its files;
    stopped by PID with every process below it.
  - the app: Sanic routes, every one behind the same guard: the Host must be
    the page's own address (DNS rebinding), a WebSocket's Origin the page's
    own, and a random token (printed in the URL at start) is required on every
    request that starts, stops, sends or downloads. The page never gives a
    command to run: targets are the lab's recipes, or the one command given on
    the command line that started the page.
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import json
import os
import secrets
import signal
import threading
import time
from dataclasses import dataclass, field
from http.client import HTTPConnection
from pathlib import Path
from typing import Callable

from ..run import procs, recipes, scenario
from ..understand.annotate import Annotator
from ..errors import EXIT_SETUP, TraceError
from ..log import eprint
from ..render.renderer import Renderer

PAGE = Path(__file__).with_name("web.html")
RING = 20_000  # messages kept for tabs that read slowly or reconnect
BATCH = 500  # messages per WebSocket frame at most
SEND_TIMEOUT = 10.0  # seconds a tab may take to take one frame before it is dropped
BURST_REQUESTS, BURST_CONNECTIONS, BURST_SECONDS = 200, 4, 10.0
ARGS_SHOWN = 160  # characters of a call's arguments sent to the page
NOTE_SHOWN = 600


# -- the stream -------------------------------------------------------------
class Hub:
    """Numbered messages in a bounded ring; readers follow at their own pace.

    `publish` may be called from any thread and never blocks; readers are
    coroutines on the hub's loop (`read` waits for messages after a number)."""

    def __init__(self, ring: int = RING) -> None:
        self.ring: collections.deque[dict] = collections.deque(maxlen=ring)
        self.seq = 0
        self.lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.changed: asyncio.Event | None = None
        self._notify_pending = False

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop, self.changed = loop, asyncio.Event()

    def publish(self, kind: str, **body) -> int:
        with self.lock:
            self.seq += 1
            self.ring.append({"seq": self.seq, "type": kind, **body})
            seq, wake = self.seq, not self._notify_pending
            self._notify_pending = True
        if wake and self.loop is not None and not self.loop.is_closed():
            try:
                self.loop.call_soon_threadsafe(self._wake)
            except RuntimeError:  # the loop closed meanwhile: nobody is reading
                pass
        return seq

    def _wake(self) -> None:
        with self.lock:
            self._notify_pending = False
        assert self.changed is not None
        self.changed.set()
        self.changed = asyncio.Event()  # readers waiting now hold the old, set one

    def after(self, since: int, most: int = BATCH) -> tuple[list[dict], int]:
        """Up to `most` messages numbered after `since`, and how many after it the ring lost."""
        with self.lock:
            if not self.ring or self.ring[-1]["seq"] <= since:
                return [], 0
            first = self.ring[0]["seq"]
            lost = max(0, first - since - 1)
            start = max(since + 1, first) - first
            return [self.ring[i] for i in range(start, min(len(self.ring), start + most))], lost

    async def read(self, since: int, most: int = BATCH, timeout: float | None = None) -> tuple[list[dict], int]:
        """Wait until there is something after `since` (or `timeout` passes)."""
        while True:
            assert self.changed is not None
            waiter = self.changed
            got, lost = self.after(since, most)
            if got or lost:
                return got, lost
            try:
                await asyncio.wait_for(waiter.wait(), timeout)
            except asyncio.TimeoutError:
                return [], 0


async def follow(hub: Hub, send: Callable, since: int = 0, send_timeout: float = SEND_TIMEOUT,
                 idle: float = 15.0) -> None:
    """Send a reader everything after `since`, in order, one frame a batch, until `send` fails.

    A frame is a JSON list of messages; a reader that fell behind the ring first
    gets {"type": "gap", "lost": N}. A reader slower than `send_timeout` for one
    frame is dropped (TimeoutError): it may reconnect with the last number it saw.
    With nothing to send for `idle` seconds a ping message keeps the line open."""
    while True:
        got, lost = await hub.read(since, timeout=idle)
        frame = []
        if lost:
            frame.append({"type": "gap", "lost": lost, "after": since})
        frame += got
        if not frame:
            frame = [{"type": "ping", "seq": since}]
        else:
            since = got[-1]["seq"] if got else since + lost
        await asyncio.wait_for(send(json.dumps(frame, ensure_ascii=False)), send_timeout)


def page_record(rec: dict) -> dict:
    """What the page shows of an annotated record (the evidence too, where the annotator gives it)."""
    out = {k: rec.get(k) for k in ("line", "tid", "thread", "syscall", "ret", "errno", "ts", "duration",
                                   "category", "request", "kind")}
    out["args"] = (rec.get("args") or "")[:ARGS_SHOWN]
    out["note"] = (rec.get("note") or "")[:NOTE_SHOWN]
    if rec.get("resumed_line"):
        out["line"] = rec["resumed_line"]
        out["started_line"] = rec["line"]
    if "evidence" in rec:
        out["evidence"] = rec["evidence"]
    return out


class _Published(Renderer):
    """Each record (but a call's started half) to the page's tabs, through the hub."""

    def __init__(self, hub) -> None:
        self.hub = hub

    def add(self, rec: dict) -> None:
        if rec["kind"] != "started":
            self.hub.publish("rec", rec=page_record(rec))


# -- one traced run -----------------------------------------------------------
@dataclass
class Choice:
    """A target the page may start: a key, a label, and how to make its recipe."""

    key: str
    label: str
    make: Callable[[int], recipes.Target]
    lessons: bool = False
    ready: str = ""  # why it cannot start yet ('' when it can)


def choices(command: list[str] | None = None, command_port: int | None = None) -> dict[str, Choice]:
    out = [
        Choice("sanic", "Sanic on uvloop", lambda p: recipes.sanic(loop="uvloop", port=p), lessons=True),
        Choice("sanic-asyncio", "Sanic on the stdlib asyncio loop",
               lambda p: recipes.sanic(loop="asyncio", port=p), lessons=True),
        Choice("c", "the C epoll server", lambda p: recipes.c(pool=False, port=p)),
        Choice("c-pool", "the C epoll server with a thread pool", lambda p: recipes.c(pool=True, port=p)),
    ]
    # The io_uring server is being written: once recipes has it, it is one more Choice here.
    if hasattr(recipes, "uring"):
        out.append(Choice("uring", "the io_uring server", lambda p: recipes.uring(port=p)))
    if command:
        out.append(Choice("command", "your command: " + " ".join(command)[:80],
                          lambda p: recipes.program(list(command), command_port or p)))
    return {c.key: c for c in out}


@dataclass
class Session:
    choice: Choice
    out: Path
    hub: Hub
    port: int = 0
    target: recipes.Target | None = None
    traced: object = None
    pipe: int = -1
    reader: threading.Thread | None = None
    started: float = field(default_factory=time.time)
    seen: set[int] = field(default_factory=set)  # every PID this run started, for the stop
    stopping: bool = False
    stopped: list[str] = field(default_factory=list)

    def start(self, command_port: int | None) -> None:
        from . import live
        self.port = command_port if self.choice.key == "command" and command_port else _free_port()
        self.target = self.choice.make(self.port)
        self.target.name += "-web"
        if self.target.argv and self.target.argv[0].endswith("epoll_server"):
            from ..run import assets
            assets.ensure_c_binary()
        self.out.mkdir(parents=True, exist_ok=True)
        self.traced, self.pipe = live.start(self.target, self.out)
        self.seen.add(self.traced.strace.pid)
        self.reader = threading.Thread(target=self._read, name="epoll-lab-web-reader", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        """strace's pipe to annotated records, the run's files and the hub; never waits for a tab."""
        from . import live
        ann = Annotator()
        raw_name = live.raw_name(self.target)
        try:
            with open(self.out / raw_name, "wb") as raw, open(self.out / "annotated.log", "w") as text, \
                    open(self.out / "events.jsonl", "w") as jsonl:
                text.write(f"# epoll-lab web trace of {self.target.name}; raw lines, each followed by its note.\n")

                live.stream(self.pipe, raw, text, jsonl, ann, _Published(self.hub))
        except (OSError, ValueError) as e:
            self.hub.publish("say", text=f"the trace stopped being read: {e}")
        finally:
            summary = ann.summary.as_dict()
            self.hub.publish("status", state="stopped", target=self.choice.key,
                             text="; ".join(self.stopped) or "the server exited on its own",
                             lines=summary["lines"])

    def pids(self) -> set[int]:
        if self.traced is not None and self.traced.strace.poll() is None:
            self.seen.update(procs.descendants(self.traced.strace.pid))
        return self.seen

    def stop(self) -> list[str]:
        """Stop the server and the tracer by PID, then anything still alive that they started."""
        if self.stopping or self.traced is None:
            return self.stopped
        self.stopping = True
        self.pids()
        done = self.traced.stop(self.port)
        for pid in sorted(self.seen):
            if procs.alive(pid):
                done += procs.stop(pid, signal.SIGTERM, wait=2)
        if self.reader is not None:
            self.reader.join(timeout=10)
        if self.pipe >= 0:
            os.close(self.pipe)
            self.pipe = -1
        self.stopped = done
        return done

    def send(self, paths: list[recipes.Request]) -> list[dict]:
        """A request (or a lesson and its probe) with real curl; the result goes to the hub too."""
        results = scenario.send(self.port, paths)
        for r in results:
            self.hub.publish("sent", path=r["path"], status=r["status"], start=r["start"], end=r["end"],
                             probe=bool(r.get("probe")), error=r.get("error") or "")
        return results

    def burst(self) -> dict:
        """A short, bounded load: BURST_REQUESTS GETs of / on BURST_CONNECTIONS keep-alive
        connections, BURST_SECONDS at most."""
        t0, deadline = time.time(), time.monotonic() + BURST_SECONDS
        counts = collections.Counter()
        share = [BURST_REQUESTS // BURST_CONNECTIONS] * BURST_CONNECTIONS

        def worker(n: int) -> None:
            conn = HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                for _ in range(n):
                    if time.monotonic() > deadline:
                        break
                    conn.request("GET", "/")
                    resp = conn.getresponse()
                    resp.read()
                    counts[resp.status] += 1
            except OSError as e:
                counts[type(e).__name__] += 1
            finally:
                conn.close()

        threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in share]
        for t in threads:
            t.start()
        for t in threads:
            t.join(BURST_SECONDS + 6)
        got = {"path": "burst", "start": t0, "end": time.time(), "answers": dict(counts)}
        self.hub.publish("sent", path=f"burst: {sum(share)} × GET / on {BURST_CONNECTIONS} connections",
                         status=200 if set(counts) == {200} else 0, start=t0, end=got["end"],
                         probe=False, error=", ".join(f"{k}: {v}" for k, v in counts.items()))
        return got


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the app --------------------------------------------------------------------
class Lab:
    """What the page's process holds: the hub, the targets, the current session."""

    def __init__(self, port: int, out: Path, command: list[str] | None = None,
                 command_port: int | None = None, token: str | None = None) -> None:
        self.port, self.out = port, out
        self.token = token or secrets.token_urlsafe(24)
        self.hub = Hub()
        self.choices = choices(command, command_port)
        self.command_port = command_port
        self.session: Session | None = None
        self.lock = threading.Lock()  # one start or stop at a time

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/?token={self.token}"

    def hosts(self) -> set[str]:
        return {f"127.0.0.1:{self.port}", f"localhost:{self.port}"}

    def origins(self) -> set[str]:
        return {f"http://{h}" for h in self.hosts()}

    def state(self) -> dict:
        s = self.session
        running = bool(s and s.traced is not None and s.traced.strace.poll() is None and not s.stopping)
        current = s.choice.key if s else None
        target = s.target if s else None
        return {
            "targets": [{"key": c.key, "label": c.label} for c in self.choices.values()],
            "running": running, "target": current, "port": s.port if s else None,
            "requests": [{"path": r.path, "lesson": r.lesson} for r in (target.requests if target else [])],
            "lessons": [{"path": r.path, "lesson": r.lesson, "probe": r.probe_after is not None}
                        for r in recipes.LESSONS] if s and s.choice.lessons else [],
            "burst": f"{BURST_REQUESTS} × GET / on {BURST_CONNECTIONS} connections",
            "seq": self.hub.seq,
            "files": str(s.out) if s else None,
        }

    def start(self, key: str) -> dict:
        with self.lock:
            if key not in self.choices:
                raise ValueError(f"no such target: {key!r}; one of {', '.join(self.choices)}")
            if self.session is not None:
                self.session.stop()
            choice = self.choices[key]
            out = self.out / f"{choice.key}-web"
            session = Session(choice, out, self.hub)
            self.session = session
            self.hub.publish("status", state="starting", target=key, text=f"starting {choice.label} traced")
            try:
                session.start(self.command_port)
            except TraceError as e:
                self.session = None
                self.hub.publish("status", state="failed", target=key, text=str(e))
                raise
        try:
            scenario.wait_ready(session.traced, session.port, 60)
        except TraceError as e:
            self.stop()
            self.hub.publish("status", state="failed", target=key, text=str(e))
            raise
        session.pids()
        self.hub.publish("status", state="running", target=key, port=session.port,
                         pids=sorted(session.seen), text=f"{choice.label} is up on 127.0.0.1:{session.port}, "
                         f"traced by PID {session.traced.strace.pid}")
        return self.state()

    def stop(self) -> list[str]:
        with self.lock:
            if self.session is None:
                return []
            return self.session.stop()

    def send(self, what: str, index: int) -> list[dict]:
        s = self.session
        if s is None or s.stopping or s.traced.strace.poll() is not None:
            raise ValueError("nothing is running: start a target first")
        if what == "burst":
            return [s.burst()]
        table = s.target.requests if what == "request" else recipes.LESSONS if s.choice.lessons and \
            what == "lesson" else None
        if table is None or not 0 <= index < len(table) or table[index].probe_after is not None:
            raise ValueError(f"no {what} number {index}")
        pair = table[index:index + 2] if index + 1 < len(table) and table[index + 1].probe_after is not None \
            else table[index:index + 1]
        return s.send(list(pair))


def make_app(lab: Lab):
    from sanic import Sanic, response
    from sanic.exceptions import NotFound

    app = Sanic(f"epoll_lab_web_{lab.port}")
    app.config.MOTD = False
    app.config.REQUEST_MAX_SIZE = 64 * 1024
    app.config.WEBSOCKET_MAX_SIZE = 4096  # a tab only pings
    app.config.GRACEFUL_SHUTDOWN_TIMEOUT = 3.0
    app.ctx.lab = lab

    def refuse(status: int, why: str):
        return response.json({"error": why}, status=status)

    def token_ok(request) -> bool:
        given = request.headers.get("x-epoll-lab-token") or request.args.get("token") or ""
        return hmac.compare_digest(given.encode(), lab.token.encode())

    @app.on_request
    async def guard(request):
        host = request.headers.get("host", "")
        if host not in lab.hosts():
            return refuse(421, f"this page answers only as 127.0.0.1:{lab.port} (Host was {host[:80]!r})")
        origin = request.headers.get("origin")
        is_ws = request.headers.get("upgrade", "").lower() == "websocket"
        if (origin is not None or is_ws) and origin not in lab.origins():
            return refuse(403, f"requests from other pages are refused (Origin {str(origin)[:80]!r})")
        if request.path != "/" and not token_ok(request):
            return refuse(403, "the token is missing or wrong: open the URL epoll-lab web printed")
        return None

    @app.get("/")
    async def index(request):
        return await response.file(PAGE, mime_type="text/html; charset=utf-8",
                                   headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                            "Content-Security-Policy": "default-src 'self'; "
                                            "style-src 'self' 'unsafe-inline'; img-src 'self' data:; script-src 'self' "
                                            "'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'"})

    @app.get("/api/state")
    async def state(request):
        return response.json(lab.state())

    async def body(request) -> dict:
        try:
            got = json.loads(request.body or b"{}")
        except ValueError:
            got = None
        if not isinstance(got, dict):
            raise ValueError("the body must be a JSON object")
        return got

    @app.post("/api/start")
    async def start(request):
        try:
            key = (await body(request)).get("target")
            if not isinstance(key, str):
                raise ValueError("say which target: {\"target\": \"sanic\"}")
            return response.json(await asyncio.to_thread(lab.start, key))
        except ValueError as e:
            return refuse(400, str(e))
        except TraceError as e:
            return refuse(409 if e.code == EXIT_SETUP else 502, str(e).splitlines()[0])

    @app.post("/api/stop")
    async def stop(request):
        done = await asyncio.to_thread(lab.stop)
        return response.json({"stopped": done, **lab.state()})

    @app.post("/api/send")
    async def send(request):
        try:
            got = await body(request)
            what, index = got.get("what"), got.get("index", 0)
            if what not in ("request", "lesson", "burst") or type(index) is not int:
                raise ValueError('say what to send: {"what": "request"|"lesson"|"burst", "index": N}')
            return response.json({"sent": await asyncio.to_thread(lab.send, what, index)})
        except ValueError as e:
            return refuse(400, str(e))

    @app.get("/api/download/<name:str>")
    async def download(request, name: str):
        s = lab.session
        if s is None:
            return refuse(404, "nothing has run yet")
        if name == "annotated.log":
            return await response.file(s.out / "annotated.log", filename="annotated.log")
        if name == "trace.json":
            path = s.out / "trace.json"
            await asyncio.to_thread(_write_trace_json, s.out, path)
            return await response.file(path, filename="trace.json", mime_type="application/json")
        return refuse(404, "annotated.log or trace.json")

    @app.websocket("/api/stream")
    async def stream(request, ws):
        try:
            since = int(request.args.get("since", "0"))
        except ValueError:
            since = 0
        try:
            await ws.send(json.dumps([{"type": "hello", "now": lab.hub.seq}]))
            await follow(lab.hub, ws.send, max(0, since))
        except (asyncio.TimeoutError, asyncio.CancelledError, ConnectionError):
            pass
        except Exception as e:  # the tab went away mid-frame: websockets' ConnectionClosed
            if type(e).__name__ not in ("ConnectionClosed", "ConnectionClosedOK", "ConnectionClosedError",
                                        "ServerError"):
                raise

    @app.exception(NotFound)
    async def not_found(request, exception):
        return refuse(404, "no such page")

    @app.before_server_start
    async def bind(app):
        lab.hub.bind(asyncio.get_running_loop())

    @app.before_server_stop
    async def stop_all(app):
        await asyncio.to_thread(lab.stop)

    return app


def _write_trace_json(out: Path, path: Path) -> None:
    from ..render import timeline, trace_event
    tmp = path.with_suffix(".json.part")
    with open(tmp, "w") as f:
        trace_event.write(timeline.from_jsonl(out / "events.jsonl"), f, f"epoll-lab web: {out.name}")
    tmp.replace(path)


def main_web(port: int, out: Path, command: list[str] | None = None, command_port: int | None = None,
             start: str | None = None) -> int:
    if not procs.port_free(port):
        raise TraceError(f"port {port} on 127.0.0.1 is in use: pick another with --port (or PORT=...)",
                         EXIT_SETUP)
    lab = Lab(port, out, command, command_port)
    app = make_app(lab)
    if start:
        if start not in lab.choices:
            raise TraceError(f"--start {start}: no such target; one of {', '.join(lab.choices)}", 2)

        @app.after_server_start
        async def autostart(app):
            async def go():
                try:
                    await asyncio.to_thread(lab.start, start)
                except (TraceError, ValueError) as e:
                    eprint(f"[epoll-lab] web: {start} did not start: {e}")
            app.add_task(go())

    print(f"[epoll-lab] web: open {lab.url}", flush=True)
    eprint("[epoll-lab] web: the token in that URL is required to start, stop or send anything; "
           "Ctrl-C stops the page and every process it started")
    try:
        app.run(host="127.0.0.1", port=port, single_process=True, access_log=False, debug=False)
    finally:
        stopped = lab.stop()
        eprint(f"[epoll-lab] web: stopped{': ' + '; '.join(stopped) if stopped else ''}")
    return 0
