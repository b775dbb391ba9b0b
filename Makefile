# Two commands matter: `make run` and `make test`. Both bootstrap .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SPEC ?= examples/digits.yaml

.PHONY: run test lint typecheck pytest bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,bench,ray]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/fedpilot run $(SPEC)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/aggregation.py
	$(BIN)/python benchmarks/sim_overhead.py
	$(BIN)/python benchmarks/mnist1d_vs_centralized.py
	$(BIN)/python benchmarks/aggregators.py
	$(BIN)/python benchmarks/fedprox_synthetic.py
	$(BIN)/python benchmarks/robustness.py
	$(BIN)/python benchmarks/selection.py
	$(BIN)/python benchmarks/strategies.py
	$(BIN)/python benchmarks/deploy_round_overhead.py
	$(BIN)/python benchmarks/compression.py --mnist1d-rounds 60 --digits-rounds 40
	$(BIN)/python benchmarks/secagg.py
	$(BIN)/python benchmarks/dp_utility.py

clean:
	rm -rf $(VENV) fedpilot-runs .pytest_cache .mypy_cache .ruff_cache
