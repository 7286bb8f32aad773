# One command each: `make run` serves MCP over stdio, `make test` runs the whole suite (PostgreSQL included).
# Both create the virtual environment in .venv when it is missing or pyproject.toml changed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv run test clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	@touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	@$(BIN)/budget-mcp

# One worker per CPU (pytest-xdist); each worker starts its own throwaway PostgreSQL and PgBouncer.
WORKERS ?= auto

test: $(STAMP)
	$(BIN)/python -m pytest -n $(WORKERS) $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info
