# Every target works from a fresh clone: the first one run creates .venv and installs the project.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Every dependency of `.[dev]`, pinned with hashes (`make lock` writes it and requirements/lock.txt).
DEV_LOCK := requirements/dev-lock.txt
PYTEST_ARGS ?=

.PHONY: install run test lint lock fmt migrate bench clean

$(STAMP): pyproject.toml $(DEV_LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r $(DEV_LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@$(BIN)/python -m pip check || { echo "$(DEV_LOCK) does not cover pyproject.toml: run 'make lock'" >&2; exit 1; }
	touch $(STAMP)

install: $(STAMP)

## run: embedded PostgreSQL + Redis under ./var (unless DATABASE_URL/REDIS_URL are set), migrate, proxy + worker
run: $(STAMP)
	$(BIN)/loyalty-bridge run

## test: the whole suite against real PostgreSQL and Redis (the environment's, else embedded ones)
test: $(STAMP)
	scripts/ensure-tools.sh promtool chromium >/dev/null
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## lint: ruff, mypy (strict), the import rules proxy -> shared <- worker, and the offline checks of
## deploy/ (kustomize render + schema validation, hadolint, promtool, dashboard metrics, compose)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy shared proxy worker bench
	$(BIN)/lint-imports
	scripts/ensure-tools.sh promtool kubectl >/dev/null
	$(BIN)/python scripts/check_deploy.py

## lock: after changing dependencies in pyproject.toml, re-pin them all with hashes for Python 3.11 on
## Linux x86_64: requirements/lock.txt (the image: `.[otel]`) and requirements/dev-lock.txt (`.[dev]`).
## Keeps the current pins where they still fit; `make lock UPGRADE=1` moves everything to the newest.
LOCK_FLAGS = --quiet --generate-hashes --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
	--custom-compile-command 'make lock' $(if $(UPGRADE),--upgrade)
lock:
	test -x $(BIN)/uv || $(MAKE) --no-print-directory $(STAMP) || test -x $(BIN)/uv
	$(BIN)/uv pip compile pyproject.toml --extra otel $(LOCK_FLAGS) -o requirements/lock.txt
	$(BIN)/uv pip compile pyproject.toml --extra dev $(LOCK_FLAGS) -o $(DEV_LOCK)

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
