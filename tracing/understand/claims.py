"""The table of claims: every causal thing a note may say, and the evidence it needs.

A note says "woken by", "inside the SIGUSR1 handler", "a finished job",
"blocks the loop"... only when the log holds the line that proves it, and the
record names that line in its `evidence` list: `{"claim": KEY, "line": N,
"tid": T}`. Where the log cannot decide, the note says what is known and what
is not, and makes no claim. Each claim here has:

- `words`: how a note makes it (a regular expression over the note), so a
  note that says it without evidence is found (`unsupported`);
- `needs`: the evidence, in words;
- `shown`: what an evidence line must be, checked on the records themselves;
- `example` and `without`: a real log, the line where the claim is made, and
  the lines whose removal takes the evidence away: the tests annotate the log
  with and without them (`tests/test_claims.py`); docs/claims.md is rendered
  from this table (`python -m tracing.understand.claims`).

A leaf module: it reads records (dicts), never the model.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Callable, Iterable

from ..names import POLL_WAITS, READS, RESOLVER_CALLS, WAITS, WRITES


def _is_write(rec: dict) -> bool:
    return rec.get("syscall") in WRITES


def _is_wait(rec: dict) -> bool:
    return rec.get("syscall") in WAITS or rec.get("syscall") in POLL_WAITS or rec.get("syscall") == "io_uring_enter"


def _is_signal(rec: dict) -> bool:
    return rec.get("kind") == "signal"


def _is_work(rec: dict) -> bool:
    name = rec.get("syscall")
    roles = {f.get("role") for f in rec.get("fds") or []}
    return (name in ("open", "openat", "connect", "sendto", "sendmsg", "close", "socket", "clock_nanosleep",
                     "nanosleep") or name in READS
            or name in WRITES or name in RESOLVER_CALLS or "file" in roles)


def _is_resolver_step(rec: dict) -> bool:
    text = (rec.get("args") or "") + " " + " ".join(f.get("detail") or "" for f in rec.get("fds") or [])
    return (rec.get("syscall") in RESOLVER_CALLS or any(p in text for p in RESOLVER_PATHS)
            or "nscd" in text or "htons(53)" in text or "NETLINK" in text)


def _is_accept(rec: dict) -> bool:
    return rec.get("syscall") in ("accept", "accept4", "recvmsg", "io_uring_enter", "io_uring_cqe") or any(
        f.get("role") == "client-connection" for f in rec.get("fds") or [])


def _is_close(rec: dict) -> bool:
    return rec.get("syscall") in ("close", "shutdown", "exit_group") or rec.get("kind") == "exit"


def _is_load(rec: dict) -> bool:
    text = (rec.get("args") or "") + " ".join(f.get("detail") or "" for f in rec.get("fds") or [])
    return bool(re.search(r"uvloop|libuv|/node\b|\bnode\"", text)) or rec.get("syscall") == "io_uring_sqe"


def _any(rec: dict) -> bool:
    return rec.get("kind") in ("syscall", "signal", "exit")


RESOLVER_PATHS = ("/etc/hosts", "/etc/nsswitch.conf", "/etc/resolv.conf", "/etc/host.conf", "/etc/gai.conf")


@dataclass(frozen=True)
class Claim:
    key: str
    words: str  # a regular expression: a note that matches makes this claim
    needs: str  # the evidence, in words
    shown: Callable[[dict], bool]  # what each evidence line must be
    example: tuple[str, int]  # (log under tests/fixtures, line of the record that makes it)
    without: tuple  # lines of that log (numbers, or patterns a line matches) whose removal takes the evidence away
    other_thread: bool = False  # the evidence must be another thread's


CLAIMS: tuple[Claim, ...] = (
    Claim("woken-by", r"\bwoken by\b",
          "a write to the fd the wait returned (or to the other end of its pipe or socketpair) that began "
          "after a wait last returned it and before this wait returned",
          _is_write, ("kinds/apache-event/apache-event.strace", 624), (647, 649)),
    Claim("wakes", r"\bwakes (?:loop )?threads?\b|\bwoke\b",
          "a wait of another thread that returned the fd this write filled (the first pass over the log "
          "finds it; a stream read once cannot see ahead, and says so)",
          _is_wait, ("kinds/apache-event/apache-event.strace", 808), (800, 809), other_thread=True),
    Claim("itself", r"\bitself\b|\bits own (?:write|wakeup|wait)",
          "the writer is the thread whose wait returns the fd: the write, or that wait, named",
          lambda r: _is_wait(r) or _is_write(r), ("kinds/curio/curio.strace", 781), (782,)),
    Claim("signal-handler", r"\bSIG[A-Z0-9]+ (?:signal )?handler\b|\bhandler of the signal\b",
          "the signal's delivery to this thread (`--- SIGx ---`), with no wait and no rt_sigreturn of "
          "this thread since (without rt_sigreturn traced: within 10 ms, and the note says it is inferred)",
          _is_signal, ("kinds/apache-event/apache-event.strace", 822), (820,)),
    Claim("signal-number", r"\bsignal number\b",
          "written inside the handler (above), and the buffer's first byte is that signal's number",
          _is_signal, ("kinds/dnsmasq/dnsmasq.strace", 531), (529,)),
    Claim("finished-job", r"\bfinished job\b|\bhands back\b",
          "work by this thread (file, resolver, a sleep, or a handed-over connection's I/O) since its last "
          "write to a wakeup fd: the first such call is named",
          _is_work, ("kinds/nginx-aio-threads/nginx-aio-threads.strace", 259), (258,)),
    Claim("name-lookup", r"\bname lookup\b",
          "another step of the same lookup on this thread since its last wait, named: reading "
          "/etc/nsswitch.conf, /etc/host.conf, /etc/resolv.conf or /etc/gai.conf or /etc/hosts, asking nscd, "
          "a netlink socket or a DNS query; reading /etc/hosts alone is not a lookup",
          _is_resolver_step, ("kinds/squid/squid.strace", 355), (349,)),
    Claim("getaddrinfo", r"\bgetaddrinfo\b",
          "a getaddrinfo record: the kernel tracer's uprobe or ltrace's call (strace cannot see "
          "library calls); the record itself is the evidence",
          lambda r: r.get("syscall") in RESOLVER_CALLS, ("live: make trace-sanic TRACER=kernel", 0), ()),
    Claim("blocks-loop", r"\bBLOCKING\b|\bblocks the loop\b|\bno other client is served\b",
          "the thread is a loop (its first wait, named) that serves clients (the accept or received client "
          "fd, named), and no other thread waits on its epoll fd",
          lambda r: _is_wait(r) or _is_accept(r), ("kinds/dnsmasq/dnsmasq.strace", 536), (429, 450)),
    Claim("keep-serving", r"\bkeep serving\b",
          "other threads that wait on the same epoll fd: their waits, named",
          _is_wait, ("kinds/go.strace", 77),
          (r"^1302[467] .*(?:epoll_pwait\(5|<\.\.\. epoll_pwait resumed)",), other_thread=True),
    Claim("serving-nobody", r"\bserving nobody\b",
          "the loop thread's previous call, named, and this call's start: the time between is outside "
          "any wait (-T or the `resumed>` line shows where that call ended)",
          _any, ("kinds/go.strace", 35), (23,)),
    Claim("libuv", r"\blibuv\b|\buvloop\b",
          "a line that loads libuv's code (uvloop's extension module, libuv.so, or node, which links it), "
          "or a kernel-tracer record that decodes libuv's user_data layout",
          _is_load, ("kinds/uvloop-signal.strace", 561), (529,)),
    Claim("ring-registration", r"\bregistered here, through the ring\b",
          "the accept that made the fd, and a later wait that returns it with no epoll_ctl for it between",
          lambda r: _is_wait(r) or _is_accept(r), ("live: make trace-sanic (uvloop)", 0), ()),
    Claim("peer-closed", r"\bclosed at line\b",
          "the close of the other end of this pipe or socketpair, in this process or another",
          _is_close, ("kinds/nginx-aio-threads/nginx-aio-threads.strace", 200), (199,)),
    Claim("took-it", r"\btook (?:it|the connection)\b",
          "another thread's accept on the same listening socket that returned a connection after this "
          "thread's last call and before this one failed with EAGAIN",
          lambda r: r.get("syscall") in ("accept", "accept4"),
          ("kinds/haproxy-2threads/haproxy-2threads.strace", 502), (501, 503), other_thread=True),
    Claim("connected", r"\bconnection (?:completed|is up)\b",
          "the non-blocking connect (EINPROGRESS), and the wait that reports its socket writable (EPOLLOUT)",
          lambda r: _is_wait(r) or r.get("syscall") == "connect",
          ("kinds/haproxy-2threads/haproxy-2threads.strace", 433), (430,)),
    Claim("submission", r"\bsubmitted at line\b",
          "the io_uring submission (an io_uring_sqe record) with the same user_data, in the same process, "
          "earlier in the log and not yet completed: the kernel tracer's records",
          lambda r: r.get("syscall") == "io_uring_sqe", ("kernel/uring-pool.strace", 27), (24,)),
    Claim("io-wq", r"\bhanded it to io-wq at line\b",
          "the submission of another thread that the kernel handed to io-wq (its io_uring_sqe record says "
          "async=io-wq: the io_uring_queue_async_work tracepoint), completed on this io-wq worker",
          lambda r: r.get("syscall") == "io_uring_sqe" and "async=io-wq" in (r.get("args") or ""),
          ("kernel/uring-pool.strace", 85), (84,), other_thread=True),
    Claim("held-loop", r"\bheld the loop\b",
          "asyncio's own report of a slow callback (PYTHONASYNCIODEBUG=1: `Executing <...> took T seconds`), "
          "the first this loop thread writes after the stall, whose callback (the report's time less T) "
          "began no later than the stall did: the stall lies inside the callback's run",
          lambda r: _is_write(r) and "Executing <" in (r.get("args") or "") and " took " in (r.get("args") or ""),
          ("stalls/asyncio-debug.strace", 606), (607,)),
    Claim("passed", r"\bsent at line\b",
          "the sendmsg with SCM_RIGHTS that passed the same fd (the same -yy text) from another process",
          lambda r: r.get("syscall") == "sendmsg" and "SCM_RIGHTS" in (r.get("args") or ""),
          ("kinds/node-cluster/node-cluster.strace", 1057), (1054,), other_thread=True),
)

BY_KEY = {c.key: c for c in CLAIMS}
_WORDS = [(c, re.compile(c.words)) for c in CLAIMS]


# What a note quotes from the log (paths, buffers) is not its own words.
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"|(?<![\w])/[^\s,;)]*')


def made(note: str) -> list[Claim]:
    """The claims a note's words make (not counting the paths and text it quotes)."""
    words = _QUOTED.sub(" ", note or "")
    return [c for c, pattern in _WORDS if pattern.search(words)]


def unsupported(rec: dict, by_line: dict[int, dict]) -> list[str]:
    """What is wrong with `rec`'s claims: one made without evidence, or evidence that is not
    what the claim needs (an evidence line that is no such call, or the same thread where it
    must be another). Empty when every claim names lines that show it."""
    problems = []
    cited: dict[str, list[dict]] = {}
    for ev in rec.get("evidence") or ():
        cited.setdefault(ev.get("claim"), []).append(ev)
    for claim in made(rec.get("note") or ""):
        if claim.key == "getaddrinfo" and rec.get("syscall") in RESOLVER_CALLS:
            continue  # the record is the call itself
        got = cited.get(claim.key)
        if not got:
            problems.append(f"says {claim.key!r} ({claim.words}) with no evidence")
            continue
        for ev in got:
            seen = by_line.get(ev.get("line"))
            if seen is None:
                problems.append(f"{claim.key}: evidence line {ev.get('line')} is no record of the log")
            elif not claim.shown(seen):
                problems.append(f"{claim.key}: evidence line {ev.get('line')} is {seen.get('syscall') or seen.get('kind')}, "
                                f"not what it needs: {claim.needs}")
            elif claim.other_thread and seen.get("tid") == rec.get("tid"):
                problems.append(f"{claim.key}: evidence line {ev.get('line')} is this thread's own")
            elif "tid" in ev and ev["tid"] != seen.get("tid"):
                problems.append(f"{claim.key}: evidence line {ev.get('line')} is thread {seen.get('tid')}'s, "
                                f"not {ev['tid']}'s")
    return problems


def markdown() -> str:
    """docs/claims.md: the table, from this module."""
    rows = ["# The claims a note may make",
            "",
            "Every causal claim in `annotated.log` names the line(s) that prove it; the JSON record keeps",
            "them as `evidence: [{claim, line, tid}]`. A claim whose evidence the log does not hold is not",
            "made: the note says what is known and what is not. This page is rendered from",
            "`tracing/understand/claims.py` (`python -m tracing.understand.claims > docs/claims.md`); `tests/test_claims.py`",
            "annotates each example log as recorded (the claim is made, with its evidence) and with the",
            "evidence lines removed (the claim is not made), and checks every note of every recorded log",
            "against this table.",
            "",
            "| claim | a note says | the evidence it needs | made in | evidence removed |",
            "|---|---|---|---|---|"]
    for c in CLAIMS:
        log, line = c.example
        where = f"`{log}` line {line}" if line else f"{log.removeprefix('live: ')}: a run of the suite"
        gone = ", ".join(f"`{n}`" if isinstance(n, str) else str(n) for n in c.without) or "the lines it names"
        words = c.words.replace("|", "\\|")
        rows.append(f"| `{c.key}` | `{words}` | {c.needs} | {where} | {gone} |")
    rows += ["", "[Back to the README](../README.md)", ""]
    return "\n".join(rows)


def check_all(records: Iterable[dict]) -> list[str]:
    """Every record's claims against the whole log's records (for the tests)."""
    recs = [r for r in records if r.get("kind") != "started"]
    by_line = {r["line"]: r for r in recs}
    out = []
    for r in recs:
        for p in unsupported(r, by_line):
            out.append(f"line {r['line']}: {p}: {r.get('note')}")
    return out


if __name__ == "__main__":
    sys.stdout.write(markdown())
