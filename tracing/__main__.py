"""`python -m tracing` and the `epoll-lab` script: the command line, with a
Ctrl-C (or SIGTERM, SIGHUP) that comes while it is still starting up said in
one line, not a traceback."""

import signal
import sys


def run() -> None:
    try:
        # procs is small; from here on a stop signal is noted, not raised, until the
        # command line has loaded and installs its own handlers (procs.catch_stop_signals).
        from .run import procs

        procs.hold_stop_signals()
        from . import heap
        from .cli import main

        heap.keep()

        code = main()
    except KeyboardInterrupt as e:  # only before hold_stop_signals: nothing was started
        signum = getattr(e, "signum", signal.SIGINT)
        print(f"epoll-lab: interrupted ({signal.Signals(signum).name}) while starting; "
              "nothing was started", file=sys.stderr)
        code = 128 + signum
    sys.exit(code)


if __name__ == "__main__":
    run()
