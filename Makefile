# Moltbot Cloud — developer entry points. `make help` lists them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LOCK   := requirements.lock
DATA   ?= .moltbot
# Test processes at once: tests mostly wait on their servers, so two share two cores well.
# The fault suite runs alone after them: it times recoveries under a load of its own.
WORKERS ?= 2

.DEFAULT_GOAL := help
.PHONY: help install run test test-fast lint format bench faults docs clean chromium libmagic lock k8s

help: ## show this help
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# Exactly the versions and files in the lock (hash-checked), then the product itself.
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps -e .
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install the product with its dev tools (from requirements.lock)

lock: $(STAMP) ## pin every dependency with hashes into requirements.lock (after changing pyproject.toml)
	$(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes --universal --python-version 3.11 \
		--no-header --quiet -o $(LOCK)

run: $(STAMP) ## start the whole product on the embedded default (nats-server + PostgreSQL under $(DATA)); ARGS="--cluster 3"
	$(BIN)/moltbot --data $(DATA) up $(ARGS)

test: $(STAMP) chromium libmagic ## run every test suite (unit, integration with real servers, slow, browser, faults)
	$(BIN)/pytest -q -n $(WORKERS) -m "not faults"
	$(BIN)/pytest -q -m faults

chromium: ## install Debian's Chromium for the browser tests, when missing
	@command -v chromium >/dev/null || { \
		echo "Installing Debian's Chromium (browser tests)"; \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends chromium; }

libmagic: ## install libmagic (neonize, the WhatsApp library, needs it at import), when missing
	@ldconfig -p | grep -q 'libmagic\.so\.1' || { \
		echo "Installing libmagic1 (WhatsApp's neonize)"; \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends libmagic1; }

test-fast: $(STAMP) libmagic ## unit and integration tests without the slow suites
	$(BIN)/pytest -q -n $(WORKERS) -m "not slow"

lint: $(STAMP) ## ruff (lint + format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP) ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP) ## rates vs raw nats-py and COPY, rates vs log size, peak RSS per role (bench/report.md; BENCH_ARGS="--events 1e6")
	$(BIN)/python -m bench $(BENCH_ARGS)

faults: $(STAMP) ## fault injection under a larger load (kills, restarts, duplicates, poison); table in tests/artifacts/faults.md
	MOLTBOT_FAULTS_SCALE=$${MOLTBOT_FAULTS_SCALE:-3} $(BIN)/pytest -q -m faults tests/faults

docs: $(STAMP) ## regenerate docs/events.md from the domain examples, and the kinds table in docs/connectors.md
	$(BIN)/python -m moltbot.docs > docs/events.md.new && mv docs/events.md.new docs/events.md
	$(BIN)/python -m moltbot.docs --connectors docs/connectors.md

k8s: $(STAMP) ## regenerate infra/k8s/: streams.yaml as NACK resources, and every role's Deployment (render.py)
	$(BIN)/moltbot streams export --format nack --replicas 3 --account moltbot -o infra/k8s/streams.yaml
	$(BIN)/python infra/k8s/render.py

clean: ## remove the virtualenv and caches (not the data folder)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
