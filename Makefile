# streamscore: `make demo` runs the service end to end; `make test` runs the checks.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# the locks: requirements-dev.txt is the runtime and dev dependencies resolved together (what
# `make install` and CI install); requirements.txt is the runtime part of it, the same versions
# (what the image installs). `make lock` recompiles both from pyproject.toml.
LOCK_FLAGS := --python-version 3.11 --python-platform x86_64-unknown-linux-gnu --custom-compile-command "make lock"

.PHONY: install lock state-key deploy-tools stunnel demo test test-busy lint docs browser unit integration bench bench-roles bench-latency bench-drift bench-memory bench-alerts clean

$(STAMP): pyproject.toml requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# keeps the versions already locked where pyproject.toml still admits them; `make lock UPGRADE=1` moves
# all; LOCK_DIR: where the locks are read and written (tests/unit/test_lock.py recompiles copies)
LOCK_DIR ?= .
lock: $(STAMP)
	$(BIN)/uv pip compile --quiet pyproject.toml --extra dev $(LOCK_FLAGS) $(if $(UPGRADE),--upgrade) \
	  -o $(LOCK_DIR)/requirements-dev.txt
	$(BIN)/uv pip compile --quiet pyproject.toml -c $(LOCK_DIR)/requirements-dev.txt $(LOCK_FLAGS) \
	  -o $(LOCK_DIR)/requirements.txt

demo: $(STAMP)
	$(BIN)/streamscore demo

lint: $(STAMP)
	$(BIN)/ruff check .

# the manual as a site, from docs/ into site/ (mkdocs.yml); --strict: a broken link, a missing page or
# one left out of the nav fails it. tests/unit/test_docs.py runs the same build, so `make test` does.
# NO_MKDOCS_2_WARNING: Material's notice about its successor, printed on every build
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# the report and dashboard tests render HTML in Debian's headless chromium (Playwright drives it)
browser:
	@command -v chromium >/dev/null 2>&1 || { echo "installing Debian's chromium for the browser test"; \
	  apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q && apt-get install -y -q chromium; }; }

# Debian's tools that check the deploy files in `make test`: docker-compose (1.29; `config` parses a
# compose file without an engine) and prometheus (promtool; the server the alert test runs on loopback)
deploy-tools:
	@command -v docker-compose >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || { \
	  echo "installing Debian's docker-compose and prometheus for the deploy checks"; \
	  apt-get install -y -q docker-compose prometheus >/dev/null 2>&1 || { apt-get update -q && \
	  apt-get install -y -q docker-compose prometheus; }; }

# the compose stack's state key (a secret mounted into the worker): made once, never overwritten. The
# directory is private; the file is readable because Docker mounts it as it is for the worker's uid
state-key: deploy/secrets/state.key
deploy/secrets/state.key:
	mkdir -p -m 700 deploy/secrets
	$(PYTHON) -c 'import secrets; print(secrets.token_hex(32))' > $@
	chmod 644 $@

# the TLS tests put the embedded broker behind Debian's stunnel (the broker itself speaks plaintext only)
stunnel:
	@command -v stunnel >/dev/null 2>&1 || command -v stunnel4 >/dev/null 2>&1 || { echo "installing Debian's stunnel4 for the TLS tests"; \
	  apt-get install -y -q stunnel4 >/dev/null 2>&1 || { apt-get update -q && apt-get install -y -q stunnel4; }; }

test: lint browser deploy-tools stunnel
	$(BIN)/pytest -n 3 --dist loadfile

# the integration suite with a process holding one core at 100% for the whole run (tests/cpu_hog.py):
# a test that passes only on a quiet machine fails here. The hog stops with pytest, pass or fail
test-busy: browser deploy-tools stunnel $(STAMP)
	$(BIN)/pytest tests/integration -n 2 --dist loadfile --cpu-hog

# no Kafka, no Debian tools, no network: the tests marked `tools` (docker-compose, promtool, the
# package index) run in `make test`
unit: $(STAMP)
	$(BIN)/pytest tests/unit -m "not tools"

integration: $(STAMP)
	$(BIN)/pytest tests/integration

bench: $(STAMP)
	$(BIN)/python bench/throughput.py

# every role against score only, Quix and raw in one run; exits 1 if every role costs more than 10%
bench-roles: $(STAMP)
	$(BIN)/python bench/throughput.py --contenders quix,raw,streamscore_batch,streamscore_all --fail-if-roles-cost 10

bench-latency: $(STAMP)
	$(BIN)/python bench/latency.py

bench-drift: $(STAMP)
	$(BIN)/python bench/drift.py

bench-memory: $(STAMP)
	$(BIN)/python bench/memory.py

# every alert's false-alarm rate and detection delay, in process (docs/alerts.md)
bench-alerts: $(STAMP)
	$(BIN)/python bench/alerts.py

clean:
	rm -rf $(VENV) demo-output site .streamscore .pytest_cache .ruff_cache
