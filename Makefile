# The two commands the README gives:
#   make demo   - the main job on the embedded default
#   make test   - every test (lint, types, unit, NATS, e2e on the test control plane)
# Each sets itself up on a fresh machine: a venv with the package and its dev tools.

PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: venv demo test lint typecheck unit crds controlplane images cluster cluster-stop bench bench-operator soak clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,operator]'
	@rm -f $(VENV)/.installed-* && touch $@

demo: venv
	$(BIN)/rebeam run examples/demo/app.yaml

lint: venv
	$(BIN)/ruff check sdk operator tests tools
	$(BIN)/ruff format --check sdk operator tests tools

typecheck: venv
	$(BIN)/mypy

# Regenerate crds/ from the pydantic models (never hand-edit crds/), and the chart's copy.
crds: venv
	$(BIN)/python -m rebeam.spec.crdgen crds
	bash scripts/chart-crds.sh

# Build (or reuse from ~/.cache/rebeam, linked at .cache/controlplane) kube-apiserver,
# kube-controller-manager, etcd and helm for the e2e tier (testinfra/README.md).
controlplane:
	bash testinfra/build.sh

# Build (or reuse, cached under ~/.cache/rebeam/images) the operator, actor and demo images of
# images/ (docs/kubernetes.md, "Images"). As root: podman with a Debian base made here, no
# registry needed (installs podman, runc, debootstrap with apt when missing). Elsewhere:
# docker or podman from python:3.11-slim. REBEAM_IMAGES_BASE=local|registry and
# REBEAM_IMAGES_ENGINE=podman|docker choose, for this and for the image tests alike.
images:
	$(PY) tools/images.py

# A dev cluster on this machine (docs/kubernetes.md, "A dev cluster on your machine"): etcd,
# kube-apiserver, kube-controller-manager, the test kubelet (container mode when the images are
# built) and NATS in the background; prints the `export KUBECONFIG=...` to use it.
cluster: venv controlplane
	$(BIN)/python tools/cluster.py start

cluster-stop:
	$(BIN)/python tools/cluster.py stop

test: venv lint typecheck controlplane images
	$(BIN)/python tools/run_pytest.py

bench: venv
	$(BIN)/pip install --quiet -e '.[dev,operator,fast]'  # uvloop: the loop users of rebeam[fast] get
	$(BIN)/python -m benchmarks
	@# tracing's latency target, read at a real-time priority (docs/observability.md, "Cost")
	$(BIN)/python -m benchmarks.bench_tracing --realtime || echo "(bench_tracing --realtime needs root or CAP_SYS_NICE)"
	$(BIN)/python -m benchmarks.bench_restart
	$(BIN)/python -m benchmarks.receive_cost
	$(BIN)/python -m benchmarks.bench_observer

# The operator's scale benchmark (docs/operator.md, "Scale"): BENCH_SUPERVISORS x BENCH_CHILDREN
# trivial pods on the test control plane and the process kubelet, one operator; first a Python
# actor's restart secured vs open NATS, and step by step; prints the tables. Opt-in: `make test`
# runs only their smoke tests. The default, 10,000 pods (the product's target), takes 30-45
# minutes on 2 shared cores; `make bench-operator BENCH_SUPERVISORS=200` about 8.
BENCH_SUPERVISORS ?= 1000
BENCH_CHILDREN    ?= 10
BENCH_REPORT      := .cache/bench-operator.md

bench-operator: venv controlplane
	@mkdir -p .cache && rm -f $(BENCH_REPORT)
	REBEAM_E2E_OPERATOR_BENCH=1 REBEAM_E2E_BENCH_SUPERVISORS=$(BENCH_SUPERVISORS) \
	REBEAM_E2E_BENCH_CHILDREN=$(BENCH_CHILDREN) REBEAM_E2E_BENCH_REPORT=$(BENCH_REPORT) \
	$(BIN)/python tools/run_pytest.py tests/e2e/operator/test_operator_security_bench.py \
		tests/e2e/operator/test_operator_scale.py -k benchmark -q -p no:cacheprovider
	@echo; cat $(BENCH_REPORT)

# The soak (docs/soak.md): the bank of tests/soak under SIGKILL storms, SIGSTOP hangs,
# nats-server kills and 10x overload, each alone and then together; prints a report and writes
# it to .cache/soak.md. Opt-in: `make test` runs only its one-minute smoke. About 6 minutes by
# default; SOAK_ARGS takes `python -m tests.soak --help`'s options (durations, rates, faults):
# `--kubernetes` runs the bank on the operator and the test control plane (the binaries of
# `make controlplane`), `--ray` also on Ray actors in the benchmark venv, side by side.
SOAK_ARGS ?=

soak: venv
	$(BIN)/python -m tests.soak --report .cache/soak.md $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
