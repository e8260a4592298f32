"""A rerun of a month replaces exactly that month's rows of every rating table, also when the month
now has none: a catalog that stops pricing every invoice leaves no invoice behind, and a catalog that
prices again leaves no unrated usage behind (dbt's stock delete+insert would keep the old rows of a
period whose new result is empty). Other months are left alone. On DuckDB and PostgreSQL."""

from __future__ import annotations

import contextlib
from decimal import Decimal

import pytest
from scenario import bill, own_postgres_database, rows

from billing import runner
from core.periods import month_window

from support import billing_env

D = Decimal

CUSTOMERS = """
customers:
  - {id: US, currency: USD}
  - {id: EU, currency: EUR}
"""
PRICED = """
products:
  - code: API
    prices:
      - {currency: USD, model: per_unit, unit_price: "0.50"}
      - {currency: EUR, model: per_unit, unit_price: "0.40"}
""" + CUSTOMERS
UNPRICED = """
products:
  - code: API
    prices:
      - {currency: GBP, model: per_unit, unit_price: "0.30"}
""" + CUSTOMERS
USAGE = """event_id,customer_id,product_id,quantity,occurred_at
m1,US,API,10,2021-03-10T12:00:00Z
m2,EU,API,20,2021-03-11T12:00:00Z
a1,US,API,3,2021-04-02T12:00:00Z
"""
PERIOD_TABLES = ("marts.fct_invoices", "marts.fct_invoice_lines", "marts.fct_invoice_line_tiers",
                 "marts.fct_invoice_line_sources", "intermediate.int_usage_segments_aggregated",
                 "intermediate.int_billable_days_rated", "intermediate.int_invoice_lines_rated")


@pytest.fixture(scope="module", params=["duckdb", "postgres"])
def billed(request, tmp_path_factory):
    """March and April 2021 billed with prices; `rerate(catalog)` loads a catalog and rates March again."""
    with contextlib.ExitStack() as stack:
        dsn = stack.enter_context(own_postgres_database("reruns")) if request.param == "postgres" else None
        home = tmp_path_factory.mktemp(f"reruns-{request.param}") / "home"
        settings, _ = bill(home, PRICED, USAGE, ["2021-03", "2021-04"], postgres_dsn=dsn, checks=False)

        def rerate(catalog: str) -> None:
            (home / "catalog.yaml").write_text(catalog)
            with billing_env(home, home / "catalog.yaml") as mp:
                if dsn:
                    mp.setenv("BILLING_ENGINE", "postgres")
                    mp.setenv("BILLING_POSTGRES_DSN", dsn)
                from core.config import load_settings

                current = load_settings()
                runner.load_catalog_stage(current, runner.prepare(current))
                runner.rate(current, month_window("2021-03"))

        yield rerate, (lambda sql: rows(settings, sql, postgres_dsn=dsn))


def test_a_month_that_loses_every_price_and_gets_them_back(billed):
    rerate, sql = billed

    def invoices():
        return sql("SELECT period, billing_account_id, total FROM marts.fct_invoices ORDER BY 1, 2")

    def unrated():
        return sql("SELECT period, reason, billing_account_id, quantity FROM marts.fct_unrated_usage ORDER BY 1, 3")

    def counts(period):
        return {t: sql(f"SELECT count(*) FROM {t} WHERE period = '{period}'")[0][0] for t in PERIOD_TABLES}

    april = invoices()[-1:]
    assert april == [("2021-04", "US", D("1.50"))]
    assert invoices()[:-1] == [("2021-03", "EU", D("8.00")), ("2021-03", "US", D("5.00"))]
    assert unrated() == []
    april_counts = counts("2021-04")
    assert all(april_counts.values()), april_counts

    rerate(UNPRICED)  # March rated again: no price in USD or EUR any more
    assert invoices() == april  # no March invoice left, April untouched
    # the two days of usage stay, without a price; nothing else of March does
    assert counts("2021-03") == {**dict.fromkeys(PERIOD_TABLES, 0), "intermediate.int_billable_days_rated": 2}
    assert sql("SELECT count(*) FROM intermediate.int_billable_days_rated WHERE rate_id IS NOT NULL") == [(1,)]
    assert unrated() == [("2021-03", "no_price", "EU", D(20)), ("2021-03", "no_price", "US", D(10))]

    rerate(PRICED)  # and priced again: the March unrated usage is gone, each invoice once
    assert invoices() == [("2021-03", "EU", D("8.00")), ("2021-03", "US", D("5.00"))] + april
    assert unrated() == []
    assert counts("2021-04") == april_counts
