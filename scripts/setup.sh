#!/usr/bin/env bash
# Idempotent set-up: system tools (apt-get when root, else the exact command),
# then .venv with the project installed. Run by `make setup`. wrk is for the
# load recipe (RECIPE=load) and its tests; liburing-dev for the io_uring C server.
set -euo pipefail
cd "$(dirname "$0")/.."

tools=(strace ltrace curl gcc make wrk)
pkgs=(strace ltrace curl gcc make wrk)
if [[ ${1:-} == --for-tests ]]; then
    # chromium: the timeline's real-browser check and `make screenshot`; chromedriver drives
    # the browser in the web page's end-to-end test; npm installs speedscope (tests/viewers).
    # unshare, ip and iptables: the DNS tests' private network namespaces (tests/netns.py)
    # and the full-disk tests' private mounts; setpriv: the kernel tracer's unprivileged-user
    # test. tests/test_setup_installs.py holds this list to what the tests look for.
    tools+=(chromium chromedriver node npm unshare ip iptables setpriv)
    pkgs+=(chromium chromium-driver nodejs npm util-linux iproute2 iptables util-linux)
fi
# /usr/sbin is not on every user's PATH (ip, iptables live there).
have() { command -v "$1" >/dev/null 2>&1 || [[ -x /usr/sbin/$1 || -x /sbin/$1 ]]; }
missing=()
for i in "${!tools[@]}"; do
    have "${tools[$i]}" || [[ " ${missing[*]} " == *" ${pkgs[$i]} "* ]] || missing+=("${pkgs[$i]}")
done
# The io_uring C server (cdemo/uring_server.c) links liburing: a header, not a command.
[[ -f /usr/include/liburing.h ]] || missing+=(liburing-dev)
if ((${#missing[@]})); then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "[setup] installing ${missing[*]} with apt-get"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "[setup] missing: ${missing[*]}. Install them with:" >&2
        echo "    sudo apt-get install -y ${missing[*]}" >&2
        exit 3
    fi
fi

# The kernel tracer (TRACER=kernel) is optional: a BPF program built here
# with clang and bpftool against this kernel's BTF (tracing/run/tracers/kernel/bpf), and a
# mounted tracefs. As root, the tools are installed and it is built; where
# something is missing, TRACER=kernel says what in one line when used (it
# builds itself on first use too). EPOLL_LAB_KERNEL_TRACER=0 skips it.
if [[ ${EPOLL_LAB_KERNEL_TRACER:-1} != 0 ]]; then
    kmissing=()
    command -v clang >/dev/null 2>&1 || kmissing+=(clang llvm)
    command -v bpftool >/dev/null 2>&1 || [[ -x /usr/sbin/bpftool ]] || kmissing+=(bpftool)
    [[ -f /usr/include/bpf/libbpf.h ]] || kmissing+=(libbpf-dev)
    if ((${#kmissing[@]})) && [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "[setup] installing ${kmissing[*]} with apt-get (the kernel tracer, TRACER=kernel)"
        [[ -n $(find /var/lib/apt/lists -name '*Packages*' -print -quit 2>/dev/null) ]] || apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 \
            libbpf-dev bpftool clang llvm >/dev/null \
            || echo "[setup] the kernel tracer's tools did not install; TRACER=kernel will say so" >&2
    elif ((${#kmissing[@]})); then
        echo "[setup] for TRACER=kernel (optional): sudo apt-get install -y libbpf-dev bpftool clang llvm" >&2
    fi
    if [[ $(id -u) -eq 0 && -d /sys/kernel/tracing && ! -d /sys/kernel/tracing/events ]]; then
        mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null \
            || echo "[setup] cannot mount tracefs here (a container?); TRACER=kernel will say so" >&2
    fi
    if [[ ! -r /sys/kernel/btf/vmlinux ]]; then
        echo "[setup] this kernel has no BTF (/sys/kernel/btf/vmlinux): TRACER=kernel cannot be built here" >&2
    elif command -v clang >/dev/null 2>&1 && [[ -f /usr/include/bpf/libbpf.h ]]; then
        PATH=$PATH:/usr/sbin make -s -C tracing/run/tracers/kernel/bpf OUT=build \
            || echo "[setup] the kernel tracer did not build (see above); TRACER=kernel will say so" >&2
    fi
fi

# The real interpreter, not a pyenv shim: a shim is a bash script, and
# strace would trace bash instead of the server.
py=${PYTHON:-$(command -v python3)}
real=$("$py" -c 'import sys; print(sys.executable)')
if ! "$real" -c 'import sys, venv; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    echo "[setup] need Python >= 3.10 with venv; on Debian: sudo apt-get install -y python3 python3-venv" >&2
    exit 3
fi
if [[ ! -x .venv/bin/python ]]; then
    echo "[setup] creating .venv with $real"
    if ! "$real" -m venv .venv; then
        echo "[setup] venv failed; on Debian: sudo apt-get install -y python3-venv" >&2
        exit 3
    fi
fi
# The annotator's compiled core (tracing/_core.c) needs Python's C headers:
# Debian's python3 has them in python3-dev; a pyenv or python.org build has its own.
if ! "$real" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1 && [[ $real == /usr/bin/* ]]; then
        echo "[setup] installing python3-dev with apt-get (the annotator's compiled core)"
        [[ -n $(find /var/lib/apt/lists -name '*Packages*' -print -quit 2>/dev/null) ]] || apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-dev >/dev/null
    else
        echo "[setup] missing: Python's C headers for $real. Install them with:" >&2
        echo "    sudo apt-get install -y python3-dev" >&2
        exit 3
    fi
fi
stamp=.venv/.epoll-lab-installed
# constraints.txt pins what the lessons were checked on (uvloop's bundled libuv).
# The install builds the compiled core in place: again when its source changes.
if [[ ! -f $stamp || pyproject.toml -nt $stamp || constraints.txt -nt $stamp || tracing/_core.c -nt $stamp ]]; then
    echo "[setup] installing epoll-lab and its test tools into .venv (pinned by constraints.txt)"
    .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]'
    touch "$stamp"
fi

# The trace viewer the tests open trace.json in, offline: speedscope from npm, pinned
# by tests/viewers/package-lock.json, installed into tests/viewers/node_modules.
if [[ ${1:-} == --for-tests ]]; then
    viewers=tests/viewers
    if [[ ! -f $viewers/node_modules/.epoll-lab-installed || $viewers/package-lock.json -nt $viewers/node_modules/.epoll-lab-installed ]]; then
        echo "[setup] installing speedscope (pinned) into $viewers/node_modules with npm"
        npm ci --prefix "$viewers" --no-audit --no-fund --loglevel=error >/dev/null
        touch "$viewers/node_modules/.epoll-lab-installed"
    fi
fi
