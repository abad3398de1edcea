# Setup and everyday commands; `make help` lists them. Every target is idempotent.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RAY := $(VENV)/bin/ray
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' mothray/__init__.py)
# images to push: make image image-gpu IMAGE=<registry>/mothray (and name them in cluster.yaml)
IMAGE ?= mothray
CLUSTER ?= cluster.yaml
# MOTHRAY_STORAGE in cluster.yaml's containers: the shared directory every node mounts
CLUSTER_STORAGE ?= /mnt/mothray/runs
N ?= 1320
NAME ?=
# where `make dashboard` tunnels the head's dashboard and job server
JOBS ?= http://127.0.0.1:8265

.PHONY: help demo test lint bench clean image image-gpu cluster-up cluster-down \
	dashboard submit results fetch name-given

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-13s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[aws]'
	touch $@

$(DEV_STAMP): pyproject.toml $(STAMP)
	$(PY) -m pip install --quiet -e '.[aws,dev]'
	touch $@

demo: $(STAMP) ## the whole pipeline, small, on an embedded local Ray (CPU, ~11 min), and its report
	$(PY) -m mothray.experiment --config demo --storage runs
	@echo "browse: $(PY) -m mothray.results demo --storage runs  |  $(PY) -m mothray.results --storage runs"
	@echo "        tensorboard --logdir runs/demo/tune (pip install tensorboard)  |  catalog: runs/demo/catalog.zarr, runs/demo/catalog.csv"
	@echo "motifs: runs/demo/motifs.csv (z-scores per network, level, null model and motif; store: runs/demo/motifs.zarr)"
	@echo "flight: runs/demo/flight.csv and robustness.csv (per network, level, task and condition; stores: *.zarr)"
	@echo "report: runs/demo/report/report.md (figures: runs/demo/report/*.png; numbers: summary.json)"

test: $(DEV_STAMP) ## lint, the layers' import contracts, then the whole test suite (creates .venv on first use)
	$(PY) -m ruff check mothray tests benchmarks
	$(PY) -m ruff format --check mothray tests benchmarks
	$(VENV)/bin/lint-imports
	$(PY) -m pytest

lint: $(DEV_STAMP) ## fix what ruff can, and format
	$(PY) -m ruff check --fix mothray tests benchmarks
	$(PY) -m ruff format mothray tests benchmarks

bench: $(DEV_STAMP) ## the integrator and training benchmarks against their baselines
	$(PY) benchmarks/simulate.py
	$(PY) benchmarks/train.py --repeats 3

image: ## build the CPU image IMAGE:VERSION (needs Docker; IMAGE=<registry>/mothray to push)
	docker build -f docker/Dockerfile -t $(IMAGE):$(VERSION) .

image-gpu: image ## build the GPU image IMAGE:VERSION-gpu on top of the CPU one
	docker build -f docker/Dockerfile.gpu --build-arg BASE_IMAGE=$(IMAGE):$(VERSION) \
		-t $(IMAGE):$(VERSION)-gpu .

cluster-up: $(STAMP) ## start (or update) the cluster of cluster.yaml: ray up (with your Ray token)
	$(RAY) get-auth-token --generate > /dev/null
	chmod 600 ~/.ray/auth_token
	$(RAY) up -y $(CLUSTER)

cluster-down: $(STAMP) ## tear the cluster down: ray down
	$(RAY) down -y $(CLUSTER)

dashboard: $(STAMP) ## tunnel the dashboard and job server to localhost:8265 (leave it running)
	$(RAY) dashboard $(CLUSTER)

submit: $(STAMP) ## run the study on the cluster (N replaces the config's networks): make submit N=400 ARGS='--config arch-sweep'
	RAY_ADDRESS=$(JOBS) RAY_AUTH_MODE=token $(RAY) job submit --working-dir . -- python -m mothray.experiment $(N) $(ARGS)

results: $(STAMP) ## the cluster's experiments, or one's trials and catalog: make results [NAME=paper]
	$(RAY) exec $(CLUSTER) 'python -m mothray.results $(NAME)'

fetch: name-given $(STAMP) ## copy an experiment's catalog and records into runs/NAME: make fetch NAME=paper
	mkdir -p runs/$(NAME)
	for item in catalog.zarr catalog.csv experiment.json scaler.json; do \
		$(RAY) rsync-down $(CLUSTER) $(CLUSTER_STORAGE)/$(NAME)/$$item runs/$(NAME)/ || exit 1; \
	done
	for item in motifs flight robustness; do for suffix in zarr csv; do \
		$(RAY) rsync-down $(CLUSTER) $(CLUSTER_STORAGE)/$(NAME)/$$item.$$suffix runs/$(NAME)/ \
			|| echo "no $$item.$$suffix to fetch (python -m mothray.$$item $(NAME) on the cluster)"; \
	done; done
	$(RAY) rsync-down $(CLUSTER) $(CLUSTER_STORAGE)/$(NAME)/report runs/$(NAME)/ \
		|| echo "no report to fetch: make it with python -m mothray.report runs/$(NAME)"

name-given:
	@test -n "$(NAME)" || { echo "make $(MAKECMDGOALS) NAME=<experiment>" >&2; exit 2; }

clean: ## remove .venv and local runs
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
