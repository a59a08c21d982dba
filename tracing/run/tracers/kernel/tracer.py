"""The kernel tracer: a compiled BPF program (libbpf CO-RE) beside strace.

Why: strace stops the server at every syscall (ptrace) and cannot see what
libuv submits through io_uring. A BPF program on the syscall tracepoints
runs inside the server's own syscalls without a stop, and the io_uring
tracepoints show each IORING_OP_EPOLL_CTL with the user_data libuv packed.

How: tracing/run/tracers/kernel/bpf/epoll_lab.bpf.c writes one binary record per call (a fixed
head, a bounded copy of its buffer) into a BPF ring buffer;
tracing/run/tracers/kernel/bpf/loader.c (`epoll-lab-ktrace`) copies them, untouched, to the
run's `kernel.records`. After the run
`write_raw` sorts them by the kernel's time and writes strace-syntax lines
(`raw.kernel`, tracing/run/tracers/kernel/lines.py), so the existing parser and
annotator make the same annotated.log, events.jsonl, timeline and summary.
Live mode reads the same records from the loader's stdout as they come.

Nothing is lost silently: a call the ring has no room for is counted, and
the count comes back as a `strace: N calls lost here` line at the time of
the first loss, in the summary and in trace.json.

Clock: the kernel stamps records with CLOCK_MONOTONIC; the scenario's
request windows are time.time() (CLOCK_REALTIME). `launch` reads both
clocks once and the lines carry that offset, so they are epoch seconds as
strace -ttt prints.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import select
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ... import assets, procs
from . import records as kernel_records
from .fds import Tables, read_snapshot, write_snapshot
from .lines import Counts, convert, counted, stream
from ....names import LOST_CALLS
from .syscalls import NR

BPF_DIR = Path(__file__).with_name("bpf")
SOURCES = ("epoll_lab.bpf.c", "epoll_lab.h", "loader.c", "Makefile")
LOADER = "epoll-lab-ktrace"
TRACEFS = os.environ.get("EPOLL_LAB_TRACEFS", "/sys/kernel/tracing")
BTF = os.environ.get("EPOLL_LAB_BTF", "/sys/kernel/btf/vmlinux")
# The ring buffer: 64 MiB holds over two seconds of the C server under `make bench`
# (about 100,000 calls a second, 96 or 256 bytes each) while the loader is away.
RING_KB = 64 * 1024
INTERVAL_MS = 100  # the loader takes what is in the ring at least this often
LIVE_INTERVAL_MS = 50  # live mode: the most a line waits in the ring
EXIT_SETUP = 3
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
# Calls the tracer always follows besides the recipe's: any program may wait in these.
POLLS = ("poll", "ppoll", "select", "pselect6")

TRACEPOINTS = ("raw_syscalls/sys_enter", "raw_syscalls/sys_exit", "io_uring/io_uring_submit_req",
               "io_uring/io_uring_complete", "io_uring/io_uring_queue_async_work", "sched/sched_process_fork", "sched/sched_process_exit",
               "signal/signal_deliver")


class KernelError(Exception):
    """Kernel tracing cannot run here; the message is one line that says why and what to do."""

    code = EXIT_SETUP


def ring_kb() -> int:
    """The ring's size: EPOLL_LAB_KERNEL_RING_KB (a power of two, at least 4) or RING_KB."""
    text = os.environ.get("EPOLL_LAB_KERNEL_RING_KB", "")
    if not text:
        return RING_KB
    if not text.isdigit() or int(text) < 4 or int(text) & (int(text) - 1):
        raise KernelError(f"EPOLL_LAB_KERNEL_RING_KB must be a power of two of at least 4 (KiB), not {text!r}")
    return int(text)


def wake_args() -> list[str]:
    """EPOLL_LAB_KERNEL_WAKE_KB: how much unread data wakes the loader before its next
    interval (default 256 KiB, or a quarter of a smaller ring; 0: never, which is how a test fills a ring)."""
    text = os.environ.get("EPOLL_LAB_KERNEL_WAKE_KB", "")
    if not text:
        return []
    if not text.isdigit():
        raise KernelError(f"EPOLL_LAB_KERNEL_WAKE_KB must be a number of KiB, not {text!r}")
    return ["--wake-kb", text]


# -- preflight --------------------------------------------------------------

def preflight(tracefs: str | None = None) -> str:
    """The loader's path, built if need be; or KernelError naming the first thing missing."""
    tracefs = tracefs or TRACEFS
    fix = "or use the strace tracer (TRACER=strace)"
    if platform.machine() != "x86_64":
        raise KernelError(f"the kernel tracer knows x86_64 syscall numbers only (this is "
                          f"{platform.machine()}); {fix}")
    if os.geteuid() != 0 and not _has_caps():
        raise KernelError(f"kernel tracing needs root or CAP_BPF+CAP_PERFMON: run as root "
                          f"(sudo make ... TRACER=kernel), {fix}")
    if not Path(BTF).is_file():
        raise KernelError(f"this kernel has no BTF ({BTF} is missing; it needs CONFIG_DEBUG_INFO_BTF), "
                          f"which the kernel tracer's CO-RE program needs; {fix}")
    events = Path(tracefs) / "events"
    if not events.is_dir():
        raise KernelError(f"tracefs is not mounted at {tracefs}: mount it with `mount -t tracefs "
                          f"nodev {tracefs}` (as root), {fix}")
    missing = [tp.replace("/", ":") for tp in TRACEPOINTS if not (events / tp).is_dir()]
    if missing:
        raise KernelError(f"this kernel lacks the tracepoint(s) {', '.join(missing)} "
                          f"(see {events}); {fix}")
    return str(ensure_built())


def _has_caps() -> bool:
    """CAP_PERFMON (38) and CAP_BPF (39) in the effective set."""
    try:
        line = next(l for l in Path("/proc/self/status").read_text().splitlines()
                    if l.startswith("CapEff:"))
    except (OSError, StopIteration):
        return False
    eff = int(line.split()[1], 16)
    return bool(eff & (1 << 38)) and bool(eff & (1 << 39))


def build_dir() -> Path:
    """tracing/run/tracers/kernel/bpf/build in a checkout; else the user's cache, under a name that changes
    with the sources (as the C server's binary)."""
    if assets.in_checkout():
        return BPF_DIR / "build"
    h = hashlib.sha256()
    for name in SOURCES:
        h.update((BPF_DIR / name).read_bytes())
    return assets.cache_dir() / f"ktrace-{h.hexdigest()[:12]}"


def ensure_built() -> Path:
    """The loader, built now (vmlinux.h from this kernel's BTF, the BPF object, its
    skeleton, the loader) when it is missing or older than its sources."""
    out = build_dir()
    binary = out / LOADER
    make = ["make", "-s", "-C", str(BPF_DIR), f"OUT={out}", f"BTF={BTF}"]
    if binary.is_file() and (not assets.in_checkout() or _which("make") is None
                             or subprocess.run([*make, "-q"], capture_output=True).returncode == 0):
        return binary  # (without make, a checkout's build cannot be checked, only used)
    need = [tool for tool in ("make", "clang", "bpftool", "cc") if _which(tool) is None]
    if not Path("/usr/include/bpf/libbpf.h").is_file():
        need.append("libbpf-dev")
    if need:
        raise KernelError(f"the kernel tracer is built on first use and needs {', '.join(need)}: "
                          "sudo apt-get install -y make clang llvm bpftool libbpf-dev gcc (or `make setup` "
                          "as root), or use the strace tracer (TRACER=strace)")
    env = {**os.environ, "PATH": os.environ.get("PATH", "") + ":/usr/sbin:/sbin"}
    p = subprocess.run(make, capture_output=True, text=True, env=env)
    if p.returncode != 0 or not binary.is_file():
        lines = [l for l in (p.stderr + p.stdout).splitlines() if l.strip()]
        detail = next((l for l in lines if "error" in l.lower()), lines[-1] if lines else "no output")
        raise KernelError(f"cannot build the kernel tracer in {out}: {detail.strip()}")
    return binary


def _which(tool: str) -> str | None:
    return shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")


def libc_of(argv0: str, pid: int | None = None) -> str | None:
    """The libc the program maps (for the getaddrinfo uprobe): from /proc/PID/maps,
    else ldd of its program; None for a program without one (static)."""
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
    return None


def syscall_numbers(syscalls: Iterable[str]) -> str:
    return ",".join(str(NR[s]) for s in dict.fromkeys([*syscalls, *POLLS]) if s in NR)


# -- running ------------------------------------------------------------------

# The server waits at this gate until the probes are attached, then execs:
# the trace starts at its execve, as strace's does. The gate is the shell's
# stdin; the server gets /dev/null there, as without the gate.
GATE = 'read -r _ || exit 125; exec "$@" </dev/null'


class Tracee:
    """What tracing.run.orchestrate polls as `traced.strace`: the traced program's life
    (it ends when the program does), under the tracer's pid (the loader's)."""

    def __init__(self, loader: subprocess.Popen, server: subprocess.Popen | None,
                 attached: int | None) -> None:
        self.loader, self.server, self.attached = loader, server, attached
        self.pid = loader.pid

    def poll(self) -> int | None:
        if self.server is not None:
            return self.server.poll()
        from ...procs import alive
        return None if alive(self.attached) else 0

    @property
    def returncode(self) -> int | None:
        return self.server.returncode if self.server is not None else None

    def wait(self, timeout: float | None = None) -> int | None:
        return self.server.wait(timeout) if self.server is not None else None


@dataclass
class KernelTraced:
    """The loader and the program it follows; the same face as procs.Traced."""

    strace: Tracee
    loader: subprocess.Popen
    server: subprocess.Popen | None
    log: Path
    started: float
    records: Path
    attached: int | None = None
    orphans: object = None  # procs.Orphans: what the program leaves comes to this process

    @property
    def tracer(self) -> subprocess.Popen:
        return self.loader

    def server_pid(self) -> int | None:
        return self.attached if self.attached is not None else self.server.pid

    @property
    def program(self) -> int | None:  # procs.Traced's face: the program's first process
        return self.server.pid if self.server is not None else None

    def ended(self) -> bool:
        """The program's first process (or the attached one) is gone: Tracee.poll follows it."""
        return self.strace.poll() is not None

    def stop(self, port: int | None = None) -> list[str]:
        from ...procs import descendants, port_free, session_members, shielded, stop, stop_all
        with shielded():
            done = []
            if self.server is not None:
                # Its children, and what it left re-parented in its session (a `cmd &`).
                kids = descendants(self.server.pid) + session_members(self.server.pid)
                if self.server.poll() is None:
                    done += [f"{d} (the program)" for d in stop(self.server.pid)]
                self.server.wait()
                kids += session_members(self.server.pid)
                taken = self.orphans.taken(self.loader.pid, self.server.pid) if self.orphans else []
                done += [f"{d}: left running by the program" for d in stop_all(list(dict.fromkeys(kids + taken)))]
                if self.orphans:
                    self.orphans.close(taken)
                    self.orphans = None
            elif self.loader.poll() is None:
                done.append(f"detached from {self.attached} (SIGINT to the kernel tracer {self.loader.pid})")
            done += stop_loader(self.loader)
            if port and self.server is not None:
                deadline = time.monotonic() + 5
                while not port_free(port) and time.monotonic() < deadline:
                    time.sleep(0.05)
        return done


def stop_loader(loader: subprocess.Popen) -> list[str]:
    """SIGINT: the loader detaches, takes what is left in the ring, writes its
    count of records and losses, and exits."""
    if loader.poll() is not None:
        return []
    loader.send_signal(signal.SIGINT)
    try:
        loader.wait(timeout=STOP_TIMEOUT)
        return []
    except subprocess.TimeoutExpired:
        loader.kill()
        loader.wait()
        return ["killed the kernel tracer"]


def launch(loader: str, command: list[str], out: Path, syscalls: Iterable[str],
           env: dict | None = None, log: Path | None = None, pin: list[str] | None = None,
           pid: int | None = None, live: bool = False) -> KernelTraced:
    """Start the program at a gate, attach the tracer to it, open the gate; or,
    with `pid`, follow that running process (and its threads) from now on.
    `live`: the records come on the loader's stdout instead of kernel.records."""
    out.mkdir(parents=True, exist_ok=True)
    log = log or out / "server.log"
    records = out / "kernel.records"
    libc = libc_of(command[0] if command else "", pid)
    server, gate_w = None, None
    t0 = time.time()
    orphans = None
    if pid is None:
        gate_r, gate_w = os.pipe()
        with open(log, "wb") as logf:
            server = subprocess.Popen([*(pin or []), "/bin/sh", "-c", GATE, "sh", *command],
                                      stdin=gate_r, stdout=logf, stderr=logf,
                                      env={**os.environ, **(env or {})}, start_new_session=True)
        os.close(gate_r)
    # What each fd is now: the start of the -yy decorations (tracing/run/tracers/kernel/fds.py).
    write_snapshot(out / "kernel.fds.json", pid or server.pid, stdin_devnull=pid is None)
    # Both clocks read together: monotonic kernel stamps + offset = epoch seconds.
    (out / "kernel.clock").write_text(f"{time.time() - time.monotonic():.9f}\n")
    ready_r, ready_w = os.pipe()
    argv = [*(pin or []), loader, "--out", "-" if live else str(records),
            "--pid" if pid is not None else "--exec", str(pid if pid is not None else server.pid),
            "--syscalls", syscall_numbers(syscalls), "--ring-kb", str(ring_kb()), *wake_args(),
            "--interval-ms", str(LIVE_INTERVAL_MS if live else INTERVAL_MS), "--ready-fd", str(ready_w)]
    if libc:
        argv += ["--libc", libc]
    with open(out / "ktrace.log", "wb") as tlog:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE if live else subprocess.DEVNULL, stderr=tlog,
                                pass_fds=(ready_w,), start_new_session=True)
    os.close(ready_w)
    try:
        _wait_attached(proc, out / "ktrace.log", ready_r)
    except BaseException:
        if server is not None:
            os.close(gate_w)
            server.kill()
            server.wait()
        stop_loader(proc)
        raise
    if server is None:
        with open(log, "a") as logf:
            logf.write(f"[kernel tracer] {LOADER} {proc.pid} attached to PID {pid}\n")
    else:
        # A double fork and setsid leave the session and the program's tree; as strace's
        # subreaper does for it, this process takes such orphans in until the stop.
        orphans = procs.Orphans()
        try:
            os.write(gate_w, b"go\n")
        except BrokenPipeError:
            stop_loader(proc)
            orphans.close([])
            raise KernelError(f"the program's start gate closed early (exit {server.wait()}); "
                              f"see {log}") from None
        finally:
            os.close(gate_w)
    return KernelTraced(Tracee(proc, server, pid), proc, server, log, t0, records, pid, orphans)


def _wait_attached(proc: subprocess.Popen, tlog: Path, ready: int) -> None:
    """Until the loader says every probe is attached (a byte on the ready pipe)."""
    try:
        got, _, _ = select.select([ready], [], [], READY_TIMEOUT)
        if got and os.read(ready, 1) == b"1":
            return
        if proc.poll() is None and not got:
            raise KernelError(f"the kernel tracer did not attach within {READY_TIMEOUT:.0f} s "
                              "(use the strace tracer: TRACER=strace)")
        proc.wait(timeout=10)
        said = [l.strip() for l in tlog.read_text(errors="replace").splitlines() if l.strip()]
        raise KernelError((said[-1].removeprefix(f"{LOADER}: ") if said else f"{LOADER} exit {proc.returncode}")
                          + " (use the strace tracer: TRACER=strace)")
    finally:
        os.close(ready)


def start_live(loader: str, command: list[str], out: Path, syscalls: Iterable[str],
               env: dict | None = None) -> tuple[KernelTraced, int]:
    """Live mode: the program under the tracer, its records read from the loader's
    stdout as the ring gives them, and a pipe of strace-syntax lines made from them
    (what live mode reads from strace). The records are kept in kernel.records too."""
    traced = launch(loader, command, out, syscalls, env=env, live=True)
    read_end, write_end = os.pipe()
    offset = offset_of(out)
    tables = Tables(read_snapshot(out / "kernel.fds.json"))

    def pump() -> None:
        # The pipe closes when the loader exits, which ends live mode's loop.
        with open(traced.records, "wb") as keep, open(write_end, "w") as lines:
            class Tee:
                def read(self, n: int) -> bytes:
                    got = traced.loader.stdout.read(n)
                    keep.write(got)
                    return got
            counts, places = Counts(), []
            try:
                lines_in = stream(counted(kernel_records.read(Tee()), counts), offset, tables)
                for n, line in enumerate(lines_in, 1):
                    lines.write(line + "\n")
                    lines.flush()
                    if " strace: " in line and (m := LOST_CALLS.search(line)):
                        places.append({"line": n, "calls": int(m.group(1))})
            except kernel_records.Truncated as e:
                counts.truncated = str(e)
            # Before the pipe closes: live mode reads this when the lines end.
            (out / "kernel.counts.json").write_text(json.dumps(_report(counts, places)) + "\n")

    threading.Thread(target=pump, daemon=True).start()
    return traced, read_end


def offset_of(out: Path) -> float:
    """The run's CLOCK_REALTIME - CLOCK_MONOTONIC, saved at its start."""
    return float((out / "kernel.clock").read_text())


def write_raw(out: Path, raw: Path) -> dict:
    """kernel.records to raw.kernel; returns what the run reports about itself
    (calls recorded, calls lost and the raw lines that say where)."""
    counts = Counts()
    places = []
    tables = Tables(read_snapshot(out / "kernel.fds.json"))
    with open(out / "kernel.records", "rb") as f, open(raw, "w") as dst:
        try:
            lines = convert(counted(kernel_records.read(f), counts), offset_of(out), tables)
            for n, line in enumerate(lines, 1):
                dst.write(line + "\n")
                if " strace: " in line and (m := LOST_CALLS.search(line)):
                    places.append({"line": n, "calls": int(m.group(1))})
        except kernel_records.Truncated as e:
            counts.truncated = str(e)
    got = _report(counts, places)
    (out / "kernel.counts.json").write_text(json.dumps(got) + "\n")
    return got


def _report(counts: Counts, places: list[dict]) -> dict:
    return {"kernel_calls": counts.calls, "lost_calls": counts.dropped, "lost_at": places,
            "complete": counts.dropped == 0 and counts.stats is not None and not counts.truncated,
            **({"records_cut": counts.truncated} if counts.truncated else {}),
            **({"loader_stopped_early": True} if counts.stats is None else {})}


def lost_note(out: Path) -> str:
    """A sentence for the run's summary and annotated.log: how much was lost, and where."""
    try:
        got = json.loads((out / "kernel.counts.json").read_text())
    except (OSError, ValueError):
        return ""
    lost, at = got.get("lost_calls", 0), got.get("lost_at", [])
    if lost:
        where = ", ".join(f"line {p['line']} ({p['calls']})" for p in at[:5]) + (" ..." if len(at) > 5 else "")
        return (f"INCOMPLETE: the kernel tracer lost {lost} calls (its ring buffer was full) at "
                f"{len(at)} place{'s' if len(at) != 1 else ''} in raw.kernel: {where}; each is a "
                "'calls lost here' line in annotated.log")
    if got.get("loader_stopped_early") or got.get("records_cut"):
        return ("INCOMPLETE: the kernel tracer stopped before writing its count of lost calls: "
                "the end of the trace may be missing")
    return "calls lost: 0 (the kernel tracer's ring buffer kept every call)"
