"""`billing invoices ...`, `billing export`, `billing audit verify`: the invoice lifecycle from the
command line. The acting person is `--as PERSON` (or $BILLING_ACTOR), checked against the people
file and the approval policy by the same functions the review desk calls (ledger/lifecycle.py).

Exit status: 0 done; 1 error (bad input, nothing found); 4 refused by the rules (the message says
why and who may).
"""

from __future__ import annotations

import argparse
import os
from datetime import date
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from core.config import Settings
from core.money import round_money
from core.periods import month_window
from warehouse.store import open_warehouse

from . import runner

REFUSED = 4
console = Console(highlight=False, emoji=False)


def _say(*parts: str | tuple[str, str]) -> None:
    console.print(Text.assemble(*parts), soft_wrap=True)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    inv = sub.add_parser("invoices", help="list, approve, charge, issue, void and credit invoices (docs/lifecycle.md)")
    isub = inv.add_subparsers(dest="action", required=True)

    def acting(p: argparse.ArgumentParser) -> None:
        p.add_argument("--as", dest="actor", default=os.environ.get("BILLING_ACTOR"),
                       help="the acting person's id in the people file (default: $BILLING_ACTOR)")

    def draft(p: argparse.ArgumentParser) -> None:
        p.add_argument("--month", required=True, help="the billing period, YYYY-MM")
        p.add_argument("--account", required=True, help="the billing account (customer id)")
        p.add_argument("--currency", help="only needed when the account has invoices in several currencies")

    p = isub.add_parser("list", help="a period's invoices, their state and what each still needs")
    p.add_argument("--month", required=True)
    p.add_argument("--account")
    for name, text in (("approve", "approve a draft (bound to its current content)"),
                       ("reject", "reject a draft, with a comment saying what to change")):
        p = isub.add_parser(name, help=text)
        draft(p)
        acting(p)
        p.add_argument("--comment", required=name == "reject")
    p = isub.add_parser("charge", help="add a manual charge (a one-off fee) to a draft")
    draft(p)
    acting(p)
    p.add_argument("--amount", required=True)
    p.add_argument("--description", required=True)
    p.add_argument("--reason", required=True)
    p = isub.add_parser("override", help="a different overage unit price for one product on this invoice only")
    draft(p)
    acting(p)
    p.add_argument("--product", required=True)
    p.add_argument("--unit-price", required=True)
    p.add_argument("--reason", required=True)
    p = isub.add_parser("issue", help="issue one approved invoice (--account) or every issuable one of the period")
    p.add_argument("--month", required=True)
    p.add_argument("--account")
    p.add_argument("--currency")
    p.add_argument("--date", type=date.fromisoformat, help="issue date (default: today, UTC)")
    acting(p)
    p = isub.add_parser("void", help="void an issued invoice (it keeps its number; issue the draft again to re-issue)")
    p.add_argument("number")
    p.add_argument("--reason", required=True)
    acting(p)
    p = isub.add_parser("credit", help="a credit note against one line of an issued invoice")
    p.add_argument("number")
    p.add_argument("--line", type=int, required=True, help="the invoice's line number (billing invoices show NUMBER)")
    p.add_argument("--amount")
    p.add_argument("--quantity")
    p.add_argument("--reason-code", required=True,
                   help="duplicate | order_change | product_unsatisfactory | fraudulent | other")
    p.add_argument("--comment")
    p.add_argument("--date", type=date.fromisoformat)
    acting(p)
    p = isub.add_parser("show", help="an issued invoice or credit note as issued, and where its PDF is")
    p.add_argument("number")

    exp = sub.add_parser("export", help="CSV files of a period's invoices, lines and credit notes (docs/exports.md)")
    exp.add_argument("--month", required=True)
    exp.add_argument("--out", type=Path, help="folder (default: <home>/exports/<month>)")
    aud = sub.add_parser("audit", help="verify the action log's hash chain")
    asub = aud.add_subparsers(dest="action", required=True)
    ver = asub.add_parser("verify", help="recompute the chain; exit 1 when an entry was edited, removed or reordered")
    ver.add_argument("--head", help="the head hash noted earlier: also detects removed newest entries")


def dispatch(settings: Settings, args: argparse.Namespace) -> int | None:
    """Run a lifecycle command; None when `args` is not one of them."""
    if args.command == "export":
        return export(settings, args.month, args.out)
    if args.command == "audit":
        return verify(settings, args.head)
    if args.command != "invoices":
        return None
    from ledger.lifecycle import Lifecycle, NotFound, Refused

    lifecycle = Lifecycle(settings, channel="cli")
    try:
        if args.action == "list":
            return list_invoices(lifecycle, args.month, args.account)
        if args.action == "show":
            return show(lifecycle, args.number)
        if not args.actor:
            raise Refused("say who acts: --as PERSON (or set BILLING_ACTOR); people: "
                          + (", ".join(sorted(lifecycle.people)) or "none (no people file configured)"))
        return _act(settings, lifecycle, args)
    except Refused as exc:
        _say(("refused: ", "bold red"), str(exc))
        return REFUSED
    except NotFound as exc:
        _say(("error: ", "red"), str(exc))
        return 1


def _act(settings: Settings, lifecycle, args) -> int:
    if args.action in ("approve", "reject"):
        act = lifecycle.approve if args.action == "approve" else lifecycle.reject
        status = act(args.actor, args.month, args.account, currency=args.currency, comment=args.comment)
        _say(f"{args.action[:-1]}ed {args.account} {args.month} ({status.draft.currency} "
             f"{round_money(status.draft.total, status.draft.currency)}): ",
             ("issuable" if status.issuable else "still needs: " + "; ".join(status.needs), "bold"))
        return 0
    if args.action in ("charge", "override"):
        if args.action == "charge":
            line_id = lifecycle.add_charge(args.actor, args.month, args.account, args.amount, args.description,
                                           args.reason, currency=args.currency)
        else:
            line_id = lifecycle.add_override(args.actor, args.month, args.account, args.product, args.unit_price,
                                             args.reason, currency=args.currency)
        _say(f"added {line_id} to {args.account}'s {args.month} draft; recomputing the draft (approvals of the old "
             "one lapse) ...")
        runner.rerate(settings, month_window(args.month))
        return list_invoices(lifecycle, args.month, args.account)
    if args.action == "issue":
        if args.account:
            done = lifecycle.issue(args.actor, args.month, args.account, args.currency, args.date)
            _issued([done])
            return 0
        done, left = lifecycle.issue_period(args.actor, args.month, args.date)
        _issued(done)
        for status in left:
            _say(("not issued ", "yellow"), f"{status.draft.billing_account_id} ({status.draft.currency} "
                 f"{round_money(status.draft.total, status.draft.currency)}): " + "; ".join(status.needs))
        return 0
    if args.action == "void":
        lifecycle.void(args.actor, args.number, args.reason)
        _say(f"voided {args.number} ({args.reason}); it keeps its number. Issue its draft again to re-issue it.")
        return 0
    number = lifecycle.credit_note(args.actor, args.number, args.line, args.reason_code, amount=args.amount,
                                   quantity=args.quantity, comment=args.comment, issue_date=args.date)
    _say(f"issued credit note {number} against {args.number} line {args.line}")
    return 0


def _issued(done) -> None:
    for issued in done:
        again = f", re-issue of {issued.reissue_of}" if issued.reissue_of else ""
        _say(("issued ", "green"), (issued.invoice_number, "bold"),
             f" to {issued.billing_account_id}: {issued.currency} {round_money(issued.total, issued.currency)}{again} "
             f"(PDF sha256 {issued.pdf_sha256[:12]}…)")


def list_invoices(lifecycle, month: str, account: str | None) -> int:
    table = Table(title=f"Invoices of {month}")
    for column in ("account", "currency", "total", "state", "number", "still needs"):
        table.add_column(column, justify="right" if column == "total" else "left", overflow="fold")
    for status in lifecycle.status(month, account):
        d = status.draft
        needs = "" if status.state == "issued" else ("ready to issue" if status.issuable else "; ".join(status.needs))
        table.add_row(Text(d.billing_account_id), d.currency, f"{round_money(d.total, d.currency):,}", status.state,
                      d.invoice_number or "",
                      Text(needs))
    console.print(table)
    return 0


def show(lifecycle, number: str) -> int:
    from ledger.lifecycle import issued_snapshot

    with lifecycle.warehouse.transaction() as tx:
        doc = issued_snapshot(tx, number)
        path = tx.fetchall("SELECT d.path FROM ledger.documents d WHERE d.document_number = ?", [number])
    _say((f"{doc['document_type'].replace('_', ' ')} {doc['number']}", "bold"),
         f"  issued {doc['issue_date']}  {doc['buyer']['billing_account_id']} {doc['buyer'].get('name', '')}")
    for line in doc["lines"]:
        what = f" (corrects {line['corrected_period']}, {line['corrected_invoice_number']})" if line.get(
            "corrected_period") else ""
        _say(f"  {line['line_number']:>3}  {line['description']}{what}  {line.get('quantity') or ''}  {line['amount']}")
    _say(f"  total {doc['currency']} {doc['total']}")
    if doc.get("catalog_sha256"):  # the catalog file it was priced with, kept in the landing zone under this name
        _say(f"  priced with catalog sha256 {doc['catalog_sha256']}")
    if path:
        _say(f"  PDF: {path[0][0]}")
    return 0


def export(settings: Settings, month: str, out: Path | None) -> int:
    from ledger.exports import export_period

    folder = out or settings.home / "exports" / month
    with open_warehouse(settings).transaction() as tx:
        files = export_period(tx, month, folder)
    for path in files:
        _say(f"wrote {path}")
    return 0


def verify(settings: Settings, head: str | None) -> int:
    from ledger import audit

    with open_warehouse(settings).transaction() as tx:
        checked = audit.verify(tx, head)
    if checked.ok:
        _say(("audit log verified: ", "green"), f"{checked.entries} entries, head {checked.head or '(empty)'}")
        return 0
    _say(("audit log BROKEN: ", "bold red"), f"{len(checked.problems)} problem(s) in {checked.entries} entries")
    for problem in checked.problems:
        _say(f"  - {problem}")
    return 1
