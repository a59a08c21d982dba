"""Per-call handlers: each reads one event against the model and returns a
verdict (category, note, ready fds, evidence) for its record.

Handlers update the model with what the call did (an fd born or closed, an
epoll registration, a thread that waited, a write that fills a wakeup fd) and
ask the role stage (`roles`) what that means; they never touch the record
itself. A note makes a causal claim ("woken by", "inside the SIGTERM
handler", "blocks the loop"...) only with the line that proves it, cited
through `Ctx.cite` (the claims and what each needs: `tracing.understand.claims`).
"""

from __future__ import annotations

from typing import Callable

from ...names import CLONES, POLL_WAITS, READS, SIGRETURNS, WAITS, WRITES
from .context import Ctx, Verdict
from .epoll import epoll_create, epoll_ctl, epoll_wait, poll_wait
from .io import openat, read_write
from .io_uring import io_uring_enter, io_uring_setup
from .kernel import RECORDS
from .process import clone, close, dup, execve, exit_group, fcntl, shutdown
from .signals import sigreturn
from .sockets import (accept, bind, connect, eventfd, listen, pipe, signalfd, socket,
                                                 socketpair, timerfd, timerfd_settime)

# One handler per call name; a call without one gets `described.described`. The families:
# context (what every handler shares), epoll (and poll/select), sockets (calls that make
# fds), io (files, reads and writes), io_uring, signals, process; and kernel, the kernel
# tracer's own records (io_uring submissions and completions, getaddrinfo).
HANDLERS: dict[str, Callable[[Ctx], Verdict]] = {
    "epoll_create": epoll_create, "epoll_create1": epoll_create, "epoll_ctl": epoll_ctl,
    "accept": accept, "accept4": accept, "socket": socket, "bind": bind, "listen": listen,
    "connect": connect, "pipe": pipe, "pipe2": pipe, "socketpair": socketpair,
    "eventfd": eventfd, "eventfd2": eventfd, "timerfd_create": timerfd,
    "timerfd_settime": timerfd_settime, "signalfd": signalfd, "signalfd4": signalfd,
    "io_uring_setup": io_uring_setup, "io_uring_enter": io_uring_enter,
    "open": openat, "openat": openat, "close": close, "dup": dup, "dup2": dup, "dup3": dup,
    "fcntl": fcntl, "execve": execve, "exit_group": exit_group, "shutdown": shutdown,
    **{w: epoll_wait for w in WAITS}, **{w: poll_wait for w in POLL_WAITS}, **{r: read_write for r in READS | WRITES},
    **{k: clone for k in CLONES}, **{k: sigreturn for k in SIGRETURNS},
    **RECORDS,
}
