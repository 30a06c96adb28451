# `make demo` runs the example pipeline; `make test` runs lint, types and the whole suite.
# Both create .venv on first use and reinstall when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/.installed: pyproject.toml plugins/prefect-ds-feather/pyproject.toml \
		$(wildcard plugins/prefect-ds-feather/src/prefect_ds_feather/*)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q ./plugins/prefect-ds-feather  # as a third party would
	touch $@

demo: $(BIN)/.installed
	$(BIN)/python examples/demo.py

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests benchmarks examples plugins
	$(BIN)/mypy

test: $(BIN)/.installed lint
	scripts/ensure-postgres
	$(BIN)/python -m pytest

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/io.py
	$(BIN)/python benchmarks/io_sql.py
	$(BIN)/python benchmarks/checkpoint.py
	$(BIN)/python benchmarks/memory.py

clean:
	rm -rf $(VENV) examples/output
