# Tandem: the README's two commands, `make serve` and `make test`, each set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup serve test lint bench loadtest clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: on the CPU machines this takes the local CPU wheel.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

# `serve run config.yaml`, plus a graceful stop on SIGTERM / Ctrl-C and the proxy's edge limits
serve: $(STAMP)
	$(PY) -m deployments.serve_run config.yaml

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	# pytest exits 5 when it collects nothing; make fails on any non-zero status.
	$(PY) -m pytest -q -p no:cacheprovider --timeout=900
	# The Triton kernels against their torch references, in the interpreter (no GPU here).
	TRITON_INTERPRET=1 $(PY) -m pytest -q -p no:cacheprovider --timeout=900 tests/kernels

lint: $(STAMP)
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

bench: $(STAMP)
	$(PY) benchmarks/engine_vs_hf.py

loadtest: $(STAMP)
	$(PY) -m loadtest --port 0 $(if $(URL),--url $(URL)) $(if $(DURATION),--duration $(DURATION)) $(LOADTEST_ARGS)

clean:
	rm -rf $(VENV)
