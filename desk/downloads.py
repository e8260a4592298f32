"""The CSV download of one invoice's lines: the columns of `invoice_lines-<period>.csv` (docs/exports.md),
as issued for an issued invoice, as computed now for a draft."""

from __future__ import annotations

import csv
import io

from ledger.exports import LINE_COLUMNS, csv_value
from ledger.lifecycle import DraftStatus
from warehouse.store import Tx

_ISSUED = """
    SELECT l.invoice_number, l.line_number, l.line_id, i.billing_account_id, i.currency, l.line_type, l.product_id,
           l.description, l.quantity, l.unit_price, l.amount, l.rate_level, l.rate_id, l.segment_start,
           l.segment_end, l.corrected_period, l.corrected_invoice_number
    FROM ledger.invoice_lines l JOIN ledger.invoices i ON i.invoice_number = l.invoice_number
    WHERE l.invoice_number = ? ORDER BY l.line_number"""


def lines_csv(tx: Tx, status: DraftStatus) -> str:
    draft = status.draft
    if draft.invoice_number:
        rows = tx.fetchall(_ISSUED, [draft.invoice_number])
    else:
        rows = [(None, n, line.line_id, draft.billing_account_id, draft.currency, line.line_type, line.product_id,
                 line.description, line.quantity, None, line.amount, line.rate_level, line.rate_id,
                 line.segment_start, line.segment_end, line.corrected_period, line.corrected_invoice_number)
                for n, line in enumerate(draft.lines, 1)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(LINE_COLUMNS)
    for row in rows:
        writer.writerow([csv_value(v) for v in row])
    return out.getvalue()
