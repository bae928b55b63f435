# The project's commands. Each target sets itself up: it creates .venv and installs the
# project (with the pinned versions in pyproject.toml) when they are missing or stale.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help install demo test check format migrate clean

help:
	@echo "make demo     simulator + ingest + API on this machine; prints the URLs (Ctrl-C stops)"
	@echo "make test     the test suite against the local PostgreSQL and Mosquitto"
	@echo "make check    ruff (lint + format check) and mypy --strict"
	@echo "make migrate  create/upgrade the database schema"
	@echo "make format   apply ruff's formatting and safe fixes"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/smartcity demo

migrate: install
	$(BIN)/smartcity db migrate

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

check: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
