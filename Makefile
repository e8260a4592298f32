# The two commands a new user runs: `make demo` and `make test`. Both set everything up first,
# on a machine that has nothing but Python 3.11+: a virtualenv, uv inside it, the locked
# dependencies, and the dbt manifest Dagster reads.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.8

# No usage-stats calls to the outside: dbt, Dagster, Great Expectations.
export DBT_SEND_ANONYMOUS_USAGE_STATS := false
export DO_NOT_TRACK := 1
export GX_ANALYTICS_ENABLED := false
export DAGSTER_DISABLE_TELEMETRY := true
export UV_PROJECT_ENVIRONMENT := $(VENV)
# Byte-compile the dependencies once at install: every `billing` command, test and Dagster process then
# loads them instead of compiling dbt, Dagster, Polars... again (where PYTHONDONTWRITEBYTECODE is set,
# each process would: about 2 CPU s of a `billing run`).
export UV_COMPILE_BYTECODE := 1

DBT_SOURCES := $(shell find dbt_project/models dbt_project/macros dbt_project/tests -type f 2>/dev/null) dbt_project/dbt_project.yml

.PHONY: setup demo test lint bench bench-desk serve dev docs clean

$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# With the `spark` extra (dbt-spark + pyspark, the Spark engine and its test tier: docs/scale.md);
# without it, `uv sync --frozen` installs the rest and the Spark tests are skipped.
$(VENV)/.synced: $(BIN)/uv pyproject.toml uv.lock
	$(BIN)/uv sync --frozen --quiet --extra spark
	@touch $@

dbt_project/target/manifest.json: $(VENV)/.synced $(DBT_SOURCES)
	cd dbt_project && DBT_PROFILES_DIR=. BILLING_DUCKDB_PATH=target/parse.duckdb ../$(BIN)/dbt parse --quiet

setup: $(VENV)/.synced dbt_project/target/manifest.json

demo: setup  ## generate the demo dataset and bill its last month on DuckDB
	$(BIN)/billing demo

test: setup lint  ## every test: unit, pipeline, Dagster definitions, PostgreSQL, Spark
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check .

bench: setup  ## throughput and memory per stage; EVENTS=10000000 make bench; ENGINES=duckdb,spark make bench
	$(BIN)/python -m bench.run --events $${EVENTS:-1000000} --engines $${ENGINES:-duckdb}

bench-desk: setup  ## how fast the review desk's pages answer on the demo month (after make demo)
	$(BIN)/python -m bench.desk

serve: setup  ## the review desk on http://127.0.0.1:8000 (README: Review desk)
	$(BIN)/billing serve

dev: setup  ## the Dagster UI on http://127.0.0.1:3000
	mkdir -p .dagster_home && DAGSTER_HOME=$(CURDIR)/.dagster_home $(BIN)/dagster dev -w workspace.yaml

# dbt docs (models, columns, tests, lineage graph), offline: the catalog is read from a scratch DuckDB
# (dbt_project/target/docs.duckdb) that holds the raw schema and every model built empty (`--empty`).
DOCS_DB := target/docs.duckdb
DOCS_DBT := cd dbt_project && DBT_PROFILES_DIR=. BILLING_DBT_TARGET=duckdb BILLING_DUCKDB_PATH=$(DOCS_DB) ../$(BIN)/dbt
DOCS_VARS := --vars '{period_start: "2026-01-01", period_end: "2026-02-01"}'

docs: setup  ## dbt docs into dbt_project/target (index.html, manifest.json, catalog.json)
	rm -f dbt_project/$(DOCS_DB) dbt_project/$(DOCS_DB).wal
	$(BIN)/python -c "from pathlib import Path; from warehouse.store import Warehouse; Warehouse(duckdb_path=Path('dbt_project/$(DOCS_DB)')).ensure_schema()"
	$(DOCS_DBT) run --empty --quiet $(DOCS_VARS)
	$(DOCS_DBT) docs generate --quiet $(DOCS_VARS)
	@echo "dbt docs: $(CURDIR)/dbt_project/target/index.html"
	@echo "serve them: cd dbt_project && DBT_PROFILES_DIR=. BILLING_DUCKDB_PATH=$(DOCS_DB) ../$(BIN)/dbt docs serve --port 8080 --no-browser"
	@echo "        or: $(BIN)/python -m http.server 8080 --bind 127.0.0.1 --directory dbt_project/target  (then http://127.0.0.1:8080)"

clean:
	rm -rf $(VENV) dbt_project/target data .dagster_home
