# Flowdeck: `make help` lists the targets. Every target installs what it needs first.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
UV := $(PYTHON) -m uv
VENV := .venv
export UV_SYSTEM_CERTS := 1
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(shell command -v $(PYTHON))
# Byte-code caching makes imports and test collection 2-3x faster.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: help install run example test lint format bench clean

help: ## Show this help
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml uv.lock $(wildcard libs/*/pyproject.toml services/*/pyproject.toml)
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	$(UV) sync --locked
	@touch $@

install: $(VENV)/.installed ## Install uv (when missing) and the locked environment in .venv

run: install ## Run Flowdeck on the embedded default (SQLite, in-process worker) with a demo tenant
	$(VENV)/bin/python -m flowdeck_api.embedded

example: install ## Run the quickstart's expense-approval example in-process and show what happened
	$(VENV)/bin/python examples/show_expense_approval.py

test: install ## Run the whole test suite
	$(VENV)/bin/python -m pytest

lint: install ## Lint and type-check (ruff, ruff format --check, mypy --strict)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install ## Format the code and apply safe lint fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: install ## Run the benchmarks (side by side with their peers; not part of `make test`)
	$(VENV)/bin/python bench/engine_local.py
	$(VENV)/bin/python bench/documents_validate.py
	$(VENV)/bin/python bench/store_persistent.py
	$(VENV)/bin/python bench/distributed.py
	$(VENV)/bin/python bench/api_http.py

clean: ## Remove the environment and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis .bench
