"""An invoice is never issued negative: a corrected catalog makes an issued month cheaper, the next
month's draft carries the negative adjustment, its remainder becomes credit, and the month after
consumes that credit automatically (DESIGN.md, "The invoice lifecycle")."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from ledger.lifecycle import Refused

from lifecycle_support import late_event, reference_lifecycle, rows, run_month
from support import REFERENCE, new_home

D = Decimal


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    home = new_home(tmp_path_factory, "lifecycle-credit")
    with reference_lifecycle(home) as lifecycle:
        yield home, lifecycle


def test_a_negative_correction_becomes_credit_that_the_next_invoice_uses(world, monkeypatch, tmp_path):
    home, lifecycle = world
    for person in ("fiona", "fay"):
        lifecycle.approve(person, "2026-10", "C1")
    assert lifecycle.issue("fiona", "2026-10", "C1", issue_date=date(2026, 11, 2)).total == D("2527.63")

    # finance finds API_CALLS' list price was wrong: 0.001, not 0.002; October is rated again
    fixed = tmp_path / "catalog.yaml"
    text = (REFERENCE / "catalog.yaml").read_text()
    assert text.count('unit_price: "0.002"') == 1
    fixed.write_text(text.replace('unit_price: "0.002"', 'unit_price: "0.001"'))
    monkeypatch.setenv("BILLING_CATALOG", str(fixed))
    run_month("2026-10")
    run_month("2026-11")
    november = dict(((t, p), a) for t, p, a in rows(
        lifecycle, "SELECT line_type, product_id, amount FROM marts.fct_invoice_lines WHERE period = '2026-11' "
                   "AND billing_account_id = 'C1'"))
    # 1,244,567 calls re-rated at 0.001 = 1244.57 instead of the 2489.13 issued; 888 November calls = 0.89
    assert november[("adjustment", "API_CALLS")] == D("-1244.56")
    assert november[("usage", "API_CALLS")] == D("0.89")
    assert november[("credit_carried", None)] == D("1243.67")
    [(total,)] = rows(lifecycle, "SELECT total FROM marts.fct_invoices WHERE period = '2026-11' AND billing_account_id = 'C1'")
    assert total == 0
    with pytest.raises(Refused, match="1 more finance approval"):
        lifecycle.issue("fiona", "2026-11", "C1", issue_date=date(2026, 12, 1))
    lifecycle.approve("fiona", "2026-11", "C1")
    assert lifecycle.issue("fiona", "2026-11", "C1", issue_date=date(2026, 12, 1)).total == 0
    assert rows(lifecycle, "SELECT balance FROM marts.fct_credit_balances WHERE billing_account_id = 'C1'") == [
        (D("1243.67"),)]

    # December: 100,000 calls = 100.00, paid from the credit
    late_event(home / "inbox", "december.jsonl", "C1", 100_000, "2026-12-01", "c1-api-dec")
    run_month("2026-12")
    december = rows(lifecycle, "SELECT line_type, amount FROM marts.fct_invoice_lines WHERE period = '2026-12' "
                               "AND billing_account_id = 'C1' ORDER BY line_type")
    assert december == [("credit_applied", D("-100.00")), ("usage", D("100.00"))]  # no second correction of October
    lifecycle.approve("fiona", "2026-12", "C1")
    assert lifecycle.issue("fiona", "2026-12", "C1", issue_date=date(2027, 1, 2)).total == 0
    assert rows(lifecycle, "SELECT balance, credit_left, credit_used FROM marts.fct_credit_balances "
                           "WHERE billing_account_id = 'C1'") == [(D("1143.67"), D("1243.67"), D("100.00"))]
    assert rows(lifecycle, "SELECT invoice_number FROM ledger.invoices ORDER BY 1") == [
        ("INV-2026-000001",), ("INV-2026-000002",), ("INV-2027-000001",)]  # a series per year
