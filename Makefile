# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv and install the pinned set (requirements.lock is used as pip constraints).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo-data

.PHONY: demo test test-fast e2e bench serve clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c requirements.lock torch==2.13.0
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/fada demo --out $(DEMO_DIR)

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m 'not slow'

# The browser test of the Prefect UI (headless Chromium from Debian; screenshots under pytest's tmp dir).
e2e: $(STAMP)
	bash infra/install-test-services.sh
	$(BIN)/python -m pytest -v tests/test_ui_browser.py

serve: $(STAMP)
	bash infra/prefect/serve-local.sh

bench: $(STAMP)
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/refilter.py
	$(BIN)/python benchmarks/reader.py

clean:
	rm -rf $(VENV) $(DEMO_DIR)
