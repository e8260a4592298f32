"""The invoice lifecycle's actions: approve, reject, manual charges and overrides, issue, void,
credit notes. Each action is one transaction that writes the ledger, its action-log entry and its
outbox event together; a refused action writes nothing and says why and who may.

The CLI (`billing invoices ...`), the review desk and Dagster's issue job call these functions;
they add nothing to the rules. Drafts are read from the marts (dbt's computation); nothing here
updates or deletes a ledger row.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from core.config import Settings
from core.money import minor_units, round_money
from warehouse.store import Tx, Warehouse, open_warehouse

from . import audit
from .drafts import Draft, DraftLine, RatingRun, latest_rating_run, load_drafts
from .outbox import emit
from .people import Person, load_people
from .policy import (
    Approval,
    CustomerTerms,
    Refused,
    may_add_manual_line,
    may_approve,
    missing_approvals,
    names,
    require_role,
)

REASON_CODES = ("duplicate", "order_change", "product_unsatisfactory", "fraudulent", "other")
CHANNELS = ("cli", "web", "dagster", "schedule")


class NotFound(LookupError):
    pass


@dataclass
class DraftStatus:
    draft: Draft
    state: str                      # draft | approved | issued | void
    needs: list[str]                # what still blocks issuing (empty: issuable)
    approvals: list[Approval] = field(default_factory=list)

    @property
    def issuable(self) -> bool:
        return self.state in ("draft", "approved", "void") and not self.needs


@dataclass
class _Facts:
    run: RatingRun | None
    approvals: dict[str, list[Approval]] = field(default_factory=dict)       # by invoice id, in order
    makers: dict[tuple[str, str], set[str]] = field(default_factory=dict)    # authors of manual lines
    terms: dict[str, CustomerTerms] = field(default_factory=dict)            # by customer
    accounts: dict[str, set[str]] = field(default_factory=dict)              # billing account -> its customers


@dataclass
class Issued:
    invoice_number: str
    billing_account_id: str
    currency: str
    total: Decimal
    pdf_sha256: str
    reissue_of: str | None = None


class Lifecycle:
    """The actions, for one warehouse, people file and policy; `channel` says through what they come."""

    def __init__(self, settings: Settings, *, channel: str = "cli", warehouse: Warehouse | None = None,
                 people: dict[str, Person] | None = None):
        if channel not in CHANNELS:
            raise ValueError(f"channel {channel!r} is not one of {', '.join(CHANNELS)}")
        self.settings = settings
        self.config = settings.lifecycle
        self.channel = channel
        self.warehouse = warehouse or open_warehouse(settings)
        self.people = people if people is not None else load_people(self.config.people)

    # -- who -------------------------------------------------------------------------------------
    def person(self, person_id: str) -> Person:
        if person_id == "system" and self.channel in ("schedule", "dagster"):
            from .people import system_actor

            return system_actor()
        person = self.people.get(person_id)
        if person is None:
            where = self.config.people or "no people file configured (`people:` in billing.yaml)"
            raise Refused(f"{person_id!r} is not in the people file ({where}); people: "
                          f"{', '.join(sorted(self.people)) or 'none'}")
        return person

    # -- reading -----------------------------------------------------------------------------------
    def draft(self, tx: Tx, period: str, account: str, currency: str | None = None) -> Draft:
        drafts = [d for d in load_drafts(tx, period, billing_account_id=account)
                  if currency is None or d.currency == currency]
        if not drafts:
            raise NotFound(f"no invoice for {account} in {period}"
                           f"{' in ' + currency if currency else ''} (run `billing run --month {period}` first?)")
        if len(drafts) > 1:
            raise NotFound(f"{account} has invoices in {', '.join(d.currency for d in drafts)} for {period}: "
                           "say which with --currency")
        return drafts[0]

    def facts(self, tx: Tx, period: str) -> _Facts:
        """What the rules need about a period's drafts, read in a few queries (not a few per draft)."""
        facts = _Facts(latest_rating_run(tx, period))
        for row in tx.fetchall("SELECT invoice_id, person_id, role, decision, comment, draft_fingerprint "
                               "FROM ledger.approvals WHERE period = ? ORDER BY decided_at, approval_id", [period]):
            facts.approvals.setdefault(row[0], []).append(Approval(*row[1:]))
        for account, currency, author in tx.fetchall("SELECT DISTINCT billing_account_id, currency, author_id "
                                                     "FROM ledger.manual_lines WHERE period = ?", [period]):
            facts.makers.setdefault((account, currency), set()).add(author)
        for customer, account, csm, required in tx.fetchall(
                "SELECT customer_id, billing_account_id, csm, require_csm_approval FROM raw.catalog_customers"):
            facts.terms[customer] = CustomerTerms(customer, csm, bool(required))
            facts.accounts.setdefault(account, {account}).add(customer)
        return facts

    def terms(self, tx: Tx, account: str) -> CustomerTerms:
        rows = tx.fetchall("SELECT csm, require_csm_approval FROM raw.catalog_customers WHERE customer_id = ?",
                           [account])
        if not rows:
            return CustomerTerms(account)
        return CustomerTerms(account, rows[0][0], bool(rows[0][1]))

    def makers(self, tx: Tx, draft: Draft) -> set[str]:
        return {r[0] for r in tx.fetchall(
            "SELECT DISTINCT author_id FROM ledger.manual_lines WHERE period = ? AND billing_account_id = ? "
            "AND currency = ?", [draft.period, draft.billing_account_id, draft.currency])}

    def status(self, period: str, account: str | None = None) -> list[DraftStatus]:
        with self.warehouse.transaction() as tx:
            facts = self.facts(tx, period)
            return [self._status(tx, d, facts) for d in load_drafts(tx, period, billing_account_id=account)]

    def _status(self, tx: Tx, draft: Draft, facts: _Facts | None = None) -> DraftStatus:
        facts = facts or self.facts(tx, draft.period)
        approvals = facts.approvals.get(draft.invoice_id, [])
        if draft.status == "issued":
            return DraftStatus(draft, "issued", [f"issued as {draft.invoice_number}"], approvals)
        needs = self._gate(draft, facts)
        approval_needs = missing_approvals(
            self.config.approval, facts.terms.get(draft.billing_account_id, CustomerTerms(draft.billing_account_id)),
            draft.total, draft.currency, approvals, draft.fingerprint, self.people,
            facts.makers.get((draft.billing_account_id, draft.currency), set()))
        state = "void" if draft.status == "void" else "approved" if not approval_needs else "draft"
        return DraftStatus(draft, state, needs + approval_needs, approvals)

    def _gate(self, draft: Draft, facts: _Facts) -> list[str]:
        """What stops this draft from being issued, apart from approvals."""
        needs, run = [], facts.run
        if draft.customer_name is None:
            needs.append(f"{draft.billing_account_id} is not a customer of the catalog any more (marts.dim_customers): "
                         "an invoice names its buyer; put it back in the catalog and run the month again")
        if not draft.is_finalizable:
            needs.append(f"{draft.unrated_usage_count} unrated usage group(s) of {draft.billing_account_id} "
                         "(marts.fct_unrated_usage): fix the catalog or the usage and run the month again")
        if run is None:
            needs.append(f"no rating run recorded for {draft.period}: run `billing run --month {draft.period}`")
            return needs
        recorded = run.drafts.get(draft.invoice_id)
        if recorded is None or recorded["draft_fingerprint"] != draft.fingerprint:
            needs.append(f"the draft changed since the checks last ran on it: run `billing run --month {draft.period}`")
        accounts = facts.accounts.get(draft.billing_account_id, {draft.billing_account_id})
        for finding in run.blocking:
            concerned = finding.get("billing_account_id") or finding.get("customer_id")
            if concerned is None or concerned in accounts:
                needs.append(f"blocking check {finding['check']} failed on the run that produced this draft: "
                             f"{finding['detail']}")
        if draft.total < 0:
            needs.append(f"the total is negative ({draft.total}): an invoice is never issued negative")
        return needs

    # -- approvals --------------------------------------------------------------------------------
    def approve(self, person_id: str, period: str, account: str, currency: str | None = None,
                comment: str | None = None) -> DraftStatus:
        return self._decide("approved", person_id, period, account, currency, comment)

    def reject(self, person_id: str, period: str, account: str, comment: str, currency: str | None = None) -> DraftStatus:
        if not comment or not comment.strip():
            raise Refused("a rejection needs a comment saying what to change")
        return self._decide("rejected", person_id, period, account, currency, comment)

    def _decide(self, decision: str, person_id: str, period: str, account: str, currency: str | None,
                comment: str | None) -> DraftStatus:
        person = self.person(person_id)
        with self.warehouse.transaction() as tx:
            audit.lock_log(tx)
            draft = self.draft(tx, period, account, currency)
            if draft.status == "issued":
                raise Refused(f"{account}'s {period} invoice is already issued as {draft.invoice_number}; "
                              "issued invoices are corrected with credit notes or next-period adjustments")
            may_approve(person, self.terms(tx, account), self.makers(tx, draft), self.people)
            fingerprint = draft.fingerprint
            now = datetime.now(UTC)
            tx.execute("INSERT INTO ledger.approvals (approval_id, invoice_id, period, billing_account_id, currency, "
                       "draft_fingerprint, person_id, role, decision, comment, decided_at) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       [uuid.uuid4().hex, draft.invoice_id, period, account, draft.currency, fingerprint,
                        person.person_id, person.role, decision, comment, now])
            after = {"decision": decision, "draft_fingerprint": fingerprint, "total": draft.total}
            audit.append(tx, action=f"invoice.{decision}", actor_id=person.person_id, actor_role=person.role,
                         channel=self.channel, document_type="draft_invoice", document_id=draft.invoice_id,
                         period=period, billing_account_id=account, reason=comment, after=after, now=now)
            if decision == "approved":
                emit(tx, "invoice.approved", None, {
                    "invoice_id": draft.invoice_id, "period": period, "billing_account_id": account,
                    "currency": draft.currency, "total": str(draft.total), "approved_by": person.person_id,
                    "draft_fingerprint": fingerprint}, now=now)
            return self._status(tx, draft)

    # -- manual lines -------------------------------------------------------------------------------
    def add_charge(self, person_id: str, period: str, account: str, amount: str | Decimal, description: str,
                   reason: str, currency: str | None = None) -> str:
        amount = _decimal(amount, "amount")
        if amount == 0:
            raise Refused("a manual charge of 0 changes nothing")
        return self._manual(person_id, period, account, currency, "charge", None, description, amount, None, reason)

    def add_override(self, person_id: str, period: str, account: str, product_id: str,
                     unit_price: str | Decimal, reason: str, currency: str | None = None) -> str:
        price = _decimal(unit_price, "unit price")
        if price < 0:
            raise Refused("an overage unit price cannot be negative")
        return self._manual(person_id, period, account, currency, "price_override", product_id,
                            f"{product_id} overage at {price} per unit", None, price, reason)

    def _manual(self, person_id, period, account, currency, kind, product_id, description, amount, unit_price,
                reason) -> str:
        person = self.person(person_id)
        if not reason or not reason.strip():
            raise Refused("a manual charge or price override needs a reason")
        with self.warehouse.transaction() as tx:
            audit.lock_log(tx)
            customer = tx.fetchall("SELECT currency FROM raw.catalog_customers WHERE customer_id = ? "
                                   "AND billing_account_id = customer_id", [account])
            if not customer:
                raise NotFound(f"{account} is not a billing account of the catalog")
            currency = currency or customer[0][0]
            minor_units(currency)  # refuses an unknown code
            issued = tx.fetchall("SELECT i.invoice_number FROM ledger.invoices i WHERE i.period = ? AND "
                                 "i.billing_account_id = ? AND i.currency = ? AND NOT EXISTS (SELECT 1 FROM "
                                 "ledger.voids v WHERE v.invoice_number = i.invoice_number)", [period, account, currency])
            if issued:
                raise Refused(f"{account}'s {period} invoice is already issued as {issued[0][0]}: add the charge "
                              "to an open period's draft instead")
            if kind == "price_override":
                known = tx.fetchall("SELECT 1 FROM marts.fct_invoice_lines WHERE period = ? AND billing_account_id = ? "
                                    "AND currency = ? AND product_id = ? AND line_type = 'usage'",
                                    [period, account, currency, product_id])
                if not known:
                    raise NotFound(f"{account} has no {product_id} usage line in {period} ({currency}) to override")
            may_add_manual_line(person, self.terms(tx, account), self.people)
            line_id = f"manual:{uuid.uuid4().hex[:12]}"
            now = datetime.now(UTC)
            tx.execute("INSERT INTO ledger.manual_lines (manual_line_id, period, billing_account_id, currency, kind, "
                       "product_id, description, amount, unit_price, author_id, reason, created_at) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       [line_id, period, account, currency, kind, product_id, description, amount, unit_price,
                        person.person_id, reason, now])
            after = {"manual_line_id": line_id, "kind": kind, "product_id": product_id, "description": description,
                     "amount": amount, "unit_price": unit_price}
            audit.append(tx, action=f"{'manual_charge' if kind == 'charge' else 'price_override'}.added",
                         actor_id=person.person_id, actor_role=person.role, channel=self.channel,
                         document_type="draft_invoice", document_id=f"{period}:{account}:{currency}", period=period,
                         billing_account_id=account, reason=reason, after=after, now=now)
        return line_id

    # -- issuing ------------------------------------------------------------------------------------
    def issue(self, person_id: str, period: str, account: str, currency: str | None = None,
              issue_date: date | None = None) -> Issued:
        person = self.person(person_id)
        require_role(person, ("finance",), "issue invoices", self.people)
        with self.warehouse.transaction() as tx:
            audit.lock_log(tx)  # one lifecycle writer at a time: numbers, balances and the log stay in order
            draft = self.draft(tx, period, account, currency)
            return self._issue(tx, person, draft, issue_date or datetime.now(UTC).date())

    def issue_period(self, person_id: str, period: str,
                     issue_date: date | None = None) -> tuple[list[Issued], list[DraftStatus]]:
        """Issue every issuable draft of the period, in billing-account order, each in its own
        transaction; returns what was issued and the drafts left, each with what it still needs."""
        person = self.person(person_id)
        require_role(person, ("finance",), "issue invoices", self.people)
        issued, left = [], []
        for status in self.status(period):
            if status.state == "issued":
                continue
            if not status.issuable:
                left.append(status)
                continue
            try:
                issued.append(self.issue(person_id, period, status.draft.billing_account_id, status.draft.currency,
                                         issue_date))
            except Refused as exc:  # changed since it was listed: report it with the others
                status.needs = [str(exc)]
                left.append(status)
        return issued, left

    def _issue(self, tx: Tx, person: Person, draft: Draft, issue_date: date) -> Issued:
        where = f"{draft.billing_account_id}'s {draft.period} invoice ({draft.currency})"
        if draft.status == "issued":
            raise Refused(f"{where} is already issued as {draft.invoice_number}")
        status = self._status(tx, draft)
        if status.needs:
            raise Refused(f"{where} cannot be issued: " + "; ".join(status.needs))
        run = latest_rating_run(tx, draft.period)
        self._check_corrections_still_open(tx, draft, run.finished_at)
        balance_entries = self._credit_entries(tx, draft)
        reissue_of = None
        if draft.status == "void":
            reissue_of = tx.fetchall("SELECT invoice_number FROM ledger.invoices WHERE invoice_id = ? "
                                     "ORDER BY sequence_number DESC LIMIT 1", [draft.invoice_id])[0][0]
        series, sequence, number = take_number(tx, self.config.invoice_format, "INV", issue_date)
        snapshot = self._snapshot(tx, draft, number, issue_date, reissue_of, run)
        pdf_sha = self._store_pdf(tx, "invoice", number, snapshot)
        now = datetime.now(UTC)
        subtotal = sum((line.amount for line in draft.lines
                        if line.line_type not in ("credit_applied", "credit_carried")), Decimal(0))
        tx.execute(
            "INSERT INTO ledger.invoices (invoice_number, series, sequence_number, invoice_id, period, period_start, "
            "period_end, billing_account_id, customer_name, currency, subtotal, total, issue_date, issued_at, issued_by, "
            "reissue_of, draft_fingerprint, data_fingerprint, catalog_sha256, rating_run_id, pdf_sha256, snapshot) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [number, series, sequence, draft.invoice_id, draft.period, draft.period_start, draft.period_end,
             draft.billing_account_id, draft.customer_name, draft.currency, subtotal, draft.total, issue_date, now,
             person.person_id, reissue_of, draft.fingerprint, snapshot["data_fingerprint"], snapshot["catalog_sha256"],
             run.run_id, pdf_sha, audit.canonical(snapshot)])
        for line in snapshot["lines"]:
            tx.execute("INSERT INTO ledger.invoice_lines (invoice_number, line_number, line_id, line_type, product_id, "
                       "description, quantity, unit_price, amount, rate_level, rate_id, segment_start, segment_end, "
                       "corrected_period, corrected_invoice_number) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       [number, line["line_number"], line["line_id"], line["line_type"], line["product_id"],
                        line["description"], line["quantity"], line["unit_price"], line["amount"], line["rate_level"],
                        line["rate_id"], line["segment_start"], line["segment_end"], line["corrected_period"],
                        line["corrected_invoice_number"]])
            for tier in line["tiers"]:
                tx.execute("INSERT INTO ledger.invoice_line_tiers (invoice_number, line_number, tier_number, units, "
                           "unit_price, flat_fee, amount) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           [number, line["line_number"], tier["tier_number"], tier["units"], tier["unit_price"],
                            tier["flat_fee"], tier["amount"]])
        for amount in balance_entries:
            tx.execute("INSERT INTO ledger.credit_balance_entries (entry_id, billing_account_id, currency, amount, "
                       "invoice_number, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                       [uuid.uuid4().hex, draft.billing_account_id, draft.currency, amount, number, now])
        data = {"invoice_number": number, "invoice_id": draft.invoice_id, "period": draft.period,
                "billing_account_id": draft.billing_account_id, "currency": draft.currency, "total": str(draft.total),
                "issue_date": issue_date.isoformat(), "pdf_sha256": pdf_sha, "reissue_of": reissue_of}
        audit.append(tx, action="invoice.issued", actor_id=person.person_id, actor_role=person.role,
                     channel=self.channel, document_type="invoice", document_id=number, period=draft.period,
                     billing_account_id=draft.billing_account_id,
                     reason=f"re-issue of {reissue_of}" if reissue_of else None,
                     before={"status": draft.status, "invoice_id": draft.invoice_id}, after=data, now=now)
        emit(tx, "invoice.issued", number, data, now=now)
        return Issued(number, draft.billing_account_id, draft.currency, draft.total, pdf_sha, reissue_of)

    def _check_corrections_still_open(self, tx: Tx, draft: Draft, rated_at: datetime) -> None:
        """An adjustment line must not have been issued elsewhere since this draft was rated."""
        for line in draft.lines:
            if line.line_type != "adjustment":
                continue
            clash = tx.fetchall(
                "SELECT i.invoice_number FROM ledger.invoice_lines l JOIN ledger.invoices i "
                "ON i.invoice_number = l.invoice_number WHERE l.line_type = 'adjustment' AND l.corrected_period = ? "
                "AND i.billing_account_id = ? AND i.currency = ? AND COALESCE(l.product_id, '') = ? "
                "AND i.issued_at > ? AND NOT EXISTS (SELECT 1 FROM ledger.voids v WHERE v.invoice_number = "
                "i.invoice_number)",
                [line.corrected_period, draft.billing_account_id, draft.currency, line.product_id or "", rated_at])
            if clash:
                raise Refused(f"the correction of {line.corrected_period} on this draft was issued on {clash[0][0]} "
                              f"after the draft was rated: run `billing run --month {draft.period}` again")

    def _credit_entries(self, tx: Tx, draft: Draft) -> list[Decimal]:
        """Balance movements of the credit lines; refuses a draft that uses credit no longer there."""
        entries = []
        for line in draft.lines:
            if line.line_type == "credit_applied":
                balance = tx.fetchall("SELECT COALESCE(SUM(amount), 0) FROM ledger.credit_balance_entries "
                                      "WHERE billing_account_id = ? AND currency = ?",
                                      [draft.billing_account_id, draft.currency])[0][0]
                if Decimal(balance) < -line.amount:
                    raise Refused(f"the draft applies {-line.amount} {draft.currency} of credit but the account holds "
                                  f"{balance}: run `billing run --month {draft.period}` again")
                entries.append(line.amount)
            elif line.line_type == "credit_carried":
                entries.append(line.amount)
        return entries

    def _snapshot(self, tx: Tx, draft: Draft, number: str, issue_date: date, reissue_of: str | None, run) -> dict:
        overrides = {r[0]: r[1] for r in tx.fetchall(
            "SELECT manual_line_id, unit_price FROM ledger.manual_lines WHERE period = ? AND billing_account_id = ? "
            "AND kind = 'price_override'", [draft.period, draft.billing_account_id])}
        lines = [_line_snapshot(i, line, overrides, draft.currency) for i, line in enumerate(draft.lines, 1)]
        recorded = run.drafts.get(draft.invoice_id) or {}
        return {
            "document_type": "invoice", "number": number, "issue_date": issue_date.isoformat(),
            "period": draft.period, "period_start": str(draft.period_start), "period_end": str(draft.period_end),
            "currency": draft.currency, "minor_units": minor_units(draft.currency),
            "seller": dict(self.config.seller),
            "buyer": {"billing_account_id": draft.billing_account_id, "name": draft.customer_name},
            "lines": lines,
            "subtotal": _money(sum((Decimal(line["amount"]) for line in lines
                                    if line["line_type"] not in ("credit_applied", "credit_carried")), Decimal(0)),
                               draft.currency),
            "total": _money(draft.total, draft.currency),
            # the catalog the draft was priced with (fct_invoices); the rating run's, for a draft from before
            "reissue_of": reissue_of, "catalog_sha256": draft.catalog_sha256 or run.catalog_sha256,
            "data_fingerprint": recorded.get("data_fingerprint") or "",
            "draft_fingerprint": draft.fingerprint,
        }

    def _store_pdf(self, tx: Tx, document_type: str, number: str, snapshot: dict) -> str:
        from .documents import render_credit_note_pdf, render_invoice_pdf, store_document

        render = render_invoice_pdf if document_type == "invoice" else render_credit_note_pdf
        data = render(snapshot)
        folder = self.config.documents or self.settings.home / "documents"
        sha, path = store_document(folder, data)
        if not tx.fetchall("SELECT 1 FROM ledger.documents WHERE sha256 = ?", [sha]):
            tx.execute("INSERT INTO ledger.documents (sha256, document_type, document_number, media_type, size_bytes, "
                       "path, stored_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       [sha, document_type, number, "application/pdf", len(data), str(path), datetime.now(UTC)])
        return sha

    # -- after issuing --------------------------------------------------------------------------------
    def void(self, person_id: str, invoice_number: str, reason: str) -> None:
        person = self.person(person_id)
        require_role(person, ("finance",), "void invoices", self.people)
        if not reason or not reason.strip():
            raise Refused("voiding needs a reason")
        with self.warehouse.transaction() as tx:
            audit.lock_log(tx)
            invoice = self._issued(tx, invoice_number)
            if tx.fetchall("SELECT 1 FROM ledger.voids WHERE invoice_number = ?", [invoice_number]):
                raise Refused(f"{invoice_number} is already void")
            now = datetime.now(UTC)
            tx.execute("INSERT INTO ledger.voids (invoice_number, reason, voided_by, voided_at) VALUES (?, ?, ?, ?)",
                       [invoice_number, reason, person.person_id, now])
            # credit the invoice used or left goes back to where it was
            for (amount,) in tx.fetchall("SELECT amount FROM ledger.credit_balance_entries WHERE invoice_number = ?",
                                         [invoice_number]):
                tx.execute("INSERT INTO ledger.credit_balance_entries (entry_id, billing_account_id, currency, amount, "
                           "invoice_number, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                           [uuid.uuid4().hex, invoice["billing_account_id"], invoice["currency"], -amount,
                            invoice_number, now])
            data = {"invoice_number": invoice_number, "period": invoice["period"],
                    "billing_account_id": invoice["billing_account_id"], "reason": reason}
            audit.append(tx, action="invoice.voided", actor_id=person.person_id, actor_role=person.role,
                         channel=self.channel, document_type="invoice", document_id=invoice_number,
                         period=invoice["period"], billing_account_id=invoice["billing_account_id"], reason=reason,
                         before={"status": "issued"}, after={"status": "void"}, now=now)
            emit(tx, "invoice.voided", invoice_number, data, now=now)

    def _issued(self, tx: Tx, invoice_number: str) -> dict[str, Any]:
        rows = tx.frame("SELECT invoice_number, period, billing_account_id, customer_name, currency, total "
                        "FROM ledger.invoices WHERE invoice_number = ?", [invoice_number])
        if rows.height == 0:
            raise NotFound(f"no issued invoice {invoice_number}")
        return rows.row(0, named=True)

    def credit_note(self, person_id: str, invoice_number: str, line_number: int, reason_code: str, *,
                    amount: str | Decimal | None = None, quantity: str | Decimal | None = None,
                    comment: str | None = None, issue_date: date | None = None) -> str:
        """Credit one line of an issued invoice by amount or by quantity, never beyond what is left of it."""
        person = self.person(person_id)
        require_role(person, ("finance",), "issue credit notes", self.people)
        if reason_code not in REASON_CODES:
            raise Refused(f"reason code {reason_code!r} is not one of {', '.join(REASON_CODES)}")
        if (amount is None) == (quantity is None):
            raise Refused("credit a line by --amount or by --quantity (one of them)")
        issue_date = issue_date or datetime.now(UTC).date()
        with self.warehouse.transaction() as tx:
            audit.lock_log(tx)
            invoice = self._issued(tx, invoice_number)
            if tx.fetchall("SELECT 1 FROM ledger.voids WHERE invoice_number = ?", [invoice_number]):
                raise Refused(f"{invoice_number} is void: there is nothing left to credit")
            line = tx.frame("SELECT line_number, description, quantity, amount FROM ledger.invoice_lines "
                            "WHERE invoice_number = ? AND line_number = ?", [invoice_number, line_number])
            if line.height == 0:
                raise NotFound(f"{invoice_number} has no line {line_number}")
            line = line.row(0, named=True)
            credited = tx.fetchall("SELECT COALESCE(SUM(amount), 0), COALESCE(SUM(quantity), 0) FROM "
                                   "ledger.credit_note_lines WHERE invoice_number = ? AND invoice_line_number = ?",
                                   [invoice_number, line_number])[0]
            left = Decimal(line["amount"]) - Decimal(credited[0])
            currency = invoice["currency"]
            credit_quantity = None
            if quantity is not None:
                credit_quantity = _decimal(quantity, "quantity")
                if not line["quantity"]:
                    raise Refused(f"line {line_number} of {invoice_number} has no quantity: credit it by amount")
                quantity_left = Decimal(line["quantity"]) - Decimal(credited[1])
                if credit_quantity <= 0 or credit_quantity > quantity_left:
                    raise Refused(f"line {line_number} of {invoice_number} has {_plain(quantity_left)} units left to "
                                  f"credit; {_plain(credit_quantity)} is not possible")
                credit_amount = round_money(Decimal(line["amount"]) * credit_quantity / Decimal(line["quantity"]),
                                            currency)
            else:
                credit_amount = round_money(_decimal(amount, "amount"), currency)
            if credit_amount <= 0:
                raise Refused("a credit note credits a positive amount")
            if credit_amount > left:
                raise Refused(f"line {line_number} of {invoice_number} ({line['description']}) has {_money(left, currency)} "
                              f"{currency} left to credit; {_money(credit_amount, currency)} is more than that")
            series, sequence, number = take_number(tx, self.config.credit_note_format, "CN", issue_date)
            snapshot = {
                "document_type": "credit_note", "number": number, "issue_date": issue_date.isoformat(),
                "currency": currency, "minor_units": minor_units(currency), "seller": dict(self.config.seller),
                "buyer": {"billing_account_id": invoice["billing_account_id"], "name": invoice["customer_name"]},
                "invoice_number": invoice_number, "period": invoice["period"], "reason_code": reason_code,
                "comment": comment,
                "lines": [{"line_number": 1, "invoice_line_number": line_number, "description": line["description"],
                           "quantity": None if credit_quantity is None else _plain(credit_quantity),
                           "amount": _money(credit_amount, currency)}],
                "total": _money(credit_amount, currency),
            }
            pdf_sha = self._store_pdf(tx, "credit_note", number, snapshot)
            now = datetime.now(UTC)
            tx.execute("INSERT INTO ledger.credit_notes (credit_note_number, series, sequence_number, invoice_number, "
                       "billing_account_id, currency, total, reason_code, comment, issue_date, issued_at, issued_by, "
                       "pdf_sha256, snapshot) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       [number, series, sequence, invoice_number, invoice["billing_account_id"], currency,
                        credit_amount, reason_code, comment, issue_date, now, person.person_id, pdf_sha,
                        audit.canonical(snapshot)])
            tx.execute("INSERT INTO ledger.credit_note_lines (credit_note_number, line_number, invoice_number, "
                       "invoice_line_number, quantity, amount) VALUES (?, 1, ?, ?, ?, ?)",
                       [number, invoice_number, line_number, credit_quantity, credit_amount])
            data = {"credit_note_number": number, "invoice_number": invoice_number, "line_number": line_number,
                    "amount": _money(credit_amount, currency), "currency": currency, "reason_code": reason_code,
                    "pdf_sha256": pdf_sha}
            audit.append(tx, action="credit_note.issued", actor_id=person.person_id, actor_role=person.role,
                         channel=self.channel, document_type="credit_note", document_id=number,
                         period=invoice["period"], billing_account_id=invoice["billing_account_id"],
                         reason=f"{reason_code}{': ' + comment if comment else ''}",
                         before={"line_left": _money(left, currency)}, after=data, now=now)
            emit(tx, "credit_note.issued", number, data, now=now)
            return number


def take_number(tx: Tx, fmt: str, prefix: str, issue_date: date) -> tuple[str, int, str]:
    """The next number of the series, inside the caller's transaction: a rollback gives it back,
    so a failed issue leaves no gap; the caller holds the ledger's lock, so no two get the same."""
    series = f"{prefix}-{issue_date.year}"
    row = tx.fetchall("SELECT last_number FROM ledger.number_series WHERE series = ?", [series])
    sequence = (row[0][0] if row else 0) + 1
    if row:
        tx.execute("UPDATE ledger.number_series SET last_number = ? WHERE series = ?", [sequence, series])
    else:
        tx.execute("INSERT INTO ledger.number_series (series, last_number) VALUES (?, ?)", [series, sequence])
    try:
        number = fmt.format(year=issue_date.year, number=sequence)
    except (KeyError, ValueError, IndexError) as exc:
        raise ValueError(f"numbering format {fmt!r} is not valid ({exc}); it may use {{year}} and {{number}}, "
                         "e.g. INV-{year}-{number:06d}") from None
    return series, sequence, number


def _line_snapshot(number: int, line: DraftLine, overrides: dict[str, Decimal], currency: str) -> dict[str, Any]:
    unit_price = None
    if line.rate_level == "manual" and line.rate_id in overrides:
        unit_price = overrides[line.rate_id]
    elif len(line.tiers) == 1 and line.pricing_model == "per_unit":
        unit_price = line.tiers[0]["unit_price"]
    tiers = [{"tier_number": t["tier_number"], "units": _plain(t["units"]), "unit_price": _plain(t["unit_price"]),
              "flat_fee": _plain(t["flat_fee"]), "amount": _plain(t["amount_unrounded"])} for t in line.tiers]
    return {
        "line_number": number, "line_id": line.line_id, "line_type": line.line_type, "description": line.description,
        "product_id": line.product_id, "quantity": _plain(line.quantity), "unit_price": _plain(unit_price),
        "amount": _money(line.amount, currency), "rate_level": line.rate_level, "rate_id": line.rate_id,
        "segment_start": None if line.segment_start is None else str(line.segment_start),
        "segment_end": None if line.segment_end is None else str(line.segment_end),
        "corrected_period": line.corrected_period, "corrected_invoice_number": line.corrected_invoice_number,
        "tiers": tiers,
    }


def _plain(value: Decimal | None) -> str | None:
    return None if value is None else format(Decimal(value).normalize(), "f")


def _money(value: Decimal, currency: str) -> str:
    """An amount as the document shows it: in the currency's minor units (2527.63, JPY 1200, KWD 1.500)."""
    return format(round_money(Decimal(value), currency), "f")


def _decimal(value: str | Decimal, what: str) -> Decimal:
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        raise Refused(f"{what} {value!r} is not a number (write it like 300.00)") from None
    if not result.is_finite():
        raise Refused(f"{what} {value!r} is not a finite number")
    return result


def issued_snapshot(tx: Tx, invoice_number: str) -> dict:
    rows = tx.fetchall("SELECT snapshot FROM ledger.invoices WHERE invoice_number = ?", [invoice_number])
    if not rows:
        rows = tx.fetchall("SELECT snapshot FROM ledger.credit_notes WHERE credit_note_number = ?", [invoice_number])
    if not rows:
        raise NotFound(f"no issued document {invoice_number}")
    return json.loads(rows[0][0])


__all__ = ["Lifecycle", "Refused", "NotFound", "DraftStatus", "Issued", "REASON_CODES", "take_number", "names"]
