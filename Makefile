# contimg-console — the two set-up commands are `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP_RUN  := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test
PYTEST_ARGS ?=

.PHONY: run demo console test test-all bench binary lint clean testdata

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(STAMP_TEST): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(STAMP_RUN)

## Open the console on the default data dir (~/.local/share/contimg).
run: $(STAMP_RUN)
	$(BIN)/contimg

console: run

## The console in demo mode: its own data dir, fed by the simulator (see README).
demo: $(STAMP_RUN)
	$(BIN)/contimg demo

## Real interferometer data for the real-data tests (VLA NGC5921 from the casadata wheel), fetched once.
## A failed download only warns: those tests then skip and say why.
testdata: $(STAMP_TEST)
	@$(BIN)/python tests/data/fetch_ngc5921.py || echo "warning: NGC5921 not fetched; the real-data tests will skip" >&2

## Run the default test suite (everything not marked slow).
test: $(STAMP_TEST) testdata
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## Run every test, including the slow soak/chaos/full-size ones.
test-all: $(STAMP_TEST) testdata
	$(BIN)/python -m pytest -m "" $(PYTEST_ARGS)

## Run the benchmarks (each prints its figures and ratios to the reference measured in the same run).
bench: $(STAMP_TEST)
	@set -e; for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b; done

## One-file executable dist/contimg (PyInstaller; see packaging/README.md). Needs no virtualenv on the host.
binary: $(STAMP_TEST)
	$(BIN)/pyinstaller --noconfirm --clean --distpath dist --workpath build/pyinstaller packaging/binary/contimg.spec

lint: $(STAMP_TEST)
	$(BIN)/lint-imports --config pyproject.toml

clean:
	rm -rf $(VENV) build dist *.egg-info
