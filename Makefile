# Two commands matter: `make run` and `make test`. Both bootstrap .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SPEC ?= examples/digits.yaml

DETECT_VENV := .venv-detect
DETECT_STAMP := $(DETECT_VENV)/.installed

DRIVING_DATA := data/driving

.PHONY: run run-detection test lint typecheck pytest pytest-detect services bench clean \
	$(DETECT_VENV)

# System tools tests drive for real: Prometheus (+ promtool) scrapes a federation and
# checks the alert rules; Chromium renders what a person looks at. Installed from Debian
# when missing (root, or passwordless sudo); PostgreSQL 15 is in the image already.
SERVICES_BIN := /usr/bin/prometheus /usr/bin/promtool /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(STAMP): pyproject.toml constraints/main.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,bench,ray]" -c constraints/main.txt
	touch $(STAMP)

# Object detection has its own virtualenv: Ultralytics needs torchvision, whose PyPI
# release needs torch 2.14 (a CUDA build of about 6 GB; the main .venv keeps 2.13 CPU).
$(DETECT_STAMP): pyproject.toml constraints/detection.txt
	test -x $(DETECT_VENV)/bin/python || $(PYTHON) -m venv $(DETECT_VENV)
	$(DETECT_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(DETECT_VENV)/bin/python -m pip install --quiet -e ".[detection,test]" \
		-c constraints/detection.txt
	touch $(DETECT_STAMP)

$(DETECT_VENV): $(DETECT_STAMP)

run: $(STAMP)
	$(BIN)/fedpilot run $(SPEC)

# Federated YOLO on the generated driving set: 3 learners (regions) × 5 rounds, on CPU.
run-detection: $(DETECT_STAMP)
	test -d $(DRIVING_DATA) || $(DETECT_VENV)/bin/fedpilot data make-driving $(DRIVING_DATA) \
		--learners 3 --images-per-learner 100 --val-images 60
	$(DETECT_VENV)/bin/fedpilot run examples/driving-yolo.yaml --report

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

typecheck: $(STAMP)
	$(BIN)/mypy

services:
	@missing=""; for b in $(SERVICES_BIN); do [ -x $$b ] || missing="$$missing $$b"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing from Debian:$$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
			prometheus chromium >/dev/null; \
	fi

pytest: $(STAMP) services
	$(BIN)/python -m pytest -n 2 --dist loadfile

# The tests marked `detection` (Ultralytics), in the detection virtualenv.
pytest-detect: $(DETECT_STAMP)
	$(DETECT_VENV)/bin/python -m pytest -m detection

test: lint typecheck pytest pytest-detect

bench: $(STAMP) $(DETECT_STAMP)
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
	$(BIN)/python benchmarks/serving.py
	$(BIN)/python benchmarks/drift.py
	$(BIN)/python benchmarks/tuning.py
	$(DETECT_VENV)/bin/python benchmarks/detection.py

clean:
	rm -rf $(VENV) $(DETECT_VENV) fedpilot-runs .pytest_cache .mypy_cache .ruff_cache
