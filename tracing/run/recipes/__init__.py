"""Recipes: which server to trace, which calls to follow, and which requests to send.

A recipe is data; `tracing.run.orchestrate` carries it out, and the tracer a run
uses makes the target its own (`tracing.run.tracers`: `prepare`). Adding a server
means adding a Target here, not another runner.
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .. import assets
from ...errors import TraceError


# The syscalls that tell the story: the loop's epoll calls, sockets, the
# thread pool's file and resolver work, the wakeup fds, threads and children.
STORY_SYSCALLS = (
    "epoll_create,epoll_create1,epoll_ctl,epoll_wait,epoll_pwait,epoll_pwait2,"
    "socket,bind,listen,connect,accept,accept4,shutdown,"
    "read,write,readv,writev,pread64,recvfrom,sendto,recvmsg,sendmsg,"
    "open,openat,close,dup,dup2,dup3,"
    "eventfd2,pipe2,socketpair,timerfd_create,timerfd_settime,signalfd4,"
    "io_uring_setup,io_uring_enter,"
    "clone,clone3,fork,vfork,execve,exit_group"
)


# Any program (`trace -- CMD`, `--pid`) may wait in poll or select instead of
# epoll (http.server, older C servers): without these its waits would not show.
PROGRAM_SYSCALLS = STORY_SYSCALLS + ",poll,ppoll,select,pselect6"


def syscall_set(spec: str, base: str) -> str:
    """--syscalls in strace's own -e trace= syntax: `+a,b` adds to `base`, anything else replaces
    it. execve is always traced (its line names the program's PID and what each child runs),
    unless the set is a negation (`!...`), which strace reads as a whole. ValueError: empty."""
    spec = spec.strip()
    if spec.startswith("+"):
        extra = spec[1:].strip().strip(",")
        if not extra:
            raise ValueError(f"{spec!r}: name the syscalls to add after '+' (e.g. +futex,clock_nanosleep)")
        return f"{base},{extra}"
    if not spec.strip(","):
        raise ValueError("is empty: give syscalls in strace's syntax (e.g. read,write,%net), or +NAME to add")
    if spec.startswith("!") or "execve" in re.split(r"[,\s]+", spec):
        return spec
    return f"{spec},execve"


# asyncio's debug report of a slow callback names it in a line of a few hundred characters
# ("Executing <Task pending name=... coro=<handle() running at /path/app.py:12> ... took
# 0.201 seconds"): strace shows that much of each write.
ASYNCIO_DEBUG_STRINGS = 1024


def with_asyncio_debug(target: Target) -> Target:
    """PYTHONASYNCIODEBUG=1: asyncio's debug mode logs each callback that holds the loop for
    its slow_callback_duration (0.1 s) or more, from the loop thread: a write the trace holds."""
    target.env = {**target.env, "PYTHONASYNCIODEBUG": "1"}
    target.strings = max(target.strings, ASYNCIO_DEBUG_STRINGS)
    return target


# ltrace: library calls. `@*` takes calls made from any library (Python's
# epoll calls come from its select module, uvloop's from libuv inside uvloop's
# own .so); the C server makes them from its own binary.
LTRACE_C = "epoll_create1+epoll_ctl+epoll_wait+accept4+getaddrinfo+read+write"
LTRACE_PY = ("epoll_create1@*+epoll_ctl@*+epoll_wait@*+epoll_pwait@*+accept4@*+getaddrinfo@*"
             "+write@loop.cpython*")


# The load recipe: only the loop's own calls (strace filters them in the kernel, so
# untraced syscalls never stop the server). Cheap enough to trace a server under wrk.
LOAD_SYSCALLS = "epoll_wait,epoll_pwait,epoll_pwait2,epoll_ctl,accept,accept4"


@dataclass(frozen=True)
class Request:
    """One step of a scenario: an HTTP request curl sends, or (`client`) any command."""

    path: str
    lesson: str
    timeout: float = 15.0  # seconds curl (or the client command) may take
    # Sent this many seconds after the request before it started, while that
    # one is still running: the probe of an overlapping pair.
    probe_after: float | None = None
    method: str = "GET"
    headers: tuple[str, ...] = ()
    body: str | None = None  # sent as is (curl --data-binary)
    client: str | None = None  # a shell command run as this step (PORT is set to the port)

    @property
    def label(self) -> str:
        return f"$ {self.client}" if self.client is not None else f"{self.method} {self.path}"


CLIENT_TIMEOUT = 30.0  # seconds a --client command may take
_METHOD = re.compile(r"[A-Z][A-Z-]{0,19}")


def parse_request(text: str) -> Request:
    """--request: `[METHOD] PATH [-H 'Name: value']... [-d BODY]`, words split as a shell
    splits them (curl's own -H and -d/--data); ValueError says what is wrong."""
    try:
        words = shlex.split(text)
    except ValueError as e:
        raise ValueError(f"{text!r}: {e}") from None
    method = words.pop(0) if words and _METHOD.fullmatch(words[0]) else "GET"
    if not words or not words[0].startswith("/"):
        raise ValueError(f"{text!r}: give a path that starts with / (e.g. '/items' or 'POST /items -d x')")
    path, rest = words[0], words[1:]
    if any(c.isspace() or ord(c) < 32 for c in path):
        raise ValueError(f"{text!r}: a path has no spaces or control characters (quote it as %20)")
    headers, body = [], None
    while rest:
        flag = rest.pop(0)
        if flag in ("-H", "--header", "-d", "--data", "--data-binary") and not rest:
            raise ValueError(f"{text!r}: {flag} needs a value")
        if flag in ("-H", "--header"):
            header = rest.pop(0)
            if ":" not in header or not header.split(":", 1)[0].strip():
                raise ValueError(f"{text!r}: a header is 'Name: value', not {header!r}")
            headers.append(header)
        elif flag in ("-d", "--data", "--data-binary"):
            body = rest.pop(0)
        else:
            raise ValueError(f"{text!r}: {flag!r} is not understood (after the path: -H 'Name: value', -d BODY)")
    return Request(path, "", method=method, headers=tuple(headers), body=body)


def client_step(command: str) -> Request:
    if not command.strip():
        raise ValueError("--client needs a command (e.g. 'redis-cli -p $PORT ping')")
    return Request("", "", timeout=CLIENT_TIMEOUT, client=command)


@dataclass
class Target:
    name: str  # the folder under traces/
    argv: list[str]  # the server command, port appended by `command`
    port: int | None  # None: no scenario, trace until the program ends
    requests: list[Request] = field(default_factory=list)
    extra_strace: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    tracer: str = "strace"  # the tracer's name (tracing.run.tracers: its `prepare` sets it)
    recipe: str = "story"  # or "load": the cheap filter, under wrk instead of curl
    ltrace_calls: str = ""  # the library calls ltrace follows in this server
    pid: int | None = None  # attach to this running process instead of starting argv
    port_flag: bool = True  # the demo servers take `--port N`; a user's command is run as given
    syscalls: str = STORY_SYSCALLS  # strace's story set; the kernel tracer's too (kernel_syscalls)
    ready: str = "http"  # the port is ready when it answers HTTP, or ("tcp") when it accepts a connection
    load: object = None  # tracing.run.load.Load: connections and seconds of load after the steps
    strings: int = 128  # strace -s: how much of each string argument the log shows

    def command(self) -> list[str]:
        return [*self.argv, "--port", str(self.port)] if self.port_flag and self.port else list(self.argv)


SANIC_REQUESTS = [
    Request("/", "pure socket I/O: accept, read, write, all pollable"),
    Request("/file", "a file read handed to a thread pool, which wakes the loop"),
    Request("/dns?host=localhost", "getaddrinfo on a pool thread (reads /etc/hosts), then a wakeup"),
    Request("/sleep?ms=200", "a timer: no fd, just the timeout of the next epoll wait"),
    Request("/subprocess", "a child process; its stdout pipe is pollable"),
    Request("/json", "a ujson body; socket I/O only"),
]


# strace's fault injection makes io_uring_setup fail as on a kernel (or a
# container's seccomp profile) without io_uring: libuv then registers every
# fd with plain epoll_ctl, which strace shows.
NO_IO_URING = ["-e", "inject=io_uring_setup:error=ENOSYS"]


PROBE = 0.05  # seconds after the lesson's request: it is surely running by then

# The asyncio lessons: each request with a probe GET / fired while it runs.
LESSONS = [
    Request("/block?ms=300", "time.sleep in a handler blocks the loop: no epoll wait for 300 ms, "
            "and the GET / sent 50 ms later is answered only after it"),
    Request("/", "the probe: waits for the blocked loop", probe_after=PROBE),
    Request("/sleep?ms=300", "await asyncio.sleep does not block: the loop waits in epoll with a "
            "300 ms timeout and serves the GET / sent 50 ms later at once"),
    Request("/", "the probe: served while the sleeper sleeps", probe_after=PROBE),
    Request("/gather?ms=100,200,300", "gather of 100, 200 and 300 ms sleeps takes ~300 ms, not 600: "
            "one wait per timer, each timeout the time to the next one"),
    Request("/cpu?ms=300", "a CPU loop without await holds the loop: the GET / sent 50 ms later waits"),
    Request("/", "the probe: waits for the CPU loop", probe_after=PROBE),
    Request("/cpu?ms=300&yield=1", "a CPU loop that awaits asyncio.sleep(0) every 5 ms lets the loop "
            "poll (zero-timeout waits) and serve the GET / sent 50 ms later"),
    Request("/", "the probe: served between slices of the CPU loop", probe_after=PROBE),
    Request("/timeout?ms=500&limit=100", "asyncio.timeout cancels work that overruns: the wait "
            "times out at 100 ms and a 504 goes out instead of the 500 ms answer"),
    Request("/taskgroup?ms=100,200,300&fail=1", "a TaskGroup whose first task to finish (100 ms) "
            "raises: the group cancels its siblings, their timers leave the loop, and the answer goes "
            "out at 100 ms; the next wait no longer counts down to the 200 ms timer"),
    Request("/", "the probe: served while the group's tasks sleep", probe_after=PROBE),
    Request("/cancel?every=50&after=175", "task.cancel(): a task ticking every 50 ms is cancelled "
            "at 175 ms; its 200 ms timer is dropped, so no wait counts down to it"),
    Request("/", "the probe: served between the ticks", probe_after=PROBE),
]


def sanic(loop: str = "uvloop", port: int = 8000, io_uring: bool = True, recipe: str = "story",
          scenario: str = "requests", **_ignored) -> Target:
    name = "sanic" if loop == "uvloop" else f"sanic-{loop}"
    if scenario == "lessons":
        name += "-lessons"
    if not io_uring:
        name += "-no-io_uring"
    # sys.executable is the venv's python, a symlink to the real interpreter
    # (not a pyenv shim script), so strace follows the server, not bash.
    target = Target(name, [sys.executable, "-m", assets.SERVER_PACKAGE, "--loop", loop], port,
                    list(LESSONS if scenario == "lessons" else SANIC_REQUESTS),
                    extra_strace=[] if io_uring else list(NO_IO_URING), ltrace_calls=LTRACE_PY)
    return with_recipe(target, recipe)


def with_recipe(target: Target, recipe: str) -> Target:
    if recipe == "load":
        target.name += "-load"
        target.recipe, target.requests = "load", []
    return target


C_REQUESTS = [
    Request("/", "the textbook loop: wait, accept4, EPOLL_CTL_ADD, read until EAGAIN, write"),
    Request("/file", "a blocking open/read INSIDE the loop: nobody else is served meanwhile"),
    Request("/dns?host=localhost", "getaddrinfo: blocking in the loop, or on the pool with POOL=1"),
    Request("/sleep?ms=200", "a timerfd registered in the same epoll set: a pollable timer"),
]


def c(pool: bool = False, port: int = 8080, recipe: str = "story", **_ignored) -> Target:
    argv = [str(assets.c_binary()), "--data", str(assets.lab_data())]
    if pool:
        argv.append("--pool")
    return with_recipe(Target("c-pool" if pool else "c", argv, port, list(C_REQUESTS), ltrace_calls=LTRACE_C),
                       recipe)


# The same routes on completions: every operation goes through the ring, so
# strace shows io_uring_enter where the epoll server shows the calls themselves.
URING_REQUESTS = [
    Request("/", "completion, not readiness: accept, recv and send are operations the ring "
            "completes; strace sees only the io_uring_enter that submits and waits"),
    Request("/file", "IORING_OP_OPENAT, READ and CLOSE: the kernel reads the file (inline, or on "
            "its own iou-wrk threads); no read() on the loop, no thread pool"),
    Request("/dns?host=localhost", "/etc/hosts opened and read through the ring, searched on the "
            "loop: no getaddrinfo, no pool"),
    Request("/sleep?ms=200", "IORING_OP_TIMEOUT: a timer is an operation that completes, no timerfd"),
]
# ltrace: liburing's library calls (most of liburing is inline in the binary).
LTRACE_URING = "io_uring_queue_init_params+io_uring_submit_and_wait_timeout+io_uring_submit+accept4"


def uring(pool: bool = False, port: int = 8080, recipe: str = "story", **_ignored) -> Target:
    """pool: the file's operations go to the kernel's io-wq threads (IOSQE_ASYNC)."""
    if recipe == "load":
        raise TraceError("the load recipe traces epoll_wait and accept calls, which the io_uring server "
                         "does not make (it submits them with io_uring_enter); use the story recipe", 2)
    argv = [str(assets.c_binary("uring")), "--data", str(assets.lab_data())]
    requests = list(URING_REQUESTS)
    if pool:
        argv.append("--pool")
        requests[1] = Request("/file", "IORING_OP_OPENAT, READ and CLOSE with IOSQE_ASYNC: the kernel "
                              "runs them on its own io-wq threads (iou-wrk), its thread pool; no read() on "
                              "the loop, no user-space pool")
    return Target("uring-pool" if pool else "uring", argv, port, requests, ltrace_calls=LTRACE_URING)


def program(argv: list[str], port: int | None = None, steps: list | None = None,
            pid: int | None = None, ready: str = "http", load=None,
            syscalls: str = PROGRAM_SYSCALLS) -> Target:
    """Any command (or, with `pid`, a running process). With a port: once it is ready, the
    steps (requests given as Request or as a path, client commands), then the load; with no
    step and no load, GET / where the port speaks HTTP."""
    if steps is None:
        steps = [Request("/", "")] if port and ready == "http" and load is None else []
    steps = [Request(s, "") if isinstance(s, str) else s for s in steps]
    name = f"pid-{pid}" if pid else Path(argv[0]).name or "program"
    return Target(name, list(argv), port, steps, pid=pid, port_flag=False, syscalls=syscalls,
                  ready=ready, load=load, ltrace_calls=LTRACE_PY)


TARGETS = {"sanic": sanic, "c": c, "uring": uring}
