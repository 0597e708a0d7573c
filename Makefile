# Set-up and everyday commands. `make demo` and `make test` each install first if needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-slow check bench docs clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: install
	bash scripts/demo.sh

test: install
	$(BIN)/python -m pytest -q -m "not slow" --durations=10

test-slow: install
	$(BIN)/python -m pytest -q -m slow

check: install
	$(BIN)/ruff check seq2seq tests scripts bench

bench: install
	$(BIN)/python -m bench.bench

docs: install  # regenerate docs/cli.md and docs/config.md from the code
	$(BIN)/python scripts/cli_docs.py
	$(BIN)/python scripts/config_docs.py

clean:
	rm -rf runs/toy .pytest_cache
