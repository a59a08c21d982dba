"""Process control: start a tracer in its own session, find the program it
runs, stop both by PID, and keep Ctrl-C, SIGTERM and SIGHUP from cutting a
clean-up short. The library's one way to wait for a port and stop a process.

What a program leaves is stopped too. The tracer is started as a child
subreaper (prctl PR_SET_CHILD_SUBREAPER, kept across its exec): a process
whose parent exits (`cmd &` in a shell that quits, a daemon's double fork
and setsid) is re-parented to the tracer instead of to PID 1, so everything
the run started stays below the tracer's PID, where the stop finds it. A
process group or session would miss a setsid; strace's TracerPid is lost
the moment strace dies and misses what it failed to attach.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..errors import Stopped

STOP_TIMEOUT = 10.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# What the program left running once it is gone: SIGTERM, this long, then SIGKILL.
LEFTOVER_TIMEOUT = 2.0

PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>
# Looked up now, not between fork and exec, where only the call itself should run.
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def become_subreaper() -> None:
    """Orphans below this process come to it, not to PID 1 (run in the child before exec)."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


class Orphans:
    """A run whose program has no subreaper above it (the kernel tracer starts the program
    itself): this process takes in what the program leaves while the run lasts, so the stop
    finds it. Its own children from before the run are not the run's."""

    active = 0  # runs at once (the web page's sessions): the flag goes when the last ends

    def __init__(self) -> None:
        self.before = set(all_children(os.getpid()))
        Orphans.active += 1
        _prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

    def taken(self, *known: int) -> list[int]:
        """What came to this process since the run began, and what is below it."""
        kids = [k for k in all_children(os.getpid()) if k not in self.before and k not in known]
        return kids + [d for k in kids for d in descendants(k)]

    def close(self, pids: list[int]) -> None:
        """Reap the ones that came to us (they are our children now), and let go of the flag."""
        for pid in pids:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
        Orphans.active -= 1
        if Orphans.active == 0:
            _prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def port_answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def wait_for(probe, timeout: float, step: float = 0.05) -> bool:
    """Until `probe()` is true; False if `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return True
        time.sleep(step)
    return False


def wait_port(port: int, timeout: float = 10.0) -> bool:
    """Until something accepts a connection on 127.0.0.1:port; False on timeout."""
    return wait_for(lambda: port_answers(port), timeout)


def http_answers(port: int, timeout: float = 0.5) -> bool:
    """A GET / gets at least one byte back (Sanic listens well before it serves)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            return bool(s.recv(1))
    except OSError:
        return False


def wait_http(port: int, timeout: float = 60.0) -> bool:
    """Until the server answers a GET; False on timeout."""
    return wait_for(lambda: http_answers(port), timeout, 0.1)


def child_pids(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def all_children(pid: int) -> list[int]:
    """The children of every thread of `pid` (an orphan comes to a subreaper's thread)."""
    try:
        return [int(k) for t in Path(f"/proc/{pid}/task").iterdir() for k in (t / "children").read_text().split()]
    except OSError:
        return []


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children of all its threads), parents first."""
    out, todo = [], [pid]
    while todo:
        kids = all_children(todo.pop(0))
        out += kids
        todo += kids
    return out


def session_members(sid: int) -> list[int]:
    """Every live process in session `sid` (a program started as a session leader), whoever
    its parent is now: what it left behind, re-parented, unless it called setsid itself."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == sid:
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 3 and fields[3] == str(sid) and fields[0] != "Z":
            found.append(int(entry))
    return found


def command_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def stop_all(pids: list[int], wait: float = LEFTOVER_TIMEOUT) -> list[str]:
    """SIGTERM to every one at once, then SIGKILL to those still there after `wait`. Returns
    what it did, naming each process."""
    live = {pid: command_of(pid)[:60] or "?" for pid in pids if alive(pid)}
    done = []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        sent = [pid for pid in live if alive(pid) and kill(pid, sig)]
        if not sent:
            break
        done.append(f"sent {signal.Signals(sig).name} to " + ", ".join(f"{p} ({live[p]})" for p in sent))
        if wait_for(lambda: not any(alive(p) for p in sent), wait):
            break
    return done


def exe_of(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def pid_max() -> int | None:
    try:
        return int(Path("/proc/sys/kernel/pid_max").read_text())
    except (OSError, ValueError):
        return None


def comm_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # OverflowError: a number no PID can be
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def kill(pid: int, sig: int = signal.SIGKILL) -> bool:
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


def wait_gone(pid: int, seconds: float) -> bool:
    return wait_for(lambda: not alive(pid), seconds) or not alive(pid)


def stop(pid: int, first: int = signal.SIGINT, wait: float = STOP_TIMEOUT) -> list[str]:
    """`first`, then SIGTERM, then SIGKILL, until the process is gone. Returns what it did."""
    done = []
    for sig, seconds in ((first, wait), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if not alive(pid) or not kill(pid, sig):
            break
        done.append(f"sent {signal.Signals(sig).name} to {pid}")
        if wait_gone(pid, seconds):
            break
    return done


def tail(path: Path, n: int = 20) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "    (no output)"
    return "\n".join("    " + line for line in lines[-n:]) or "    (no output)"


@dataclass
class Traced:
    """A tracer and what it traces: the program it started, or the process it attached to."""

    strace: subprocess.Popen  # the tracer (strace or ltrace), whatever its name
    log: Path  # the tracer's and the program's own output
    started: float  # time.time() just before the tracer was started
    attached: int | None = None  # --pid: the process the tracer attached to
    program: int | None = None  # the program's first process, once seen
    raw: Path | None = None  # the tracer's log file (strace -f -o): its first line names the program

    @property
    def tracer(self) -> subprocess.Popen:
        return self.strace

    def server_pid(self) -> int | None:
        """The program's first process, once known for sure (then remembered), else None.

        Two sources, neither a guess: the raw log's first line, which is the program's
        execve (its PID leads the line before the call has even returned), or, where execve
        is not traced, the tracer's first child once it has run exec: strace forks the
        program before anything else it keeps, so whatever the program leaves and the
        subreaper takes in comes later in the tracer's list of children."""
        if self.attached is not None:
            return self.attached
        if self.program is None:
            self.program = (self._first_pid() if self.raw is not None else None) or self._first_child()
        return self.program

    def _first_child(self) -> int | None:
        kids = child_pids(self.strace.pid)
        if not kids:
            return None
        # The tracer's own forks (its start-up probes, living or not yet reaped, and the
        # program before its exec) still bear the tracer's name: not known yet. A zombie keeps
        # the name it ran under, so a program that has already ended is still found.
        return kids[0] if comm_of(kids[0]) not in ("", comm_of(self.strace.pid)) else None

    def _first_pid(self) -> int | None:
        """The PID on the log's first line, if that line is the program's execve. Its children
        can outlive it under the tracer (a subreaper), so the tracer's children alone cannot
        tell once it has gone; only the start of the line is needed (a long argv makes a
        line of any length, and strace writes the result when execve returns)."""
        try:
            with open(self.raw, "rb") as f:
                head = f.read(96)
        except (OSError, TypeError):
            return None
        got = re.match(rb"(\d{1,10}) +(?:[\d.:]+ +)?execve\(", head)
        return int(got.group(1)) if got else None

    def ended(self) -> bool:
        """The program's first process (or the attached one) is gone, or the tracer is. strace -f
        itself runs on while anything the program left runs; the run ends as strace without
        -f would, and then stops what was left."""
        if self.strace.poll() is not None:
            return True
        if self.attached is not None:
            return not alive(self.attached)
        self.server_pid()  # learns the program's PID once it has run exec
        return self.program is not None and not alive(self.program)

    def stop(self, port: int | None = None) -> list[str]:
        """Stop the run by PID; reap the tracer; wait for the port to be free. Returns what it did."""
        with shielded():
            done = self._detach() if self.attached is not None else self._stop_program()
            if port and self.attached is None:
                deadline = time.monotonic() + 5
                while not port_free(port) and time.monotonic() < deadline:
                    time.sleep(0.05)
        return done

    def _stop_program(self) -> list[str]:
        # SIGINT the program as Ctrl-C would, then harder; then whatever it left, which the
        # tracer (a subreaper) holds below it; strace exits with the last of them.
        server = self.server_pid()
        done = [f"{d} (the program)" for d in stop(server)] if server and alive(server) else []
        done += [f"{d}: left running by the program" for d in stop_all(descendants(self.strace.pid))]
        try:
            self.strace.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            for pid in descendants(self.strace.pid):
                kill(pid)
            self.strace.kill()
            self.strace.wait()
            done.append("killed the tracer")
        return done

    def _detach(self) -> list[str]:
        # SIGINT makes strace detach from every thread; the process runs on.
        done = []
        if self.strace.poll() is None:
            self.strace.send_signal(signal.SIGINT)
            done.append(f"detached from {self.attached} (SIGINT to the tracer {self.strace.pid})")
            try:
                self.strace.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.strace.kill()
                self.strace.wait()
                done.append("killed the tracer")
        return done


def launch(cmd: list[str], log: Path, env: dict[str, str] | None = None,
           pass_fds: tuple[int, ...] = ()) -> subprocess.Popen:
    """Start `cmd` (a tracer) in its own session (a terminal's Ctrl-C reaches only us; we stop
    it by PID), as a child subreaper: what the traced program leaves stays below it."""
    with open(log, "wb") as logf:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                pass_fds=pass_fds, env={**os.environ, **(env or {})},
                                start_new_session=True, preexec_fn=become_subreaper)


def _raise_stopped(signum, frame) -> None:
    raise Stopped(signum)


EARLY: list[int] = []  # stop signals that came while the command line was starting


def hold_stop_signals() -> None:
    """While modules load, a stop signal is only noted: raised inside an import it can land
    in a callback of importlib's and be swallowed ("Exception ignored"), and the run go on."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda signum, frame: EARLY.append(signum))


def catch_stop_signals() -> None:
    """SIGINT, SIGTERM and SIGHUP all unwind as Stopped, so every `finally` runs; one that
    came while starting (hold_stop_signals) unwinds now, before anything is started."""
    if threading.current_thread() is threading.main_thread():
        for sig in STOP_SIGNALS:
            signal.signal(sig, _raise_stopped)
    if EARLY:
        raise Stopped(EARLY[0])


@contextlib.contextmanager
def shielded() -> Iterator[list[int]]:
    """A clean-up that a second Ctrl-C must not cut short; the signal is re-raised after it."""
    if threading.current_thread() is not threading.main_thread():
        yield []
        return
    got: list[int] = []
    previous = {sig: signal.signal(sig, lambda s, f: got.append(s)) for sig in STOP_SIGNALS}
    try:
        yield got
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if got and previous.get(got[0]) is _raise_stopped:
        raise Stopped(got[0])
