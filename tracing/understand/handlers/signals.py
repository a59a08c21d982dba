"""Signals: a delivery, a handler's calls, its return (rt_sigreturn)."""

from __future__ import annotations

import signal as _signal_module

from .context import Ctx, Verdict


def signal_number(sig: str) -> int | None:
    try:
        return int(_signal_module.Signals[sig])
    except (KeyError, ValueError):
        return None


SIGNAL_WINDOW = 0.01  # seconds after delivery a call is still taken as the handler's, without rt_sigreturn


def in_handler(c: Ctx) -> tuple[str | None, str, int | None]:
    """The signal whose handler this thread is running, how the log shows it, and the
    delivery's line.

    With rt_sigreturn traced, a handler runs from delivery to its return.
    Without it, the log cannot show the return: a call soon after delivery
    (no wait between, within SIGNAL_WINDOW) is taken as the handler's, and the
    note says so.
    """
    got = c.m.in_signal.get(c.ev.tid)
    if got is None:
        return None, "", None
    sig, at, line = got
    if c.m.sigreturns_traced():
        return sig, "", line  # the handler runs until its rt_sigreturn, which ends it
    c.m.in_signal.pop(c.ev.tid, None)
    if at is not None and c.ev.ts is not None:
        gap = c.ev.ts - at
        if gap > SIGNAL_WINDOW:
            return None, "", None
        return sig, (f" (this log does not trace rt_sigreturn; {gap * 1000:.1f} ms after {sig} with no "
                     "wait between, so taken as its handler's)"), line
    return sig, " (this log does not trace rt_sigreturn or times, so its handler's is an inference)", line


def sigreturn(c: Ctx) -> Verdict:
    c.m.learned.sigreturns = True
    got = c.m.in_signal.pop(c.ev.tid, None)
    if got is None:
        return c.say(f"{c.ev.syscall}: returns from a signal's handler; the signal came before this log shows")
    sig, _, delivered = got
    return c.say(f"{c.ev.syscall}: the {sig} handler returns (delivered at "
                 f"{c.cite('signal-handler', delivered, c.ev.tid)}); the thread goes on where {sig} interrupted it")


def signal_delivered(c: Ctx) -> Verdict:
    sig = c.ev.syscall
    c.m.in_signal[c.ev.tid] = (sig, c.ev.ts, c.ev.line)
    why = {
        "SIGCHLD": "a child process ended",
        "SIGINT": "interrupt (Ctrl-C, or the recipe stopping the server)",
        "SIGTERM": "asked to terminate",
        "SIGPIPE": "wrote to a closed pipe or socket",
    }.get(sig, "signal delivered")
    return c.say(f"{sig}: {why}")
