# Shockproof — two commands on a fresh machine: `make demo` and `make test`.
# Both bootstrap themselves: a .venv, an editable install refreshed whenever
# pyproject.toml changes, and the system servers the tests need.

PYTHON   ?= python3
VENV     ?= .venv
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.installed
PACKAGES := resilience telemetry fault_injection demo_app
PYTEST_ARGS ?=

.PHONY: help venv system-deps test lint typecheck pytest bench chaos soak demo clean

help:
	@echo "make demo    run the demo stack (upstream, app, viewer)"
	@echo "make test    lint, type-check and run the whole test suite"
	@echo "make bench   run the benchmarks (prints ratios)"
	@echo "make chaos   the stateful chaos test with the deep profile"
	@echo "make soak    reliability figures under load and faults (bench/results/soak.md)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,redis]'
	@touch $(STAMP)

venv: $(STAMP)

# Servers and browsers the tests start themselves. Installed from Debian when
# missing and we are allowed to (root); otherwise we say what is missing.
system-deps:
	@sh .ci/system-deps.sh

lint: venv
	$(BIN)/ruff check .

typecheck: venv
	$(BIN)/mypy $(PACKAGES)

# coverage runs pytest itself (not pytest-cov): the fault-injection pytest plugin is
# loaded from an entry point before pytest-cov would start measuring.
pytest: venv system-deps
	$(BIN)/coverage run -m pytest $(PYTEST_ARGS)
	$(BIN)/coverage report

test: lint typecheck pytest

bench: venv
	$(BIN)/python -m bench

chaos: venv system-deps
	SHOCKPROOF_CHAOS_PROFILE=chaos $(BIN)/python -m pytest -q -p no:cacheprovider tests/proof/test_chaos.py -k keeps_its_promises

soak: venv
	$(BIN)/python -m bench.soak

demo: venv
	$(BIN)/python -m demo_app

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov
