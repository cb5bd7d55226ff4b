# Every target installs what it needs first, so a fresh clone works with one command.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUNTIME_STAMP := $(VENV)/.installed-runtime
# A workspace's shared copy of the datasets, when there is one beside this clone (no
# download needed); elsewhere tabship's own default (a cache, filled by a checked download).
SHARED_DATA := $(abspath ../shared/datasets)
ifneq ($(wildcard $(SHARED_DATA)/insurance.csv),)
export TABSHIP_DATA_HOME ?= $(SHARED_DATA)
endif

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help install system-deps kserve-client demo test check lint format typecheck bench bench-explain load-tool bench-auth bench-log bench-single bench-beyond bench-training soak sbom image-size clean

help:
	@echo "make demo   - install into .venv, get the insurance data, train, serve on http://localhost:8080"
	@echo "make test   - install and run every test"
	@echo "make check  - format check, lint, mypy --strict, tests"
	@echo "make bench  - benchmarks (writes bench/results.json)"
	@echo "make bench-explain - explanations against shap, /v1/explain records/s"
	@echo "make bench-auth - API keys on the hot path against no keys (writes bench/auth.json)"
	@echo "make bench-training - training against PyCaret 3.3.2 (writes bench/training.json)"
	@echo "make bench-log - the prediction log's cost to serving and its writer's rows/s"
	@echo "make bench-single - single-row /predict_api against the raw ASGI yardstick, CPU per request"
	@echo "make bench-beyond - Dask cluster training and sharded scoring (writes bench/beyond.json)"

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

# The demo needs what serving and training need, not the test and lint tools (a fifth of
# the download); `make test` adds them to the same environment.
$(RUNTIME_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	for attempt in 1 2 3; do \
	  $(BIN)/python -m pip install --quiet --retries 5 --upgrade pip && \
	  $(BIN)/python -m pip install --quiet --retries 5 -e . && break; \
	  echo "install attempt $$attempt failed; retrying" >&2; sleep 5; \
	  [ $$attempt -lt 3 ] || exit 1; \
	done
	touch $(RUNTIME_STAMP)

# Debian's Chromium for the browser tests, podman + runc + a local base image for the container
# tests, PostgreSQL for the prediction-log tests (they start their own cluster; the package's
# own service is not needed); each step is skipped when done and retried when apt fails.
system-deps:
	bash scripts/setup-podman.sh
	@command -v kubectl >/dev/null || for attempt in 1 2 3; do \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq kubernetes-client >/dev/null && break; \
	  echo "apt-get attempt $$attempt failed; retrying" >&2; sleep 5; \
	  [ $$attempt -lt 3 ] || exit 1; \
	done
	@command -v chromium >/dev/null || for attempt in 1 2 3; do \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null && break; \
	  echo "apt-get attempt $$attempt failed; retrying" >&2; sleep 5; \
	  [ $$attempt -lt 3 ] || exit 1; \
	done
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || for attempt in 1 2 3; do \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq postgresql >/dev/null && break; \
	  echo "apt-get attempt $$attempt failed; retrying" >&2; sleep 5; \
	  [ $$attempt -lt 3 ] || exit 1; \
	done

# The kserve SDK pins pandas < 3: its client runs from its own environment in the V2 tests.
KSERVE_VENV := .venv-kserve
KSERVE_STAMP := $(KSERVE_VENV)/.installed
$(KSERVE_STAMP): tests/clients/kserve-requirements.txt
	test -x $(KSERVE_VENV)/bin/python || $(PYTHON) -m venv $(KSERVE_VENV)
	for attempt in 1 2 3; do \
	  $(KSERVE_VENV)/bin/python -m pip install --quiet --retries 5 -r tests/clients/kserve-requirements.txt && break; \
	  echo "install attempt $$attempt failed; retrying" >&2; sleep 5; \
	  [ $$attempt -lt 3 ] || exit 1; \
	done
	touch $(KSERVE_STAMP)

# A stamp without its interpreter (a half-removed environment) is installed again.
kserve-client:
	@test -x $(KSERVE_VENV)/bin/python || rm -f $(KSERVE_STAMP)
	@$(MAKE) --no-print-directory $(KSERVE_STAMP)

demo: $(if $(wildcard $(STAMP)),$(STAMP),$(RUNTIME_STAMP))
	$(BIN)/tabship demo

test: install system-deps kserve-client
	$(BIN)/python -m pytest

format: install
	$(BIN)/ruff format src tests bench

lint: install
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench

typecheck: install
	$(BIN)/mypy

check: lint typecheck test

# Load is generated with wrk (Debian package), pinned apart from the server with taskset.
load-tool:
	@command -v wrk >/dev/null || for attempt in 1 2 3; do \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq wrk >/dev/null && break; \
	  sleep 5; [ $$attempt -lt 3 ] || exit 1; \
	done

bench: install load-tool
	$(BIN)/python bench/predict_latency.py
	$(BIN)/python bench/serve_load.py
	$(BIN)/python bench/single_row.py
	$(BIN)/python bench/v2_load.py
	$(BIN)/python bench/explain_bench.py
	$(MAKE) bench-log
	$(BIN)/python bench/beyond_one_machine.py

# Explanations only: tabship against shap's exact explainer, /v1/explain records/s, and
# /predict_api against the code before (the merge-base with main, or BENCH_BASE_REF).
bench-explain: install load-tool
	$(BIN)/python bench/explain_bench.py

# The prediction log: SQLite log on against off in the same run; writer rows/s to SQLite and to
# a PostgreSQL cluster the script starts itself (Debian's package, from system-deps).
bench-log: install system-deps load-tool
	$(BIN)/python bench/prediction_log.py

# Single-row /predict_api against the raw ASGI yardstick, the bare FastAPI app and the SQLite
# log on, with the server's CPU time per request: a quick A/B (issue 18, goal 1).
bench-single: install load-tool
	$(BIN)/python bench/single_row.py

# What API keys cost on /predict_api: the same server with and without a keys file.
bench-auth: install
	$(BIN)/python bench/auth_load.py

# Dask LocalCluster against local joblib, the scaling model, 2 shards against 1 (bench/beyond.json).
bench-beyond: install
	$(BIN)/python bench/beyond_one_machine.py

# PyCaret runs in its own environment (.bench/pycaret): it pins an older scikit-learn.
bench-training: install
	$(BIN)/python bench/train_vs_pycaret.py

sbom: install
	test -f models/insurance/tabship.json || $(BIN)/tabship demo --no-serve
	$(BIN)/tabship sbom models/insurance -o sbom.cdx.json

soak: install
	SOAK_SECONDS=600 $(BIN)/python -m pytest tests/soak -s

image-size: install system-deps
	$(BIN)/python bench/image_size.py

clean:
	rm -rf $(VENV) $(KSERVE_VENV) .pytest_cache .mypy_cache .ruff_cache
