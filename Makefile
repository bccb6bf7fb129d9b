# Everything a fresh machine needs goes through `make install`; heavy downloads are cached under
# ~/.cache/promoter (uv's wheel cache, torch included), so a second machine setup downloads nothing.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PROMOTER_CACHE ?= $(HOME)/.cache/promoter
UV_VERSION     := 0.13.9
UV             := $(PROMOTER_CACHE)/uv-$(UV_VERSION)/bin/uv
export UV_CACHE_DIR := $(PROMOTER_CACHE)/uv
export UV_PYTHON    ?= 3.11
# Bytecode is compiled at install time: this environment may set PYTHONDONTWRITEBYTECODE, and
# compiling torch/mlflow/sklearn on every import costs ~15 s per process.
export UV_COMPILE_BYTECODE := 1
VENV := .venv
BIN  := $(VENV)/bin
# Every dependency, installed and byte-compiled once per lock (about 100 s), kept under the cache; a
# fresh checkout hard-links it into .venv in seconds and installs only promoter itself. Relocatable,
# so its scripts run from any checkout; uv replaces files rather than editing them, so a checkout's
# later `uv sync` never writes through the links into the cached copy.
LOCK_KEY  := $(shell python3 -c "import hashlib; print(hashlib.sha256(open('uv.lock', 'rb').read()).hexdigest()[:16])")
BASE_VENV := $(PROMOTER_CACHE)/venvs/py$(UV_PYTHON)-uv$(UV_VERSION)-$(LOCK_KEY)
DEMO_WORKDIR ?= .promoter/demo

.PHONY: help install testbed demo cluster test lint typecheck unit clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(UV):
	python3 -m venv $(PROMOTER_CACHE)/uv-$(UV_VERSION)
	$(PROMOTER_CACHE)/uv-$(UV_VERSION)/bin/pip install --quiet uv==$(UV_VERSION)

$(BASE_VENV)/.complete: | $(UV)
	rm -rf $(BASE_VENV) && mkdir -p $(dir $(BASE_VENV))
	UV_PROJECT_ENVIRONMENT=$(BASE_VENV) $(UV) venv --quiet --relocatable $(BASE_VENV)
	UV_PROJECT_ENVIRONMENT=$(BASE_VENV) $(UV) sync --frozen --no-install-project
	@# environments of older locks: checkouts keep their own links to them
	find $(dir $(BASE_VENV)) -mindepth 1 -maxdepth 1 ! -path $(BASE_VENV) -exec rm -rf {} +
	touch $@

install: $(BASE_VENV)/.complete  ## create .venv with the locked dependencies and `promoter` on its PATH
	@# a copy of the cached environment, by hard links (another filesystem: uv installs instead)
	@[ -d $(VENV) ] || cp -al $(BASE_VENV) $(VENV) 2>/dev/null || rm -rf $(VENV)
	$(UV) sync --frozen
	@# new modules must enter the editable link tree (cheap: only this project is rebuilt)
	$(UV) sync --frozen --reinstall-package promoter --quiet
	@echo "ready: $(BIN)/promoter"

demo: install  ## a whole promotion on this machine: a good candidate promoted, a bad one rejected
	@$(BIN)/promoter down --workdir $(DEMO_WORKDIR) 2>/dev/null || true
	@rm -rf $(DEMO_WORKDIR)
	@echo "== a good candidate: examples/digits/promotion.yaml (train, gate, register, preview, load test, promote)"
	$(BIN)/promoter run examples/digits/promotion.yaml --workdir $(DEMO_WORKDIR)
	@echo "== a bad candidate: examples/digits/bad-candidate.yaml (must be rejected: exit 3)"
	@$(BIN)/promoter run examples/digits/bad-candidate.yaml --workdir $(DEMO_WORKDIR); \
	  code=$$?; [ $$code -eq 3 ] && echo "rejected by its gates; the champion and the active server are untouched" || exit 1
	@$(BIN)/promoter status --workdir $(DEMO_WORKDIR)
	@echo "== what was promoted, and what to do with it (commands to paste as they are):"
	@echo "see it:     $(BIN)/promoter status digits-2026-11-23 --workdir $(DEMO_WORKDIR)"
	@echo "            $(BIN)/promoter history digits --workdir $(DEMO_WORKDIR)"
	@echo "            curl -s http://127.0.0.1:$$($(BIN)/python -c 'import json, sys; print(json.load(sys.stdin)["address_port"])' < $(DEMO_WORKDIR)/rollouts/digits-serving/state.json)/metadata"
	@echo "roll back:  $(BIN)/promoter rollback digits --workdir $(DEMO_WORKDIR)"
	@echo "            (once a later candidate is promoted: this first champion has no previous one to go back to)"
	@echo "stop:       $(BIN)/promoter down --workdir $(DEMO_WORKDIR)"
	@echo "restart:    $(BIN)/promoter up digits --workdir $(DEMO_WORKDIR)"
	@echo "MLflow:     $(BIN)/mlflow ui --backend-store-uri sqlite:///$(DEMO_WORKDIR)/mlflow.db"

cluster: install  ## kind + Argo Workflows + Argo Rollouts + the chart (needs Docker; not run by CI)
	dev/kind.sh $(CLUSTER_ARGS)

lint: install  ## ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install  ## mypy (strict) over the installed `promoter` package and the tests
	$(BIN)/mypy -p promoter
	$(BIN)/mypy tests

testbed:  ## build the Kubernetes test bed (etcd, control plane, kwok, Argo Rollouts, Argo CD) once per machine, into the cache
	python3 dev/testbed.py build

# Two workers, one file each at a time (module fixtures stay in one process): the operator's
# end-to-end tests mostly wait, and overlap with the rest instead of adding to it.
PYTEST_WORKERS ?= 2

unit: install testbed  ## pytest only
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile --durations=25 $(PYTEST_ARGS)

test: lint typecheck unit  ## everything CI runs

clean:  ## remove local state and build outputs (keeps the download cache)
	rm -rf $(VENV) build .promoter .mypy_cache .ruff_cache .pytest_cache
