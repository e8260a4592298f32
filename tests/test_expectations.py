"""Great Expectations suites (quality/expectations.py) on the reference month, and as Dagster checks.

The month is billed once with `billing run`; tests that plant a fault work on a copy of the
warehouse file. One GX context serves the whole process.
"""

from __future__ import annotations

import json

import dagster as dg
import pytest

from core.periods import month_window
from quality import expectations as gxq
from warehouse.store import Warehouse

from support import copy_warehouse, drop_reference_usage, query, reference_month_billed

OCTOBER = month_window("2026-10")
ALL = (*gxq.EVENTS_SUITES, *gxq.INVOICE_SUITES)


@pytest.fixture(scope="module")
def billed(tmp_path_factory):
    with reference_month_billed(tmp_path_factory, "expectations") as home:
        yield home / "warehouse.duckdb"


@pytest.fixture
def copy(billed, tmp_path):
    """A copy of the billed warehouse that a test may damage."""
    return copy_warehouse(billed, tmp_path)



def validate(path, tmp_path, suites=ALL, run_id="test-run") -> dict[str, gxq.SuiteResult]:
    results = gxq.run_suites(Warehouse(duckdb_path=path), OCTOBER, suites, tmp_path / "home", run_id)
    return {r.suite: r for r in results}


def failure(result: gxq.SuiteResult, expectation_type: str, column: str) -> dict:
    found = [f for f in result.failures if f["type"] == expectation_type and column in f["columns"]]
    assert len(found) == 1, result.failures
    return found[0]


def test_the_suites_pass_on_the_reference_month_and_keep_their_results(copy, tmp_path):
    results = validate(copy, tmp_path, run_id="run-1")
    assert list(results) == ["raw_events", "fct_invoices", "fct_invoice_lines", "fct_invoice_line_tiers"]
    for name, result in results.items():
        assert result.success, (name, result.failures)
        assert result.rows > 0 and result.evaluated >= 10
        assert result.path == tmp_path / "home" / "quality" / "validations" / "2026-10" / "run-1" / f"{name}.json"
        doc = json.loads(result.path.read_text())
        assert doc["success"] is True and doc["suite_name"] == name
        assert doc["statistics"]["evaluated_expectations"] == result.evaluated
        assert doc["meta"]["billing"] | {"failures": None} == {
            "suite": name, "table": result.table, "period": "2026-10", "run_id": "run-1",
            "rows_validated": result.rows, "failures": None}
        assert result.html_path.is_file() and "https://cdn" not in result.html_path.read_text()
    assert results["raw_events"].rows == 22  # every reference event, incl. the two just outside the month
    assert gxq.findings(list(results.values())) == []


def test_faults_are_named_with_their_rows(copy, tmp_path):
    query(copy, "update raw.events set quantity = -5 where event_id = 'c2-api-1'")
    query(copy, "insert into marts.fct_invoice_lines select * from marts.fct_invoice_lines "
                "where billing_account_id = 'C5'")
    query(copy, "update marts.fct_invoices set currency = 'XXX' where billing_account_id = 'C4'")
    results = validate(copy, tmp_path)
    assert not any(r.success for r in results.values() if r.suite != "fct_invoice_line_tiers")

    negative = failure(results["raw_events"], "expect_column_values_to_be_between", "quantity")
    assert negative["unexpected_values"] == ["-5.000000000"]
    assert [(r["event_id"], r["customer_id"], r["quantity"]) for r in negative["rows"]] == [
        ("c2-api-1", "C2", "-5.000000000")]
    assert len(results["raw_events"].failures) == 1

    [line_id] = query(copy, "select distinct line_id from marts.fct_invoice_lines where billing_account_id = 'C5'")
    twice = failure(results["fct_invoice_lines"], "expect_column_values_to_be_unique", "line_id")
    assert twice["unexpected_count"] == 2 and {r["line_id"] for r in twice["rows"]} == {line_id[0]}

    currency = failure(results["fct_invoices"], "expect_column_values_to_be_in_set", "currency")
    assert currency["unexpected_values"] == ["XXX"]
    assert [r["billing_account_id"] for r in currency["rows"]] == ["C4"]
    # ... and the EUR line under the XXX invoice is still EUR, no other invoice fault
    assert [f["type"] for f in results["fct_invoices"].failures] == ["expect_column_values_to_be_in_set"]

    doc = json.loads(results["raw_events"].path.read_text())
    assert doc["success"] is False
    assert [f["expectation"] for f in doc["meta"]["billing"]["failures"]] == [negative["expectation"]]

    rows = gxq.findings(list(results.values()))
    assert {(f["suite"], f.get("customer_id"), f.get("line_id")) for f in rows} == {
        ("raw_events", "C2", None), ("fct_invoice_lines", "C5", line_id[0]), ("fct_invoices", "C4", None)}
    assert any("quantity=-5.000000000" in f["detail"] and "c2-api-1" in f["detail"] for f in rows)


def test_amounts_are_compared_as_exact_decimals(copy, tmp_path):
    # 2489.135 is 2489.13499999... as a binary float: only exact decimals round it to 2489.14,
    # which is not the line's 2489.13.
    query(copy, "update marts.fct_invoice_lines set amount_unrounded = 2489.135 where amount = 2489.13")
    query(copy, "update marts.fct_invoice_line_tiers set units = -0.000000001 where tier_number = 2")
    results = validate(copy, tmp_path, suites=gxq.INVOICE_SUITES)
    wrong = failure(results["fct_invoice_lines"], "expect_column_pair_values_to_be_equal", "amount")
    assert [(r["amount"], r["amount_expected"], r["billing_account_id"]) for r in wrong["rows"]] == [
        ("2489.1300", "2489.140000000000", "C1")]
    tier = failure(results["fct_invoice_line_tiers"], "expect_column_values_to_be_between", "units")
    assert tier["unexpected_values"] == ["-0.000000001"]


def test_a_total_with_more_decimals_than_its_currency_and_a_line_outside_the_month(copy, tmp_path):
    query(copy, "update marts.fct_invoices set total = total + 0.001 where billing_account_id = 'C3'")
    query(copy, "update marts.fct_invoice_lines set segment_start = date '2026-09-30' where product_id = 'SMS'")
    results = validate(copy, tmp_path, suites=gxq.INVOICE_SUITES)
    decimals = failure(results["fct_invoices"], "expect_column_pair_values_a_to_be_greater_than_b", "total_decimals")
    assert [(r["billing_account_id"], r["minor_units"], r["total_decimals"]) for r in decimals["rows"]] == [
        ("C3", 2, 3)]
    early = failure(results["fct_invoice_lines"], "expect_column_values_to_be_between", "segment_start")
    assert [(r["product_id"], r["segment_start"]) for r in early["rows"]] == [("SMS", "2026-09-30")]


def test_dagster_checks_name_failures_link_results_and_write_findings(billing_env):
    from core.config import load_settings
    from pipelines.definitions import build_defs

    defs = build_defs(load_settings())
    drop_reference_usage(billing_env / "inbox")
    result = dg.materialize([*defs.assets, *defs.asset_checks], partition_key="2026-10-01",
                            resources=defs.resources, instance=dg.DagsterInstance.ephemeral())
    assert result.success
    checks = {ev.check_name: ev for ev in result.get_asset_check_evaluations()}
    for name, key in (("events_expectations", "staging/stg_usage__events"),
                      ("invoice_expectations", "marts/fct_invoices")):
        check = checks[name]
        assert check.passed and check.severity == dg.AssetCheckSeverity.ERROR, check.description
        assert check.asset_key.to_user_string() == key
        folder = billing_env / "quality" / "validations" / "2026-10" / result.run_id
        assert check.metadata["validation_results"].value == str(folder)
    for suite in ALL:
        path = billing_env / "quality" / "validations" / "2026-10" / result.run_id / f"{suite}.json"
        assert path.is_file()
    assert checks["events_expectations"].metadata["raw_events_result"].value.endswith("raw_events.json")

    # A negative quantity planted in the events: the events check fails, names it and records it.
    warehouse = billing_env / "warehouse.duckdb"
    query(warehouse, "update raw.events set quantity = -1 where event_id = 'c4-api-1'")
    # Only the events check runs, for the month's partition (the check is partitioned like its asset).
    events_check = dg.AssetCheckKey(dg.AssetKey(["staging", "stg_usage__events"]), "events_expectations")
    # (Dagster finds a run's month from the assets it selects, not from its checks: the issuing of the
    # month, which issues nothing here, comes along to carry the partition.)
    rerun = dg.materialize([*defs.assets, *defs.asset_checks], partition_key="2026-10-01",
                           resources=defs.resources, instance=dg.DagsterInstance.ephemeral(),
                           selection=dg.AssetSelection.checks(events_check)
                           | dg.AssetSelection.assets(dg.AssetKey(["ledger", "issued_invoices"])))
    [events] = rerun.get_asset_check_evaluations()
    assert not events.passed
    [failed] = events.metadata["failed_expectations"].value
    assert failed["expectation"].startswith("expect_column_values_to_be_between(column=quantity")
    assert [(r["event_id"], r["quantity"]) for r in failed["rows"]] == [("c4-api-1", "-1.000000000")]
    assert query(warehouse, "select check_name, severity, customer_id, run_id from marts.quality_findings "
                            "where check_name like '%expectations' order by 1") == [
        ("events_expectations", "error", "C4", rerun.run_id)]


def test_an_issued_or_voided_invoice_is_a_known_status_an_unknown_one_is_not(copy, tmp_path):
    """A month rerun after issuing shows its invoices issued (or void): statuses of core/enums.py."""
    query(copy, "update marts.fct_invoices set status = 'issued' where billing_account_id = 'C1'")
    query(copy, "update marts.fct_invoices set status = 'void' where billing_account_id = 'C2'")
    assert validate(copy, tmp_path, ("fct_invoices",))["fct_invoices"].success
    query(copy, "update marts.fct_invoices set status = 'paid' where billing_account_id = 'C3'")
    result = validate(copy, tmp_path, ("fct_invoices",))["fct_invoices"]
    assert failure(result, "expect_column_values_to_be_in_set", "status")["unexpected_values"] == ["paid"]
