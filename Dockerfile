# epoll-lab in a container: strace, ltrace and epoll are Linux-only.
#   docker build -t epoll-lab .
#   docker run --rm --cap-add SYS_PTRACE epoll-lab make trace-sanic
# (README: "Run it in a container"; make container-smoke runs these.)
# The image installs the lab the way the README's quick start does on a host:
# `make setup` (scripts/setup.sh) installs strace, ltrace, curl, gcc,
# liburing-dev (for the io_uring C server) and python3-dev (for the
# annotator's compiled core) with apt-get and builds .venv. Only what setup itself needs to start is here.
FROM docker.io/library/debian:bookworm-slim

# The kernel tracer: setup installs clang, bpftool and libbpf-dev and builds
# it (tracing/run/tracers/kernel/bpf, against the BTF of the kernel the image is built on;
# CO-RE lets it run on others). Running it needs root and BPF capabilities
# the image's user does not have: TRACER=kernel says so in one line.
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /lab
COPY . .

# One layer: tools, venv, the C server, then the apt lists go again.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv make ca-certificates \
    && make setup build-c \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 --user-group lab \
    && chown -R lab:lab /lab

# Tracing your own child needs no root, only ptrace (see the README:
# --cap-add SYS_PTRACE where the runtime's profile refuses it).
USER 1000:1000
EXPOSE 8000 8080
CMD ["make", "help"]
