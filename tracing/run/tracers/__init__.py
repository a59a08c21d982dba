"""Tracers as small pluggable pieces: how to start one (on a command or
attached to a PID), and how its output becomes annotated records.

`tracing.run.orchestrate` knows only this interface. A new tracer (a kernel tracer, say)
is one more entry in TRACERS: a `check` that finds it and says why it cannot
run, an `argv`, and a `records` that turns its raw file into the records the
views, the timeline and trace.json are written from.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

from .kernel import tracer as kernel
from . import ltrace
from ...understand import snapshot
from ...understand.annotate import Step, annotate_file
from ...errors import EXIT_SCENARIO, EXIT_SETUP, TraceError
from ...log import Progress
from ..recipes import Target, kernel_syscalls, load_flags, strace_flags
from ...log import eprint


class Tracer:
    name = "strace"
    own_start = False  # True: `start` launches it (not one argv), see Kernel
    package = "strace"  # the Debian package that installs it
    heading = ("raw lines from {raw}, each followed by '->' [category] note.\n# Columns: line in "
               "{raw}, thread role, raw strace line (pid, time, call, result, duration).")
    title = ""  # added to the timeline page's title

    @property
    def raw_name(self) -> str:
        return f"raw.{self.name}"

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

    def refused(self, stderr: str) -> bool:
        return "Operation not permitted" in stderr

    def flags(self, target: Target) -> list[str]:
        return target.tracer_flags

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
    own_start = True

    def check(self) -> str:
        try:
            return kernel.preflight()
        except kernel.KernelError as e:
            raise TraceError(str(e), EXIT_SETUP) from None

    def start(self, path: str, target: Target, out: Path):
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

    def records(self, raw: Path, steps: list[Step]) -> tuple[Iterator[dict], Callable[[], dict]]:
        got = kernel.write_raw(raw.parent, raw)
        if not got["complete"]:
            eprint(f"[epoll-lab] {kernel.lost_note(raw.parent)}")
        records, summary = super().records(raw, steps)
        return records, lambda: {**summary(), "tool": "kernel", **got}

    def notice(self, out: Path) -> str:
        return kernel.lost_note(out)


TRACERS: dict[str, Tracer] = {"strace": Tracer(), "ltrace": Ltrace(), "kernel": Kernel()}


def get(name: str) -> Tracer:
    return TRACERS[name]
