# The README's two commands: `make demo` (the main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: setup
	$(BIN)/tritonload bench --output reports/demo --force

test: setup
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check tritonload analysis tests locustfiles benchmarks

clean:
	rm -rf $(VENV) runs reports
