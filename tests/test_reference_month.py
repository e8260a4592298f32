"""The reference month (../shared/scenarios/reference-month.md), through the real pipeline.

Files are dropped into the upload inbox, Dagster materializes the 2026-10 partition (collect,
normalize, catalog, dbt, checks) into a temporary DuckDB file, and every number of the
specification is asserted. Then the month is re-run, and the Globex file delivered again through
another collector: nothing may change.
"""

from __future__ import annotations

import shutil
from decimal import Decimal

import dagster as dg
import duckdb
import pytest

from collectors.landing import land_file
from core.config import load_settings
from warehouse.store import open_warehouse

from support import REFERENCE, billing_env, drop_reference_usage, new_home

D = Decimal
PARTITION = "2026-10-01"


def materialize_october():
    from pipelines.definitions import build_defs

    defs = build_defs(load_settings())  # the code location for this test's home: its `billing` resource
    return dg.materialize([*defs.assets, *defs.asset_checks], partition_key=PARTITION, resources=defs.resources,
                          instance=dg.DagsterInstance.ephemeral())


def query(sql: str, params=None) -> list[tuple]:
    con = duckdb.connect(str(load_settings().duckdb_path))
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def snapshot() -> dict[str, list[tuple]]:
    tables = {"fct_invoices": "invoice_id", "fct_invoice_lines": "line_id",
              "fct_invoice_line_tiers": "line_id, tier_number", "fct_unrated_usage": "reason, customer_id, product_id"}
    return {t: query(f"select * from marts.{t} order by {order}") for t, order in tables.items()}


@pytest.fixture(scope="module")
def october(tmp_path_factory):
    home = new_home(tmp_path_factory, "reference")
    with billing_env(home, REFERENCE / "catalog.yaml"):
        drop_reference_usage(home / "inbox")
        result = materialize_october()
        assert result.success
        yield result


def invoice(account: str) -> tuple:
    rows = query("select currency, total, status, is_finalizable from marts.fct_invoices "
                 "where period = '2026-10' and billing_account_id = ?", [account])
    assert len(rows) == 1, f"expected one invoice for {account}, got {rows}"
    return rows[0]


def lines(account: str) -> list[tuple]:
    return query("select product_id, quantity, amount, rate_level, segment_start, segment_end "
                 "from marts.fct_invoice_lines where period = '2026-10' and billing_account_id = ? "
                 "order by line_type desc, product_id nulls last, segment_start", [account])


def test_c1_northwind_includes_its_child_account(october):
    assert invoice("C1") == ("USD", D("2527.63"), "draft", True)
    got = {(p, q, a, lvl) for p, q, a, lvl, *_ in lines("C1")}
    assert got == {
        ("API_CALLS", D("1244567"), D("2489.13"), "product_default"),  # C6's 10,000 billed to C1
        ("STORAGE_GB", D("250"), D("22.00"), "product_default"),  # max of the readings, graduated
        ("SMS", D("1050"), D("16.50"), "product_default"),  # 11 blocks of 100
    }
    assert query("select count(*) from marts.fct_invoices where billing_account_id = 'C6'") == [(0,)]


def test_storage_tier_breakdown(october):
    tiers = query("""select t.tier_number, t.units, t.unit_price, t.amount_unrounded
                     from marts.fct_invoice_line_tiers t join marts.fct_invoice_lines l using (line_id)
                     where l.billing_account_id = 'C1' and l.product_id = 'STORAGE_GB' order by 1""")
    assert tiers == [(1, D("100"), D("0.1"), D("10")), (2, D("150"), D("0.08"), D("12"))]


def test_c2_globex_contract_rate_rate_class_and_true_up(october):
    assert invoice("C2")[:2] == ("USD", D("1000.00"))
    assert [(p, q, a, lvl) for p, q, a, lvl, *_ in lines("C2")] == [
        ("API_CALLS", D("1500000"), D("750.00"), "contract_rate"),  # 1,000,000 included
        ("BANDWIDTH_GB", D("1000"), D("80.00"), "rate_class"),  # exactly on the boundary: first tier
        (None, None, D("170.00"), "contract"),  # minimum commitment true-up
    ]
    included = query("select included_units, billable_quantity from marts.fct_invoice_lines "
                     "where billing_account_id = 'C2' and product_id = 'API_CALLS'")
    assert included == [(D("1000000"), D("500000"))]


def test_c3_initech_price_change_splits_the_month(october):
    from datetime import date

    assert invoice("C3")[:2] == ("USD", D("1938.71"))
    assert lines("C3") == [
        ("API_CALLS", D("600000"), D("1200.00"), "product_default", date(2026, 10, 1), date(2026, 10, 16)),
        ("API_CALLS", D("400000"), D("400.00"), "account_override", date(2026, 10, 16), date(2026, 11, 1)),
        ("SUPPORT", D("0"), D("338.71"), "product_default", date(2026, 10, 11), date(2026, 11, 1)),
    ]


def test_c4_umbrella_eur_with_unrated_sms_is_not_finalizable(october):
    assert invoice("C4") == ("EUR", D("180.00"), "draft", False)
    assert [(p, q, a, lvl) for p, q, a, lvl, *_ in lines("C4")] == [
        ("API_CALLS", D("100000"), D("180.00"), "rate_class")]
    assert query("select reason, quantity, currency from marts.fct_unrated_usage "
                 "where period = '2026-10' and customer_id = 'C4'") == [("no_price", D("500"), "EUR")]


def test_c5_hooli_minimum_commitment_without_usage(october):
    assert invoice("C5")[:2] == ("USD", D("200.00"))
    assert [(p, a, lvl) for p, _, a, lvl, *_ in lines("C5")] == [(None, D("200.00"), "contract")]


def test_c999_unknown_customer_is_reported_not_billed(october):
    assert query("select count(*) from marts.fct_invoices where billing_account_id = 'C999'") == [(0,)]
    assert query("select reason, quantity from marts.fct_unrated_usage where customer_id = 'C999'") == [
        ("unknown_customer", D("5000"))]


def test_events_outside_the_month_are_not_billed_and_duplicates_bill_once(october):
    # 999 calls at 2026-09-30T23:59:59Z and 888 at 2026-11-01T00:00:00Z exist, and c1-api-dup twice.
    assert query("select count(*) from raw.events where event_id in ('c1-api-sep', 'c1-api-nov')") == [(2,)]
    assert query("select count(*) from raw.events where event_id = 'c1-api-dup'") == [(1,)]
    assert query("select count(*) from raw.duplicates where event_id = 'c1-api-dup'") == [(1,)]


def test_every_received_row_is_accounted_for(october):
    for name, received, loaded, quarantined, duplicate in query(
            "select original_name, rows_received, rows_loaded, rows_quarantined, rows_duplicate "
            "from raw.landed_files"):
        assert received == loaded + quarantined + duplicate, name


def test_checks_report_the_designed_faults_by_name(october):
    checks = {ev.check_name: ev for ev in october.get_asset_check_evaluations()}
    assert checks["missed_customers"].passed
    assert checks["invoice_totals"].passed
    assert checks["misrated_lines"].passed  # the independent Polars re-rating agrees to the cent
    unrated = checks["unrated_usage"]
    assert not unrated.passed
    findings = unrated.metadata["findings"].value
    assert {(f["reason"], f["customer_id"]) for f in findings} == {("no_price", "C4"),
                                                                   ("unknown_customer", "C999")}


def test_rerun_and_second_delivery_change_nothing(october):
    before = snapshot()
    settings = load_settings()
    # The whole Globex file arrives again, through another collector, under another name.
    again = settings.home / "resent.csv"
    shutil.copy(REFERENCE / "usage" / "globex-october.csv", again)
    landed = land_file(open_warehouse(settings), settings.landing, again, source="sftp-drop", collector="sftp",
                       original_name="GLOBEX_OCT_RESEND.csv")
    assert not landed.is_new
    # And the month is materialized again.
    assert materialize_october().success
    assert snapshot() == before
    assert query("select count(*) from raw.file_receipts where original_name = 'GLOBEX_OCT_RESEND.csv'") == [(1,)]
