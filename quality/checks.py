"""Checks on a rated period, as plain functions over the warehouse (no Dagster here).

Each returns a `CheckOutcome` that names the customers or lines at fault, not only a count.
Dagster wraps them as asset checks (pipelines/checks.py); `billing run` prints them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta

import polars as pl

from billing.periods import Period
from catalog.model import Catalog
from warehouse.store import Tx, Warehouse

from .rerate import rerate

MARTS = "marts"


@dataclass
class CheckOutcome:
    name: str
    passed: bool
    blocking: bool
    summary: str
    findings: list[dict] = field(default_factory=list)


def _rows(tx: Tx, sql: str, params: list) -> list[dict]:
    frame = tx.frame(sql, params)
    return [{k: (str(v) if v is not None else None) for k, v in row.items()} for row in frame.iter_rows(named=True)]


def unrated_usage(tx: Tx, period: Period, catalog: Catalog | None = None) -> CheckOutcome:
    """Usage with no price, for an unknown customer or an unknown product: blocks the invoices it touches."""
    rows = _rows(tx, f"SELECT reason, customer_id, billing_account_id, product_id, currency, quantity, detail "
                     f"FROM {MARTS}.fct_unrated_usage WHERE period = ? ORDER BY reason, customer_id, product_id",
                 [period.key])
    summary = "no unrated usage" if not rows else f"{len(rows)} unrated usage group(s): " + "; ".join(
        r["detail"] for r in rows[:5])
    return CheckOutcome("unrated_usage", not rows, True, summary, rows)


def missed_customers(tx: Tx, period: Period, catalog: Catalog | None = None) -> CheckOutcome:
    """Billing accounts active in the period (live contract, provisioned product or usage) with no invoice."""
    rows = _rows(tx, f"""
        WITH active AS (
            SELECT c.billing_account_id, 'contract ' || ct.contract_id AS why
            FROM staging.stg_catalog__contracts ct
            JOIN staging.stg_catalog__customers c ON c.customer_id = ct.customer_id
            WHERE ct.effective_from < ? AND (ct.effective_to IS NULL OR ct.effective_to > ?)
            UNION ALL
            SELECT c.billing_account_id, 'provisioned ' || ap.product_id
            FROM staging.stg_catalog__account_products ap
            JOIN staging.stg_catalog__customers c ON c.customer_id = ap.customer_id
            WHERE ap.effective_from < ? AND (ap.effective_to IS NULL OR ap.effective_to > ?)
            UNION ALL
            SELECT billing_account_id, 'usage of ' || product_id
            FROM intermediate.int_usage_days_aggregated WHERE period = ?
        )
        SELECT a.billing_account_id, MIN(a.why) AS why
        FROM active a
        WHERE NOT EXISTS (SELECT 1 FROM {MARTS}.fct_invoices i
                          WHERE i.billing_account_id = a.billing_account_id AND i.period = ?)
        GROUP BY a.billing_account_id ORDER BY a.billing_account_id""",
                 [period.end, period.start, period.end, period.start, period.key, period.key])
    summary = "every active customer has an invoice" if not rows else (
        f"{len(rows)} active customer(s) without an invoice: " + ", ".join(
            f"{r['billing_account_id']} ({r['why']})" for r in rows[:10]))
    return CheckOutcome("missed_customers", not rows, True, summary, rows)


def invoice_totals(tx: Tx, period: Period, catalog: Catalog | None = None) -> CheckOutcome:
    """Each invoice's total is the sum of its rounded lines."""
    rows = _rows(tx, f"""
        SELECT i.invoice_id, i.billing_account_id, i.total, SUM(l.amount) AS sum_of_lines
        FROM {MARTS}.fct_invoices i LEFT JOIN {MARTS}.fct_invoice_lines l
          ON l.invoice_id = i.invoice_id AND l.period = i.period
        WHERE i.period = ?
        GROUP BY i.invoice_id, i.billing_account_id, i.total
        HAVING SUM(l.amount) IS NULL OR SUM(l.amount) <> i.total""", [period.key])
    summary = "every total equals the sum of its lines" if not rows else f"{len(rows)} invoice(s) off"
    return CheckOutcome("invoice_totals", not rows, True, summary, rows)


LINE_KEY = ["billing_account_id", "currency", "line_type", "product_id", "rate_id", "segment_start"]


def misrated_lines(tx: Tx, period: Period, catalog: Catalog | None = None) -> CheckOutcome:
    """An independent re-rating (quality/rerate.py, Polars) must confirm every line and total to the cent."""
    if catalog is None:
        return CheckOutcome("misrated_lines", False, True, "no catalog given: cannot re-rate")
    # Events around the month (local months of any zone fall inside two days' padding).
    lo = datetime.combine(period.start - timedelta(days=2), time(), UTC)
    hi = datetime.combine(period.end + timedelta(days=2), time(), UTC)
    events = tx.frame("SELECT source, event_id, customer_id, product_id, quantity, occurred_at FROM raw.events "
                      "WHERE occurred_at >= ? AND occurred_at < ?", [lo, hi])
    expected = rerate(catalog, events.with_columns(pl.col("occurred_at").dt.convert_time_zone("UTC")), period).lines
    actual = tx.frame(f"SELECT line_id, {', '.join(LINE_KEY)}, amount FROM {MARTS}.fct_invoice_lines "
                      "WHERE period = ?", [period.key])
    expected = expected.select(*LINE_KEY, pl.col("amount").cast(pl.Decimal(38, 3)).alias("expected_amount"))
    actual = actual.with_columns(pl.col("amount").cast(pl.Decimal(38, 3)))
    joined = actual.join(expected, on=LINE_KEY, how="full", nulls_equal=True, coalesce=True)
    wrong = joined.filter(pl.col("amount").is_null() | pl.col("expected_amount").is_null()
                          | (pl.col("amount") != pl.col("expected_amount")))
    rows = [{k: (str(v) if v is not None else None) for k, v in row.items()} for row in wrong.iter_rows(named=True)]
    summary = (f"all {actual.height} lines confirmed by the re-rater" if not rows else
               f"{len(rows)} line(s) not confirmed: " + "; ".join(
                   f"{r['billing_account_id']} {r['product_id'] or r['line_type']}: {r['amount']} vs re-rated "
                   f"{r['expected_amount']}" for r in rows[:5]))
    return CheckOutcome("misrated_lines", not rows, True, summary, rows)


CHECKS = (unrated_usage, missed_customers, invoice_totals, misrated_lines)


def run_checks(warehouse: Warehouse, period: Period, catalog: Catalog | None = None) -> list[CheckOutcome]:
    with warehouse.transaction() as tx:
        return [check(tx, period, catalog) for check in CHECKS]
