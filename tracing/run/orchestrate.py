"""Orchestration: one path for every trace run.

A run is a Target (a command to start, or a PID to attach to; a port and the
requests to send it, or none) and a tracer (tracing.run.tracers). The demo
servers are two such targets. Whatever happens (curl fails, the program
dies, Ctrl-C, SIGTERM, SIGHUP) the tracer and what it started are stopped and
reaped by PID, and the port is free again, before we return.

The pieces: tracing.run.procs (processes), tracing.run.scenario (curl),
tracing.run.outputs (the run's files), tracing.run.tracers (strace, ltrace, ...).
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

from . import load as loads
from . import outputs, procs, tracers
from ..understand import snapshot
from ..errors import EXIT_NOT_FOUND, EXIT_PID, EXIT_SCENARIO, EXIT_SETUP, EXIT_START, TraceError
from .procs import Traced, alive, port_free, tail
from .recipes import Target
from .scenario import START_TIMEOUT, load, run_requests, wait_ready
from .scenario import write_scenario
from ..log import eprint

ATTACH_TIMEOUT = 10.0


def preflight(port: int | None, tracer: str = tracers.DEFAULT) -> str:
    """The tracer's path, once it is known to work and the port is free."""
    path = tracers.get(tracer).check()
    if port and not port_free(port):
        raise TraceError(f"port {port} on 127.0.0.1 is in use: stop whatever listens there "
                         f"(ss -ltnp 'sport = :{port}') or pick another with PORT=...", EXIT_SETUP)
    return path


def check_target(target: Target) -> None:
    """A command that exists, or a PID that exists and is not us: one-line errors otherwise."""
    if target.pid is not None:
        if target.pid <= 0 or not alive(target.pid):
            top = procs.pid_max()
            beyond = f" (PIDs here stay below {top}: /proc/sys/kernel/pid_max)" if top and target.pid >= top else ""
            raise TraceError(f"no process with PID {target.pid}{beyond}", EXIT_PID)
        if target.pid in (os.getpid(), os.getppid()):
            raise TraceError(f"PID {target.pid} is this command or its parent: it cannot trace itself",
                             EXIT_PID)
        return
    exe = target.argv[0] if target.argv else ""
    found = (Path(exe).is_file() and os.access(exe, os.X_OK)) if "/" in exe else shutil.which(exe)
    if not found:
        hint = " (run `make build-c`)" if exe.endswith(("epoll_server", "uring_server")) else ""
        raise TraceError(f"command not found: {exe or '(empty)'}{hint}", EXIT_NOT_FOUND)


def start(target: Target, tracer_path: str, out: Path) -> Traced:
    """The target's tracer running on (or attached to) it, writing the run's raw file."""
    out.mkdir(parents=True, exist_ok=True)
    return tracers.get(target.tracer).start(tracer_path, target, out)


def wait_attached(traced: Traced) -> None:
    """Until the tracer says it attached; a refusal (ptrace, no such process) is one line."""
    deadline = time.monotonic() + ATTACH_TIMEOUT
    while time.monotonic() < deadline:
        text = traced.log.read_text(errors="replace") if traced.log.exists() else ""
        if " attached" in text:
            return
        if traced.strace.poll() is not None:
            why = next((line for line in text.splitlines() if "attach" in line), text.strip()[-200:])
            hint = (" (another tracer or debugger may hold it, or /proc/sys/kernel/yama/ptrace_scope "
                    "forbids it)" if "not permitted" in why else "")
            raise TraceError(f"cannot trace PID {traced.attached}: {why}{hint}", EXIT_PID)
        time.sleep(0.05)
    raise TraceError(f"the tracer did not attach to PID {traced.attached} within "
                     f"{ATTACH_TIMEOUT:.0f} s:\n{tail(traced.log)}", EXIT_PID)


def _program_pid(traced: Traced) -> int | None:
    # The tracer forks the program at once; its PID is known as soon as it shows.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and traced.strace.poll() is None:
        traced.server_pid()
        if traced.program is not None:
            return traced.program
        time.sleep(0.01)
    return traced.server_pid()


def plan(target: Target) -> str:
    """What the run will send, said once the port is ready."""
    reqs = [r for r in target.requests if r.client is None]
    clients = len(target.requests) - len(reqs)
    parts = ([f"{len(reqs)} request{'s' if len(reqs) != 1 else ''} with curl"] if reqs else []) \
        + ([f"{clients} client command{'s' if clients != 1 else ''}"] if clients else []) \
        + ([target.load.describe()] if target.load is not None else [])
    return "sending " + ", then ".join(parts) if parts else "nothing to send"


def _until_end(traced: Traced, seconds: float | None, t0: float) -> str:
    """Wait for the program's first process to exit or `seconds` to pass; say which."""
    while not traced.ended():
        if seconds is not None and time.monotonic() - t0 >= seconds:
            return f"{seconds:g} s passed"
        time.sleep(0.05)
    return "the program exited" if traced.attached is None else "the process exited"


def trace(target: Target, out: Path, annotate: bool = True, seconds: float | None = None,
          wait: float = START_TIMEOUT, full: bool = False) -> dict:
    """Trace `target` into `out`. Raises TraceError; never leaves a process behind.

    With a port: wait for it to answer HTTP, send the requests, stop. Without:
    trace until the program exits, `seconds` pass, or Ctrl-C (a normal end).
    """
    tracer = tracers.get(target.tracer)
    path = tracer.check()
    check_target(target)
    if target.port and target.pid is None and not port_free(target.port):
        preflight(target.port, target.tracer)  # says the port is in use
    outputs.ready_folder(out)
    try:
        with outputs.locked(out):
            return _trace(target, out, tracer, path, annotate, seconds, wait, full)
    except outputs.FolderInUse:
        raise outputs.folder_in_use(out) from None


def _trace(target: Target, out: Path, tracer, path: str, annotate: bool, seconds: float | None,
           wait: float, full: bool) -> dict:
    if target.pid:
        # What the log cannot show: the fds, epoll interest lists and threads made before it.
        try:
            snapshot.save(out, target.pid)
        except OSError as e:
            raise outputs.output_error(out, e) from None
    t0 = time.monotonic()
    traced = start(target, path, out)
    results: list[dict] = []
    pids = {"strace": traced.strace.pid, "server": target.pid}
    ended, interrupted = "", 0
    try:
        if target.pid:
            wait_attached(traced)
        else:
            pids["server"] = _program_pid(traced)
            eprint(f"[epoll-lab] the program runs as PID {pids['server']}" if pids["server"] else
                   "[epoll-lab] the program exited before its PID could be read (raw.strace has it)")
        if target.port:
            results.append(wait_ready(traced, target.port, wait, target.ready))
            pids["server"] = traced.server_pid() or pids["server"]
            eprint(f"[epoll-lab] server {pids['server']} is up on 127.0.0.1:{target.port} "
                   f"({tracer.name} {traced.strace.pid}); {plan(target)}")
            if target.recipe == "load":
                results.append(load(target.port))
            run_requests(target.port, target.requests, results)
            if target.load is not None:
                results.append(loads.run(target.load, target.port, pids["server"]))
            if seconds is not None:
                ended = _until_end(traced, seconds, t0)
        else:
            what = f"PID {target.pid}" if target.pid else " ".join(target.argv)
            eprint(f"[epoll-lab] tracing {what} until it exits"
                   + (f", {seconds:g} s pass" if seconds is not None else "") + " or Ctrl-C")
            ended = _until_end(traced, seconds, t0)
    except TraceError as e:
        # A program that cannot write its output (server.log, the raw trace) on a full disk
        # exits or never answers: the folder is why, not the program.
        full = outputs.cannot_write(out) if e.code in (EXIT_START, EXIT_SCENARIO) else None
        if full is not None:
            raise full from None
        raise
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM/SIGHUP through procs.catch_stop_signals
        interrupted = getattr(e, "signum", signal.SIGINT)
        ended = f"stopped by {signal.Signals(interrupted).name}"
    finally:
        stop_at = time.time()
        exited = traced.ended()
        stopped = traced.stop(target.port)
        try:
            write_scenario(out, results, stop_at, "" if exited or target.pid else
                           "SIGINT: the program closes its sockets and exits")
        except OSError as e:
            raise outputs.output_error(out, e) from None
    if interrupted and target.port:
        raise TraceError(f"interrupted ({signal.Signals(interrupted).name}); the "
                         + ("tracer detached" if target.pid else "server and strace were stopped"),
                         128 + interrupted)
    status = traced.strace.returncode if exited and not target.pid and not interrupted else None
    why = f"{ended} {exit_words(status)}" if status is not None and ended == "the program exited" else ended
    said = [why] * bool(why) + stopped
    eprint(f"[epoll-lab] stopped: {'; '.join(said) or 'the program had exited'}")
    summary, index = outputs.write_run(out, tracer, full) if annotate else ({}, [])
    return {"out": str(out), "requests": results, "summary": summary, "pids": pids, "ended": ended,
            "index": index, "raw": tracer.raw_name, "tracer": tracer.name, "interrupted": interrupted,
            # The program's own status, when it ended by itself: strace exits with it (with the
            # program's signal, if one killed it), once what the program left has gone too.
            "exit_status": status}


def exit_words(status: int) -> str:
    """A tracer's return code, said of the program: strace exits as its program did."""
    if status < 0:
        return f"(killed by {signal.Signals(-status).name})" if -status in signal.valid_signals() \
            else f"(killed by signal {-status})"
    return f"with status {status}"


def exit_code(status: int) -> int:
    """The program's exit status as a shell reports it: 128+N for a signal N."""
    return 128 - status if status < 0 else status
