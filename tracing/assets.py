"""Where the lab's own files are, in a checkout or in an installed package, and
the C server built on first use.

In the repository the C server is cdemo/bin/epoll_server (`make build-c`).
Installed with pip, its source ships as package data (tracing/cdemo) and the
first `epoll-lab trace c` compiles it with the system compiler into the
user's cache folder, under a name that changes with the source.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

from tracing.errors import EXIT_SETUP, TraceError

CHECKOUT = Path(__file__).resolve().parents[1]
CFLAGS = ["-O2", "-Wall", "-Wextra", "-Werror", "-pthread"]  # as the Makefile's


def in_checkout() -> bool:
    return (CHECKOUT / "cdemo" / "epoll_server.c").is_file() and (CHECKOUT / "Makefile").is_file()


def c_source_dir() -> Path:
    if in_checkout():
        return CHECKOUT / "cdemo"
    # Through a file: the package may be a namespace (a MultiplexedPath).
    return Path(str(resources.files("tracing.cdemo") / "epoll_server.c")).parent


def c_sources() -> list[Path]:
    """The C server's .c files (the loop, its HTTP parser), compiled together."""
    return sorted(c_source_dir().glob("*.c"))


def lab_data() -> Path:
    """The file the servers' /file route reads."""
    if in_checkout():
        return CHECKOUT / "server" / "data" / "lab.txt"
    return Path(str(resources.files("server") / "data" / "lab.txt"))


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "epoll-lab"


def c_binary() -> Path:
    """Where the C server's binary is (or will be, once `ensure_c_binary` built it)."""
    if in_checkout():
        return CHECKOUT / "cdemo" / "bin" / "epoll_server"
    h = hashlib.sha256()
    for f in sorted(c_source_dir().glob("*.[ch]")):
        h.update(f.read_bytes())
    digest = h.hexdigest()[:12]
    return cache_dir() / f"epoll_server-{digest}"


def compiler() -> str | None:
    for cc in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cc and shutil.which(cc):
            return cc
    return None


def ensure_c_binary() -> Path:
    """The C server's binary, compiled now if it is not there yet."""
    binary = c_binary()
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
    cmd = [cc, *CFLAGS, "-o", str(partial), *map(str, c_sources())]
    print(f"[epoll-lab] building the C server once: {' '.join(cmd)}", flush=True, file=sys.stderr)
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        partial.unlink(missing_ok=True)
        detail = (p.stderr.strip().splitlines() or ["(no output)"])[0]
        raise TraceError(f"{cc} could not build the C server: {detail}", EXIT_SETUP)
    partial.replace(binary)  # atomic: two first runs at once both end with a whole binary
    return binary
