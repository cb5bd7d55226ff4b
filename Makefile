# Every target installs what it needs first, so a fresh clone works with one command.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export TABSHIP_DATA_HOME ?= $(abspath ../shared/datasets)

.PHONY: help install demo test check lint format typecheck bench clean

help:
	@echo "make demo   - install into .venv, get the insurance data, train and show the model"
	@echo "make test   - install and run every test"
	@echo "make check  - format check, lint, mypy --strict, tests"
	@echo "make bench  - benchmarks (writes bench/results.json)"

# pip retries transient registry failures itself; the outer loop covers a failed resolve.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	for attempt in 1 2 3; do \
	  $(BIN)/python -m pip install --quiet --retries 5 --upgrade pip && \
	  $(BIN)/python -m pip install --quiet --retries 5 -e '.[dev]' && break; \
	  echo "install attempt $$attempt failed; retrying" >&2; sleep 5; \
	  [ $$attempt -lt 3 ] || exit 1; \
	done
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/tabship demo

test: install
	$(BIN)/python -m pytest

format: install
	$(BIN)/ruff format src tests bench

lint: install
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench

typecheck: install
	$(BIN)/mypy

check: lint typecheck test

bench: install
	$(BIN)/python bench/predict_latency.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
