# epoll-lab: `make trace-sanic` traces the Sanic server, `make test` runs the suite.
# Options: LOOP=uvloop|asyncio  PORT=8000
SHELL := /bin/bash
PY := .venv/bin/python
LOOP ?= uvloop
PORT ?= 8000

.PHONY: help setup trace-sanic test clean

help:
	@echo "make trace-sanic [LOOP=asyncio] [PORT=8000]  trace the Sanic server, write traces/sanic*/"
	@echo "make test                                     run the whole test suite (real strace, servers, curl)"
	@echo "make setup                                    install tools and .venv (done by the targets above)"
	@echo "make clean                                    remove traces/ and build output"

setup:
	@scripts/setup.sh

trace-sanic: setup
	$(PY) -m tracing trace sanic --loop $(LOOP) --port $(PORT)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf traces build *.egg-info
