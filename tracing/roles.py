"""The role stage: thread roles, work categories and wakeups, read off the model.

Every answer here is a question to `model.Model`; nothing here changes it.
A thread is a `loop` when it waits on an epoll fd, a `pool` thread when it
wakes a loop or does file and resolver work in a process that has one.
"""

from __future__ import annotations

from dataclasses import dataclass

from tracing.model import Model
from tracing.names import (BLOCKING, LOOP, OTHER, OTHER_CAT, POOL, POOLED, WAKEUP, PIPE, SOCKET)


def thread_role(m: Model, tid) -> str:
    if tid in m.waited or tid in m.prior.loops:  # m.is_loop, inlined: asked for every record
        return LOOP
    if tid in m.prior.pools or tid in m.learned.pools:
        return POOL
    return OTHER


def process_has_loop(m: Model, tid) -> bool:
    if m.is_loop(tid):
        return True  # asked for every client read and write: the loop thread itself, at once
    proc = m.proc(tid)
    return any(m.proc(t) == proc for t in m.loop_threads())


def serving(m: Model, tid) -> bool:
    return m.proc(tid) in m.accepted


def fellow_waiters(m: Model, tid) -> set:
    """Other threads that wait on an epoll fd `tid` waits on (Go's netpoller)."""
    if not m.shared:  # the common case: one thread per epoll fd
        return set()
    eps = m.epolls_of(tid) & m.shared
    if not eps:
        return set()
    return {t for ep in eps for t in m.waiters(tid, ep)} - {tid}


def work_category(m: Model, tid) -> str:
    """Category of non-pollable work (files, resolver) done by `tid`."""
    if m.is_loop(tid):
        # Before the first accepted connection the loop is still starting
        # up (imports, config): slow, but no client is kept waiting yet.
        # Where other threads wait on the same epoll fd, they keep serving.
        if tid in m.waited and serving(m, tid) and not fellow_waiters(m, tid):
            return BLOCKING
        return OTHER_CAT
    if tid in m.prior.pools or tid in m.learned.pools or process_has_loop(m, tid):
        # Blocking work beside a loop is work done for it: this thread is
        # in its pool even if another pool thread did the wakeup (uvloop
        # skips the eventfd write when a wakeup is already pending).
        return POOLED
    return OTHER_CAT


@dataclass
class Wake:
    """A write to an fd some epoll watches, as the model explains it."""

    watched: int  # the fd (this one or its peer) an epoll watches
    epolls: list  # the epoll fds that watch it
    woken: set  # threads that wait on those epolls, other than the writer
    by_loop_itself: bool  # the writer is the only thread waiting there


def wake_of(m: Model, tid, fd) -> Wake | None:
    """Does `tid` writing `fd` wake a wait? None when nothing watches it."""
    table = m.procs.table(tid)
    watched = fd.num if table.watchers(fd.num) else (
        fd.peer if fd.peer is not None and table.watchers(fd.peer) else None)
    if watched is None:
        if fd.detail == "eventfd" and process_has_loop(m, tid):
            # libuv may have registered it through io_uring, out of strace's sight.
            return Wake(fd.num, [], set(), m.is_loop(tid))
        return None
    if fd.role not in (WAKEUP, PIPE, SOCKET):
        return None
    eps = table.watchers(watched)
    waiting = {t for ep in eps for t in m.waiters(tid, ep)}
    woken = waiting - {tid}
    return Wake(watched, eps, woken, m.is_loop(tid) and not woken)
