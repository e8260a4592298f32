"""What the desk's pages show, read from the warehouse: no rules here beyond asking the lifecycle
and policy functions (ledger/) what a person may do; every query is parameterized."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from billing.explain import explain_lines, render
from ledger import audit
from ledger.lifecycle import DraftStatus, Lifecycle, NotFound
from ledger.people import Person
from ledger.policy import (
    CustomerTerms,
    Refused,
    current_decisions,
    may_add_manual_line,
    may_approve,
    require_role,
)
from warehouse.store import Tx

STATES = ("draft", "approved", "issued", "void")
LOG_LIMIT = 500


@dataclass
class Allowed:
    """The buttons a person's role allows on one invoice (the lifecycle checks again on every action)."""

    approve: bool = False
    manual: bool = False
    issue: bool = False
    correct: bool = False  # void and credit notes

    @property
    def anything(self) -> bool:
        return self.approve or self.manual or self.issue or self.correct


def _allowed(check) -> bool:
    try:
        check()
    except Refused:
        return False
    return True


def allowed(lifecycle: Lifecycle, facts, person: Person, status: DraftStatus) -> Allowed:
    """`facts`: the period's, from `Lifecycle.facts` (terms and makers of every draft)."""
    draft = status.draft
    terms = facts.terms.get(draft.billing_account_id, CustomerTerms(draft.billing_account_id))
    makers = facts.makers.get((draft.billing_account_id, draft.currency), set())
    open_draft = status.state != "issued"
    finance = _allowed(lambda: require_role(person, ("finance",), "issue invoices", lifecycle.people))
    return Allowed(
        approve=open_draft and _allowed(lambda: may_approve(person, terms, makers, lifecycle.people)),
        manual=open_draft and _allowed(lambda: may_add_manual_line(person, terms, lifecycle.people)),
        issue=open_draft and finance,
        correct=status.state == "issued" and finance,
    )


def periods(tx: Tx) -> list[str]:
    if not _has_table(tx, "marts", "fct_invoices"):
        return []
    return [r[0] for r in tx.fetchall("SELECT DISTINCT period FROM marts.fct_invoices ORDER BY period DESC")]


def _has_table(tx: Tx, schema: str, table: str) -> bool:
    return bool(tx.fetchall("SELECT count(*) FROM information_schema.tables WHERE table_schema = ? "
                            "AND table_name = ?", [schema, table])[0][0])


@dataclass
class PeriodView:
    period: str
    statuses: list[DraftStatus]
    totals: dict[str, dict[str, Decimal]]          # currency -> state -> total
    counts: dict[str, dict[str, int]]
    checks: list[dict]                             # name, findings, blocking
    findings: list[dict]
    run: Any                                       # the latest rating run (None before any)
    period_wide: list[dict] = field(default_factory=list)


def period_view(lifecycle: Lifecycle, period: str) -> PeriodView:
    from ledger.drafts import latest_rating_run
    from quality.checks import CHECKS

    statuses = lifecycle.status(period)  # its own transaction (they do not nest): then the rest
    totals: dict[str, dict[str, Decimal]] = defaultdict(lambda: dict.fromkeys(STATES, Decimal(0)))
    counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(STATES, 0))
    for s in statuses:
        totals[s.draft.currency][s.state] += s.draft.total
        counts[s.draft.currency][s.state] += 1
    with lifecycle.warehouse.transaction() as tx:
        findings = _findings(tx, period)
        run = latest_rating_run(tx, period)
    by_check: dict[str, list[dict]] = defaultdict(list)
    for f in findings:
        by_check[f["check_name"]].append(f)
    checks = [{"name": c.__name__, "findings": len(by_check.get(c.__name__, [])),
               "severity": by_check[c.__name__][0]["severity"] if by_check.get(c.__name__) else None}
              for c in CHECKS]
    period_wide = [f for f in (run.blocking if run else [])
                   if not (f.get("billing_account_id") or f.get("customer_id"))]
    return PeriodView(period, statuses, dict(totals), dict(counts), checks, findings, run, period_wide)


def _findings(tx: Tx, period: str, accounts: set[str] | None = None) -> list[dict]:
    if not _has_table(tx, "marts", "quality_findings"):
        return []
    sql = ("SELECT check_name, severity, customer_id, line_id, file_id, detail FROM marts.quality_findings "
           "WHERE period = ?")
    params: list[Any] = [period]
    if accounts is not None:
        sql += f" AND customer_id IN ({', '.join('?' for _ in accounts)})"
        params += sorted(accounts)
    sql += " ORDER BY severity, check_name, customer_id, line_id"
    return list(tx.frame(sql, params).iter_rows(named=True))


@dataclass
class Waiting:
    status: DraftStatus
    action: str      # approve | issue


def waiting_for(lifecycle: Lifecycle, person: Person, open_periods: list[str]) -> list[Waiting]:
    """The drafts this person can approve (not yet approved by them, as they are now) or issue now."""
    found = []
    pairs = []
    for period in open_periods:
        statuses = [s for s in lifecycle.status(period) if s.state != "issued"]
        with lifecycle.warehouse.transaction() as tx:
            facts = lifecycle.facts(tx, period)
        pairs += [(s, allowed(lifecycle, facts, person, s)) for s in statuses]
    for status, can in pairs:
        if can.issue and status.issuable:
            found.append(Waiting(status, "issue"))
        elif can.approve and status.state == "draft":
            mine = current_decisions(status.approvals, status.draft.fingerprint).get(person.person_id)
            if mine is None or mine.decision != "approved":
                found.append(Waiting(status, "approve"))
    return found


def open_periods(tx: Tx) -> list[str]:
    """Periods with a draft not yet issued."""
    if not _has_table(tx, "marts", "fct_invoices"):
        return []
    rows = tx.fetchall("SELECT DISTINCT d.period FROM marts.fct_invoices d WHERE NOT EXISTS (SELECT 1 FROM "
                       "ledger.invoices i WHERE i.invoice_id = d.invoice_id AND NOT EXISTS (SELECT 1 FROM "
                       "ledger.voids v WHERE v.invoice_number = i.invoice_number)) ORDER BY d.period DESC")
    return [r[0] for r in rows]


@dataclass
class InvoiceView:
    status: DraftStatus
    allowed: Allowed
    lineage: dict[str, list[str]]
    findings: list[dict]
    log: list[dict]
    issued: list[dict]            # the issued invoices of this draft (number, total, void, pdf)
    issued_lines: list[dict]      # lines of the live issued invoice, with what is left to credit
    credit_notes: list[dict]
    current_approvers: set[str]


def one_status(lifecycle: Lifecycle, period: str, account: str, currency: str | None) -> DraftStatus:
    statuses = [s for s in lifecycle.status(period, account) if currency is None or s.draft.currency == currency]
    if not statuses:
        raise NotFound(f"no invoice for {account} in {period}{' in ' + currency if currency else ''}")
    if len(statuses) > 1:
        raise NotFound(f"{account} has invoices in {', '.join(s.draft.currency for s in statuses)} for {period}: "
                       "choose one on the period page")
    return statuses[0]


def issued_invoice(tx: Tx, number: str) -> dict:
    rows = tx.frame("SELECT invoice_number, period, billing_account_id, currency FROM ledger.invoices "
                    "WHERE invoice_number = ?", [number])
    if rows.height == 0:
        raise NotFound(f"no issued invoice {number}")
    return rows.row(0, named=True)


def invoice_view(lifecycle: Lifecycle, person: Person, period: str, account: str,
                 currency: str | None) -> InvoiceView:
    status = one_status(lifecycle, period, account, currency)
    with lifecycle.warehouse.transaction() as tx:
        return _invoice_view(lifecycle, tx, person, status, period, account)


def _invoice_view(lifecycle: Lifecycle, tx: Tx, person: Person, status: DraftStatus, period: str,
                  account: str) -> InvoiceView:
    draft = status.draft
    explained = explain_lines(tx, period, [line.line_id for line in draft.lines])
    lineage = {line.line_id: render(explained[line.line_id]) if line.line_id in explained else []
               for line in draft.lines}
    issued = list(tx.frame(
        "SELECT i.invoice_number, i.total, i.issue_date, i.issued_by, i.reissue_of, v.reason AS void_reason, "
        "v.voided_by FROM ledger.invoices i LEFT JOIN ledger.voids v ON v.invoice_number = i.invoice_number "
        "WHERE i.invoice_id = ? ORDER BY i.sequence_number", [draft.invoice_id]).iter_rows(named=True))
    issued_lines, credit_notes = [], []
    if draft.invoice_number:
        issued_lines = list(tx.frame(
            "SELECT l.line_number, l.description, l.quantity, l.amount, l.amount - COALESCE((SELECT SUM(c.amount) "
            "FROM ledger.credit_note_lines c WHERE c.invoice_number = l.invoice_number AND c.invoice_line_number = "
            "l.line_number), 0) AS left_to_credit FROM ledger.invoice_lines l WHERE l.invoice_number = ? "
            "ORDER BY l.line_number", [draft.invoice_number]).iter_rows(named=True))
        credit_notes = list(tx.frame(
            "SELECT credit_note_number, total, reason_code, comment, issued_by, issue_date FROM ledger.credit_notes "
            "WHERE invoice_number = ? ORDER BY sequence_number", [draft.invoice_number]).iter_rows(named=True))
    facts = lifecycle.facts(tx, period)  # the rules' view of the period: accounts, approvals, makers
    findings = _findings(tx, period, facts.accounts.get(account, {account}))
    log = list(tx.frame(
        "SELECT seq, acted_at, action, actor_id, actor_role, channel, document_id, reason FROM ledger.actions "
        "WHERE period = ? AND billing_account_id = ? ORDER BY seq", [period, account]).iter_rows(named=True))
    current = {pid for pid, a in current_decisions(status.approvals, draft.fingerprint).items()
               if a.decision == "approved"}
    return InvoiceView(status, allowed(lifecycle, facts, person, status), lineage, findings, log, issued,
                       issued_lines, credit_notes, current)


def action_log(tx: Tx, action: str | None, person: str | None, document: str | None) -> list[dict]:
    """The newest entries (at most LOG_LIMIT) matching the filters; values only ever as parameters."""
    where, params = [], []
    if action:
        where.append("action = ?")
        params.append(action)
    if person:
        where.append("actor_id = ?")
        params.append(person)
    if document:
        where.append("strpos(COALESCE(document_id, ''), ?) > 0")
        params.append(document)
    sql = ("SELECT seq, acted_at, action, actor_id, actor_role, channel, document_type, document_id, period, "
           "billing_account_id, reason FROM ledger.actions"
           + (" WHERE " + " AND ".join(where) if where else "") + f" ORDER BY seq DESC LIMIT {LOG_LIMIT}")
    return list(tx.frame(sql, params).iter_rows(named=True))


def log_actions(tx: Tx) -> list[str]:
    return [r[0] for r in tx.fetchall("SELECT DISTINCT action FROM ledger.actions ORDER BY action")]


def verify_log(tx: Tx) -> audit.Verification:
    return audit.verify(tx)


def document_path(tx: Tx, number: str) -> str | None:
    rows = tx.fetchall("SELECT d.path FROM ledger.documents d WHERE d.document_number = ? "
                       "ORDER BY d.stored_at DESC LIMIT 1", [number])
    return rows[0][0] if rows else None
