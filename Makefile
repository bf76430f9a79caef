# Tandem: two commands matter. `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TSTAMP := $(VENV)/.installed-test

.PHONY: run test lint types pytest test-slow services bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e .
	touch $@

$(TSTAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# `make run CONFIG=path/to/tandem.toml` runs on that file instead of the built-in default.
CONFIG ?=
run: $(STAMP)
	$(BIN)/tandem run $(if $(CONFIG),--config $(CONFIG))

test: $(TSTAMP) lint types services pytest

lint: $(TSTAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(TSTAMP)
	$(BIN)/mypy smpp routing dlr modems gateway

# PostgreSQL and Mosquitto back a few integration tests. They run on this project's machines;
# on a fresh machine this installs and starts them, or says why it could not.
services:
	@bash .ci/services.sh || echo "services: not all external services are available; tests that need them will say so"

# Most tests wait on sockets, timers and child daemons rather than the CPU: more workers than
# cores pays (pytest-xdist; every test has its own tmp dir, ports, schema and MQTT topics).
# `make pytest PYTEST_WORKERS=0` runs them in one process.
PYTEST_WORKERS ?= 3
pytest: $(TSTAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist worksteal

test-slow: $(TSTAMP)
	$(BIN)/python -m pytest -m slow

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
