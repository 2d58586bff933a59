# Set-up: `make serve` (venv + serving deps + server on :8000), `make test` (venv + all deps + tests) and
# `make wheel` (dist/fstcn-*.whl: the `fstcn` namespace with the default model, installable anywhere).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 0.0.0.0
PORT ?= 8000

.PHONY: serve test lint wheel venv-serve venv-dev clean mutation

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.serve-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[train,dev]'
	touch $@ $(VENV)/.serve-installed

venv-serve: $(VENV)/.serve-installed
venv-dev: $(VENV)/.dev-installed

serve: venv-serve
	$(BIN)/fstcn serve --host $(HOST) --port $(PORT)

test: venv-dev lint
	$(BIN)/python -m pytest -q

lint: venv-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	scripts/typecheck-tree build/typecheck
	MYPYPATH=build/typecheck $(BIN)/mypy -p fstcn.core -p fstcn.service

wheel: | $(BIN)/python
	$(BIN)/pip wheel -q --no-deps -w dist .

# Mutation testing in a scratch clone of HEAD, never in this checkout (docs/testing.md, "Mutation testing").
mutation:
	scripts/mutation

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
