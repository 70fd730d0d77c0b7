# Two commands (README): `make run` and `make test`. Everything they need is set up here.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP_RUN  := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test

.PHONY: run test lint migrate venv clean bench

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

$(STAMP_TEST): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test,face,fast]'
	touch $@ $(STAMP_RUN)

venv: $(STAMP_RUN)

migrate: $(STAMP_RUN)
	$(PY) -m server migrate

## Set up and start the server on embedded defaults (SQLite, in-process queue, ./recordings).
run: migrate
	$(PY) -m server serve

# The slowest tests are listed at the end of every run (the suite's time is watched: < 30 min).
PYTEST_ARGS ?= --durations=30
# Test processes for the first pass (scripts/run-tests.sh): the tests are mostly waiting
# (sockets, browsers, timers), so two keep a 2-core machine busy; 0 runs it in-process.
PYTEST_WORKERS ?= 2

## Set up what the tests need (services, Chromium, fonts) and run the whole suite.
test: $(STAMP_TEST)
	bash scripts/ensure-test-env.sh
	$(PY) -m ruff check server tests bench
	$(PY) -m mypy server
	bash scripts/run-tests.sh $(PY) $(PYTEST_WORKERS) $(PYTEST_ARGS)

lint: $(STAMP_TEST)
	$(PY) -m ruff check server tests bench
	$(PY) -m ruff format --check server tests
	$(PY) -m mypy server

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
