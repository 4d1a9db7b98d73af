# salespulse — two commands: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Test files run in this many processes at once (pytest-xdist): most tests spend their time waiting on timeouts.
TEST_WORKERS ?= 2
# Fault runs at a time in `make reliability` (1 measures recovery times alone).
RELIABILITY_JOBS ?= 2

.PHONY: run test install lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/salespulse up --demo

test: install
	$(BIN)/python -m tests.setup_tools
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=25 -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

bench: install  ## every benchmark; writes docs/BENCHMARKS.md (generated section) and docs/benchmarks.png
	$(BIN)/python -m bench

lint: install
	$(BIN)/ruff check services schemas tests bench
	$(BIN)/mypy  # schemas/ and services/ (pyproject.toml: strict on services/scoring/domain/)

clean:
	rm -rf $(VENV) .salespulse

.PHONY: reliability
reliability: install  ## run the fault suite (real broker, PostgreSQL at 127.0.0.1:5432) and write docs/RELIABILITY.md
	$(BIN)/python -m tests.faults --jobs $(RELIABILITY_JOBS) --write docs/RELIABILITY.md

.PHONY: screens
screens: install  ## refresh docs/screens/*.png from a stack fed with the demo floor
	$(BIN)/python -m tests.setup_tools
	$(BIN)/python -m tests.e2e.screenshots
