# Two commands for a bot developer: `make run` and `make test`. Everything else is installed on demand.
# A Python the pinned packages install on: 3.11 or 3.12 (azure-functions 1.26.0 installs only below
# 3.13). The first of python3.12, python3.11, python3 whose version fits; PYTHON=... overrides it.
SUPPORTED_PYTHON := import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 12))
PYTHON ?= $(shell for p in python3.12 python3.11 python3; do \
	$$p -c '$(SUPPORTED_PYTHON)' 2>/dev/null && { command -v $$p; break; }; done)
VENV := .venv
PY := $(VENV)/bin/python
# Ports for `make run` (defaults: as `func start`, Azurite, the Cosmos DB emulator).
FUNCTIONS_PORT ?= 7071
DIRECTLINE_PORT ?= 7072
COSMOS_PORT ?= 8081
AZURITE_QUEUE_PORT ?= 10001
AZURITE_TABLE_PORT ?= 10002
# Instances of the app for `make run`, behind a round-robin balancer on FUNCTIONS_PORT (as Azure scales out).
INSTANCES ?= 1

.PHONY: run test lint bench mutation install lock check-lock clean

# Each command installs what it needs: `make run` the app (requirements.txt, locked with hashes) and the
# local stand-ins (npm dependencies); `make test` adds the test tools (requirements-dev.txt, npm dev
# dependencies: a headless Chromium, the Direct Line client's Node shims); `make bench` adds requirements-bench.txt
# (which `make test` installs too: it tests the benchmarks).
install: $(VENV)/.installed-run node_modules/.installed-run
PIP_INSTALL := $(PY) -m pip install --quiet --disable-pip-version-check
NPM_CI := npm ci --no-audit --no-fund --loglevel=error

$(PY):
	@if [ -z "$(PYTHON)" ]; then \
		echo "make: no Python 3.11 or 3.12 found (tried python3.12, python3.11, python3). The pinned packages"; \
		echo "      (azure-functions 1.26.0) install only on Python 3.11 or 3.12: install python3.12 or python3.11,"; \
		echo "      or name one: make PYTHON=/path/to/python3.12 ..."; \
		exit 1; \
	fi
	@$(PYTHON) -c '$(SUPPORTED_PYTHON)' || { \
		echo "make: $(PYTHON) is Python $$($(PYTHON) -c 'import platform; print(platform.python_version())' 2>/dev/null || echo '(not runnable)');"; \
		echo "      the pinned packages install only on Python 3.11 or 3.12: install python3.12 or python3.11."; \
		exit 1; }
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-run: requirements.txt | $(PY)
	$(PIP_INSTALL) --require-hashes -r requirements.txt
	touch $@

$(VENV)/.installed-test: requirements-dev.txt $(VENV)/.installed-run
	$(PIP_INSTALL) -r requirements-dev.txt
	touch $@

$(VENV)/.installed-bench: requirements-bench.txt $(VENV)/.installed-run
	$(PIP_INSTALL) -r requirements-bench.txt
	touch $@

# npm ci empties node_modules first, stamps included: a run-only install never passes for a full one.
node_modules/.installed-run: package.json package-lock.json
	$(NPM_CI) --omit=dev
	touch $@

node_modules/.installed-test: package.json package-lock.json
	$(NPM_CI)
	touch node_modules/.installed-run $@

local.settings.json: | $(VENV)/.installed-run
	$(PY) -m localdev.settings_file

run: install local.settings.json
	$(PY) -m localdev.run --functions-port $(FUNCTIONS_PORT) --directline-port $(DIRECTLINE_PORT) \
		--cosmos-port $(COSMOS_PORT) --azurite-queue-port $(AZURITE_QUEUE_PORT) \
		--azurite-table-port $(AZURITE_TABLE_PORT) --instances $(INSTANCES)

lint: $(VENV)/.installed-test
	$(PY) -m ruff check .
	$(PY) -m mypy

# requirements.txt: every distribution the app installs, pinned with hashes, compiled from requirements.in.
UV_COMPILE := $(VENV)/bin/uv pip compile --quiet --generate-hashes --universal --python-version 3.11 \
	--custom-compile-command "make lock" requirements.in

lock: $(VENV)/.installed-test
	$(UV_COMPILE) -o requirements.txt

# The lock matches its input: compiling again (keeping the lock's pins where the input allows) changes nothing.
check-lock: $(VENV)/.installed-test
	@tmp=$$(mktemp -d) && cp requirements.txt $$tmp/requirements.txt && \
		$(UV_COMPILE) -o $$tmp/requirements.txt && \
		diff -u requirements.txt $$tmp/requirements.txt && rm -r $$tmp || { \
		echo "make: requirements.txt does not match requirements.in: run make lock"; exit 1; }

test: $(VENV)/.installed-run $(VENV)/.installed-bench node_modules/.installed-test lint check-lock
	$(PY) -m pytest

bench: install $(VENV)/.installed-bench
	$(PY) -m bench

# Mutation testing of the core against the fast tests (docs/testing.md); not part of `make test`.
# MUTANTS narrows it, e.g. MUTANTS='services.turns.outbox*'; a fresh run each time (results in mutants/).
MUTANTS ?=
mutation: $(VENV)/.installed-test
	rm -rf mutants
	nice -n 10 $(VENV)/bin/mutmut run --max-children 2 $(MUTANTS) > mutation.log 2>&1 || { tail -n 40 mutation.log; exit 1; }
	$(PY) -m mutation.score

clean:
	rm -rf $(VENV) node_modules .localdev .pytest_cache .ruff_cache .mypy_cache .hypothesis mutants
