# saem — the two commands a newcomer runs:
#   make demo   install, ingest data/ into ./.saem, then chat (or answer two questions without a terminal)
#   make test   install with dev extras, then run every test tier (unit, integration, slow)
#
# Everything installs into ./.venv from the package index, pinned by constraints.txt.
# torch is pinned to 2.13.0 (a CPU build); llama-cpp-python compiles once (10-20 min on 2 cores)
# and pip caches the wheel for next time.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
CONSTRAINTS := constraints.txt
STAMP := $(VENV)/.saem-install
STAMP_DEV := $(VENV)/.saem-install-dev
PYTEST_ARGS ?=

.PHONY: demo test install install-dev lint typecheck bench clean help

help:
	@echo "make demo    - install, ingest data/, then chat (the main job on the embedded defaults)"
	@echo "make test    - install with dev extras and run every test tier"
	@echo "make lint    - ruff;  make typecheck - mypy;  make bench - the benchmarks in bench/"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(STAMP): pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(PIP) install --progress-bar off -c $(CONSTRAINTS) -e .
	@touch $@

$(STAMP_DEV): $(STAMP)
	$(PIP) install --progress-bar off -c $(CONSTRAINTS) -e '.[dev,baseline,eval]'
	@touch $@

install: $(STAMP)
install-dev: $(STAMP_DEV)

demo: $(STAMP)
	$(BIN)/saem demo data

test: $(STAMP_DEV)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP_DEV)
	$(BIN)/ruff check saem tests bench

typecheck: $(STAMP_DEV)
	$(BIN)/mypy

bench: $(STAMP_DEV)
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf .saem .pytest_cache build *.egg-info
