"""Drafts as dbt computed them (marts), and the fingerprints that bind approvals and issuing to them.

A draft's fingerprint is the sha256 of its lines' content (what the invoice would show); its data
fingerprint is the sha256 of the files, events and units its lines were rated from, plus the
catalog's sha256. Each rating run records both for every draft, with the run's blocking findings
(`record_rating_run`), so issuing can check that the checks ran on exactly this draft.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from catalog.read import catalog_sha256 as warehouse_catalog
from warehouse.store import Tx

from .audit import canonical

LINE_FIELDS = ("line_id", "line_type", "product_id", "description", "rate_level", "rate_id", "segment_start",
               "segment_end", "quantity", "billable_quantity", "amount", "corrected_period", "corrected_invoice_number")


@dataclass
class DraftLine:
    line_id: str
    line_type: str
    product_id: str | None
    description: str
    rate_level: str | None
    rate_id: str | None
    pricing_model: str | None
    segment_start: Any
    segment_end: Any
    quantity: Decimal | None
    billable_quantity: Decimal | None
    amount: Decimal
    corrected_period: str | None
    corrected_invoice_number: str | None
    tiers: list[dict] = field(default_factory=list)

    def content(self) -> dict[str, Any]:
        return {f: _text(getattr(self, f)) for f in LINE_FIELDS}


@dataclass
class Draft:
    invoice_id: str
    period: str
    period_start: Any
    period_end: Any
    billing_account_id: str
    customer_name: str | None        # marts.dim_customers; None once the account left the catalog
    currency: str
    total: Decimal
    is_finalizable: bool
    unrated_usage_count: int
    status: str = "draft"            # draft | issued | void, from the ledger as it is now
    invoice_number: str | None = None
    catalog_sha256: str | None = None  # the catalog file it was priced with (fct_invoices)
    lines: list[DraftLine] = field(default_factory=list)

    @property
    def fingerprint(self) -> str:
        return draft_fingerprint(self.lines)


def _text(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")  # 1.50 and 1.5 alike; 100 stays 100
    if value is None or isinstance(value, str | int | bool):
        return value
    return str(value)


def draft_fingerprint(lines: list[DraftLine]) -> str:
    content = sorted((line.content() for line in lines), key=lambda c: c["line_id"])
    return hashlib.sha256(canonical(content).encode()).hexdigest()


INVOICE_COLUMNS = ("invoice_id", "period", "period_start", "period_end", "billing_account_id", "customer_name",
                   "currency", "total", "is_finalizable", "unrated_usage_count", "status", "invoice_number",
                   "catalog_sha256")


def load_drafts(tx: Tx, period: str, *, invoice_id: str | None = None, billing_account_id: str | None = None,
                with_lines: bool = True) -> list[Draft]:
    """The period's drafts (in billing-account order), with their lines and tiers."""
    where, params = ["period = ?"], [period]
    if invoice_id:
        where.append("invoice_id = ?")
        params.append(invoice_id)
    if billing_account_id:
        where.append("billing_account_id = ?")
        params.append(billing_account_id)
    # status and number from the ledger as it is now (the mart's copy is as of the period's last run);
    # the name from the catalog's customers (None for an account no longer in the catalog)
    names = [c for c in INVOICE_COLUMNS if c not in ("status", "invoice_number")]
    columns = ", ".join("c.customer_name" if c == "customer_name" else f"i.{c}" for c in names)
    rows = tx.fetchall(f"SELECT {columns} FROM marts.fct_invoices AS i LEFT JOIN marts.dim_customers AS c "
                       f"ON c.customer_id = i.billing_account_id WHERE {' AND '.join('i.' + w for w in where)} "
                       "ORDER BY i.billing_account_id, i.currency", params)
    drafts = [Draft(**dict(zip(names, row, strict=True)), status="draft", invoice_number=None) for row in rows]
    issued: dict[str, list[tuple[str, bool]]] = {}
    for invoice_id, number, void in tx.fetchall(
            "SELECT i.invoice_id, i.invoice_number, v.invoice_number IS NOT NULL FROM ledger.invoices i LEFT JOIN "
            "ledger.voids v ON v.invoice_number = i.invoice_number WHERE i.period = ? ORDER BY i.sequence_number DESC",
            [period]):
        issued.setdefault(invoice_id, []).append((number, void))
    for draft in drafts:
        draft.status, draft.invoice_number = _status_of(issued.get(draft.invoice_id, []))
    if not with_lines or not drafts:
        return drafts
    by_id = {d.invoice_id: d for d in drafts}
    line_rows = tx.frame(
        "SELECT invoice_id, line_id, line_type, product_id, description, rate_level, rate_id, pricing_model, "
        "segment_start, segment_end, quantity, billable_quantity, amount, corrected_period, corrected_invoice_number "
        f"FROM marts.fct_invoice_lines WHERE {' AND '.join(where)} ORDER BY invoice_id, line_id", params)
    lines_by_id: dict[str, DraftLine] = {}
    for row in line_rows.iter_rows(named=True):
        draft = by_id.get(row.pop("invoice_id"))
        if draft is None:
            continue
        line = DraftLine(**row)
        draft.lines.append(line)
        lines_by_id[line.line_id] = line
    tiers = tx.frame("SELECT line_id, tier_number, units, unit_price, flat_fee, amount_unrounded "
                     "FROM marts.fct_invoice_line_tiers WHERE period = ? ORDER BY line_id, tier_number", [period])
    for row in tiers.iter_rows(named=True):
        line = lines_by_id.get(row.pop("line_id"))
        if line is not None and line.rate_level != "manual":  # an override prices the line as one tier
            line.tiers.append(row)
    for draft in drafts:
        draft.lines.sort(key=_line_order)
    return drafts


_TYPE_ORDER = {"usage": 0, "recurring": 1, "manual": 2, "minimum_commitment": 3, "adjustment": 4,
               "credit_applied": 5, "credit_carried": 6}


def _status_of(rows: list[tuple[str, bool]]) -> tuple[str, str | None]:
    """(issued | void | draft, number) from a draft's documents, newest first: a live one wins over a void."""
    live = [number for number, void in rows if not void]
    if live:
        return "issued", live[0]
    return ("void", rows[0][0]) if rows else ("draft", None)


def _line_order(line: DraftLine) -> tuple:
    return (_TYPE_ORDER.get(line.line_type, 9), line.product_id or "", str(line.segment_start or ""),
            line.corrected_period or "", line.line_id)


def data_fingerprints(tx: Tx, period: str, catalog_sha256: str | None) -> dict[str, str]:
    """Per draft: sha256 of the files, events and units its lines price, and of the catalog."""
    rows = tx.fetchall(
        "SELECT l.invoice_id, s.line_id, s.file_id, s.event_count, s.quantity "
        "FROM marts.fct_invoice_line_sources s JOIN marts.fct_invoice_lines l ON l.line_id = s.line_id "
        "AND l.period = s.period WHERE s.period = ? ORDER BY l.invoice_id, s.line_id, s.file_id", [period])
    parts: dict[str, list] = {}
    for invoice_id, line_id, file_id, events, units in rows:
        parts.setdefault(invoice_id, []).append([line_id, file_id, int(events), _text(units)])
    ids = [r[0] for r in tx.fetchall("SELECT invoice_id FROM marts.fct_invoices WHERE period = ?", [period])]
    return {i: hashlib.sha256(canonical([catalog_sha256, parts.get(i, [])]).encode()).hexdigest() for i in ids}


def blocking_findings(outcomes) -> list[dict]:
    """The error-severity findings of a run's check outcomes, reduced to what the issue gate reads."""
    found = []
    for outcome in outcomes:
        if outcome.passed or not outcome.blocking:
            continue
        for f in outcome.findings or [{"detail": outcome.summary}]:
            found.append({"check": outcome.name, "customer_id": f.get("customer_id"),
                          "billing_account_id": f.get("billing_account_id"),
                          "detail": str(f.get("detail") or outcome.summary)})
    return found


def record_rating_run(tx: Tx, period: str, outcomes, *, run_id: str | None = None) -> str:
    """Record what this run rated and found: the gate of `issue` reads the period's latest run.

    The run cites the catalog the warehouse priced with (its sha256, catalog/read.py), not the catalog
    file as it is now: the file may have been edited since it was loaded."""
    catalog_sha256 = warehouse_catalog(tx)
    if not run_id or tx.fetchall("SELECT 1 FROM ledger.rating_runs WHERE run_id = ?", [run_id]):
        run_id = uuid.uuid4().hex  # a retried run records a new row; the latest one counts
    drafts = {d.invoice_id: d for d in load_drafts(tx, period)}
    data = data_fingerprints(tx, period, catalog_sha256)
    recorded = {i: {"draft_fingerprint": d.fingerprint, "data_fingerprint": data.get(i), "total": str(d.total)}
                for i, d in drafts.items()}
    _log_lapsed_approvals(tx, period, latest_rating_run(tx, period), recorded)
    tx.execute("INSERT INTO ledger.rating_runs (run_id, period, finished_at, catalog_sha256, blocking_findings, drafts) "
               "VALUES (?, ?, ?, ?, ?, ?)",
               [run_id, period, datetime.now(UTC), catalog_sha256, json.dumps(blocking_findings(outcomes)),
                canonical(recorded)])
    return run_id


def _log_lapsed_approvals(tx: Tx, period: str, previous: RatingRun | None, now: dict[str, dict]) -> None:
    """Approvals bind to a draft's content: when a run changes an approved draft, say so in the log."""
    from . import audit

    approved = tx.fetchall("SELECT DISTINCT invoice_id, billing_account_id, draft_fingerprint FROM ledger.approvals "
                           "WHERE period = ? AND decision = 'approved'", [period])
    for invoice_id, account, fingerprint in sorted(approved):
        before = (previous.drafts.get(invoice_id) if previous else None) or {}
        after = now.get(invoice_id) or {"draft_fingerprint": None, "total": None}
        if before.get("draft_fingerprint") != fingerprint or after["draft_fingerprint"] == fingerprint:
            continue  # not approved as it was, or unchanged
        why = ("the draft no longer exists" if after["draft_fingerprint"] is None else
               f"the draft changed (total {before.get('total')} -> {after['total']}): a rerun, late usage, a catalog "
               "change or a manual charge; it must be approved again")
        audit.append(tx, action="invoice.approvals_lapsed", actor_id="system", actor_role="system", channel="schedule",
                     document_type="draft_invoice", document_id=invoice_id, period=period, billing_account_id=account,
                     reason=why, before=before, after=after)


@dataclass
class RatingRun:
    run_id: str
    finished_at: datetime
    catalog_sha256: str | None
    blocking: list[dict]
    drafts: dict[str, dict]


def latest_rating_run(tx: Tx, period: str) -> RatingRun | None:
    rows = tx.fetchall("SELECT run_id, finished_at, catalog_sha256, blocking_findings, drafts FROM ledger.rating_runs "
                       "WHERE period = ? ORDER BY finished_at DESC LIMIT 1", [period])
    if not rows:
        return None
    run_id, finished_at, catalog_sha, blocking, drafts = rows[0]
    return RatingRun(run_id, finished_at, catalog_sha, json.loads(blocking), json.loads(drafts))
