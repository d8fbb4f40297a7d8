# MTV — everything a user or CI runs goes through these targets.
#   make test   install, build the local servers, run every test (unit + real Kafka/vSphere)
#   make up     start Kafka, the vSphere simulator and the four services in the background
#   make down   stop them
#   make demo   the main job (see README)
#   make lint   ruff, buf lint, buf breaking against main, helm lint + template of deploy/helm/mtv
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export MTV_CACHE ?= $(HOME)/.cache/mtv
export PIP_CACHE_DIR ?= $(MTV_CACHE)/pip
BUF_VERSION := 1.75.0
BUF := $(MTV_CACHE)/npm/buf-$(BUF_VERSION)/node_modules/.bin/buf
GEN_STAMP := services/mtv/v1/.stamp
PYTEST_ARGS ?=

.PHONY: install gen deps up down status test test-unit lint demo bench clean

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed (set PYTHON=python3.11)")'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -U pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

# Generated protobuf/gRPC code is built, never committed.
$(GEN_STAMP): $(VENV)/.installed $(wildcard proto/mtv/v1/*.proto)
	rm -rf services/mtv/v1 && mkdir -p services/mtv/v1
	$(PY) -m grpc_tools.protoc -I proto --python_out=services --pyi_out=services \
	  --grpc_python_out=services proto/mtv/v1/*.proto
	touch $@

install: $(GEN_STAMP)
gen: $(GEN_STAMP)

deps: install
	$(PY) -m mtv.devstack deps
	$(PY) -m mtv.devstack.kube_apiserver build  # test kube-apiserver + etcd (k8s tests)

up: deps
	$(PY) -m mtv.devstack up

down:
	@if [ -x $(PY) ]; then $(PY) -m mtv.devstack down; else echo "nothing was running"; fi

status: install
	$(PY) -m mtv.devstack status

test: deps
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: install
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

$(BUF):
	mkdir -p $(MTV_CACHE)/npm/buf-$(BUF_VERSION)
	@# --prefix: npm would otherwise install next to any package.json or node_modules in a parent directory.
	npm install --silent --no-audit --no-fund --prefix $(MTV_CACHE)/npm/buf-$(BUF_VERSION) \
	  --cache $(MTV_CACHE)/npm/.cache @bufbuild/buf@$(BUF_VERSION)

lint: install $(BUF)
	$(VENV)/bin/ruff check services tests benchmarks
	$(BUF) lint
	@if git rev-parse --verify -q main >/dev/null && git ls-tree -d main proto >/dev/null 2>&1 \
	    && [ -n "$$(git ls-tree main proto)" ]; then \
	  echo "buf breaking --against main"; $(BUF) breaking --against '.git#branch=main'; \
	else echo "buf breaking: main has no proto/ yet, nothing to compare"; fi
	@# helm is built from source into $(MTV_CACHE)/bin on first use (deploy/local/helm, ~3 min cold).
	helm="$$($(PY) -m mtv.devstack.helm_tool build)"; \
	  $$helm lint deploy/helm/mtv --strict; \
	  $$helm lint deploy/helm/mtv --strict -f deploy/helm/mtv/ci/scaled-values.yaml; \
	  $$helm template mtv deploy/helm/mtv | $(PY) deploy/helm/check_render.py --scenario default; \
	  $$helm template mtv deploy/helm/mtv -f deploy/helm/mtv/ci/scaled-values.yaml \
	    | $(PY) deploy/helm/check_render.py --scenario scaled

demo: deps
	$(PY) -m mtv.devstack demo

bench: deps
	$(PY) benchmarks/run.py

clean: down
	rm -rf $(VENV) services/mtv/v1 .run
