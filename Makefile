# floodsite: `make run` sets up and serves the site, `make test` runs the whole suite and
# `make test-fast` all but the tests marked slow.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: run setup test test-fast lint format bench ci clean screenshots chromium nginx

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Stamps make a second `make run` skip pip entirely unless the requirements changed.
$(VENV)/.runtime: requirements.txt | $(PY)
	$(PIP) install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements-dev.txt requirements.txt | $(PY)
	$(PIP) install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

setup: $(VENV)/.runtime
	$(PY) manage.py setup_site

run: setup
	$(PY) manage.py run_site

# The browser tests drive Debian's Chromium (never a browser downloaded by Playwright).
chromium:
	@command -v /usr/bin/chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	  else echo "The browser tests need Debian's Chromium: sudo apt-get install chromium"; exit 1; fi; }

# The proxy test runs Debian's nginx in front of gunicorn, as a process of its own (the
# package's system service, if any, is not used).
nginx:
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx; \
	  else echo "The proxy test needs Debian's nginx: sudo apt-get install nginx"; exit 1; fi; }

test: $(VENV)/.dev chromium nginx
	$(PY) -m pytest

# Leaves out what starts a browser, a server, a worker or trains a model: for the edit-test
# loop; `make test` (and CI) still runs everything.
test-fast: $(VENV)/.dev
	$(PY) -m pytest -m "not slow"

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

format: $(VENV)/.dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# `make bench BENCH_ARGS="--only api"` refreshes one section of docs/benchmarks.md.
bench: $(VENV)/.dev
	$(PY) bench/run.py $(BENCH_ARGS)

ci:
	bash .ci/run

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache

screenshots: $(VENV)/.dev chromium
	FLOODSITE_SCREENSHOTS=docs/screenshots $(PY) -m pytest tests/browser -q
