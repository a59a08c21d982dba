#!/usr/bin/env bash
# make container-smoke: build the image and trace the C server and Sanic
# inside it; fails if either fails. Uses docker when a daemon answers, else
# podman. Everything this kind of machine needs to make podman work (no
# Docker daemon, no image registry) lives here, not in the Dockerfile:
#   - a temporary containers.conf: runc (crun fails here on hybrid cgroups
#     and on raising rlimits) and fixed ulimits;
#   - the base image made with debootstrap from Debian's package mirror,
#     imported under the name the Dockerfile uses, kept for the next run;
#   - pip inside the build trusting the host's CA bundle.
set -euo pipefail
cd "$(dirname "$0")/.."
image=epoll-lab
base=docker.io/library/debian:bookworm-slim
ca=/etc/ssl/certs/ca-certificates.crt

say() { echo "[container-smoke] $*" >&2; }

need_pkgs() {  # install Debian packages when root, else print the command and stop
    local missing=()
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    ((${#missing[@]})) || return 0
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        say "installing ${missing[*]} with apt-get"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        say "missing: ${missing[*]}. Install them with: sudo apt-get install -y ${missing[*]}"
        exit 3
    fi
}

if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    engine=(docker)
    build_extra=()
else
    need_pkgs podman runc debootstrap
    conf=$(mktemp -d)
    trap 'rm -rf "$conf"' EXIT
    cat > "$conf/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[engine]
runtime = "runc"
CONF
    export CONTAINERS_CONF=$conf/containers.conf
    engine=(podman)
    build_extra=(--pull=never)
    if [[ -f $ca ]]; then
        # Beside, not over, the image's own bundle: the image's ca-certificates
        # package rewrites that file while it installs.
        build_extra+=(-v "$ca:/etc/host-ca.crt:ro" --env "PIP_CERT=/etc/host-ca.crt")
    fi
    if ! podman image exists "$base"; then
        say "making the base image $base with debootstrap (kept for later runs)"
        root=$(mktemp -d)
        debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >/dev/null
        rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
        tar -C "$root" -c . | podman import - "$base" >/dev/null
        rm -rf "$root"
    fi
fi

say "building $image with ${engine[0]}"
"${engine[@]}" build "${build_extra[@]}" -t "$image" . >&2
# The image this build replaced stays behind untagged; do not pile them up.
"${engine[@]}" image prune -f >/dev/null 2>&1 || true

# The same commands the README gives: trace inside, print what they found.
run() {
    "${engine[@]}" run --rm --cap-add SYS_PTRACE "$image" bash -c "$1"
}
say "the annotator's compiled twins inside the container"
run ".venv/bin/python -c 'import sys; from tracing.read import scan; sys.exit(not scan.compiled())'" \
    || { say "tracing/_core.c was not built in the image (make setup builds it)"; exit 1; }
say "the kernel tracer inside the container: built by make setup, refused in one line unprivileged"
run "test -x tracing/run/tracers/kernel/bpf/build/epoll-lab-ktrace" \
    || say "the kernel tracer was not built in the image (no BTF where it was built?); TRACER=kernel builds it on first use"
out=$(run ".venv/bin/python -m tracing trace c --tracer kernel --port 18499 2>&1; echo \"exit \$?\"") || true
echo "$out" | grep -q '^exit 3$' && [[ $(echo "$out" | grep -vc '^exit ') -eq 1 ]] \
    || { echo "$out" >&2; say "TRACER=kernel unprivileged should stop with one line and exit 3"; exit 1; }
echo "== kernel tracer, unprivileged: $(echo "$out" | head -1)"
for target in c sanic; do
    say "make trace-$target inside the container"
    out=$(run "make trace-$target PORT=$((18500 + RANDOM % 1000)) 2>&1 && echo '--- epoll_create1 in the annotated log:' \
        && grep -m1 -A1 ' epoll_create1(' traces/$target/annotated.log \
        && { grep -m1 -A1 ' io_uring_setup(' traces/$target/annotated.log || true; }") || {
        echo "$out" >&2
        say "make trace-$target FAILED inside the container"
        exit 1
    }
    echo "== $target"
    echo "$out" | grep -E '^(lines traced|threads|categories|busiest|--- |  *(->|[0-9]+ ))' || true
    echo "$out" | grep -q 'epoll_create1' || { say "no epoll_create1 in the $target trace"; exit 1; }
done
say "ok: both traces were made inside the container"
