"""dbt's unit tests (the `unit_tests:` of dbt_project/models): the rate hierarchy's precedence across
effective dates, the pricing models at their tier boundaries. A month's `dbt build` leaves them out
(dbt_project/selectors.yml: the data does not change the SQL); they run here, on DuckDB, against a
scratch warehouse whose models are built empty (dbt needs their columns to type the fixtures)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from warehouse.store import Warehouse

from support import ROOT

PROJECT = ROOT / "dbt_project"
VARS = json.dumps({"period_start": "2026-10-01", "period_end": "2026-11-01"})
EXPECTED = {"rate_hierarchy_precedence_across_effective_dates", "pricing_models_at_tier_boundaries",
            "last_quantity_is_the_latest_event_with_tie_breaks"}


def dbt(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp), "DBT_PROFILES_DIR": str(PROJECT),
           "BILLING_DBT_TARGET": "duckdb", "BILLING_DUCKDB_PATH": str(tmp / "unit.duckdb"),
           "DBT_TARGET_PATH": str(tmp / "target"), "DBT_LOG_PATH": str(tmp / "logs"),
           "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DO_NOT_TRACK": "1"}
    return subprocess.run([str(Path(sys.executable).parent / "dbt"), *args, "--vars", VARS], cwd=PROJECT, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def unit_results(tmp_path_factory) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("dbt-unit")
    Warehouse(duckdb_path=tmp / "unit.duckdb").ensure_schema()
    built = dbt(tmp, "run", "--empty", "--quiet")
    assert built.returncode == 0, built.stdout + built.stderr
    tested = dbt(tmp, "test", "--select", "test_type:unit")
    results = json.loads((tmp / "target" / "run_results.json").read_text())["results"]
    by_name = {r["unique_id"].split(".")[-1]: r for r in results if r["unique_id"].startswith("unit_test.")}
    assert tested.returncode == 0 or by_name, tested.stdout + tested.stderr
    return by_name


def test_every_unit_test_passes(unit_results):
    assert EXPECTED <= set(unit_results), sorted(unit_results)
    failed = {name: r["message"] for name, r in unit_results.items() if r["status"] != "pass"}
    assert failed == {}, "\n\n".join(f"{name}:\n{message}" for name, message in failed.items())


def test_a_months_build_leaves_the_unit_tests_out(tmp_path):
    listed = dbt(tmp_path, "ls", "--select", "test_type:unit", "--quiet")
    assert listed.returncode == 0 and "unit_test:billing_warehouse.rate_hierarchy" in listed.stdout
    # no selection: the default selector (selectors.yml), what `billing run` and Dagster's month build
    month = dbt(tmp_path, "ls", "--resource-type", "all", "--quiet")
    assert month.returncode == 0
    assert "rate_hierarchy" not in month.stdout and "fct_invoices" in month.stdout
    assert "grain_int_billable_days_rated" in month.stdout  # the grain tests do run with the month
