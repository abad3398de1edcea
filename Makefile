# Setup and everyday commands. Every target is idempotent.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: demo test lint format bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

$(DEV_STAMP): pyproject.toml $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(STAMP)
	$(PY) -m mothray.experiment --config experiments/demo.yaml --storage runs
	@echo "browse: $(PY) -m mothray.results demo --storage runs  |  $(PY) -m mothray.results --storage runs"
	@echo "        tensorboard --logdir runs/demo/tune (pip install tensorboard)  |  catalog: runs/demo/catalog.zarr, runs/demo/catalog.csv"

test: $(DEV_STAMP)
	$(PY) -m ruff check mothray tests benchmarks
	$(PY) -m ruff format --check mothray tests benchmarks
	$(PY) -m pytest

lint: $(DEV_STAMP)
	$(PY) -m ruff check --fix mothray tests benchmarks
	$(PY) -m ruff format mothray tests benchmarks

bench: $(DEV_STAMP)
	$(PY) benchmarks/simulate.py
	$(PY) benchmarks/train.py --repeats 3

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
