# streamscore: `make demo` runs the service end to end; `make test` runs the checks.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint browser stunnel unit integration bench bench-latency bench-drift bench-memory clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/streamscore demo

lint: $(STAMP)
	$(BIN)/ruff check .

# the report and dashboard tests render HTML in Debian's headless chromium (Playwright drives it)
browser:
	@command -v chromium >/dev/null 2>&1 || { echo "installing Debian's chromium for the browser test"; \
	  apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q && apt-get install -y -q chromium; }; }

# the TLS tests put the embedded broker behind Debian's stunnel (the broker itself speaks plaintext only)
stunnel:
	@command -v stunnel >/dev/null 2>&1 || command -v stunnel4 >/dev/null 2>&1 || { echo "installing Debian's stunnel4 for the TLS tests"; \
	  apt-get install -y -q stunnel4 >/dev/null 2>&1 || { apt-get update -q && apt-get install -y -q stunnel4; }; }

test: lint browser stunnel
	$(BIN)/pytest

unit: $(STAMP)
	$(BIN)/pytest tests/unit

integration: $(STAMP)
	$(BIN)/pytest tests/integration

bench: $(STAMP)
	$(BIN)/python bench/throughput.py

bench-latency: $(STAMP)
	$(BIN)/python bench/latency.py

bench-drift: $(STAMP)
	$(BIN)/python bench/drift.py

bench-memory: $(STAMP)
	$(BIN)/python bench/memory.py

clean:
	rm -rf $(VENV) demo-output .streamscore .pytest_cache .ruff_cache
