# One command each: `make run` serves MCP over stdio, `make test` runs the whole suite (PostgreSQL included).
# Both create the virtual environment in .venv when it is missing or pyproject.toml or constraints.txt changed,
# with the versions the suite was last run with (constraints.txt; regenerate it with `make constraints`).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv run test clean constraints

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]" -c constraints.txt
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

# After upgrading a dependency on purpose (.venv/bin/pip install -U NAME): record the versions, then remake
# budget_mcp/tools_list.json, which records the SDK's and pydantic's (tests/test_contract.py says how).
constraints: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable > constraints.txt
