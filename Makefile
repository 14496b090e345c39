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

.PHONY: run test lint bench mutation install clean

install: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
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
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

local.settings.json: | $(VENV)/.installed
	$(PY) -m localdev.settings_file

run: install local.settings.json
	$(PY) -m localdev.run --functions-port $(FUNCTIONS_PORT) --directline-port $(DIRECTLINE_PORT) \
		--cosmos-port $(COSMOS_PORT) --azurite-queue-port $(AZURITE_QUEUE_PORT) \
		--azurite-table-port $(AZURITE_TABLE_PORT) --instances $(INSTANCES)

lint: install
	$(PY) -m ruff check .

test: install lint
	$(PY) -m pytest

bench: install
	$(PY) -m bench

# Mutation testing of the core against the fast tests (docs/testing.md); not part of `make test`.
# MUTANTS narrows it, e.g. MUTANTS='services.outbox*'; a fresh run each time (results in mutants/).
MUTANTS ?=
mutation: install
	rm -rf mutants
	nice -n 10 $(VENV)/bin/mutmut run --max-children 2 $(MUTANTS) > mutation.log 2>&1 || { tail -n 40 mutation.log; exit 1; }
	$(PY) -m mutation.score

clean:
	rm -rf $(VENV) node_modules .localdev .pytest_cache .ruff_cache .hypothesis mutants
