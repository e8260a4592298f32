"""The quality findings mart: every finding of every check, as rows finance can query.

    SELECT check_name, severity, customer_id, line_id, file_id, detail
    FROM marts.quality_findings WHERE period = '2026-10' ORDER BY check_name, customer_id;

Written by the check runner (quality.checks.run_checks, and each Dagster asset check): for each check
that ran, the period's rows of that check are replaced in one transaction, so a rerun never
doubles them and a check that now passes leaves no stale rows. Plain SQL for DuckDB and PostgreSQL.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import polars as pl

from warehouse.schema import Table, create, register
from warehouse.store import Tx, Warehouse


@dataclass
class CheckOutcome:
    """What one check found: `blocking` findings stop the month's invoices from being issued."""

    name: str
    passed: bool
    blocking: bool
    summary: str
    findings: list[dict] = field(default_factory=list)


TABLE = "marts.quality_findings"

COLUMNS = """
    check_name VARCHAR NOT NULL,     -- the check (quality.checks): unrated_usage, conservation, ...
    severity VARCHAR NOT NULL,       -- error (blocks finalization) | warning
    period VARCHAR NOT NULL,         -- billing month, YYYY-MM
    customer_id VARCHAR,             -- customer or billing account concerned, if any
    line_id VARCHAR,                 -- invoice line concerned, if any
    file_id VARCHAR,                 -- source file (sha256) concerned, if any
    detail VARCHAR NOT NULL,         -- what is wrong, in words, with the finding's values
    run_id VARCHAR NOT NULL,         -- the run that recorded it (Dagster run id or a uuid)
    recorded_at TIMESTAMPTZ NOT NULL
"""

FINDINGS = register(Table("marts", "quality_findings", COLUMNS))  # beside dbt's marts, written by the checks

SCHEMA = {"check_name": pl.String, "severity": pl.String, "period": pl.String, "customer_id": pl.String,
          "line_id": pl.String, "file_id": pl.String, "detail": pl.String, "run_id": pl.String,
          "recorded_at": pl.Datetime("us", "UTC")}


def ensure_table(tx: Tx) -> None:
    """The findings table, where missing (a warehouse made before it, or checks run first)."""
    create(tx, FINDINGS)


def finding_rows(outcome: CheckOutcome, period_key: str, run_id: str, recorded_at: datetime) -> list[dict]:
    """One row per finding; a failed check without findings still leaves one row (its summary)."""
    severity = "error" if outcome.blocking else "warning"
    findings = outcome.findings or ([] if outcome.passed else [{"detail": outcome.summary}])
    rows = []
    for f in findings:
        detail = f.get("detail") or json.dumps({k: v for k, v in f.items() if v is not None}, sort_keys=True)
        rows.append({"check_name": outcome.name, "severity": severity, "period": period_key,
                     "customer_id": f.get("customer_id") or f.get("billing_account_id"),
                     "line_id": f.get("line_id"), "file_id": f.get("file_id"), "detail": str(detail),
                     "run_id": run_id, "recorded_at": recorded_at})
    return rows


def record_findings(tx: Tx, outcomes: Iterable[CheckOutcome], period_key: str, run_id: str | None = None) -> int:
    """Replace the period's rows of each check in `outcomes` with its current findings. Returns rows written."""
    outcomes = list(outcomes)
    run_id = run_id or uuid.uuid4().hex
    now = datetime.now(UTC)
    ensure_table(tx)
    rows = []
    for outcome in outcomes:
        tx.execute(f"DELETE FROM {TABLE} WHERE period = ? AND check_name = ?", [period_key, outcome.name])
        rows.extend(finding_rows(outcome, period_key, run_id, now))
    return tx.insert_frame(TABLE, pl.DataFrame(rows, schema=SCHEMA, orient="row"))


def write_findings(warehouse: Warehouse, outcomes: Iterable[CheckOutcome], period_key: str,
                   run_id: str | None = None) -> int:
    """`record_findings` in its own transaction: all of it, or (on error) none of it."""
    with warehouse.transaction() as tx:
        return record_findings(tx, outcomes, period_key, run_id)
