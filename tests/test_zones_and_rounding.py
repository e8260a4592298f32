"""Months in the customer's time zone, and rounding per currency, through the real dbt models."""

from decimal import Decimal

import duckdb
import pytest

from billing import runner
from core.config import load_settings
from core.periods import month_window

CATALOG = """
products:
  - code: X
    prices:
      - {currency: USD, model: per_unit, unit_price: "0.067"}
      - {currency: JPY, model: per_unit, unit_price: "0.5"}
      - {currency: KWD, model: per_unit, unit_price: "0.0001"}
customers:
  - {id: BUD, currency: USD, timezone: Europe/Budapest}
  - {id: UTC1, currency: USD}
  - {id: YEN, currency: JPY}
  - {id: KWD1, currency: KWD}
"""

USAGE = """event_id,customer_id,product_id,quantity,occurred_at
b1,BUD,X,55,2024-12-31T23:30:00Z
u1,UTC1,X,55,2024-12-31T23:30:00Z
y1,YEN,X,5,2025-01-10T00:00:00Z
k1,KWD1,X,10005,2025-01-10T00:00:00Z
"""


@pytest.fixture
def billed(billing_env, tmp_path, monkeypatch):
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(CATALOG)
    monkeypatch.setenv("BILLING_CATALOG", str(catalog))
    (billing_env / "inbox" / "usage.csv").write_text(USAGE)
    settings = load_settings()
    warehouse = runner.prepare(settings)
    runner.load_catalog_stage(settings, warehouse)
    runner.collect(settings, warehouse)
    runner.normalize(settings, warehouse)
    for month in ("2024-12", "2025-01"):
        runner.rate(settings, month_window(month))
    con = duckdb.connect(str(settings.duckdb_path))
    yield lambda sql: con.execute(sql).fetchall()
    con.close()


def test_an_event_belongs_to_the_month_of_its_customers_zone(billed):
    # 2024-12-31T23:30Z is 00:30 on 1 January in Budapest, still 31 December in UTC.
    assert billed("select period, billing_account_id from marts.fct_invoices order by 1, 2") == [
        ("2024-12", "UTC1"), ("2025-01", "BUD"), ("2025-01", "KWD1"), ("2025-01", "YEN")]


def test_each_line_is_rounded_once_half_away_from_zero_to_the_minor_unit(billed):
    got = billed("select billing_account_id, amount_unrounded, amount from marts.fct_invoice_lines "
                 "where period = '2025-01' order by 1")
    assert got == [
        ("BUD", Decimal("3.685"), Decimal("3.69")),  # 0.067 x 55, not banker's 3.68
        ("KWD1", Decimal("1.0005"), Decimal("1.001")),  # 3 decimals
        ("YEN", Decimal("2.5"), Decimal("3")),  # 0 decimals
    ]
