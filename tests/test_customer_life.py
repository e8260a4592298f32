"""A customer is billed only inside its life (active_from / active_to in the catalog): flat fees by
the days both the provisioning and the customer are active, usage outside the life unrated with its
own reason, contracts and the missed-customers check counting only days of the life; the Polars
re-rater agrees. Through the real pipeline, on DuckDB and PostgreSQL."""

from __future__ import annotations

import contextlib
from datetime import date
from decimal import Decimal

import pytest
from scenario import bill, own_postgres_database, rows

from catalog.load import load_catalog
from core.periods import month_window
from quality.rerate import rerate_warehouse

D = Decimal

CATALOG = """
products:
  - code: API
    prices:
      - {currency: USD, model: per_unit, unit_price: "0.50"}
  - code: SUPPORT
    aggregation: none
    prices:
      - {currency: USD, model: flat_fee, amount: "500.00"}
customers:
  - {id: NEW, currency: USD, active_from: 2021-03-23}
  - {id: GONE, currency: USD, active_to: 2021-02-01}
  - {id: LATER, currency: USD, active_from: 2021-04-01}
  - {id: ENDED, currency: USD, active_to: 2021-03-01}
contracts:
  - {id: K-GONE, customer: GONE, effective_from: 2021-01-01, minimum_commitment: "100.00"}
  - {id: K-ENDED, customer: ENDED, effective_from: 2021-01-01}
account_products:
  - {customer: NEW, product: SUPPORT, effective_from: 2021-03-01}
  - {customer: LATER, product: SUPPORT, effective_from: 2021-03-01}
"""
USAGE = """event_id,customer_id,product_id,quantity,occurred_at
e1,NEW,API,7,2021-03-10T12:00:00Z
e2,NEW,API,4,2021-03-22T23:59:59Z
e3,NEW,API,5,2021-03-23T00:00:00Z
e4,GONE,API,2,2021-03-15T00:00:00Z
"""


@pytest.fixture(scope="module", params=["duckdb", "postgres"])
def march(request, tmp_path_factory):
    """March 2021 billed once per engine for this module's tests."""
    with contextlib.ExitStack() as stack:
        dsn = stack.enter_context(own_postgres_database("life")) if request.param == "postgres" else None
        home = tmp_path_factory.mktemp(f"life-{request.param}") / "home"
        settings, outcomes = bill(home, CATALOG, USAGE, ["2021-03"], postgres_dsn=dsn)
        yield settings, outcomes, (lambda sql: rows(settings, sql, postgres_dsn=dsn)), dsn


def test_a_flat_fee_is_prorated_by_the_days_of_the_customers_life(march):
    _, _, sql, _ = march
    lines = sql("SELECT billing_account_id, product_id, segment_start, segment_days, quantity, amount_unrounded, "
                "amount FROM marts.fct_invoice_lines ORDER BY billing_account_id, product_id")
    assert lines == [
        # 500 x 9/31 (23-31 March), not 31/31; only the usage of 23 March on
        ("NEW", "API", date(2021, 3, 23), 1, D(5), D("2.5"), D("2.50")),
        ("NEW", "SUPPORT", date(2021, 3, 23), 9, D(0), D("145.161290322580"), D("145.16")),
    ]  # GONE (life over in February) gets no minimum-commitment true-up; LATER starts in April


def test_usage_outside_the_life_is_unrated_with_its_reason_and_blocks_the_invoice(march):
    _, outcomes, sql, _ = march
    unrated = sql("SELECT reason, customer_id, billing_account_id, product_id, quantity, first_usage_date, "
                  "last_usage_date, detail FROM marts.fct_unrated_usage ORDER BY customer_id")
    assert [r[:7] for r in unrated] == [
        ("outside_customer_life", "GONE", "GONE", "API", D(2), date(2021, 3, 15), date(2021, 3, 15)),
        ("outside_customer_life", "NEW", "NEW", "API", D(11), date(2021, 3, 10), date(2021, 3, 22)),
    ]
    assert "active from 2021-03-23 to open" in unrated[1][7]
    assert sql("SELECT billing_account_id, total, is_finalizable FROM marts.fct_invoices") == [
        ("NEW", D("147.66"), False)]
    assert not outcomes["unrated_usage"].passed
    # every unit is on a line or in the unrated report, and the re-rater confirms every line
    assert outcomes["conservation"].passed, outcomes["conservation"].summary
    assert outcomes["misrated_lines"].passed, outcomes["misrated_lines"].summary


def test_missed_customers_counts_only_the_days_of_a_life(march):
    _, outcomes, _, _ = march
    # ENDED (life to 1 March) and GONE have contracts in force in March, LATER a provisioned product, but
    # none of them is alive in March: no invoice, and none missed
    assert outcomes["missed_customers"].passed, outcomes["missed_customers"].summary


def test_the_rerater_reports_the_same_unrated_usage(march):
    settings, _, _, dsn = march
    from warehouse.store import Warehouse

    warehouse = Warehouse(postgres_dsn=dsn) if dsn else Warehouse(duckdb_path=settings.duckdb_path)
    with warehouse.transaction() as tx:
        rerated = rerate_warehouse(tx, load_catalog(settings.catalog), month_window("2021-03"))
    assert rerated.unrated.select("reason", "customer_id", "quantity").rows() == [
        ("outside_customer_life", "GONE", D(2)), ("outside_customer_life", "NEW", D(11))]
    assert rerated.lines.select("billing_account_id", "product_id", "amount").rows() == [
        ("NEW", "API", D("2.50")), ("NEW", "SUPPORT", D("145.16"))]
