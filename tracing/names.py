"""The lab's vocabulary: syscall sets, thread roles, categories, fd roles.

A leaf module (it imports nothing of the lab), so the parser, the annotator,
ltrace, live, compare, the timeline and the tests all say the same thing by
the same name instead of keeping copies.
"""

from __future__ import annotations

import re

# -- thread roles -----------------------------------------------------------
LOOP, POOL, OTHER = "loop", "pool", "other"
# A log strace wrote without -f has no pid column: its one thread is drawn as thread 0.
NO_PID = 0

# -- categories -------------------------------------------------------------
POLLABLE = "pollable"        # epoll calls; socket, pipe, eventfd I/O on a loop
POOLED = "thread-pooled"     # file and resolver work on a pool thread
BLOCKING = "blocking"        # file work on the only thread serving an epoll fd
WAKEUP_CAT = "wakeup"        # a write that wakes another thread's wait
OTHER_CAT = "other"          # start-up, logging, children, loop-less servers
CATEGORIES = (POLLABLE, POOLED, BLOCKING, WAKEUP_CAT, OTHER_CAT)

# -- fd roles (views and tests rely on these names) -------------------------
LISTENING = "listening-socket"
CLIENT = "client-connection"
EPOLL = "epoll"
WAKEUP = "wakeup"
TIMER = "timer"
PIPE = "pipe"
FILE = "file"
IO_URING = "io_uring"
SOCKET = "socket"
SIGNAL = "signal"
DEVICE = "device"
STDIO = "stdio"
PIDFD = "pidfd"
UNKNOWN = "unknown"
POLLABLE_ROLES = frozenset({LISTENING, CLIENT, WAKEUP, PIPE, SOCKET, TIMER, SIGNAL, EPOLL,
                            IO_URING, PIDFD})

RESOLVER_FILES = ("/etc/hosts", "/etc/nsswitch.conf", "/etc/resolv.conf",
                  "/etc/host.conf", "/etc/gai.conf")

# -- syscalls ---------------------------------------------------------------
WAITS = frozenset({"epoll_wait", "epoll_pwait", "epoll_pwait2"})  # a loop's wait
POLL_WAITS = frozenset({"poll", "ppoll", "select", "pselect6", "_newselect"})  # readiness, no epoll fd
EPOLL_MAKERS = frozenset({"epoll_create", "epoll_create1"})
READS = frozenset({"read", "readv", "pread64", "preadv", "preadv2", "recvfrom", "recvmsg", "recvmmsg", "recv"})
WRITES = frozenset({"write", "writev", "pwrite64", "pwritev", "pwritev2", "sendto", "sendmsg", "sendmmsg",
                    "send"})
CLONES = frozenset({"clone", "clone3", "fork", "vfork"})
SIGRETURNS = frozenset({"rt_sigreturn", "sigreturn"})
RESOLVER_CALLS = frozenset({"getaddrinfo", "gethostbyname", "gethostbyname_r", "getnameinfo"})

# The calls a first pass must see to learn roles: fd births and deaths (so a
# reused number names the new thing), epoll registrations, writes (a wakeup),
# clones and execs, signal returns. Reads, opens and the rest cannot teach.
TEACHING = (EPOLL_MAKERS | {"epoll_ctl", "eventfd", "eventfd2", "pipe", "pipe2", "socketpair",
                            "socket", "accept", "accept4", "close", "dup", "dup2", "dup3", "fcntl",
                            "execve", "io_uring_setup", "io_uring_sqe", "io_uring_cqe"} | WRITES | CLONES | SIGRETURNS)
# The kernel tracer's io_uring records: moments inside a call (or on a kernel thread), not calls.
RING_RECORDS = frozenset({"io_uring_sqe", "io_uring_cqe"})

# A tracer's own message that calls are missing from the log at this point
# (the kernel tracer's ring buffer was full): `strace: N calls lost here ...`.
LOST_CALLS = re.compile(r"strace: (\d{1,19}) calls? lost here")
