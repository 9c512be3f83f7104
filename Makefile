# Everything starts from nothing: the first target that needs the venv builds it.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-versions lint typecheck unit bench docs lock clean

$(STAMP): requirements/dev.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/dev.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/document_pipeline.py

test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/pyright src examples

# The typing cases run mypy as a command: the venv's bin comes first on PATH.
unit: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest

# The unit suite on every other supported Python this machine has (pyenv's
# shims only expose the global one, so look in its versions folder too).
test-versions:
	@for version in 3.12 3.13; do \
		python=""; \
		if python$$version -c '' >/dev/null 2>&1; then python=$$(command -v python$$version); fi; \
		[ -n "$$python" ] || python=$$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/$$version.*/bin/python$$version 2>/dev/null | tail -n 1); \
		if [ -z "$$python" ]; then echo "test-versions: no Python $$version here, not tested"; continue; fi; \
		echo "test-versions: Python $$version ($$python)"; \
		$$python -m venv .venv-$$version && \
		.venv-$$version/bin/python -m pip install --quiet --upgrade pip && \
		.venv-$$version/bin/python -m pip install --quiet --require-hashes -r requirements/dev.lock && \
		.venv-$$version/bin/python -m pip install --quiet --no-deps -e . && \
		PATH="$(CURDIR)/.venv-$$version/bin:$$PATH" .venv-$$version/bin/pytest || exit 1; \
	done

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -d site

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# Re-pin the locked versions (needs the uv tool, e.g. `pip install uv`).
lock:
	uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 \
		--generate-hashes --no-emit-package stagefx -o requirements/dev.lock

clean:
	rm -rf $(VENV) .venv-3.*
