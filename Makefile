# Every target works from a fresh clone: the first one run creates .venv and installs the project.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install run test lint fmt migrate bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## run: embedded PostgreSQL + Redis under ./var (unless DATABASE_URL/REDIS_URL are set), migrate, proxy + worker
run: $(STAMP)
	$(BIN)/loyalty-bridge run

## test: the whole suite against real PostgreSQL and Redis (the environment's, else embedded ones)
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## lint: ruff, mypy (strict) and the import rules proxy -> shared <- worker
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy shared proxy worker bench
	$(BIN)/lint-imports

fmt: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

migrate: $(STAMP)
	$(BIN)/loyalty-bridge migrate

## bench: the benchmark suite (see README); figures go to bench/results/
bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
