"""The kernel tracer: bpftrace on tracepoints, kprobes and uprobes, beside strace.

Why: strace stops the server at every syscall (ptrace) and cannot see what
libuv submits through io_uring. Tracepoints run in the kernel without a stop,
and `io_uring_submit_req` shows each IORING_OP_EPOLL_CTL with the user_data
libuv packed into it.

How: tracing/kernel.bt writes one short record per event (no string work in
the kernel beyond copying the bytes a view needs); after the run `convert`
sorts them by the kernel's timestamp and writes strace-syntax lines
(`raw.kernel`), so the existing parser and annotator make the same
annotated.log, events.jsonl, timeline and summary. Two record kinds are
new: `io_uring_sqe(...)` (a submission with its completion's result) and
`getaddrinfo(...)` (the libc call, from a uprobe/uretprobe pair); the
conversion is tracing/kernel_lines.py.

Clock: the kernel stamps events with CLOCK_MONOTONIC (bpftrace `nsecs`); the
scenario's request windows are time.time() (CLOCK_REALTIME). `start` reads
both clocks once and `convert` adds that offset, so the lines carry the same
epoch seconds as strace -ttt.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from tracing.kernel_lines import Counts, convert, read_records, stream  # noqa: F401 (bench reads Counts)
from tracing.syscalls_x86_64 import NR

SCRIPT = Path(__file__).with_name("kernel.bt")
TRACEFS = os.environ.get("EPOLL_LAB_TRACEFS", "/sys/kernel/tracing")
CAP = 96  # bytes of each buffer copied (request lines, paths, up to 8 ready events): 12 words
# Story syscalls the map holds (~250 bytes each, allocated up front); a longer run drops the rest
# and says so.
EVENTS = int(os.environ.get("EPOLL_LAB_KERNEL_EVENTS", "200000"))
EXIT_SETUP = 3
READY_TIMEOUT = 30.0
DUMP_TIMEOUT = 120.0

TRACEPOINTS = ("raw_syscalls/sys_enter", "raw_syscalls/sys_exit", "io_uring/io_uring_submit_req",
               "io_uring/io_uring_complete", "sched/sched_process_fork", "sched/sched_process_exit",
               "signal/signal_deliver")


class KernelError(Exception):
    """Kernel tracing cannot run here; the message is one line that says why and what to do."""

    code = EXIT_SETUP


# -- preflight --------------------------------------------------------------

def preflight(tracefs: str | None = None) -> str:
    """bpftrace's path, or KernelError naming the first thing missing."""
    tracefs = tracefs or TRACEFS
    fix = "or use the strace tracer (TRACER=strace)"
    if platform.machine() != "x86_64":
        raise KernelError(f"the kernel tracer knows x86_64 syscall numbers only (this is "
                          f"{platform.machine()}); {fix}")
    if os.geteuid() != 0 and not _has_caps():
        raise KernelError(f"kernel tracing needs root or CAP_BPF+CAP_PERFMON: run as root "
                          f"(sudo make ... TRACER=kernel), {fix}")
    events = Path(tracefs) / "events"
    if not events.is_dir():
        raise KernelError(f"tracefs is not mounted at {tracefs}: mount it with `mount -t tracefs "
                          f"nodev {tracefs}` (as root), {fix}")
    missing = [tp.replace("/", ":") for tp in TRACEPOINTS if not (events / tp).is_dir()]
    if missing:
        raise KernelError(f"this kernel lacks the tracepoint(s) {', '.join(missing)} "
                          f"(see {events}); {fix}")
    bpftrace = shutil.which("bpftrace")
    if bpftrace is None:
        raise KernelError(f"bpftrace is not installed: sudo apt-get install -y bpftrace "
                          f"(or `make setup` as root), {fix}")
    return bpftrace


def _has_caps() -> bool:
    """CAP_PERFMON (38) and CAP_BPF (39) in the effective set."""
    try:
        line = next(l for l in Path("/proc/self/status").read_text().splitlines()
                    if l.startswith("CapEff:"))
    except (OSError, StopIteration):
        return False
    eff = int(line.split()[1], 16)
    return bool(eff & (1 << 38)) and bool(eff & (1 << 39))


def libc_of(argv0: str, pid: int | None = None) -> str:
    """The libc the server maps: from /proc/PID/maps, else ldd of its program."""
    if pid is not None:
        try:
            for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
                path = line.split()[-1]
                if re.search(r"/libc(\.so\.6|-[\d.]+\.so)$", path):
                    return path
        except OSError:
            pass
    prog = shutil.which(argv0) or argv0
    try:
        out = subprocess.run(["ldd", prog], capture_output=True, text=True, timeout=10).stdout
        m = re.search(r"libc\.so\.6 => (\S+)", out)
        if m:
            return os.path.realpath(m.group(1))
    except (OSError, subprocess.SubprocessError):
        pass
    for line in Path("/proc/self/maps").read_text().splitlines():
        if re.search(r"/libc(\.so\.6|-[\d.]+\.so)$", line):
            return line.split()[-1]
    raise KernelError("cannot find the libc the server maps (for the getaddrinfo uprobe)")


_KEPT = re.compile(r"    @ev\[\$e\.0, tid\] = \((.*?)\);\n.*?// keep end\n", re.S)


def script(syscalls: Iterable[str], libc: str, ready: Path, follow_now: bool = False,
           stream: bool = False) -> str:
    """kernel.bt with the story's syscall numbers, the libc and the ready FIFO filled in;
    `follow_now`: the pid ($1) is a running process, followed from the start;
    `stream`: each call printed as it returns (live mode) instead of kept in the map."""
    story = "".join(f"  @story[{NR[s]}] = 1;\n" for s in syscalls if s in NR)
    if follow_now:
        story += "  @track[$1] = 1;\n"
    text = SCRIPT.read_text()
    if stream:
        text = _KEPT.sub(lambda m: f"    print(($e.0, tid, {m.group(1)}));\n", text)
    return (text.replace("@STORY@", story.rstrip("\n"))
            .replace("@LIBC@", libc).replace("@CAP@", str(CAP)).replace("@READY@", str(ready)))


# -- running ------------------------------------------------------------------

# The server waits at this gate until the probes are attached, then execs:
# the trace starts at its execve, as strace's does. The gate is the shell's
# stdin; the server gets /dev/null there, as without the gate.
GATE = 'read -r _ || exit 125; exec "$@" </dev/null'


class Tracee:
    """What tracing.run polls as `traced.strace`: the traced program's life
    (it ends when the program does), under the tracer's pid (bpftrace's)."""

    def __init__(self, bpftrace: subprocess.Popen, server: subprocess.Popen | None,
                 attached: int | None) -> None:
        self.bpftrace, self.server, self.attached = bpftrace, server, attached
        self.pid = bpftrace.pid

    def poll(self) -> int | None:
        if self.server is not None:
            return self.server.poll()
        from tracing.procs import alive
        return None if alive(self.attached) else 0

    @property
    def returncode(self) -> int | None:
        return self.server.returncode if self.server is not None else None

    def wait(self, timeout: float | None = None) -> int | None:
        return self.server.wait(timeout) if self.server is not None else None


@dataclass
class KernelTraced:
    """bpftrace and the program it follows; the same face as procs.Traced."""

    strace: Tracee
    bpftrace: subprocess.Popen
    server: subprocess.Popen | None
    log: Path
    started: float
    records: Path
    attached: int | None = None

    @property
    def tracer(self) -> subprocess.Popen:
        return self.bpftrace

    def server_pid(self) -> int | None:
        return self.attached if self.attached is not None else self.server.pid

    @property
    def program(self) -> int | None:  # procs.Traced's face: the program's first process
        return self.server.pid if self.server is not None else None

    def ended(self) -> bool:
        """The program's first process (or the attached one) is gone: Tracee.poll follows it."""
        return self.strace.poll() is not None

    def stop(self, port: int | None = None) -> list[str]:
        from tracing.procs import descendants, port_free, session_members, shielded, stop, stop_all
        with shielded():
            done = []
            if self.server is not None:
                # Its children, and what it left re-parented in its session (a `cmd &`).
                kids = descendants(self.server.pid) + session_members(self.server.pid)
                if self.server.poll() is None:
                    done += [f"{d} (the program)" for d in stop(self.server.pid)]
                self.server.wait()
                kids += session_members(self.server.pid)
                done += [f"{d}: left running by the program" for d in stop_all(kids)]
            elif self.bpftrace.poll() is None:
                done.append(f"detached from {self.attached} (SIGINT to bpftrace {self.bpftrace.pid})")
            done += stop_bpftrace(self.bpftrace)
            if port and self.server is not None:
                deadline = time.monotonic() + 5
                while not port_free(port) and time.monotonic() < deadline:
                    time.sleep(0.05)
        return done


def stop_bpftrace(bt: subprocess.Popen) -> list[str]:
    """SIGINT makes bpftrace detach, print its map of calls and exit; a full map
    (EVENTS calls) takes it some seconds."""
    if bt.poll() is not None:
        return []
    bt.send_signal(signal.SIGINT)
    try:
        bt.wait(timeout=DUMP_TIMEOUT)
        return []
    except subprocess.TimeoutExpired:
        bt.kill()
        bt.wait()
        return ["killed bpftrace"]


def launch(bpftrace: str, command: list[str], out: Path, syscalls: Iterable[str],
           env: dict | None = None, log: Path | None = None, pin: list[str] | None = None,
           pid: int | None = None, stream: bool = False) -> KernelTraced:
    """Start the program at a gate, attach bpftrace to it, open the gate; or,
    with `pid`, follow that running process (and its threads) from now on."""
    out.mkdir(parents=True, exist_ok=True)
    log = log or out / "server.log"
    records = out / "kernel.records"
    libc = libc_of(command[0] if command else "", pid)
    # The FIFO's path is a string in the script: bpftrace refuses one over 64
    # bytes, which a deep --out (pytest's basetemp) passes. A short temp dir holds it.
    ready = Path(tempfile.mkdtemp(prefix="epoll-lab-")) / "ready"
    os.mkfifo(ready)
    (out / "kernel.bt").write_text(script(syscalls, libc, ready, follow_now=pid is not None,
                                          stream=stream))
    t0 = time.time()
    server, gate_w = None, None
    if pid is None:
        gate_r, gate_w = os.pipe()
        with open(log, "wb") as logf:
            server = subprocess.Popen([*(pin or []), "/bin/sh", "-c", GATE, "sh", *command],
                                      stdin=gate_r, stdout=logf, stderr=logf,
                                      env={**os.environ, **(env or {})}, start_new_session=True)
        os.close(gate_r)
    # Both clocks read together: monotonic kernel stamps + offset = epoch seconds.
    (out / "kernel.clock").write_text(f"{time.time() - time.monotonic():.9f}\n")
    bt_env = {**os.environ, "BPFTRACE_STRLEN": "128", "BPFTRACE_PERF_RB_PAGES": "256",
              "BPFTRACE_MAP_KEYS_MAX": str(EVENTS)}
    # Live mode reads its lines as they come; otherwise a file, written a buffer at a time.
    with open(records, "wb") as rec, open(out / "bpftrace.log", "wb") as btlog:
        bt = subprocess.Popen([*(pin or []), bpftrace, "-B", "line" if stream else "full",
                               str(out / "kernel.bt"), str(pid if pid is not None else server.pid)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE if stream else rec,
                              stderr=btlog, env=bt_env, start_new_session=True,
                              text=True, errors="replace")
    try:
        _wait_attached(bt, out / "bpftrace.log", ready)
    except BaseException:
        if server is not None:
            os.close(gate_w)
            server.kill()
            server.wait()
        stop_bpftrace(bt)
        raise
    if server is None:
        with open(log, "a") as logf:
            logf.write(f"[kernel tracer] bpftrace {bt.pid} attached to PID {pid}\n")
    else:
        try:
            os.write(gate_w, b"go\n")
        except BrokenPipeError:
            stop_bpftrace(bt)
            raise KernelError(f"the program's start gate closed early (exit {server.wait()}); "
                              f"see {log}") from None
        finally:
            os.close(gate_w)
    return KernelTraced(Tracee(bt, server, pid), bt, server, log, t0, records, pid)


def _wait_attached(bt: subprocess.Popen, btlog: Path, ready: Path) -> None:
    """Until bpftrace opens the ready FIFO (its BEGIN ran: every probe is attached)."""
    deadline = time.monotonic() + READY_TIMEOUT
    try:
        while time.monotonic() < deadline:
            if bt.poll() is not None:
                err = [l.strip() for l in btlog.read_text(errors="replace").splitlines()
                       if "ERROR" in l and "RLIMIT_MEMLOCK" not in l]
                raise KernelError("bpftrace could not attach its probes: "
                                  + (err[-1] if err else f"exit {bt.returncode}")
                                  + " (use the strace tracer: TRACER=strace)")
            try:
                # Non-blocking open for writing fails (ENXIO) until a reader has it open.
                os.close(os.open(ready, os.O_WRONLY | os.O_NONBLOCK))
                return
            except OSError:
                time.sleep(0.02)
        raise KernelError(f"bpftrace did not attach within {READY_TIMEOUT:.0f} s "
                          "(use the strace tracer: TRACER=strace)")
    finally:
        ready.unlink(missing_ok=True)
        ready.parent.rmdir()


def start_live(bpftrace: str, command: list[str], out: Path, syscalls: Iterable[str],
               env: dict | None = None) -> tuple[KernelTraced, int]:
    """Live mode: the program under bpftrace printing each call as it returns, and a
    pipe of strace-syntax lines made from them (what live mode reads from strace)."""
    traced = launch(bpftrace, command, out, syscalls, env=env, stream=True)
    read_end, write_end = os.pipe()
    offset = offset_of(out)

    def pump() -> None:
        # A copy of bpftrace's own lines, then the converted ones into the pipe;
        # the pipe closes when bpftrace exits, which ends live mode's loop.
        with open(traced.records, "w") as keep, open(write_end, "w") as lines:
            def kept() -> Iterator[str]:
                for line in traced.bpftrace.stdout:
                    keep.write(line)
                    yield line
            for line in stream(read_records(kept()), offset):
                lines.write(line + "\n")
                lines.flush()

    threading.Thread(target=pump, daemon=True).start()
    return traced, read_end


def offset_of(out: Path) -> float:
    """The run's CLOCK_REALTIME - CLOCK_MONOTONIC, saved at its start."""
    return float((out / "kernel.clock").read_text())


def write_raw(records_path: Path, raw: Path, offset: float) -> dict:
    """kernel.records to raw.kernel; returns what the run should report (lost events)."""
    counts = Counts()
    with open(records_path, errors="replace") as f, open(raw, "w") as out:
        for line in convert(read_records(f, counts), offset):
            out.write(line + "\n")
    return {"lost_events": counts.dropped, "kernel_calls": counts.calls}

