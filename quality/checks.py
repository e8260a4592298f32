"""Checks on a rated period, as plain functions over the warehouse (no Dagster here).

Each returns a `CheckOutcome` that names the customers or lines at fault, not only a count.
Dagster wraps them as asset checks (pipelines/checks.py); `billing run` prints them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from billing.periods import Period
from warehouse.store import Tx, Warehouse

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


def unrated_usage(tx: Tx, period: Period) -> CheckOutcome:
    """Usage with no price, for an unknown customer or an unknown product: blocks the invoices it touches."""
    rows = _rows(tx, f"SELECT reason, customer_id, billing_account_id, product_id, currency, quantity, detail "
                     f"FROM {MARTS}.fct_unrated_usage WHERE period = ? ORDER BY reason, customer_id, product_id",
                 [period.key])
    summary = "no unrated usage" if not rows else f"{len(rows)} unrated usage group(s): " + "; ".join(
        r["detail"] for r in rows[:5])
    return CheckOutcome("unrated_usage", not rows, True, summary, rows)


def missed_customers(tx: Tx, period: Period) -> CheckOutcome:
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


def invoice_totals(tx: Tx, period: Period) -> CheckOutcome:
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


CHECKS = (unrated_usage, missed_customers, invoice_totals)


def run_checks(warehouse: Warehouse, period: Period) -> list[CheckOutcome]:
    with warehouse.transaction() as tx:
        return [check(tx, period) for check in CHECKS]
