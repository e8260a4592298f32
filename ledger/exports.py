"""CSV exports of a period for finance: its invoices, their lines and the credit notes against them.

Three files per period, columns in docs/exports.md (the order and names are a contract: add columns at the
end, never rename or reorder). Values are written as stored: decimals as their exact text (never through a
float), dates as YYYY-MM-DD, instants as ISO 8601 in UTC, booleans as true/false, NULL as an empty field.
UTF-8, a header row, RFC 4180 quoting.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from core.periods import month_window

from .schema import SCHEMA

INVOICE_COLUMNS = [
    "status", "invoice_number", "invoice_id", "period", "period_start", "period_end", "billing_account_id",
    "customer_name", "currency", "subtotal", "total", "issue_date", "issued_at", "issued_by", "reissue_of",
    "voided_at", "voided_by", "void_reason", "is_finalizable", "pdf_sha256", "catalog_sha256", "data_fingerprint",
]
LINE_COLUMNS = [
    "invoice_number", "line_number", "line_id", "billing_account_id", "currency", "line_type", "product_id",
    "description", "quantity", "unit_price", "amount", "rate_level", "rate_id", "segment_start", "segment_end",
    "corrected_period", "corrected_invoice_number",
]
CREDIT_NOTE_COLUMNS = [
    "credit_note_number", "invoice_number", "billing_account_id", "currency", "issue_date", "issued_at",
    "issued_by", "reason_code", "comment", "credit_note_total", "line_number", "invoice_line_number", "quantity",
    "amount", "pdf_sha256",
]

_ISSUED = f"""
    SELECT CASE WHEN v.invoice_number IS NULL THEN 'issued' ELSE 'void' END, i.invoice_number, i.invoice_id,
           i.period, i.period_start, i.period_end, i.billing_account_id, i.customer_name, i.currency, i.subtotal,
           i.total, i.issue_date, i.issued_at, i.issued_by, i.reissue_of, v.voided_at, v.voided_by, v.reason,
           NULL, i.pdf_sha256, i.catalog_sha256, i.data_fingerprint
    FROM {SCHEMA}.invoices AS i
    LEFT JOIN {SCHEMA}.voids AS v ON v.invoice_number = i.invoice_number
    WHERE i.period = ?
    ORDER BY i.series, i.sequence_number, i.invoice_number
"""
# Drafts of the period that were never issued (the marts are dbt's; absent before the first run), named
# by the catalog's customers.
_DRAFTS = f"""
    SELECT 'draft', NULL, d.invoice_id, d.period, d.period_start, d.period_end, d.billing_account_id,
           c.customer_name, d.currency, NULL, d.total, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           d.is_finalizable, NULL, d.catalog_sha256, NULL
    FROM marts.fct_invoices AS d
    LEFT JOIN marts.dim_customers AS c ON c.customer_id = d.billing_account_id
    WHERE d.period = ?
      AND NOT EXISTS (SELECT 1 FROM {SCHEMA}.invoices AS i WHERE i.invoice_id = d.invoice_id)
    ORDER BY d.billing_account_id, d.currency, d.invoice_id
"""
_LINES = f"""
    SELECT l.invoice_number, l.line_number, l.line_id, i.billing_account_id, i.currency, l.line_type,
           l.product_id, l.description, l.quantity, l.unit_price, l.amount, l.rate_level, l.rate_id,
           l.segment_start, l.segment_end, l.corrected_period, l.corrected_invoice_number
    FROM {SCHEMA}.invoice_lines AS l
    JOIN {SCHEMA}.invoices AS i ON i.invoice_number = l.invoice_number
    WHERE i.period = ?
    ORDER BY i.series, i.sequence_number, l.invoice_number, l.line_number
"""
_CREDIT_NOTES = f"""
    SELECT c.credit_note_number, c.invoice_number, c.billing_account_id, c.currency, c.issue_date, c.issued_at,
           c.issued_by, c.reason_code, c.comment, c.total, l.line_number, l.invoice_line_number, l.quantity,
           l.amount, c.pdf_sha256
    FROM {SCHEMA}.credit_notes AS c
    JOIN {SCHEMA}.invoices AS i ON i.invoice_number = c.invoice_number
    LEFT JOIN {SCHEMA}.credit_note_lines AS l ON l.credit_note_number = c.credit_note_number
    WHERE i.period = ?
    ORDER BY c.series, c.sequence_number, c.credit_note_number, l.line_number
"""


def export_period(tx: Any, period_key: str, folder: Path) -> list[Path]:
    """Write `invoices-<period>.csv`, `invoice_lines-<period>.csv` and `credit_notes-<period>.csv` into
    `folder` from one transaction's view of the ledger (and of the drafts in marts.fct_invoices, when dbt has
    built them); returns the three paths. An earlier export of the same period is replaced, file by file,
    atomically."""
    period = month_window(period_key).key
    invoices = tx.fetchall(_ISSUED, [period])
    if _has_table(tx, "marts", "fct_invoices"):
        invoices += tx.fetchall(_DRAFTS, [period])
    files = [
        (f"invoices-{period}.csv", INVOICE_COLUMNS, invoices),
        (f"invoice_lines-{period}.csv", LINE_COLUMNS, tx.fetchall(_LINES, [period])),
        (f"credit_notes-{period}.csv", CREDIT_NOTE_COLUMNS, tx.fetchall(_CREDIT_NOTES, [period])),
    ]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return [write_csv(folder / name, columns, rows) for name, columns, rows in files]


def _has_table(tx: Any, schema: str, table: str) -> bool:
    return bool(tx.fetchall("SELECT count(*) FROM information_schema.tables WHERE table_schema = ? "
                            "AND table_name = ?", [schema, table])[0][0])


def csv_value(value: Any) -> str:
    """One field as text: exact decimals, ISO dates, UTC instants, true/false, '' for NULL."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")  # every stored digit, never an exponent (str() gives 0E-12 for zero)
    if isinstance(value, float):
        raise TypeError(f"{value!r} is a binary float: exports write exact decimals only")
    if isinstance(value, datetime):
        if value.tzinfo is None:  # a TIMESTAMP without zone is UTC here
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """A CSV file written to a temporary name beside `path` and renamed, so no reader sees half of it."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\r\n")  # RFC 4180: CRLF, quotes only where needed
            writer.writerow(columns)
            for row in rows:
                if len(row) != len(columns):
                    raise ValueError(f"{path.name}: a row has {len(row)} values for {len(columns)} columns")
                writer.writerow([csv_value(v) for v in row])
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path
