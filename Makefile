# Two commands for a bot developer: `make run` and `make test`. Everything else is installed on demand.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Ports for `make run` (defaults: as `func start`, Azurite, the Cosmos DB emulator).
FUNCTIONS_PORT ?= 7071
DIRECTLINE_PORT ?= 7072
COSMOS_PORT ?= 8081
AZURITE_QUEUE_PORT ?= 10001

.PHONY: run test lint bench install clean

install: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
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
		--cosmos-port $(COSMOS_PORT) --azurite-queue-port $(AZURITE_QUEUE_PORT)

lint: install
	$(PY) -m ruff check .

test: install lint
	$(PY) -m pytest

bench: install
	$(PY) -m bench

clean:
	rm -rf $(VENV) node_modules .localdev .pytest_cache .ruff_cache
