"""The one error a run raises, the exit codes the command line documents, and the
command's own name as the user ran it."""

from __future__ import annotations

import sys
from pathlib import Path

# Exit codes (also in `epoll-lab --help`).
EXIT_SETUP = 3  # strace/curl missing, ptrace refused, port in use
EXIT_START = 4  # the program did not start, or its port never answered
EXIT_SCENARIO = 5  # a scenario request failed
EXIT_PID = 6  # --pid: no such process, or it cannot be traced
EXIT_OUTPUT = 7  # the output folder cannot be written (read-only, full, missing)
EXIT_NOT_STRACE = 8  # annotate: no line of the input is strace output
EXIT_NOT_FOUND = 127  # the command to trace is not found (as in a shell)
EXIT_INTERRUPTED = 130  # Ctrl-C; SIGTERM and SIGHUP give 128 + their number

EXIT_CODES_HELP = """\
exit codes (a run that ends because the program exited by itself exits with the
program's own status, as strace does; 128+N if signal N killed it):
  0 ok   2 bad usage   3 set-up problem (strace/curl missing, ptrace refused,
  port in use)   4 the server or program did not start, or its port never
  answered   5 a scenario request failed   6 --pid: no such process, or it
  cannot be traced   7 the output folder cannot be written (read-only, full,
  missing, not a folder) or another run is writing it   8 annotate: the input
  is empty, or no line of it is strace output
  127 the command to trace is not found
  128+N stopped by signal N: 130 Ctrl-C, 129 SIGHUP, 143 SIGTERM (the traced
  processes are stopped first; nothing is left running)
"""


class TraceError(Exception):
    """A run that cannot go on; `code` is the process exit code to use."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class Stopped(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP arrived: unwind, stop everything, exit 128+N."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def command_name() -> str:
    """`epoll-lab` when run as the installed script, else `python -m PACKAGE` (`tracing` in a
    checkout): what --help and the hints tell the user to type."""
    if sys.argv and Path(sys.argv[0]).name == "epoll-lab":
        return "epoll-lab"
    return f"python -m {__package__ or 'tracing'}"
