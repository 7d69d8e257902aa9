# Thin aliases; scripts/setup.sh does the set-up, the CLIs do the work.
VENV ?= .venv
PY := $(VENV)/bin/python
export TF_USE_LEGACY_KERAS := 1

.PHONY: setup setup-test run test test-unit test-fast test-integration test-e2e mutation lint bench clean

setup:
	VENV=$(VENV) scripts/setup.sh

setup-test:
	VENV=$(VENV) scripts/setup.sh --browser

## run: set up if needed, then run the whole pipeline on the bundled data
run: setup
	$(VENV)/bin/taxi-pipeline --output-dir tfx_runs $(ARGS)

# Test order: shuffled (modules, and tests within each); replay one with SEED=N.
ifndef SEED
SEED := $(shell od -An -N3 -tu4 /dev/urandom | tr -d ' ')
endif
SHUFFLE = -p random_order --random-order-bucket=module --random-order-seed=$(SEED)

## test: set up if needed (with Chromium), then every test in random order (all tiers)
test: setup-test
	@echo "test order seed: $(SEED) (replay: make test SEED=$(SEED))"
	$(PY) -m pytest -q $(SHUFFLE) $(ARGS)

## test-unit: no server, subprocess, fork, socket or pipeline (enforced); test-fast is an alias
test-unit test-fast: setup
	TAXI_TEST_TIER=unit $(PY) -m pytest -q -m unit $(SHUFFLE) $(ARGS)

## test-integration: servers, subprocesses, tiny pipelines and tests over 1 s (marker slow)
test-integration: setup
	$(PY) -m pytest -q -m integration $(SHUFFLE) $(ARGS)

## test-e2e: the whole pipeline on the sample, and what reads its outputs (marker e2e)
test-e2e: setup-test
	$(PY) -m pytest -q -m e2e $(SHUFFLE) $(ARGS)

## mutation: mutmut on the deciding/parsing modules, score per module (slow; not in make test)
## (one module: make mutation MUTANTS='monitoring.ab.*'; JOBS=N mutants at a time)
MUTANTS ?= monitoring.ab.* monitoring.decide.* components.anomalies_gate.* \
	pipeline.pipeline.x_eval_config* components.model_selection.cv.* \
	serving.json_codec.* serving.json_dialect.*
JOBS ?= 1
mutation: setup
	$(VENV)/bin/mutmut run --max-children $(JOBS) $(foreach m,$(MUTANTS),'$(m)'); \
	$(PY) scripts/mutation_score.py $(foreach m,$(MUTANTS),'$(m)')

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: setup
	$(PY) bench/bench_pipeline.py

clean:
	rm -rf tfx_runs .pytest_cache mutants
