# Thin aliases; scripts/setup.sh does the set-up, the CLIs do the work.
VENV ?= .venv
PY := $(VENV)/bin/python
export TF_USE_LEGACY_KERAS := 1

.PHONY: setup setup-test run test test-fast lint bench clean

setup:
	VENV=$(VENV) scripts/setup.sh

setup-test:
	VENV=$(VENV) scripts/setup.sh --browser

## run: set up if needed, then run the whole pipeline on the bundled data
run: setup
	$(VENV)/bin/taxi-pipeline --output-dir tfx_runs $(ARGS)

## test: set up if needed (with Chromium), then every test
test: setup-test
	$(PY) -m pytest -q $(ARGS)

## test-fast: unit tests only (no pipeline runs, no servers)
test-fast: setup
	$(PY) -m pytest -q -m "not slow" $(ARGS)

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: setup
	$(PY) bench/bench_pipeline.py

clean:
	rm -rf tfx_runs .pytest_cache
