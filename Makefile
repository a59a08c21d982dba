# epoll-lab: `make trace-sanic` traces the Sanic server, `make test` runs the suite.
# Options: LOOP=uvloop|asyncio (Sanic)  POOL=1 (C server)  PORT=N  TRACER=strace|kernel
SHELL := /bin/bash
PY := .venv/bin/python
LOOP ?= uvloop
TRACER ?= strace
PORT ?=
CC ?= gcc
CFLAGS := -O2 -Wall -Wextra -Werror -pthread
ASAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all -Wall -Wextra -Werror -pthread
# ThreadSanitizer sees what ASan cannot: the loop and the pool threads sharing data.
TSAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=thread -Wall -Wextra -Werror -pthread
# What both C servers share: the HTTP parser, a connection's HTTP state, the routes, the set-up.
C_SHARED := cdemo/http.c cdemo/session.c cdemo/routes.c cdemo/server.c
C_SRC := cdemo/epoll_server.c $(C_SHARED)
C_DEPS := $(C_SRC) $(C_SHARED:.c=.h)
C_BIN := cdemo/bin/epoll_server
C_ASAN := cdemo/bin/epoll_server-asan
C_TSAN := cdemo/bin/epoll_server-tsan
# The io_uring server: the same routes and rules on completions (liburing).
URING_SRC := cdemo/uring_server.c $(C_SHARED)
URING_DEPS := $(URING_SRC) $(C_SHARED:.c=.h)
URING_BIN := cdemo/bin/uring_server
URING_ASAN := cdemo/bin/uring_server-asan
URING_TSAN := cdemo/bin/uring_server-tsan

.PHONY: web help setup build-c build-kernel trace-sanic trace-c trace-uring compare ltrace-sanic ltrace-c live-sanic live-c serve-sanic serve-c serve-uring test screenshot container-smoke bench bench-c bench-annotate bench-live clean

help:
	@echo "make trace-sanic [LOOP=asyncio] [PORT=8000]  trace the Sanic server, write traces/sanic*/"
	@echo "       IO_URING=0: refuse io_uring (strace fault injection), as in a container"
	@echo "       SCENARIO=lessons: blocking vs awaiting, gather, CPU loops, timeouts, TaskGroup, cancel, each with a probe"
	@echo "make trace-c [POOL=1] [PORT=8080]            trace the C epoll server, write traces/c*/"
	@echo "make trace-uring [POOL=1] [PORT=8080]        trace the C io_uring server (same routes, completions), write traces/uring/; POOL=1: file work on io-wq"
	@echo "       TRACER=kernel (trace-*, live-*, compare): a BPF program in the kernel instead of strace: io_uring operations decoded, cheap (root)"
	@echo "       RECIPE=load (trace-c, trace-sanic): epoll/accept only, --seccomp-bpf, under wrk load"
	@echo "$(PY) -m tracing trace [--port P --request PATH] -- CMD...   trace your own program (or --pid PID)"
	@echo "make ltrace-sanic [LOOP=asyncio], ltrace-c [POOL=1]  library calls (getaddrinfo, epoll wrappers) with ltrace"
	@echo "make screenshot [ZOOM='request 2: GET /file']  traces/sanic/timeline.html to PNGs (whole, one request) with headless Chromium"
	@echo "make live-sanic, live-c [FILTER=epoll|loop]  trace and stream annotated lines while you curl"
	@echo "make web [PORT=8765]                          a live page: start Sanic or the C server traced, press buttons, watch"
	@echo "make serve-sanic, serve-c, serve-uring        the servers without tracing, for plain curl"
	@echo "make compare [FRESH=1]                       C (epoll, its pool, io_uring) vs Sanic/uvloop (with, without io_uring) vs Sanic/asyncio"
	@echo "make test                                     run the whole test suite (real strace, servers, curl)"
	@echo "make container-smoke                          build the image, run trace-c and trace-sanic inside it"
	@echo "make setup                                    install tools and .venv (done by the targets above)"
	@echo "make build-c                                  build the C servers (epoll, io_uring) and their ASan and TSan builds"
	@echo "make build-kernel                             build the kernel tracer (tracing/run/tracers/kernel/bpf: clang, bpftool, libbpf; make setup does it)"
	@echo "make bench [ROUNDS=3 SECONDS=3]              req/s, latency, user/system CPU and syscalls per request, tracing overhead: C (epoll, io_uring), nginx, Sanic, aiohttp, tornado (a benchmark)"
	@echo "make bench-c                                  CPU per request: the C server beside nginx (a benchmark)"
	@echo "make bench-annotate [LINES=1000000]          annotate speed and memory beside strace-process-tree"
	@echo "make bench-live [SECONDS='10 30']            live mode under wrk: lines lost (none) and lag behind strace"
	@echo "make clean                                    remove traces/ and build output"

setup:
	@scripts/setup.sh

$(C_BIN): $(C_DEPS) | setup
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $(C_SRC)

$(C_ASAN): $(C_DEPS) | setup
	@mkdir -p $(@D)
	$(CC) $(ASAN_FLAGS) -o $@ $(C_SRC)

$(C_TSAN): $(C_DEPS) | setup
	@mkdir -p $(@D)
	$(CC) $(TSAN_FLAGS) -o $@ $(C_SRC)

$(URING_BIN): $(URING_DEPS) | setup
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $(URING_SRC) -luring

$(URING_ASAN): $(URING_DEPS) | setup
	@mkdir -p $(@D)
	$(CC) $(ASAN_FLAGS) -o $@ $(URING_SRC) -luring

$(URING_TSAN): $(URING_DEPS) | setup
	@mkdir -p $(@D)
	$(CC) $(TSAN_FLAGS) -o $@ $(URING_SRC) -luring

build-c: $(C_BIN) $(C_ASAN) $(C_TSAN) $(URING_BIN) $(URING_ASAN) $(URING_TSAN)

# vmlinux.h from this kernel's BTF, the BPF object, its skeleton, the loader.
build-kernel:
	PATH=$$PATH:/usr/sbin $(MAKE) -C tracing/run/tracers/kernel/bpf OUT=build

trace-sanic: setup
	$(PY) -m tracing trace sanic --tracer $(TRACER) --loop $(LOOP) $(if $(SCENARIO),--scenario $(SCENARIO)) $(if $(RECIPE),--recipe $(RECIPE)) $(if $(filter 0,$(IO_URING)),--no-io-uring) $(if $(PORT),--port $(PORT))

trace-c: setup $(C_BIN)
	$(PY) -m tracing trace c --tracer $(TRACER) $(if $(RECIPE),--recipe $(RECIPE)) $(if $(POOL),--pool) $(if $(PORT),--port $(PORT))

trace-uring: setup $(URING_BIN)
	$(PY) -m tracing trace uring --tracer $(TRACER) $(if $(POOL),--pool) $(if $(PORT),--port $(PORT))

ltrace-sanic: setup
	$(PY) -m tracing trace sanic --tracer ltrace --loop $(LOOP) $(if $(PORT),--port $(PORT))

ltrace-c: setup $(C_BIN)
	$(PY) -m tracing trace c --tracer ltrace $(if $(POOL),--pool) $(if $(PORT),--port $(PORT))

live-sanic: setup
	$(PY) -m tracing live sanic --tracer $(TRACER) --loop $(LOOP) $(if $(RECIPE),--recipe $(RECIPE)) $(if $(PORT),--port $(PORT)) $(if $(FILTER),--filter $(FILTER))

live-c: setup $(C_BIN)
	$(PY) -m tracing live c --tracer $(TRACER) $(if $(POOL),--pool) $(if $(RECIPE),--recipe $(RECIPE)) $(if $(PORT),--port $(PORT)) $(if $(FILTER),--filter $(FILTER))

web: setup $(C_BIN)
	$(PY) -m tracing web --port $(or $(PORT),8765)

serve-sanic: setup
	$(PY) -m server --loop $(LOOP) --port $(or $(PORT),8000)

serve-c: setup $(C_BIN)
	$(C_BIN) --data server/data/lab.txt --port $(or $(PORT),8080) $(if $(POOL),--pool)

serve-uring: setup $(URING_BIN)
	$(URING_BIN) --data server/data/lab.txt --port $(or $(PORT),8080) $(if $(POOL),--pool)

compare: setup $(C_BIN) $(URING_BIN)
	$(PY) -m tracing compare --tracer $(TRACER) $(if $(FRESH),--fresh) $(if $(PORT),--port $(PORT))

test: setup build-c
	@scripts/setup.sh --for-tests
	$(PY) -m pytest $(PYTEST_ARGS)

screenshot: setup
	@scripts/setup.sh --for-tests
	@test -f traces/sanic/timeline.html || $(PY) -m tracing trace sanic
	$(PY) -m tracing screenshot traces/sanic/timeline.html -o traces/sanic/timeline.png
	$(PY) -m tracing screenshot traces/sanic/timeline.html -o traces/sanic/timeline-request.png --zoom "$(or $(ZOOM),request 3: GET /dns)"

container-smoke:
	scripts/container-smoke.sh

bench: setup $(C_BIN) $(URING_BIN)
	@$(PY) -m pip install -q -e '.[bench]'
	$(PY) bench/bench.py $(if $(ROUNDS),--rounds $(ROUNDS)) $(if $(SECONDS),--seconds $(SECONDS))

bench-c: setup $(C_BIN)
	$(PY) bench/c_vs_nginx.py

bench-annotate: setup $(C_BIN)
	@$(PY) -m pip install -q -e '.[bench]'
	$(PY) bench/annotate_speed.py $(if $(LINES),--lines $(LINES))

bench-live: setup $(C_BIN)
	$(PY) bench/live_lag.py $(if $(SECONDS),--seconds $(SECONDS))

clean:
	rm -rf traces build *.egg-info cdemo/bin tracing/run/tracers/kernel/bpf/build
