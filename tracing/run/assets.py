"""Where the lab's own files are, in a checkout or in an installed package, and
the C servers built on first use.

Two C servers share every .c file of cdemo/ but the other's main file:
`epoll` (cdemo/epoll_server.c) and `uring` (cdemo/uring_server.c, linked with
liburing). In the repository they are cdemo/bin/<name>_server (`make
build-c`). Installed with pip, their source ships as package data
(tracing/cdemo) and the first `epoll-lab trace c` (or `trace uring`) compiles
the server with the system compiler into the user's cache folder, under a
name that changes with the source.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

from ..errors import EXIT_SETUP, TraceError

CHECKOUT = Path(__file__).resolve().parents[2]
# The lab's own import names: `tracing` and `server` in a checkout; installed, `epoll_lab.tracing`
# and `epoll_lab.server`, so a user's own `tracing` or `server` package never meets them.
PACKAGE = __name__.rsplit(".run.assets", 1)[0]
SERVER_PACKAGE = PACKAGE[: -len("tracing")] + "server"
CFLAGS = ["-O2", "-Wall", "-Wextra", "-Werror", "-pthread"]  # as the Makefile's


def in_checkout() -> bool:
    return (CHECKOUT / "cdemo" / "epoll_server.c").is_file() and (CHECKOUT / "Makefile").is_file()


def c_source_dir() -> Path:
    if in_checkout():
        return CHECKOUT / "cdemo"
    # Through a file: the package may be a namespace (a MultiplexedPath).
    return Path(str(resources.files(f"{PACKAGE}.cdemo") / "epoll_server.c")).parent


# Each C server: the libraries it links beside libc.
C_SERVERS = {"epoll": [], "uring": ["-luring"]}
# Where a server's library is missing, what to install (Debian's package).
C_PACKAGES = {"uring": "liburing-dev"}


def c_sources(server: str = "epoll") -> list[Path]:
    """A C server's .c files: its loop, and what both loops share (parser, routes, sessions)."""
    others = {f"{name}_server.c" for name in C_SERVERS if name != server}
    return sorted(p for p in c_source_dir().glob("*.c") if p.name not in others)


def lab_data() -> Path:
    """The file the servers' /file route reads."""
    if in_checkout():
        return CHECKOUT / "server" / "data" / "lab.txt"
    return Path(str(resources.files(SERVER_PACKAGE) / "data" / "lab.txt"))


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "epoll-lab"


def c_binary(server: str = "epoll") -> Path:
    """Where a C server's binary is (or will be, once `ensure_c_binary` built it)."""
    if in_checkout():
        return CHECKOUT / "cdemo" / "bin" / f"{server}_server"
    h = hashlib.sha256()
    for f in sorted(c_source_dir().glob("*.[ch]")):
        h.update(f.read_bytes())
    digest = h.hexdigest()[:12]
    return cache_dir() / f"{server}_server-{digest}"


def compiler() -> str | None:
    for cc in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cc and shutil.which(cc):
            return cc
    return None


def ensure_c_binary(server: str = "epoll") -> Path:
    """A C server's binary, compiled now if it is not there yet."""
    binary = c_binary(server)
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    cc = compiler()
    if cc is None:
        raise TraceError("the C server is built on first use, but there is no C compiler: install one "
                         "(sudo apt-get install -y gcc) or set CC", EXIT_SETUP)
    try:
        binary.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TraceError(f"cannot make {binary.parent} for the C server: {e.strerror}", EXIT_SETUP) from None
    partial = binary.with_name(binary.name + f".{os.getpid()}.tmp")
    cmd = [cc, *CFLAGS, "-o", str(partial), *map(str, c_sources(server)), *C_SERVERS[server]]
    print(f"[epoll-lab] building the C server once: {' '.join(cmd)}", flush=True, file=sys.stderr)
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        partial.unlink(missing_ok=True)
        detail = (p.stderr.strip().splitlines() or ["(no output)"])[0]
        package = C_PACKAGES.get(server)
        hint = f" (is {package} installed? sudo apt-get install -y {package})" if package else ""
        raise TraceError(f"{cc} could not build the C server: {detail}{hint}", EXIT_SETUP)
    partial.replace(binary)  # atomic: two first runs at once both end with a whole binary
    return binary


def source_dirs() -> list[Path]:
    """The folders whose files a trace of the demo servers comes from: the lab's code, the Sanic
    server and the C sources (`compare` reuses a run newer than all of them)."""
    return [Path(__file__).resolve().parents[1], Path(str(resources.files(SERVER_PACKAGE))), c_source_dir()]
