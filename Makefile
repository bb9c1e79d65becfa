# The two commands a new machine needs:  make demo  (the main job)  and  make test  (the whole suite).
# Both install what they use: the venv, the Go-built control plane (cached in ~/.cache/webhook-operator).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: all install test lint unit integration demo cluster-up cluster-down crds controlplane helm clean lock

all: test

$(STAMP): pyproject.toml requirements/dev.txt requirements/openmetadata-models.txt hack/bootstrap.sh
	PYTHON=$(PYTHON) bash hack/bootstrap.sh $(VENV)
	touch $(STAMP)

install: $(STAMP)

controlplane: $(STAMP)
	PYTHONPATH=hack $(PY) -m controlplane build
	PYTHONPATH=hack $(PY) -m controlplane build-helm

lint: $(STAMP)
	$(VENV)/bin/ruff check operator hack tests bench
	$(VENV)/bin/ruff format --check operator hack tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy bench
	$(VENV)/bin/lint-imports

test: controlplane lint
	$(VENV)/bin/pytest $(PYTEST_ARGS)

unit: $(STAMP)
	$(VENV)/bin/pytest -m unit $(PYTEST_ARGS)

integration: controlplane
	$(VENV)/bin/pytest -m integration $(PYTEST_ARGS)

demo: controlplane
	PYTHONPATH=hack $(PY) hack/demo.py

# Re-resolve the hash-pinned lock files from pyproject.toml (after changing a dependency there). One universal
# resolution per file (every platform and Python >= 3.11), so the image build and CI install the same versions.
UV_COMPILE = $(VENV)/bin/uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes --quiet \
	--custom-compile-command "make lock"
lock: $(STAMP)
	$(UV_COMPILE) -o requirements/runtime.txt
	$(UV_COMPILE) --extra dev -o requirements/dev.txt

crds: $(STAMP)
	$(VENV)/bin/webhook-operator crd -o crds/webhooks.yaml

cluster-up: controlplane
	PYTHONPATH=hack $(PY) -m controlplane up --dir .cluster

cluster-down: $(STAMP)
	PYTHONPATH=hack $(PY) -m controlplane down --dir .cluster

clean:
	rm -rf $(VENV) .cluster .mypy_cache .ruff_cache .pytest_cache
