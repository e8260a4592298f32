"""The reference month's lifecycle (../shared/scenarios/reference-month.md, "Late usage" and
"Lifecycle"), on the real pipeline and on both engines (DuckDB; PostgreSQL in a database of its
own): October billed with `billing run`, then every step of the specification through the
lifecycle functions the CLI and the desk call, in order. The numbers, the refusals and their
messages are the specification's.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from ledger import audit
from ledger.lifecycle import Refused

from lifecycle_support import late_event, postgres_database, reference_lifecycle, rows, run_month
from support import REFERENCE, new_home

D = Decimal
ISSUE_DAY = date(2026, 11, 2)


@pytest.fixture(scope="module", params=["duckdb", "postgres"])
def world(request, tmp_path_factory):
    home = new_home(tmp_path_factory, f"lifecycle-{request.param}")
    if request.param == "duckdb":
        with reference_lifecycle(home) as lifecycle:
            yield home, lifecycle
        return
    with postgres_database("lifecycle") as dsn, reference_lifecycle(home, dsn) as lifecycle:
        yield home, lifecycle


def totals(lifecycle, period: str) -> dict[str, Decimal]:
    return dict(rows(lifecycle, "SELECT billing_account_id, total FROM marts.fct_invoices WHERE period = ?", [period]))


def issued_rows(lifecycle, number: str) -> list:
    """Everything the ledger holds about one issued invoice, as stored."""
    order = {"invoices": "invoice_number", "invoice_lines": "line_number",
             "invoice_line_tiers": "line_number, tier_number"}
    return [rows(lifecycle, f"SELECT * FROM ledger.{table} WHERE invoice_number = ? ORDER BY {by}", [number])
            for table, by in order.items()]


def test_1_a_manual_charge_changes_the_draft_and_its_maker_cannot_approve(world):
    home, lifecycle = world
    lifecycle.add_charge("sam", "2026-10", "C3", "300.00", "Onboarding workshop", reason="workshop held 2026-10-20")
    run_month("2026-10")  # the draft is recomputed with the ledger's manual line
    assert totals(lifecycle, "2026-10")["C3"] == D("2238.71")
    [line] = rows(lifecycle, "SELECT amount, rate_level, description FROM marts.fct_invoice_lines "
                         "WHERE period = '2026-10' AND billing_account_id = 'C3' AND line_type = 'manual'")
    assert line == (D("300.00"), "manual", "Onboarding workshop")
    with pytest.raises(Refused, match="sam .* added a manual charge .* cannot approve"):
        lifecycle.approve("sam", "2026-10", "C3")


def test_2_approvals_follow_the_policy_and_refusals_name_who_may(world):
    home, lifecycle = world
    for person in ("fiona", "fay"):
        lifecycle.approve(person, "2026-10", "C1")
    lifecycle.approve("fiona", "2026-10", "C2")
    with pytest.raises(Refused) as refused:
        lifecycle.issue("fiona", "2026-10", "C2", issue_date=ISSUE_DAY)
    assert "carl" in str(refused.value)
    assert rows(lifecycle, "SELECT COUNT(*) FROM ledger.invoices")[0][0] == 0  # the refused issue left nothing
    lifecycle.approve("carl", "2026-10", "C2", comment="usage matches the account plan")
    with pytest.raises(Refused, match="ada .*auditor"):
        lifecycle.approve("ada", "2026-10", "C3")
    lifecycle.approve("fiona", "2026-10", "C3")
    [c3] = lifecycle.status("2026-10", "C3")
    assert c3.state == "draft" and any("two distinct approvers" in need and "fay" in need for need in c3.needs)
    lifecycle.approve("fay", "2026-10", "C3")
    lifecycle.approve("fiona", "2026-10", "C5")
    states = {s.draft.billing_account_id: s.state for s in lifecycle.status("2026-10")}
    assert states == {"C1": "approved", "C2": "approved", "C3": "approved", "C4": "draft", "C5": "approved"}
    with pytest.raises(Refused, match="only finance"):
        lifecycle.issue("carl", "2026-10", "C2", issue_date=ISSUE_DAY)


def test_4_issuing_october_numbers_c1_c2_c3_c5_and_leaves_c4(world):
    home, lifecycle = world
    issued, left = lifecycle.issue_period("fiona", "2026-10", issue_date=ISSUE_DAY)
    assert [(i.invoice_number, i.billing_account_id, i.total) for i in issued] == [
        ("INV-2026-000001", "C1", D("2527.63")), ("INV-2026-000002", "C2", D("1000.00")),
        ("INV-2026-000003", "C3", D("2238.71")), ("INV-2026-000004", "C5", D("200.00"))]
    [c4] = left
    assert c4.draft.billing_account_id == "C4" and any("unrated usage" in need for need in c4.needs)
    assert rows(lifecycle, "SELECT invoice_number, status FROM marts.fct_invoice_status WHERE period = '2026-10' "
                       "AND billing_account_id = 'C1'") == [("INV-2026-000001", "issued")]
    # each issued invoice froze its PDF, stored by its sha256; the PDF shows the number, lines and total
    from pypdf import PdfReader

    for number, sha, path in rows(lifecycle, "SELECT i.invoice_number, i.pdf_sha256, d.path FROM ledger.invoices i "
                                         "JOIN ledger.documents d ON d.sha256 = i.pdf_sha256 ORDER BY 1"):
        assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == sha, number
        if number == "INV-2026-000003":
            text = "\n".join(page.extract_text() for page in PdfReader(path).pages)
            for shown in ("INV-2026-000003", "Initech", "Onboarding workshop", "300.00", "338.71", "2,238.71"):
                assert shown in text, shown
    with pytest.raises(Refused, match="already issued as INV-2026-000001"):
        lifecycle.issue("fiona", "2026-10", "C1", issue_date=ISSUE_DAY)
    # each cites the catalog it was priced with (the draft's fct_invoices.catalog_sha256): the reference file's bytes
    catalog = hashlib.sha256((REFERENCE / "catalog.yaml").read_bytes()).hexdigest()
    cited = rows(lifecycle, "SELECT i.catalog_sha256, i.snapshot, d.catalog_sha256, r.catalog_sha256 "
                            "FROM ledger.invoices i JOIN marts.fct_invoices d ON d.invoice_id = i.invoice_id "
                            "JOIN ledger.rating_runs r ON r.run_id = i.rating_run_id ORDER BY i.invoice_number")
    assert [(sha, json.loads(snapshot)["catalog_sha256"], draft, run) for sha, snapshot, draft, run in cited] == [
        (catalog, catalog, catalog, catalog)] * 4


def test_5_credit_notes_never_exceed_what_is_left_of_a_line(world):
    home, lifecycle = world
    [(line_number, amount)] = rows(lifecycle, "SELECT line_number, amount FROM ledger.invoice_lines "
                                          "WHERE invoice_number = 'INV-2026-000002' AND product_id = 'BANDWIDTH_GB'")
    assert amount == D("80.00")
    number = lifecycle.credit_note("fiona", "INV-2026-000002", line_number, "product_unsatisfactory", amount="30.00",
                                   issue_date=ISSUE_DAY)
    assert number == "CN-2026-000001"
    with pytest.raises(Refused, match="50.00 USD left to credit"):
        lifecycle.credit_note("fiona", "INV-2026-000002", line_number, "product_unsatisfactory", amount="60.00",
                              issue_date=ISSUE_DAY)
    assert rows(lifecycle, "SELECT creditable_amount FROM marts.fct_issued_invoice_lines WHERE invoice_number = "
                       "'INV-2026-000002' AND line_number = ?", [line_number]) == [(D("50.00"),)]


def test_6_a_void_keeps_its_number_and_the_reissue_references_it(world):
    home, lifecycle = world
    lifecycle.void("fiona", "INV-2026-000004", reason="order_change")
    reissued = lifecycle.issue("fiona", "2026-10", "C5", issue_date=ISSUE_DAY)
    assert (reissued.invoice_number, reissued.reissue_of, reissued.total) == ("INV-2026-000005", "INV-2026-000004",
                                                                               D("200.00"))
    assert rows(lifecycle, "SELECT invoice_number FROM ledger.invoices WHERE invoice_number = 'INV-2026-000004'")
    assert rows(lifecycle, "SELECT reason FROM ledger.voids") == [("order_change",)]


def test_7_late_usage_is_adjusted_on_november_and_october_stays_as_issued(world):
    home, lifecycle = world
    before = issued_rows(lifecycle, "INV-2026-000001")
    [(pdf_path,)] = rows(lifecycle, "SELECT d.path FROM ledger.invoices i JOIN ledger.documents d "
                                "ON d.sha256 = i.pdf_sha256 WHERE i.invoice_number = 'INV-2026-000001'")
    pdf_before = Path(pdf_path).read_bytes()
    late_event(home / "inbox", "november-late.jsonl", "C1", 1000, "2026-10-20", "c1-api-late-1")
    run_month("2026-10")  # October rated again: the draft now differs from what was issued
    assert totals(lifecycle, "2026-10")["C1"] == D("2529.63")
    run_month("2026-11")
    assert issued_rows(lifecycle, "INV-2026-000001") == before
    assert Path(pdf_path).read_bytes() == pdf_before
    adjustments = rows(lifecycle, "SELECT product_id, amount, corrected_period, corrected_invoice_number FROM "
                              "marts.fct_invoice_lines WHERE period = '2026-11' AND line_type = 'adjustment'")
    assert adjustments == [("API_CALLS", D("2.00"), "2026-10", "INV-2026-000001")]  # 1,000 x 0.002, C1 only
    # the reference data's one November event of C1 (888 calls on Nov 1, its period-edge case) is
    # billed beside it; without it the total would be the specification's 2.00
    usage = rows(lifecycle, "SELECT COALESCE(SUM(amount), 0) FROM marts.fct_invoice_lines WHERE period = '2026-11' "
                        "AND billing_account_id = 'C1' AND line_type = 'usage'")[0][0]
    assert usage == D("1.78")
    assert totals(lifecycle, "2026-11")["C1"] - usage == D("2.00")


def test_8_the_action_log_verifies_and_an_edit_is_found(world, tmp_path):
    home, lifecycle = world
    with lifecycle.warehouse.transaction() as tx:
        checked = audit.verify(tx)
    assert checked.ok, checked.problems
    actions = [row[0] for row in rows(lifecycle, "SELECT action FROM ledger.actions ORDER BY seq")]
    assert actions.count("invoice.issued") == 5 and "credit_note.issued" in actions and "invoice.voided" in actions
    # every event went to the outbox in its action's transaction, in order, for the webhooks
    events = rows(lifecycle, "SELECT event_type, document_number FROM ledger.outbox ORDER BY seq")
    assert [e for e in events if e[0] != "invoice.approved"] == [
        ("invoice.issued", "INV-2026-000001"), ("invoice.issued", "INV-2026-000002"),
        ("invoice.issued", "INV-2026-000003"), ("invoice.issued", "INV-2026-000004"),
        ("credit_note.issued", "CN-2026-000001"), ("invoice.voided", "INV-2026-000004"),
        ("invoice.issued", "INV-2026-000005")]
    assert [e[0] for e in events].count("invoice.approved") == actions.count("invoice.approved") == 7  # C1, C2, C3 twice; C5 once
    rows(lifecycle, "UPDATE ledger.actions SET reason = 'nothing to see' WHERE seq = 2")
    with lifecycle.warehouse.transaction() as tx:
        checked = audit.verify(tx)
    assert not checked.ok and "entry 2" in checked.problems[0] and "edited" in checked.problems[0]
