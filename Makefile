# saem — the two commands a newcomer runs:
#   make demo   install, ingest data/ into ./.saem, then chat (or answer two questions without a terminal)
#   make test   install with dev extras, then ruff, mypy (strict on saem/) and every test tier
#
# Everything installs into ./.venv from the package index, pinned by constraints.txt.
# torch is pinned to 2.13.0 (a CPU build). llama-cpp-python has no usable prebuilt wheel: it
# compiles once per CPU (4-20 min on 2 cores) into $(LLAMA_WHEELS), and later installs take it
# from there in seconds.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
CONSTRAINTS := constraints.txt
STAMP := $(VENV)/.saem-install
STAMP_DEV := $(VENV)/.saem-install-dev
PYTEST_ARGS ?=

# llama.cpp compiles for the build machine's CPU (-march=native), so the wheel is kept per CPU
# feature set: a wheel made on another machine could use instructions this one lacks. On
# x86-64 it is built without AMX: some virtual machines list AMX in cpuid but fault on its
# first instruction (ldtilecfg), which killed every multi-token prompt; AVX-512 stays on.
LLAMA_VERSION := $(shell sed -n 's/^llama[-_]cpp[-_]python==//p' $(CONSTRAINTS))
ARCH := $(shell uname -m)
CPU_ID := $(ARCH)-$(shell (grep -m1 -E '^(flags|Features)' /proc/cpuinfo 2>/dev/null || uname -m) | cksum | cut -d' ' -f1)
NO_AMX := $(if $(filter x86_64 amd64,$(ARCH)),-mno-amx-tile -mno-amx-int8 -mno-amx-bf16)
LLAMA_CMAKE_ARGS ?= $(if $(NO_AMX),-DCMAKE_C_FLAGS='$(NO_AMX)' -DCMAKE_CXX_FLAGS='$(NO_AMX)')
LLAMA_WHEELS ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/saem/wheels/llama-cpp-python-$(LLAMA_VERSION)-$(CPU_ID)
LLAMA_WHEEL_STAMP := $(LLAMA_WHEELS)/.built

.PHONY: demo test install install-dev lint typecheck bench clean help

help:
	@echo "make demo    - install, ingest data/, then chat (the main job on the embedded defaults)"
	@echo "make test    - install with dev extras, ruff, mypy --strict, then every test tier"
	@echo "make lint    - ruff;  make typecheck - mypy;  make bench - the benchmarks in bench/"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(LLAMA_WHEEL_STAMP): | $(BIN)/python
	@echo "Compiling llama-cpp-python $(LLAMA_VERSION) for this CPU (once; 4-20 min on 2 cores)..."
	mkdir -p $(LLAMA_WHEELS)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) wheel --no-cache-dir --no-deps --progress-bar off \
		-w $(LLAMA_WHEELS) llama-cpp-python==$(LLAMA_VERSION)
	@touch $@

$(STAMP): pyproject.toml $(CONSTRAINTS) $(LLAMA_WHEEL_STAMP) | $(BIN)/python
	$(PIP) install --progress-bar off --no-deps $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl
	$(PIP) install --progress-bar off -c $(CONSTRAINTS) -e .
	@touch $@

$(STAMP_DEV): $(STAMP)
	$(PIP) install --progress-bar off -c $(CONSTRAINTS) -e '.[dev,baseline,eval,agents]'
	@touch $@

install: $(STAMP)
install-dev: $(STAMP_DEV)

demo: $(STAMP)
	$(BIN)/saem demo data

test: $(STAMP_DEV)
	$(BIN)/ruff check saem tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP_DEV)
	$(BIN)/ruff check saem tests bench

typecheck: $(STAMP_DEV)
	$(BIN)/mypy

bench: $(STAMP_DEV)
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf .saem .pytest_cache build *.egg-info
