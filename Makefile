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
	$(BIN)/tritonload bench --demo --target-rps 5000 --output reports/demo --force

test: setup
	$(BIN)/pytest

# Import contracts (pyproject.toml) are checked on the package as it installs: analysis/ and
# locustfiles/ become tritonload.analysis and tritonload.locustfiles only there.
lint: setup
	$(BIN)/ruff check tritonload analysis tests locustfiles benchmarks
	rm -rf build/lint-pkg
	$(BIN)/pip install --quiet --no-deps --no-build-isolation --target build/lint-pkg .
	cd build/lint-pkg && $(CURDIR)/$(BIN)/lint-imports --config $(CURDIR)/pyproject.toml

clean:
	rm -rf $(VENV) runs reports build
