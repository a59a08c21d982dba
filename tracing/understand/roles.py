"""The role stage: thread roles, work categories and wakeups, read off the model.

Every answer here is a question to `model.Model`; nothing here changes it.
Roles come from behaviour over the whole log (`decide`, after the first pass):

- a `loop` waits for readiness (an epoll fd, or a poll/select set) and serves
  several fds between its waits: over the log, its waits report two or more
  different fds ready, not all of them wakeup fds (an acceptor whose waits only
  ever report its listening socket, a process per connection whose waits only
  report its client, or a thread only ever woken through eventfds, is not);
- a `pool` thread, in a process with a loop, hands work back to it: it did file
  or resolver work and then wrote an fd a loop waits on. A thread started by
  the same thread as a pool thread, doing the same work, is one too (libuv
  skips the wakeup write when one is pending, so some never write);
- anything else is `other`, and `decide` says why.

Read as a stream (one pass), a thread is a loop once it waits on an epoll fd
(or on several fds), and a pool thread once it works beside a loop: its
hand-back comes later, so the note says the role is taken, not shown.
"""

from __future__ import annotations

from dataclasses import dataclass

from .model import Model, Role, Thread
from ..names import BLOCKING, LOOP, OTHER, OTHER_CAT, POOL, POOLED, WAKEUP, PIPE, SOCKET


def thread_role(m: Model, tid) -> str:
    known = m.prior.roles.get(tid)
    if known is not None:
        return known.role
    if m.prior.complete:
        return OTHER  # a thread the first pass never saw act (one first seen mid-call)
    if tid in m.waited:  # m.is_loop, inlined: asked for every record
        return LOOP
    if tid in m.learned.pools:
        return POOL
    return OTHER


def is_loop(m: Model, tid) -> bool:
    return thread_role(m, tid) == LOOP


def decide(m: Model) -> dict:
    """Every thread's Role from what the whole log showed (the first pass's model)."""
    threads: dict = m.threads
    roles: dict = {}
    waits: dict = {}  # tid -> why a thread that waits is no loop
    for tid, t in threads.items():
        if t.first_wait is None:
            continue
        served = sorted(t.ready)
        io = [n for n in served if n not in t.notified]  # fds with I/O, not wakeup fds
        # What a loop serves: fds with I/O, its timer, work other threads hand back to it,
        # and its wakeup fds; a thread woken only through wakeup fds serves nothing itself.
        # An acceptor that hands each connection on (a fork, another loop's wakeup fd, SCM_RIGHTS)
        # serves its listening socket and those hand-offs: a dispatching loop.
        sources = len(io) + (t.timer is not None) + t.jobs + bool(t.notified) + t.dispatches
        # Waits each on a new epoll fd made for one fd (a timeout on one read) multiplex nothing.
        throwaway = len(t.epolls) >= 2 and len(t.epolls) == t.epoll_waits and t.watched < 2
        a_set = (t.epoll and not throwaway) or t.watched >= 2
        if t.completions >= 2 and not t.epoll and t.ring_done is not None:
            # The kernel tracer shows the operations: what it submits, what completes.
            roles[tid] = Role(LOOP, f"waits for completions in io_uring_enter, again and again (first at line "
                                    f"{t.first_wait}): a completion loop; the io_uring_sqe and io_uring_cqe records "
                                    f"show what it submits and what completes (its first completion at line "
                                    f"{t.ring_done})", (t.first_wait, t.ring_done))
        elif t.completions >= 2 and not t.epoll:
            # A completion loop: strace shows its waits, not the operations they complete.
            roles[tid] = Role(LOOP, f"waits for completions in io_uring_enter, again and again (first at line "
                                    f"{t.first_wait}): a completion loop; which operations it serves, strace "
                                    "does not show", (t.first_wait,))
        elif a_set and sources >= 2 and (io or t.jobs or t.timer is not None):
            what = [f"fds {', '.join(str(n) for n in io[:6])}{' ...' if len(io) > 6 else ''}"] if io else []
            if t.dispatches:
                what.append("the connections it accepts and hands on")
            if t.jobs:
                what.append("work handed back by other threads")
            elif t.notified:
                what.append(f"wakeup fds {', '.join(str(n) for n in sorted(t.notified))}")
            if t.timer is not None:
                what.append(f"its timer (its wait at line {t.timer} times out)")
            roles[tid] = Role(LOOP, f"waits for readiness (first at line {t.first_wait}) and serves what its "
                                    f"waits report: {', '.join(what)}", (t.first_wait,))
        elif not a_set:
            waits[tid] = (f"waits for readiness (first at line {t.first_wait}) on one fd at a time"
                          + (" (each wait on a new epoll fd)" if throwaway else "") + ": it multiplexes nothing")
        elif served and not io and not t.jobs:
            waits[tid] = (f"waits for readiness (first at line {t.first_wait}), but its waits only report wakeup "
                          f"fds ({', '.join(str(n) for n in served)}) written with no work handed back: it is "
                          "woken, it serves no I/O")
        else:
            got = (f"only ever report fd {io[0]}" if io else "only report work handed back once" if t.jobs else
                   "only ever time out" if t.timer is not None else "never report an fd ready")
            waits[tid] = (f"waits for readiness (first at line {t.first_wait}), but its waits {got}: it does not "
                          "serve several things between waits")
    for tid, t in threads.items():
        if tid in waits and t.epoll:
            twin = next((o for o, r in roles.items() if r.role == LOOP and threads[o].epoll and o != tid
                         and threads[o].made_by == t.made_by is not None and m.proc(o) == m.proc(tid)), None)
            if twin is not None:
                roles[tid] = Role(LOOP, f"started by thread {t.made_by} like loop thread {twin}, and like it waits on "
                                        f"an epoll fd of its own (first at line {t.first_wait}); nothing reaches it in "
                                        "this log", (t.made_at, t.first_wait))
                waits.pop(tid)
    loops_in = {m.proc(t) for t, r in roles.items() if r.role == LOOP}
    for tid, t in threads.items():
        if tid not in roles and m.proc(tid) in loops_in and t.handbacks:
            line, work = t.handbacks[0]
            roles[tid] = Role(POOL, f"does work (first at line {work}) and hands it back to a loop "
                                    f"(the write at line {line}, which a loop's wait returns)", (work, line),
                              f"it hands work back to a loop at line {line}")
    for tid, t in threads.items():
        if tid not in roles and t.ring_worker is not None:
            roles[tid] = _ring_worker(t.ring_worker, roles)
    for tid, t in threads.items():
        if tid in roles:
            continue
        twin = _sibling_pool(m, tid, t, roles)
        if twin is not None:
            roles[tid] = Role(POOL, f"started by thread {t.made_by} like pool thread {twin}, and does the same "
                                    f"work (first at line {t.work}); its own hand-back is not in the log",
                              (t.made_at, t.work), f"started like pool thread {twin}; its own hand-back is not in the log")
        elif tid in waits:
            roles[tid] = Role(OTHER, waits[tid], (t.first_wait,))
        elif t.work is not None and m.proc(tid) in loops_in:
            roles[tid] = Role(OTHER, f"does work (first at line {t.work}) but hands nothing back to a loop "
                                     "in this log", (t.work,))
        else:
            roles[tid] = Role(OTHER, "neither waits for readiness nor hands work back to a loop", ())
    return roles


def _ring_worker(ran: tuple, roles: dict) -> Role:
    """An io-wq worker (iou-wrk-N): the kernel's own pool, made without a clone, making no
    syscall; a pool thread where the operation it ran was a loop's."""
    done, sub, submitter, op, name = ran
    kind = "an io-wq worker of the kernel" if name.startswith("iou-wrk") else "a thread of the kernel"
    what = (f"{kind} ({name}): it ran the {op} thread {submitter} submitted at line {sub} "
            f"and posted its completion (line {done}); the kernel makes these threads without a clone, and "
            "they make no syscall of their own")
    loop = roles.get(submitter)
    if loop is not None and loop.role == LOOP:
        return Role(POOL, what + f"; thread {submitter} is the loop, which reaps the completion", (sub, done),
                    f"{kind.removesuffix(' of the kernel')}: it ran the {op} submitted at line {sub}")
    return Role(OTHER, what + f"; thread {submitter} is no loop", (sub, done))


def _sibling_pool(m: Model, tid, t: Thread, roles: dict):
    if t.work is None or t.made_by is None:
        return None
    for other, r in roles.items():
        if r.role == POOL and other != tid and m.threads[other].made_by == t.made_by:
            return other
    return None


def process_has_loop(m: Model, tid) -> bool:
    if thread_role(m, tid) == LOOP:
        return True  # asked for every client read and write: the loop thread itself, at once
    proc = m.proc(tid)
    return any(m.proc(t) == proc and thread_role(m, t) == LOOP for t in m.loop_threads())


def serving(m: Model, tid) -> tuple | None:
    """(line, tid) of the first client this thread's process accepted (or was handed), if any."""
    return m.accepted.get(m.proc(tid))


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
    role = thread_role(m, tid)
    if role == LOOP:
        # Before the first accepted connection the loop is still starting
        # up (imports, config): slow, but no client is kept waiting yet.
        # Where other threads wait on the same epoll fd, they keep serving.
        if serving(m, tid) is not None and not fellow_waiters(m, tid):
            return BLOCKING
        return OTHER_CAT
    if role == POOL:
        return POOLED
    if not m.prior.complete and m._proc_waited(tid):
        # Read as a stream, a hand-back comes after the work: work beside a loop is taken as
        # a pool thread's (the note says so), as live mode must draw it when it happens.
        m.learned.pools.add(tid)
        return POOLED
    return OTHER_CAT


@dataclass
class Wake:
    """A write to an fd some epoll watches, as the model explains it."""

    watched: int  # the fd (this one or its peer) an epoll watches
    epolls: list  # the epoll fds that watch it
    waiting: set  # threads that wait on those epolls (the writer among them, maybe)
    woken: set  # those other than the writer


def wake_of(m: Model, tid, fd) -> Wake | None:
    """Does `tid` writing `fd` fill an fd a wait watches? None when nothing watches it.

    A write makes an eventfd itself readable, and a pipe's or socket's other end:
    writing one end of a socketpair or a TCP socket never wakes a wait on that end."""
    if fd.role not in (WAKEUP, PIPE, SOCKET):
        return None
    table = m.procs.table(tid)
    watched = fd.num if fd.detail == "eventfd" else fd.peer
    if watched is None or not table.watchers(watched):
        return None
    eps = table.watchers(watched)
    waiting = {t for ep in eps for t in m.waiters(tid, ep)}
    return Wake(watched, eps, waiting, waiting - {tid})
