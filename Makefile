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

DBT_SOURCES := $(shell find dbt_project/models dbt_project/macros dbt_project/tests -type f 2>/dev/null) dbt_project/dbt_project.yml

.PHONY: setup demo test lint bench dev docs clean

$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: $(BIN)/uv pyproject.toml uv.lock
	$(BIN)/uv sync --frozen --quiet
	@touch $@

dbt_project/target/manifest.json: $(VENV)/.synced $(DBT_SOURCES)
	cd dbt_project && DBT_PROFILES_DIR=. BILLING_DUCKDB_PATH=target/parse.duckdb ../$(BIN)/dbt parse --quiet

setup: $(VENV)/.synced dbt_project/target/manifest.json

demo: setup  ## generate the demo dataset and bill its last month on DuckDB
	$(BIN)/billing demo

test: setup lint  ## every test: unit, pipeline, Dagster definitions, PostgreSQL
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check .

bench: setup  ## throughput and memory per stage; EVENTS=10000000 make bench
	$(BIN)/python -m bench.run --events $${EVENTS:-1000000}

dev: setup  ## the Dagster UI on http://127.0.0.1:3000
	mkdir -p .dagster_home && DAGSTER_HOME=$(CURDIR)/.dagster_home $(BIN)/dagster dev -w workspace.yaml

clean:
	rm -rf $(VENV) dbt_project/target data .dagster_home
