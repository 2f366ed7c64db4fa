# Ledgerline: `make demo` runs the demo, `make test` runs the tests.
# Both create .venv and install the pinned dependencies first.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test install clean-demo lint

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Ledgerline needs $(PYTHON) on PATH (set PYTHON=...)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## demo: migrate, load demo data, start a django-q2 worker and the web server on 127.0.0.1:8000
demo: install
	DEBUG=1 bash scripts/demo.sh

## test: run the whole suite (SQLite by default; DATABASE_URL=postgres://... runs it on PostgreSQL)
test: install
	$(VENV)/bin/pytest $(PYTEST_ARGS)

## lint: ruff's default rules (pyflakes and the pycodestyle errors), ruff's formatting, mypy
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

clean-demo:
	rm -rf var/
