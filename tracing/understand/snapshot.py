"""What a process holds when `trace --pid` attaches: its fds, the interest list of each
epoll fd, its threads. A log that starts mid-flight never shows how these were made;
the snapshot, saved beside the raw log as snapshot.json, lets the annotator start from
them, so an attached trace tells the same story as a launched one.

Fds are named as strace -yy names them (`TCP:[127.0.0.1:8000]`, `pipe:[325817]`,
`UNIX-STREAM:[251319->251318]`), so the annotator reads them the one way it reads -yy.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from .fds import Interest, from_decoration

NAME = "snapshot.json"

_EPOLL_BITS = [(0x1, "EPOLLIN"), (0x2, "EPOLLPRI"), (0x4, "EPOLLOUT"), (0x8, "EPOLLERR"), (0x10, "EPOLLHUP"),
               (0x2000, "EPOLLRDHUP"), (1 << 28, "EPOLLEXCLUSIVE"), (1 << 29, "EPOLLWAKEUP"),
               (1 << 30, "EPOLLONESHOT"), (1 << 31, "EPOLLET")]
_TFD = re.compile(r"^tfd:\s*(\d+)\s+events:\s*([0-9a-f]+)\s+data:\s*([0-9a-f]+)", re.M)
_TCP_STATES = {"0A": "listen"}


def take(pid: int) -> dict:
    """The snapshot of process `pid` (readable parts only: a vanished fd is left out)."""
    proc = Path(f"/proc/{pid}")
    sockets = _sockets(pid)
    fds, epoll = {}, {}
    for entry in sorted(_listdir(proc / "fd"), key=lambda n: int(n) if n.isdigit() else -1):
        if not entry.isdigit():
            continue
        try:
            link = os.readlink(proc / "fd" / entry)
        except OSError:
            continue
        fds[entry] = _decoration(link, sockets)
        if link == "anon_inode:[eventpoll]":
            try:
                info = (proc / "fdinfo" / entry).read_text()
            except OSError:
                continue
            epoll[entry] = [{"fd": int(fd), "events": _events(int(ev, 16)), "data": int(data, 16)}
                            for fd, ev, data in _TFD.findall(info)]
    threads = {}
    for tid in _listdir(proc / "task"):
        try:
            threads[tid] = (proc / "task" / tid / "comm").read_text().strip()
        except OSError:
            continue
    return {"pid": pid, "taken": time.time(), "threads": threads, "fds": fds, "epoll": epoll}


def save(out: Path, pid: int) -> Path:
    path = out / NAME
    path.write_text(json.dumps(take(pid), indent=1) + "\n")
    return path


def load(path: Path | str | None) -> dict | None:
    if path is None:
        return None
    return json.loads(Path(path).read_text())


def beside(log: Path | str) -> Path | None:
    """The snapshot a run saved beside its raw log, if there is one."""
    path = Path(log).parent / NAME
    return path if path.is_file() else None


def apply(model, snap: dict | None) -> None:
    """Start `model` from the snapshot: one process, its threads, fds and interest lists."""
    if not snap:
        return
    pid = int(snap["pid"])
    table = model.procs.table(pid)
    for tid in snap.get("threads", {}):
        if int(tid) != pid:
            model.procs.joined(int(tid), pid)
    items = sorted(snap.get("fds", {}).items(), key=lambda kv: int(kv[0]))
    # Listening sockets first: a connection is told accepted by its local port.
    for num, deco in [i for i in items if "->" not in i[1]] + [i for i in items if "->" in i[1]]:
        fd = from_decoration(int(num), deco, table.listening_ports())
        fd.how = "snapshot"
        table.seed(fd)
    for ep, interests in snap.get("epoll", {}).items():
        watched = table.watched(int(ep))
        for i in interests:
            watched[i["fd"]] = Interest(i["fd"], i["events"], i["data"])


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _events(mask: int) -> str:
    return "|".join(name for bit, name in _EPOLL_BITS if mask & bit) or hex(mask)


def _decoration(link: str, sockets: dict) -> str:
    m = re.fullmatch(r"socket:\[(\d+)\]", link)
    if m:
        return sockets.get(m.group(1), f"socket:[{m.group(1)}]")
    return link


def _sockets(pid: int) -> dict[str, str]:
    """Socket inode -> -yy text, from /proc/PID/net and `ss` (a unix socket's peer)."""
    out: dict[str, str] = {}
    for name, kind in (("tcp", "TCP"), ("tcp6", "TCPv6"), ("udp", "UDP"), ("udp6", "UDPv6")):
        try:
            rows = Path(f"/proc/{pid}/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            f = row.split()
            if len(f) < 10:
                continue
            local, remote, state, inode = _addr(f[1]), _addr(f[2]), f[3], f[9]
            connected = remote and not remote.endswith(":0") and _TCP_STATES.get(state) != "listen"
            out[inode] = f"{kind}:[{local}->{remote}]" if connected else f"{kind}:[{local}]"
    peers = _unix_peers()
    try:
        rows = Path(f"/proc/{pid}/net/unix").read_text().splitlines()[1:]
    except OSError:
        rows = []
    for row in rows:
        f = row.split()
        if len(f) < 7:
            continue
        kind = {"0001": "UNIX-STREAM", "0002": "UNIX-DGRAM", "0005": "UNIX-SEQPACKET"}.get(f[4], "UNIX")
        inode, path = f[6], (f[7] if len(f) > 7 else "")
        peer = f"->{peers[inode]}" if inode in peers else ""
        out[inode] = f'{kind}:[{inode}{peer}{"," + json.dumps(path) if path else ""}]'
    return out


def _addr(hexaddr: str) -> str:
    host, _, port = hexaddr.partition(":")
    try:
        raw = bytes.fromhex(host)
        if len(raw) == 4:
            ip = str(ipaddress.IPv4Address(raw[::-1]))
        else:
            words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
            ip = f"[{ipaddress.IPv6Address(words).compressed}]"
        return f"{ip}:{int(port, 16)}"
    except ValueError:
        return hexaddr


def _unix_peers() -> dict[str, str]:
    """Unix socket inode -> its peer's inode, as `ss -x` reports them (the kernel's sock_diag)."""
    ss = shutil.which("ss")
    if ss is None:
        return {}
    try:
        text = subprocess.run([ss, "-xanH"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    peers = {}
    for row in text.splitlines():
        f = row.split()
        # Netid State Recv-Q Send-Q Local-Address Port Peer-Address Port
        if len(f) >= 8 and f[5].isdigit() and f[7].isdigit() and f[7] != "0":
            peers[f[5]] = f[7]
    return peers
