# One entry point for people and CI. `make run` serves, `make test` is what .ci/run calls.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
DATA ?= Data/Loan_Data.csv
ARTIFACTS ?= artifacts

.PHONY: help install lint format typecheck pytest test

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(INSTALLED): requirements/dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements/dev.txt
	@touch $@

install: $(INSTALLED) ## create .venv and install the pinned dev set (every deployable + tools)

lint: install ## ruff check + format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

typecheck: install ## mypy over training/, lambda/, infra_cdk/, bench/
	$(VENV)/bin/mypy

pytest: install ## the test suite only
	$(PY) -m pytest

test: lint typecheck pytest ## install, lint, type-check, run the whole suite (what CI runs)

.PHONY: lock
lock: install ## re-compile requirements/*.txt from the .in files (one version per package across sets)
	cd requirements && export UV_NO_CONFIG=1 && \
	../$(VENV)/bin/uv pip compile dev.in --universal --python-version 3.11 -q -o dev.txt && \
	for set in training infra; do \
	  ../$(VENV)/bin/uv pip compile $$set.in -c dev.txt --universal --python-version 3.11 -q -o $$set.txt; \
	done && \
	../$(VENV)/bin/uv pip compile runtime.in -c dev.txt --universal --python-version 3.11 -q --generate-hashes -o runtime.txt && \
	../$(VENV)/bin/uv pip compile runtime-sklearn.in --universal --python-version 3.11 -q --generate-hashes -o runtime-sklearn.txt
