"""Runs side by side: which syscalls realise each textbook phase of an event
loop, how each request kind is served, and what differs, from the data.

A completion loop (the io_uring server) realises the phases with operations
in its ring: under strace only its io_uring_enter calls show (they are its
waits); under the kernel tracer each operation's completion does (io_uring_cqe).

Input: finished trace folders (events.jsonl + scenario.jsonl), read as
streams. Output: one dict (compare.json) and its Markdown view (compare.md).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

from ..names import CLIENT, READS, RESOLVER_CALLS, RING_RECORDS, WAITS, WRITES
from ..read.sqe import sqe_fields
from ..read.parse import split_args

RESPONDS = WRITES | {"sendfile"}  # nginx answers files with sendfile

PHASES = [
    ("create io_uring", "submission and completion queues shared with the kernel"),
    ("create epoll", "the loop's set of watched fds"),
    ("register listener", "watch the listening socket"),
    ("wait", "sleep until an fd is ready or a timer is due"),
    ("accept", "take the new connection"),
    ("register client", "watch the client fd"),
    ("re-arm client", "change what is watched (EPOLL_CTL_MOD)"),
    ("read", "read the request"),
    ("respond", "write the response"),
    ("deregister", "stop watching the client"),
    ("close", "close the client fd"),
    ("wake-up from the pool", "another thread wakes the loop"),
]
# A completion's opcode -> the phase it realises, for a client's fd (ACCEPT: the listening socket's).
RING_PHASES = {"ACCEPT": "accept", "RECV": "read", "RECVMSG": "read", "READ": "read", "SEND": "respond",
               "SENDMSG": "respond", "WRITE": "respond", "CLOSE": "close"}


def _ctl_op(rec: dict) -> str:
    args = split_args(rec["args"])
    return args[1].replace("EPOLL_CTL_", "") if len(args) > 1 else "?"


def _in_a_handler(rec: dict) -> bool:
    """A write its note shows inside a signal handler: a signal's arrival, not a pool's wakeup."""
    return any(e.get("claim") == "signal-handler" for e in rec.get("evidence") or ())


def _target_role(rec: dict, i: int) -> str | None:
    fds = rec.get("fds") or []
    return fds[i]["role"] if len(fds) > i else None


def phase_of(rec: dict) -> tuple[str, str] | None:
    """(phase, how) for one annotated record, or None if it is not a phase."""
    name = rec["syscall"]
    if rec["kind"] != "syscall" or name is None:
        return None
    if rec["category"] == "wakeup" and not _in_a_handler(rec):
        how = "eventfd" if "eventfd" in rec["note"] else "self-pipe"
        return "wake-up from the pool", f"{name} to {how}"
    if rec["errno"] is not None and name not in WAITS:
        return None
    if name in ("epoll_create", "epoll_create1"):
        return "create epoll", name
    if name == "io_uring_setup":
        return "create io_uring", name
    if name in WAITS and rec["thread"] == "loop":
        return "wait", name
    if name in ("accept", "accept4"):
        return "accept", name
    if name == "io_uring_enter":
        return None  # a completion loop's wait, or libuv's registration: read_run decides by its thread
    if name == "io_uring_cqe":
        return _ring_phase(rec)
    if name == "io_uring_sqe":
        op = _uring_op(rec)
        role = _target_role(rec, 1)
        if op is None:
            return None
        if role == "listening-socket" and op == "ADD":
            return "register listener", "io_uring EPOLL_CTL_ADD"
        if role == CLIENT:
            return {"ADD": "register client", "MOD": "re-arm client",
                    "DEL": "deregister"}[op], f"io_uring EPOLL_CTL_{op}"
        return None
    if name == "epoll_ctl":
        op, role = _ctl_op(rec), _target_role(rec, 1)
        if role == "listening-socket" and op == "ADD":
            return "register listener", "epoll_ctl ADD"
        if role == CLIENT:
            return {"ADD": "register client", "MOD": "re-arm client",
                    "DEL": "deregister"}.get(op, "register client"), f"epoll_ctl {op}"
        return None
    role = _target_role(rec, 0)
    if role != CLIENT:
        return None
    if name in READS:
        return "read", name
    if name in RESPONDS:
        return "respond", name
    if name == "close":
        return "close", name
    return None


def _ring_phase(rec: dict) -> tuple[str, str] | None:
    """A completion (kernel tracer) as a phase: an accept, a client's recv, send or close; or
    an io-wq worker's completion, the kernel's pool handing a result back."""
    got = sqe_fields(rec["args"])
    if got is None:
        return None
    if rec["thread"] == "pool":
        return "wake-up from the pool", "io-wq worker's completion"
    phase = RING_PHASES.get(got["name"])
    role = _target_role(rec, 0)
    if phase is None or rec["errno"] is not None or (phase != "accept" and role != CLIENT):
        return None
    return phase, f"io_uring {got['name']}"


def _uring_op(rec: dict) -> str | None:
    """ADD/MOD/DEL of a libuv IORING_OP_EPOLL_CTL the kernel tracer saw, else None."""
    got = sqe_fields(rec["args"])
    return got["op"] if got and got["libuv"] and rec["errno"] is None else None


def _shown_by_kernel(rec: dict) -> bool:
    # The kernel tracer names what this io_uring_enter carried in io_uring_sqe records.
    return "io_uring_sqe record" in rec["note"]


def _request_path(label: str | None) -> str | None:
    if not label or ": GET " not in label:
        return None
    return label.split(": GET ", 1)[1].split("?", 1)[0]


def read_run(out: Path) -> dict:
    """One run's phases, per-request facts and wakeup mechanism."""
    phases: dict[str, Counter] = defaultdict(Counter)
    per_request: dict[str, dict] = {}
    wake = Counter()
    waits = Counter()
    # io_uring_enter on a loop thread: a completion loop's wait, or (a thread that also waits
    # in epoll: libuv) how it registers fds. Known once the whole run is read.
    enters: Counter = Counter()  # tid -> io_uring_enter the kernel tracer did not decode
    epoll_tids: set = set()
    ring_ops = 0  # io_uring submissions the kernel tracer decoded
    with open(out / "events.jsonl") as f:
        for line in f:
            rec = json.loads(line)
            got = phase_of(rec)
            if got:
                phases[got[0]][got[1]] += 1
            if rec["kind"] == "syscall" and rec["syscall"] in WAITS and rec["thread"] == "loop":
                waits[rec["syscall"]] += 1
                epoll_tids.add(rec["tid"])
            if rec["kind"] == "syscall" and rec["syscall"] == "io_uring_enter" and rec["thread"] == "loop":
                enters[rec["tid"]] += 1
                if _shown_by_kernel(rec):
                    enters[("shown", rec["tid"])] += 1
            if rec["syscall"] == "io_uring_sqe":
                ring_ops += 1
            if rec["category"] == "wakeup" and not _in_a_handler(rec):
                for fd in rec["fds"]:
                    if fd["role"] == "wakeup":
                        wake[fd["detail"] or "pipe"] += 1
            path = _request_path(rec.get("request"))
            if path is None:
                continue
            req = per_request.setdefault(path, {
                "served_by": set(), "work_threads": set(), "waits": 0, "ADD": 0, "MOD": 0, "DEL": 0,
                "io_uring_enter": 0, "via_io_uring": 0, "wakeups": 0, "threads_started": 0,
                "processes_started": 0, "syscalls": 0, "ring_ops": Counter(), "enters_by": Counter()})
            cat = rec["category"]
            if cat in ("blocking", "thread-pooled"):
                req["served_by"].add(cat)
                req["work_threads"].add(rec["thread"])
            if rec["kind"] != "syscall":
                continue
            name = rec["syscall"]
            if name == "io_uring_sqe":
                got = sqe_fields(rec["args"])
                if got and not got["libuv"]:
                    req["ring_ops"][got["name"]] += 1
            elif name not in RING_RECORDS and name not in RESOLVER_CALLS:
                req["syscalls"] += 1  # what strace shows of the request
            if name == "io_uring_enter" and rec["thread"] == "loop":
                req["enters_by"][rec["tid"]] += 1
            if name in WAITS and rec["thread"] == "loop":
                req["waits"] += 1
            elif name == "epoll_ctl" and rec["errno"] is None:
                op = _ctl_op(rec)
                if op in ("ADD", "MOD", "DEL"):
                    req[op] += 1
            elif name == "io_uring_sqe" and (op := _uring_op(rec)):
                req[op] += 1
                req["via_io_uring"] += 1
            elif name == "io_uring_enter":
                req["io_uring_enter"] += 1
            elif name in ("clone", "clone3", "fork", "vfork") and rec["errno"] is None:
                key = "threads_started" if "CLONE_THREAD" in rec["args"] else "processes_started"
                req[key] += 1
            if cat == "wakeup":
                req["wakeups"] += 1
    completion = {t for t in enters if not isinstance(t, tuple) and t not in epoll_tids}
    for tid in enters:
        if isinstance(tid, tuple):
            continue
        if tid in completion:
            phases["wait"]["io_uring_enter"] += enters[tid]
            waits["io_uring_enter"] += enters[tid]
        elif enters[tid] > enters[("shown", tid)]:
            phases["register client"]["io_uring_enter"] += enters[tid] - enters[("shown", tid)]
    for req in per_request.values():
        served = req.pop("served_by")
        ops = req["ring_ops"]
        req["waits"] += sum(n for t, n in req.pop("enters_by").items() if t in completion)
        file_ops = sum(ops[o] for o in ("OPENAT", "READ", "WRITE"))
        req["served"] = ("blocking in loop" if "blocking" in served else
                         "io-wq (the kernel's pool)" if "thread-pooled" in served and file_ops else
                         "thread-pooled" if "thread-pooled" in served else
                         "io_uring, inline" if file_ops else
                         "not shown (io_uring_enter only)" if completion and not ring_ops else "pollable")
        req["work_threads"] = sorted(req["work_threads"])
        req["ring_ops"] = dict(ops.most_common())
    mechanism = ", ".join(sorted(wake)) if wake else "none seen"
    return {"phases": {p: dict(c.most_common()) for p, c in phases.items()},
            "requests": per_request, "wakeup_mechanism": mechanism, "waits": dict(waits),
            "completion_loop": bool(completion), "ring_ops": ring_ops}


def build(runs: dict[str, Path]) -> dict:
    data = {name: read_run(out) for name, out in runs.items()}
    return {"runs": list(runs), "phases": {p: {n: data[n]["phases"].get(p, {}) for n in runs}
                                           for p, _ in PHASES},
            "requests": _requests(data), "wakeup_mechanism": {n: data[n]["wakeup_mechanism"] for n in runs},
            "waits": {n: data[n]["waits"] for n in runs}, "differences": differences(data)}


def _requests(data: dict) -> dict:
    paths: list[str] = []
    for run in data.values():
        paths += [p for p in run["requests"] if p not in paths]
    return {p: {n: run["requests"].get(p) for n, run in data.items()} for p in paths}


def _count(cell: dict, key: str) -> int:
    return sum(v for k, v in cell.items() if k.startswith(key))


def differences(data: dict) -> list[str]:
    """Sentences that follow from the numbers; each names the runs it compares."""
    out = []
    by_wait: dict[str, list[str]] = defaultdict(list)
    for name, run in data.items():
        if run["waits"]:
            by_wait[max(run["waits"], key=run["waits"].get)].append(name)
    if len(by_wait) > 1:
        parts = [f"{', '.join(names)} wait with {call}" for call, names in sorted(by_wait.items())]
        out.append("; ".join(parts) + ". epoll_pwait is epoll_wait with a signal mask: libuv "
                   "(uvloop) always calls it; CPython's selectors and the C server call epoll_wait.")
    for name, run in data.items():
        ph = run["phases"]
        accepts = _count(ph.get("accept", {}), "accept")
        adds = _count(ph.get("register client", {}), "epoll_ctl ADD")
        ring = _count(ph.get("register client", {}), "io_uring_enter")
        seen = _count(ph.get("register client", {}), "io_uring EPOLL_CTL_ADD")
        dels = _count(ph.get("deregister", {}), "epoll_ctl DEL")
        listener = ph.get("register listener", {})
        if accepts and seen:
            strace_run = data.get(name.removesuffix("-kernel"), {}).get("phases", {})
            hidden = _count(strace_run.get("register client", {}), "io_uring_enter")
            out.append(f"{name}: {seen} EPOLL_CTL_ADD of a client for {accepts} accepts, every one "
                       "submitted through io_uring (IORING_OP_EPOLL_CTL) and seen by the kernel tracer "
                       "(io_uring_submit_req, libuv's user_data decoded): strace cannot see these"
                       + (f" (the strace run {name.removesuffix('-kernel')} shows {hidden} io_uring_enter "
                          "in their place)" if hidden and name != name.removesuffix("-kernel") else "")
                       + (f"; {dels} EPOLL_CTL_DEL go through plain epoll_ctl." if dels else "."))
        elif accepts and ring and not adds:
            out.append(f"{name}: {accepts} accepts but no EPOLL_CTL_ADD for a client"
                       + ("" if listener else " (nor for the listening socket)")
                       + f"; {ring} io_uring_enter calls instead: libuv 1.45+ submits its epoll_ctl "
                       "through io_uring, which strace does not decode"
                       + (f"; its {dels} EPOLL_CTL_DEL still go through plain epoll_ctl." if dels else "."))
        elif accepts and adds:
            out.append(f"{name}: {adds} EPOLL_CTL_ADD for {accepts} accepts"
                       + (f" and {dels} EPOLL_CTL_DEL" if dels else ", no EPOLL_CTL_DEL (close() "
                          "removes an fd from every epoll set)") + ".")
    for name, run in data.items():
        if not run.get("completion_loop"):
            continue
        ph, home = run["phases"], run["requests"].get("/")
        enters = _count(ph.get("wait", {}), "io_uring_enter")
        if run["ring_ops"]:
            done = ", ".join(f"{n} {how.removeprefix('io_uring ')}" for p in ("accept", "read", "respond", "close")
                             for how, n in ph.get(p, {}).items() if how.startswith("io_uring "))
            out.append(f"{name}: a completion loop: it waits in io_uring_enter ({enters} calls) and registers "
                       f"nothing; the kernel tracer shows the operations it hands the kernel, completed: {done}. "
                       "No accept4, read or write: the ring does them, and an accepted client's fd is born in "
                       "an ACCEPT's completion.")
        else:
            calls = f"; GET / was {home['syscalls']} syscall(s), all io_uring_enter" if home else ""
            out.append(f"{name}: a completion loop: {enters} io_uring_enter calls are its waits, and strace "
                       f"shows nothing else of its requests{calls}: accept, recv, send and close are operations "
                       "in the ring, which strace does not decode (the kernel tracer does).")
    mech = {n: r["wakeup_mechanism"] for n, r in data.items() if r["wakeup_mechanism"] != "none seen"}
    if len(set(mech.values())) > 1:
        groups: dict[str, list[str]] = defaultdict(list)
        for n, m in mech.items():
            groups[m].append(n)
        out.append("Pools wake their loop differently: " + "; ".join(
            f"{m} in {', '.join(ns)}" for m, ns in groups.items()) + ". An eventfd is one fd holding "
            "a counter; the stdlib loop's self-pipe is a socketpair, one end written, the other watched.")
    for path in ("/file", "/dns"):
        served = {n: r["requests"][path]["served"] for n, r in data.items() if path in r["requests"]}
        if len(set(served.values())) > 1:
            how: dict[str, list[str]] = defaultdict(list)
            for n, s in served.items():
                how[s].append(n)
            why = ("a regular file is always 'ready', so epoll cannot help" if path == "/file" else
                   "getaddrinfo is a blocking libc call with no fd to poll")
            ring = any(s.startswith(("io_uring", "io-wq")) for s in served.values())
            instead = ("hands the file to the kernel, which reads it inline when it can and on its own io-wq "
                       "threads when it would block" if path == "/file" else
                       "(the lab's io_uring server) reads /etc/hosts through the ring instead: no ring "
                       "operation replaces getaddrinfo")
            out.append(f"GET {path} is " + "; ".join(f"{s} in {', '.join(ns)}" for s, ns in how.items())
                       + f": {why}; only a thread keeps an epoll loop free"
                       + (f"; a completion loop {instead}." if ring else "."))
    return out


# -- Markdown view ----------------------------------------------------------

def _cell(counts: dict) -> str:
    return ", ".join(f"{k} ×{v}" for k, v in counts.items()) or "—"


def markdown(cmp: dict) -> str:
    runs = cmp["runs"]
    head = "| phase | " + " | ".join(runs) + " |\n|---|" + "---|" * len(runs)
    lines = ["# epoll-lab: the loops side by side", "",
             "Each cell: the syscall(s) that realise the phase in that run, with a count over the "
             "whole trace.", "", head]
    for phase, why in PHASES:
        lines.append(f"| {phase} ({why}) | " + " | ".join(_cell(cmp["phases"][phase][n]) for n in runs) + " |")
    lines += ["", "## Wakeup mechanism", "", "| " + " | ".join(runs) + " |", "|" + "---|" * len(runs),
              "| " + " | ".join(cmp["wakeup_mechanism"][n] for n in runs) + " |", "",
              "## Per request: how it is served, on which thread, and what it costs", "",
              "Cells: served as / threads doing the file or resolver work / loop waits, "
              "ctl ADD/MOD/DEL, io_uring_enter, wakeups, threads started.", "", head.replace("phase", "request")]
    lines += _request_rows(cmp, _served_cell)
    lines += ["", "## Calls per request: what each tracer sees", "",
              "Cells: syscalls in the request's window (strace's view; the kernel tracer's is the same "
              "calls); then the io_uring operations submitted, which only the kernel tracer decodes.", "",
              head.replace("phase", "request")]
    lines += _request_rows(cmp, _calls_cell)
    lines += ["", "## What differs and why", ""] + [f"- {d}" for d in cmp["differences"]]
    return "\n".join(lines) + "\n"


def _request_rows(cmp: dict, cell) -> list[str]:
    """A table row per request kind, a cell per run (`cell` of its numbers)."""
    return [f"| {path} | " + " | ".join("not served" if per.get(n) is None else cell(per[n])
                                         for n in cmp["runs"]) + " |"
            for path, per in cmp["requests"].items()]


def _served_cell(r: dict) -> str:
    threads = "+".join(r["work_threads"]) or "loop (sockets only)"
    via = f" ({r['via_io_uring']} via io_uring)" if r.get("via_io_uring") else ""
    return (f"{r['served']} / {threads} / waits {r['waits']}, ctl {r['ADD']}/{r['MOD']}/{r['DEL']}{via}, "
            f"uring {r['io_uring_enter']}, wakeups {r['wakeups']}, threads +{r['threads_started']}")


def _calls_cell(r: dict) -> str:
    ops = r.get("ring_ops") or {}
    ring = (" + ring: " + ", ".join(f"{op} ×{k}" for op, k in ops.items())) if ops else ""
    return f"{r.get('syscalls', 0)} syscalls{ring}"


def write(cmp: dict, out_dir: Path) -> tuple[Path, Path]:
    md, js = out_dir / "compare.md", out_dir / "compare.json"
    md.write_text(markdown(cmp))
    js.write_text(json.dumps(cmp, indent=1) + "\n")
    return md, js
