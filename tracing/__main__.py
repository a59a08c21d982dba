"""`python -m tracing` and the `epoll-lab` script: the command line, with a
Ctrl-C (or SIGTERM, SIGHUP) that comes while it is still starting up said in
one line, not a traceback."""

import signal
import sys


def _early(signum, frame):
    raise KeyboardInterrupt(signum)


def run() -> None:
    # Until the command line installs its own handlers, any stop signal ends
    # the start-up quietly: nothing has been started yet.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _early)
    try:
        from tracing.cli import main

        code = main()
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", None) or (e.args[0] if e.args and isinstance(e.args[0], int)
                                                else signal.SIGINT)
        print(f"epoll-lab: interrupted ({signal.Signals(signum).name}) while starting; "
              "nothing was started", file=sys.stderr)
        code = 128 + signum
    sys.exit(code)

if __name__ == "__main__":
    run()
