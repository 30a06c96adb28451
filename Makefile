# `make demo` runs the example pipeline; `make test` runs lint, types, the whole suite, the
# planted mutants (scripts/planted-mutants) and the published-figures check.
# `make mutate` is the full mutation run (slow; see docs/mutation.md).
# All create .venv on first use and reinstall when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean mutate mutate-fast docs-check

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
	$(MAKE) mutate-fast docs-check

# Each planted bug of a fixed list must be killed by the suite (about 4 minutes).
mutate-fast: $(BIN)/.installed
	$(BIN)/python scripts/planted-mutants

# Every mutant cosmic-ray makes of the modules that carry promises (hours on 2 cores);
# MODULES=name,... runs some of them (see scripts/mutate --list).
mutate: $(BIN)/.installed
	$(BIN)/python scripts/mutate $(if $(MODULES),--modules $(MODULES))

# Every figure in README.md and docs/ against the benchmark and test outputs it quotes.
docs-check: $(BIN)/.installed
	$(BIN)/python scripts/docs-check

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/io.py
	$(BIN)/python benchmarks/durability.py
	$(BIN)/python benchmarks/io_sql.py
	$(BIN)/python benchmarks/checkpoint.py
	$(BIN)/python benchmarks/memory.py

clean:
	rm -rf $(VENV) examples/output
