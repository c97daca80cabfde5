# Cashcycle: the two commands a new user needs are `make demo` and `make test`.
# Each sets itself up: a tool venv with uv, then the project venv from the lock file (uv.lock).

PYTHON ?= python3
TOOLS  := .tools
UV     := $(TOOLS)/bin/uv
VENV   := .venv
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(PYTHON)

.PHONY: demo up test lint typecheck bench bench-ledger bench-pages sync clean browser vendor

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==0.13.8

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --quiet --compile-bytecode
	touch $@

sync: $(VENV)/.synced

## Start Cashcycle locally with demo data (Temporal dev server, worker, API); Ctrl-C stops it.
demo: sync
	$(VENV)/bin/cashcycle up --demo $(ARGS)

## Start Cashcycle locally without demo data.
up: sync
	$(VENV)/bin/cashcycle up $(ARGS)

## Lint, type-check and run the whole test suite.
# Two worker processes (pytest-xdist), each with its own Temporal dev server; one file stays on one worker
# (--dist loadfile), so that a module's shared stack is started once. TEST_WORKERS=0 runs in this process.
TEST_WORKERS ?= 2
test: sync browser lint typecheck
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

## The browser tests drive Debian's Chromium (never a downloaded one): installed here when it is missing.
CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium fonts-dejavu-core >/dev/null; }

## Re-copy the pinned JavaScript the pages use (ui/package.json) into ui/static/vendor/ (committed).
vendor:
	cd ui && npm ci --no-audit --no-fund
	cp ui/node_modules/htmx.org/dist/htmx.min.js ui/static/vendor/htmx.min.js
	cp ui/node_modules/axe-core/axe.min.js ui/static/vendor/axe.min.js

lint: sync
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: sync
	$(VENV)/bin/mypy workflows activities api demo portal_sim worker.py bench

## Benchmarks (figures printed, compared with their baselines in the same run).
bench: sync
	$(VENV)/bin/python bench/lifecycle.py $(ARGS)

## Page speed with 10,000 open invoices: inbox, invoice page and control tower beside their JSON calls (p50/p95).
bench-pages: sync
	$(VENV)/bin/python bench/pages.py $(ARGS)

## Evidence ledger figures on the local PostgreSQL (appends, verification of 1M entries, a 100k pack).
bench-ledger: sync
	$(VENV)/bin/python bench/ledger.py $(ARGS)

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache
