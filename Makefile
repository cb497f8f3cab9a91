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
	@touch $@ $(RUN_INSTALLED)

# What `make run` needs, and only that: the serving runtime (hash-pinned, as in the image) and the
# training set (to train when artifacts/ is missing). No test, lint, browser or CDK tools.
RUN_INSTALLED := $(VENV)/.installed-run
$(RUN_INSTALLED): requirements/runtime.txt requirements/training.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements/runtime.txt
	$(PY) -m pip install --quiet -r requirements/training.txt
	@touch $@

install: $(INSTALLED) ## create .venv and install the pinned dev set (every deployable + tools)

lint: install ## ruff check + format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

typecheck: install ## mypy over training/, lambda/, infra_cdk/, bench/, tools/, tests/support/
	$(VENV)/bin/mypy

pytest: install ## the test suite only (the 25 slowest tests listed at the end)
	$(PY) -m pytest --durations=25

test: lint typecheck pytest ## install, lint, type-check, run the whole suite (what CI runs)

.PHONY: lock
lock: install ## re-compile requirements/*.txt from the .in files (one version per package across sets)
	cd requirements && export UV_NO_CONFIG=1 && \
	../$(VENV)/bin/uv pip compile dev.in --universal --python-version 3.11 -q -o dev.txt && \
	for set in training infra batch; do \
	  ../$(VENV)/bin/uv pip compile $$set.in -c dev.txt --universal --python-version 3.11 -q -o $$set.txt; \
	done && \
	../$(VENV)/bin/uv pip compile runtime.in -c dev.txt --universal --python-version 3.11 -q --generate-hashes -o runtime.txt && \
	../$(VENV)/bin/uv pip compile runtime-sklearn.in --universal --python-version 3.11 -q --generate-hashes -o runtime-sklearn.txt

# ---- Web page browser tests: Debian's chromium, driven by Playwright ------------------
# Playwright's own browser download does not work here, so the tests use Debian's package. Where it
# cannot be installed (not root, no apt, no mirror) the browser tests skip and say why.
CHROMIUM ?= /usr/bin/chromium
.PHONY: browser-deps screenshots

browser-deps: ## install Debian's chromium for the browser tests when it is missing
	@if [ -x $(CHROMIUM) ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing chromium for the browser tests (apt-get)"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
	    || echo "WARNING: apt-get could not install chromium; the browser tests will skip"; \
	else \
	  echo "WARNING: $(CHROMIUM) is missing and apt-get needs root; the browser tests will skip"; \
	fi

pytest: browser-deps

screenshots: install browser-deps ## re-take docs/page-desktop.png and docs/page-phone.png
	$(PY) -m tests.support.browser_screenshots

# ---- Training: python -m training writes the artifact folder serving loads -------------
MLFLOW_UI_PORT ?= 5000
.PHONY: train mlflow-ui

train: $(RUN_INSTALLED) ## train on Data/Loan_Data.csv, write artifacts/ (+ report/index.html) and an MLflow run
	$(PY) -m training --data $(DATA) --out $(ARTIFACTS)

# The artifact folder as a file target: (re)train only when it is missing or when the data or the
# training code is newer than it. `run`/`serve` depend on this, not on `train`.
$(ARTIFACTS)/manifest.json: $(DATA) $(wildcard Data/*) $(wildcard training/*.py) | $(RUN_INSTALLED)
	$(PY) -m training --data $(DATA) --out $(ARTIFACTS)

# The artifact folder from the model registry instead of a local training run:
# `make artifacts MODEL_URI=models:/loan-default@champion` (tracking server: MLFLOW_TRACKING_URI,
# else ./mlflow.db). `make synth` and `make lambda-image` then bake exactly that version.
MODEL_URI ?=
.PHONY: artifacts
artifacts: $(RUN_INSTALLED) ## the artifact folder: fetched from the registry with MODEL_URI=models:/..., else trained when missing
ifneq ($(strip $(MODEL_URI)),)
	$(PY) -m loan_default fetch $(MODEL_URI) --out $(ARTIFACTS)
else
	@$(MAKE) --no-print-directory $(ARTIFACTS)/manifest.json
endif
ARTIFACT_SOURCE := $(if $(strip $(MODEL_URI)),artifacts,$(ARTIFACTS)/manifest.json)

mlflow-ui: $(RUN_INSTALLED) ## browse training runs and the registered model at http://127.0.0.1:5000
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db \
	  --host 127.0.0.1 --port $(MLFLOW_UI_PORT)

# ---- AWS CDK: both stacks synthesized offline with the pinned CDK CLI -------------------
# package.json pins the CLI; `npm ci` installs exactly package-lock.json into node_modules/ (git-ignored)
# and writes node_modules/.package-lock.json, which serves as the stamp. Synthesis needs no AWS account:
# no telemetry, no version check, no notices fetch. Node 20 is end-of-life for jsii: silence that banner.
CDK := node_modules/.bin/cdk
CDK_CLI_STAMP := node_modules/.package-lock.json
CDK_ENV := CDK_DISABLE_CLI_TELEMETRY=true CDK_DISABLE_VERSION_CHECK=true \
	JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20
.PHONY: cdk-cli synth

$(CDK_CLI_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

cdk-cli: $(CDK_CLI_STAMP) ## install the pinned AWS CDK CLI into node_modules/ (npm ci)

synth: install $(CDK_CLI_STAMP) $(ARTIFACT_SOURCE) ## cdk synth the three stacks into cdk.out/ (offline; trains first if needed)
	$(CDK_ENV) $(CDK) synth --quiet --no-notices -c artifact_dir=$(ARTIFACTS)
	@ls -1 cdk.out/*.template.json

# The integration tests run the CLI: a brand-new machine gets it before the suite starts.
pytest: $(CDK_CLI_STAMP)

# ---- Container image: Dockerfile.lambda, proven without Docker, built and invoked with it --
# `lambda-check` needs no Docker engine: it emulates the image build (tools/image_emulation.py) and
# runs the task root under an isolated CPython 3.12 and the Lambda Runtime Interface Client. `lambda-image` and
# `lambda-invoke` need a Docker engine (BuildKit/buildx) and say so where none answers.
IMAGE ?= loan-default:latest
PLATFORM ?= linux/amd64
INSTALL_SKLEARN ?= 0
LAMBDA_PORT ?= 9000
LAMBDA_EVENTS ?= $(sort $(wildcard lambda/events/*.json))
LAMBDA_CONTAINER ?= loan-default-invoke
DOCKER_ENGINE_CHECK = docker info >/dev/null 2>&1 || { \
	echo "make $@: no Docker engine answers ('docker info' failed), so no image can be built or run here."; \
	echo "  Without Docker, 'make lambda-check' proves the image (emulated build + Runtime Interface Client)."; \
	echo "  With Docker: start the engine (Docker Desktop, or 'sudo systemctl start docker') and run 'make $@' again."; \
	exit 1; }
.PHONY: lambda-check lambda-image lambda-invoke batch-env

lambda-check: install ## prove the image without Docker: emulated build, isolated task root, Runtime Interface Client
	$(PY) -m pytest -q tests/functional/test_image_dockerfile.py tests/integration/test_image_build.py \
	  tests/integration/test_image_task_root.py tests/integration/test_image_runtime_interface_client.py

lambda-image: ## docker build Dockerfile.lambda (IMAGE=loan-default:latest, PLATFORM=linux/amd64 or linux/arm64)
	@$(DOCKER_ENGINE_CHECK)
	@$(MAKE) --no-print-directory $(if $(strip $(MODEL_URI)),artifacts,artifacts/manifest.json) ARTIFACTS=artifacts
	docker buildx build --platform $(PLATFORM) --provenance=false \
	  --build-arg INSTALL_SKLEARN=$(INSTALL_SKLEARN) -f Dockerfile.lambda -t $(IMAGE) --load .

# The batch job's workers on EMR Serverless need onnxruntime, pyarrow and numpy: a packed Python
# environment (Dockerfile.batch-env, from requirements/batch.txt) that the LoanDefaultBatch stack
# uploads and passes with spark.archives. PLATFORM must match context architecture.
BATCH_ENV ?= build/batch-env
batch-env: ## docker build the workers' packed Python environment -> build/batch-env/pyspark_env.tar.gz
	@$(DOCKER_ENGINE_CHECK)
	docker buildx build --platform $(PLATFORM) --provenance=false -f Dockerfile.batch-env \
	  --output type=local,dest=$(BATCH_ENV) requirements
	@ls -l $(BATCH_ENV)/pyspark_env.tar.gz

lambda-invoke: ## run the image under the Runtime Interface Emulator on :9000, POST each lambda/events/*.json
	@$(DOCKER_ENGINE_CHECK)
	@docker image inspect $(IMAGE) >/dev/null 2>&1 || { echo "make $@: no image $(IMAGE): run 'make lambda-image' first."; exit 1; }
	@docker rm -f $(LAMBDA_CONTAINER) >/dev/null 2>&1 || true
	docker run -d --rm --name $(LAMBDA_CONTAINER) --platform $(PLATFORM) -p $(LAMBDA_PORT):8080 $(IMAGE)
	@trap 'docker stop $(LAMBDA_CONTAINER) >/dev/null' EXIT; \
	for event in $(LAMBDA_EVENTS); do \
	  echo "== $$event"; \
	  curl -sS --retry 20 --retry-connrefused --retry-delay 1 -X POST \
	    "http://localhost:$(LAMBDA_PORT)/2015-03-31/functions/function/invocations" -d @"$$event"; \
	  echo; \
	done

# ---- Serving: `loan-default serve` (loan_service/http_server.py, the ECS task's server) ----------
# uvicorn with httptools + uvloop (plain uvicorn answered small POSTs ~40 ms late here), a one-line
# refusal for a bad artifact folder, exit 0 after Ctrl-C. No access log: a log line per request
# would cost more than the prediction. `serve` and `run` train first when the artifact folder is
# missing (the $(ARTIFACTS)/manifest.json file target). From the checkout, `python -m loan_default`
# is what the installed `loan-default` script runs.
HOST ?= 127.0.0.1
PORT ?= 8000
SERVE = PYTHONPATH=lambda $(PY) -m loan_default serve --artifacts $(ARTIFACTS) \
	--no-access-log --host $(HOST) --port $(PORT)
.PHONY: serve run

serve: $(RUN_INSTALLED) $(ARTIFACTS)/manifest.json ## serve the page and API at http://127.0.0.1:8000 (uvicorn, httptools + uvloop)
	$(SERVE)

# `make run` logs predictions to a real local MLflow, the way the deployed service does: an
# `mlflow server` (the training set's mlflow) on $(MLFLOW_URL) over ./mlflow.db, the store training
# records its runs in, started in its own process group before the service and stopped when the
# service stops (Ctrl-C). The service sends its traces over OTLP to that server's /v1/traces; the
# same server is the MLflow UI meanwhile (runs, registered models, the traces). Its job runner (huey
# consumers for MLflow's GenAI jobs, which this product does not use) is off: it starts sooner.
MLFLOW_DB ?= $(CURDIR)/mlflow.db
MLFLOW_ARTIFACTS ?= $(CURDIR)/mlartifacts
MLFLOW_SERVER_LOG ?= $(CURDIR)/mlflow-server.log
MLFLOW_URL = http://127.0.0.1:$(MLFLOW_UI_PORT)
MLFLOW_READY_SECONDS ?= 240

run: $(RUN_INSTALLED) $(ARTIFACTS)/manifest.json ## fresh clone: .venv (runtime + training sets only), train if artifacts/ is missing, start MLflow on :5000, serve :8000 logging predictions to it
	@echo "Starting MLflow at $(MLFLOW_URL) (store $(MLFLOW_DB), log $(MLFLOW_SERVER_LOG))"
	@MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false setsid $(VENV)/bin/mlflow server --backend-store-uri sqlite:///$(MLFLOW_DB) \
	  --artifacts-destination $(MLFLOW_ARTIFACTS) --host 127.0.0.1 --port $(MLFLOW_UI_PORT) \
	  --workers 1 >$(MLFLOW_SERVER_LOG) 2>&1 & mlflow_pid=$$!; \
	trap 'kill -TERM -- -$$mlflow_pid 2>/dev/null || true; wait $$mlflow_pid 2>/dev/null || true; \
	  echo "MLflow stopped"' EXIT; \
	deadline=$$((SECONDS + $(MLFLOW_READY_SECONDS))); \
	until curl -sf -o /dev/null $(MLFLOW_URL)/health; do \
	  if ! kill -0 $$mlflow_pid 2>/dev/null || [ $$SECONDS -ge $$deadline ]; then \
	    echo "make run: the MLflow server did not start; its log, $(MLFLOW_SERVER_LOG), ends:"; \
	    tail -n 5 $(MLFLOW_SERVER_LOG); exit 1; \
	  fi; \
	  sleep 0.5; \
	done; \
	echo "Serving http://$(HOST):$(PORT)/ (API docs at /docs); every prediction is an MLflow trace in"; \
	echo "experiment loan-default-serving at $(MLFLOW_URL) (Ctrl-C stops both)."; \
	MLFLOW_TRACKING_URI=$(MLFLOW_URL) $(SERVE)

# ---- Benchmarks and supply chain -------------------------------------------------------
# `make bench`: the service against the original design in one run (bench/run.py writes
# bench/results.md, the one place measured figures live), then the serving figures
# (bench/serving.py) and the image budgets (bench/image.py, on the emulated image of
# tools/image_emulation.py), the monitor over 10M scored loans, and the serving figures before
# and after this round in one run (bench/before_after.py). Every part runs even when an earlier one misses a goal; the exit
# status says whether any did. wrk is Debian's package, installed here when missing.
# `make bench BENCH_ARGS=--quick` is a short smoke run (no 1M-row training).
BENCH_ARGS ?=
.PHONY: bench bench-deps audit

bench-deps: ## install wrk and GNU time (Debian packages) for the benchmarks when they are missing
	@if command -v wrk >/dev/null && [ -x /usr/bin/time ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing wrk and time for the benchmarks (apt-get)"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk time; } \
	    || echo "WARNING: apt-get could not install wrk and time; make bench and its wrk test will fail"; \
	else \
	  echo "WARNING: wrk or GNU time is missing and apt-get needs root: apt-get install -y wrk time"; \
	fi

bench: install bench-deps $(ARTIFACTS)/manifest.json ## service vs original design -> bench/results.md; serving, image, monitor, shadow, batch figures
	@status=0; \
	$(PY) -m bench.run $(BENCH_ARGS) || status=$$?; \
	echo; $(PY) -m bench.serving --artifacts $(ARTIFACTS) || status=$$?; \
	echo; $(PY) -m bench.image --artifacts $(ARTIFACTS) || status=$$?; \
	echo; $(PY) -m bench.monitor --artifacts $(ARTIFACTS) || status=$$?; \
	echo; $(PY) -m bench.before_after || status=$$?; \
	echo; $(PY) -m bench.shadow --artifacts $(ARTIFACTS) || status=$$?; \
	echo; $(PY) -m bench.batch || status=$$?; \
	exit $$status

# Known vulnerabilities in what the image installs (requirements/runtime*.txt, hash-pinned):
# pip-audit against PyPI's advisories, with a documented fallback (tools/supply_chain_audit.py).
audit: install ## fail on a known vulnerability in the image's pinned requirements (pip-audit)
	$(PY) -m tools.supply_chain_audit

# The test suite drives wrk once (tests/integration/test_load_wrk_both_designs.py).
pytest: bench-deps
test: audit

# ---- Java 17 for Spark in local mode (pyspark 4 needs it) -----------------------------------------
# Debian's headless JRE, installed when `java -version` does not say 17. The Spark tests need it.
.PHONY: java-deps
java-deps: ## install Java 17 (Debian openjdk-17-jre-headless) for pyspark when it is missing
	@if java -version 2>&1 | grep -q 'version "17'; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Java 17 for pyspark (apt-get)"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless; } \
	    || echo "WARNING: apt-get could not install openjdk-17-jre-headless; the Spark tests will fail"; \
	else \
	  echo "WARNING: Java 17 is missing and apt-get needs root: apt-get install -y openjdk-17-jre-headless"; \
	fi

pytest: java-deps
