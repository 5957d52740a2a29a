# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: demo test lint typecheck bench clean system-deps

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -U pip
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -U pip
	$(PIP) install -q -e '.[dev]'
	touch $(VENV)/.installed $@

# PostgreSQL binaries for the contract tests (already on the usual machine image).
system-deps:
	@if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		echo "Installing PostgreSQL (needed by the tests)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	fi

demo: $(VENV)/.installed
	$(PY) demo/run_demo.py

test: $(VENV)/.installed-dev system-deps
	$(PY) -m ruff check src tests
	$(PY) -m mypy
	$(PY) -m pytest -q

lint: $(VENV)/.installed-dev
	$(PY) -m ruff check src tests benchmarks

typecheck: $(VENV)/.installed-dev
	$(PY) -m mypy

# Every benchmark against its peer (DVC, MLflow, Metaflow, ZenML; each in benchmarks/.venvs/), one at a time.
bench: $(VENV)/.installed-dev
	@for peer in dvc mlflow metaflow zenml; do [ -d benchmarks/.venvs/$$peer ] || bash benchmarks/setup_$$peer.sh; done
	flock /tmp/loopml-bench.lock $(PY) benchmarks/bench_data.py
	flock /tmp/loopml-bench.lock $(PY) benchmarks/bench_tracking.py
	RUNS=100 flock /tmp/loopml-bench.lock $(PY) benchmarks/bench_server.py
	flock /tmp/loopml-bench.lock $(PY) benchmarks/bench_pipelines.py

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache
