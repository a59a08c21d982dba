"""Tracers: strace, ltrace and the kernel tracer behind one interface, chosen by
`--tracer NAME` (TRACER= for make). Nothing outside this package tests a
tracer's name: it asks the tracer.

Each says whether it can run here (`check`, `unavailable`), what it makes of
a target (`prepare`: the run's folder name, the target's tracer), how it
starts on a command or a PID (`start`) and for live mode into a pipe
(`start_live`, where `live`), which raw file it writes (`raw_name`), how that
file becomes annotated records (`records`), and what a reader must be told
of a run (`notice`, `said`). What it can do is said as attributes: `live`,
`injects_faults` (IO_URING=0 needs strace's fault injection), `sees_io_uring`
(the operations inside io_uring_enter), `takes_syscalls` (--syscalls),
`traces_syscalls` (its lines are syscalls, not library calls).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

from .kernel import tracer as kernel
from . import ltrace
from .. import procs
from ...understand import snapshot
from ...understand.annotate import Step, annotate_file
from ...errors import EXIT_SCENARIO, EXIT_SETUP, TraceError
from ...log import Progress, eprint
from ...render.summary import summary_text, threads_by_role
from ..recipes import LOAD_SYSCALLS, STORY_SYSCALLS, Target


def strace_flags(syscalls: str = STORY_SYSCALLS, strings: int = 128) -> list[str]:
    # -f threads and children; -ttt timestamps on the clock time.time() uses,
    # so the recipe can mark requests; -T durations (how long a wait slept);
    # -yy fd decorations (addresses, paths); -s 128 to see request lines.
    return ["-f", "-ttt", "-T", "-yy", "-s", str(strings), "-e", f"trace={syscalls}"]


def load_flags() -> list[str]:
    # The load recipe: only the loop's own calls, filtered in the kernel by a seccomp-bpf
    # program, so untraced syscalls never stop the server. -T: how long each wait slept;
    # with -ttt also when strace wrote the line (the call's end), which is how
    # `make bench-live` measures live's lag.
    return ["-f", "-ttt", "-T", "--seccomp-bpf", "-e", f"trace={LOAD_SYSCALLS}"]


def ltrace_flags(calls: str) -> list[str]:
    # -f threads; -ttt epoch times (the request windows); -T time in each call.
    return ["-f", "-ttt", "-T", "-s", "48", "-e", calls]


class Tracer:
    name = "strace"
    package = "strace"  # the Debian package that installs it
    heading = ("raw lines from {raw}, each followed by '->' [category] note.\n# Columns: line in "
               "{raw}, thread role, raw strace line (pid, time, call, result, duration).")
    title = ""  # added to the timeline page's title
    live = True  # live mode can read it as it goes
    traces_syscalls = True  # its lines are syscalls in strace's syntax (compare reads those)
    injects_faults = True  # IO_URING=0: io_uring_setup refused with strace -e inject
    sees_io_uring = False  # decodes the operations inside io_uring_enter
    takes_syscalls = True  # --syscalls: the set it traces, in strace's syntax

    @property
    def raw_name(self) -> str:
        return f"raw.{self.name}"

    def unavailable(self) -> str:
        """Why it cannot run here, in one line ('' when it can)."""
        try:
            self.check()
        except TraceError as e:
            return str(e)
        return ""

    def prepare(self, target: Target) -> Target:
        """The target traced by this tracer: its runs go to traces/<name>-<tracer>/ (strace's to
        traces/<name>/)."""
        target.tracer = self.name
        if self is not TRACERS[DEFAULT]:
            target.name += f"-{self.name}"
        return target

    def start(self, path: str, target: Target, out: Path, output: str | None = None,
              pass_fds: tuple[int, ...] = ()) -> procs.Traced:
        """Running on (or attached to) the target; its log goes to `output` (default the raw file)."""
        cmd = self.argv(path, target, output or str(out / self.raw_name))
        if output is None:  # a kept run's log would name its program until the tracer truncates it
            (out / self.raw_name).unlink(missing_ok=True)
        eprint(f"[epoll-lab] starting: {' '.join(cmd)}")
        t0 = time.time()
        log = out / "server.log"
        return procs.Traced(procs.launch(cmd, log, target.env, pass_fds), log, t0, attached=target.pid,
                            raw=None if output else out / self.raw_name)

    def start_live(self, path: str, target: Target, out: Path) -> tuple[procs.Traced, int]:
        """Running on the target, writing into a pipe; returns the pipe's read end."""
        read_end, write_end = os.pipe()
        traced = self.start(path, target, out, output=f"/dev/fd/{write_end}", pass_fds=(write_end,))
        os.close(write_end)  # the tracer holds it now; EOF comes when it exits
        return traced, read_end

    def check(self) -> str:
        """The tracer's path; TraceError (set-up) if it is missing or may not trace here."""
        path = shutil.which(self.name)
        if path is None:
            raise TraceError(f"{self.name} is not installed. Install it with: sudo apt-get install -y "
                             f"{self.package} (or run `make setup` as root)", EXIT_SETUP)
        probe = subprocess.run([path, *self.probe_args()], capture_output=True, text=True)
        if probe.returncode != 0 or self.refused(probe.stderr):
            detail = probe.stderr.strip().splitlines()[-1] if probe.stderr.strip() else ""
            if "Operation not permitted" in probe.stderr or "EPERM" in probe.stderr:
                raise TraceError(
                    f"ptrace is not permitted here, so {self.name} cannot trace the server "
                    f"({detail}). In a container, run it with --cap-add SYS_PTRACE; on a host, "
                    "check /proc/sys/kernel/yama/ptrace_scope.", EXIT_SETUP)
            raise TraceError(f"{self.name} does not work here: {detail}", EXIT_SETUP)
        return path

    def probe_args(self) -> list[str]:
        return ["-f", "-o", os.devnull, "-e", "trace=none", "true"]

    def refused(self, stderr: str) -> bool:
        return False

    def flags(self, target: Target) -> list[str]:
        return [*(load_flags() if target.recipe == "load" else strace_flags(target.syscalls, target.strings)),
                *target.extra_strace]

    def check_syscalls(self, path: str, syscalls: str) -> None:
        """strace's own word on a syscall set it cannot trace (a name unknown here): one line."""
        probe = subprocess.run([path, "-f", "-o", os.devnull, "-e", f"trace={syscalls}", "true"],
                               capture_output=True, text=True)
        if probe.returncode != 0:
            said = probe.stderr.strip().splitlines()
            raise TraceError(f"--syscalls: strace refuses the set: {said[0] if said else probe.returncode}", 2)

    def argv(self, path: str, target: Target, output: str) -> list[str]:
        # -p with -f attaches every thread of the process, not only the one PID names.
        what = ["-p", str(target.pid)] if target.pid else ["--", *target.command()]
        return [path, *self.flags(target), "-o", output, *what]

    def notice(self, out: Path) -> str:
        """What a reader must know of the run before its lines (a lossy trace), or ''."""
        return ""

    def said(self, summary: dict, out: Path) -> list[str]:
        """The end of a run, in a few lines: what was traced, and the notice."""
        return [summary_text(summary), *filter(None, [self.notice(out)])]

    def records(self, raw: Path, steps: list[Step]) -> tuple[Iterator[dict], Callable[[], dict]]:
        """Annotated records of the raw file (a stream), and the summary once they are read."""
        records, ann = annotate_file(str(raw), steps, progress=Progress(sys.stderr), copies=True,
                                     snapshot=snapshot.load(snapshot.beside(raw)))
        return records, lambda: ann.summary.as_dict()


class Ltrace(Tracer):
    name = "ltrace"
    package = "ltrace"
    heading = "library calls (not syscalls) from {raw}, each followed by '->' [category] note."
    title = " (ltrace: library calls)"

    def probe_args(self) -> list[str]:
        return ["-o", os.devnull, "-e", "getpid", "true"]

    live = False
    traces_syscalls = False
    injects_faults = False
    takes_syscalls = False

    def refused(self, stderr: str) -> bool:
        return "Operation not permitted" in stderr

    def flags(self, target: Target) -> list[str]:
        return ltrace_flags(target.ltrace_calls)

    def start_live(self, path: str, target: Target, out: Path) -> tuple[procs.Traced, int]:
        raise TraceError("live mode reads strace or the kernel tracer as they go, not ltrace: use "
                         "trace --tracer ltrace", 2)

    def said(self, summary: dict, out: Path) -> list[str]:
        return ["library calls: " + ", ".join(f"{k} {v}" for k, v in summary["calls"].items()),
                "threads: " + threads_by_role(summary["threads"])]

    def records(self, raw: Path, steps: list[Step]) -> tuple[Iterator[dict], Callable[[], dict]]:
        records, ann = ltrace.annotate_file(str(raw), steps)

        def summary() -> dict:
            done = ltrace.summary(ann)
            if not done["calls"]:
                raise TraceError(f"ltrace recorded no library calls (see {raw}): it may not "
                                 "have attached to the server's threads", EXIT_SCENARIO)
            return done

        return records, summary


class Kernel(Tracer):
    """A BPF program in the kernel (tracing/run/tracers/kernel/tracer.py): its records become strace-syntax lines."""

    name = "kernel"
    package = "libbpf-dev bpftool clang llvm"
    heading = ("strace-syntax lines from {raw} (the kernel tracer's records, sorted by kernel time), "
               "each followed by '->' [category] note.\n# Columns: line in {raw}, thread role, the "
               "line (pid, time, call, result, duration).")
    title = " (kernel tracer)"
    injects_faults = False
    sees_io_uring = True
    takes_syscalls = False

    def check(self) -> str:
        try:
            return kernel.preflight()
        except kernel.KernelError as e:
            raise TraceError(str(e), EXIT_SETUP) from None

    def start(self, path: str, target: Target, out: Path, output: str | None = None,
              pass_fds: tuple[int, ...] = ()) -> procs.Traced:
        if target.extra_strace:
            raise TraceError("IO_URING=0 works through strace's fault injection; the kernel tracer "
                             "cannot refuse io_uring_setup: use TRACER=strace for it", EXIT_SETUP)
        what = f"PID {target.pid}" if target.pid else " ".join(target.command())
        eprint(f"[epoll-lab] starting: {path} (the kernel tracer, {out / 'kernel.records'}) following {what}")
        try:
            return kernel.launch(path, target.command() if not target.pid else [], out,
                                 kernel_syscalls(target), env=target.env, pid=target.pid)
        except kernel.KernelError as e:
            raise TraceError(str(e), EXIT_SETUP) from None

    def start_live(self, path: str, target: Target, out: Path) -> tuple[procs.Traced, int]:
        try:
            return kernel.start_live(path, target.command(), out, kernel_syscalls(target), env=target.env)
        except kernel.KernelError as e:
            raise TraceError(str(e), EXIT_SETUP) from None

    def records(self, raw: Path, steps: list[Step]) -> tuple[Iterator[dict], Callable[[], dict]]:
        got = kernel.write_raw(raw.parent, raw)
        if not got["complete"]:
            eprint(f"[epoll-lab] {kernel.lost_note(raw.parent)}")
        records, summary = super().records(raw, steps)
        return records, lambda: {**summary(), "tool": "kernel", **got}

    def notice(self, out: Path) -> str:
        return kernel.lost_note(out)


def kernel_syscalls(target: Target) -> list[str]:
    """The syscalls the kernel tracer records: the recipe's set, as strace's (it adds the
    poll and select family itself: tracing.run.tracers.kernel.tracer.POLLS)."""
    return (LOAD_SYSCALLS if target.recipe == "load" else target.syscalls).split(",")


TRACERS: dict[str, Tracer] = {"strace": Tracer(), "ltrace": Ltrace(), "kernel": Kernel()}
DEFAULT = "strace"


def get(name: str) -> Tracer:
    return TRACERS[name]


def names(**can: bool) -> list[str]:
    """The tracers that can (or cannot) what is asked: names(live=True)."""
    return [n for n, t in TRACERS.items() if all(getattr(t, k) == v for k, v in can.items())]
