# synthmon — the two commands a newcomer runs: `make demo` and `make test`.
# Every target builds .venv itself; nothing needs to be installed by hand beyond Python 3.11.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
FAULT  ?=
PYTEST_ARGS ?=

.PHONY: help venv demo test lint fmt unit clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[sandbox,dev]'
	touch $(STAMP)

venv: $(STAMP)  ## create .venv with synthmon, the sandbox and the dev tools

demo: $(STAMP)  ## start the local sandbox platform and run the monitor against it (FAULT=name to inject)
	$(BIN)/synthmon demo $(if $(FAULT),--fault $(FAULT))

lint: $(STAMP)  ## ruff (lint + format check) and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: $(STAMP)  ## format and autofix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint  ## lint, then the whole test suite (starts its own sandbox; Postgres tests need SYNTHMON_TEST_PG_URL)
	$(BIN)/pytest $(PYTEST_ARGS)

unit: $(STAMP)  ## fast tests only (no sandbox)
	$(BIN)/pytest -m "not sandbox" $(PYTEST_ARGS)

clean:  ## remove the venv and local state
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
