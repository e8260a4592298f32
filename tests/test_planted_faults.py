"""Proof by planted faults: one small dataset with one fault per quality check, billed for real.

The dataset (tests/data/planted_faults/: a catalog and usage files for July to October 2026) is
billed for October with `billing run --month 2026-10`. Faults that cannot come from input files are
planted between the run's stages, by wrapping the rate stage the CLI calls:

| fault | planted | the check that must name it |
| --- | --- | --- |
| F6 has a live contract (minimum 150.00, no usage) and no invoice | its invoice and its line deleted after rating | missed_customers: F6 |
| C3's API_CALLS line amount changed 40.00 -> 44.00 | after rating, the line only | misrated_lines: that line (44.00 vs 40.00) |
| E5 uses VIDEO_MIN, which the catalog does not know | in october-main.csv | unrated_usage: E5 VIDEO_MIN 300 |
| rows 2-3 of october-dogwood.csv (D4, 2 x 5,000 calls) vanish | deleted from raw.events after normalize, before rating | conservation: that file, rows 2-3 |
| B2's calls jump from 1,000 a month (Jul-Sep) to 50,000 | in the usage files | anomalies: B2 API_CALLS, 50.0x |

Where one fault is rightly seen by a second check, that check must name it too, and nothing else:
- misrated_lines also names F6's missing minimum-commitment line: the re-rater bills 150.00 for it
  and the warehouse has no such line (the same fault, seen independently of the contract list);
- invoice_totals names C3's invoice: its total (40.00, as rated) is no longer the sum of its lines
  (44.00). That is what an altered line implies; the re-rater agrees with the total, not the line.
- conservation does not (cannot) count D4's missing units: the rows vanished before rating, so the
  invoice agrees with the events left (10,000 calls, 20.00). The manifest records rows, not units;
  the finding names the rows missing, which the landed file still holds.

October as billed (USD, per unit 0.002, SMS 1.50 per 100): A1 20.00 + 4.50 (250 SMS, 3 blocks)
= 24.50, above its 10.00 minimum; B2 100.00; C3 40.00; D4 20.00 (10,000 calls left of 20,000);
E5 10.00, not finalizable; F6 true-up 150.00 (then deleted).
"""

from __future__ import annotations

import hashlib
import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from billing import runner
from billing.cli import EXIT_BLOCKED, main
from warehouse.store import open_warehouse

from support import billing_env, copy_warehouse, new_home, query

DATA = Path(__file__).parent / "data" / "planted_faults"
CHECKS = ("unrated_usage", "missed_customers", "invoice_totals", "misrated_lines", "conservation", "anomalies")
# Checks of whole files, whose faults are planted in tests/test_cli.py (a rejected file, quarantined rows, a
# conflicting duplicate): they pass here.
FILE_CHECKS = ("rejected_files", "quarantined_rows", "conflicting_duplicates")
LIFECYCLE_CHECKS = ("corrections_outside_lookback",)  # nothing was issued here: tests/test_lifecycle_*.py


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Bill October with every fault planted; yields (warehouse path, the run's printed output)."""
    from core.config import load_settings

    home = new_home(tmp_path_factory, "planted")
    for path in sorted((DATA / "usage").iterdir()):
        shutil.copy(path, home / "inbox" / path.name)
    real_rate = runner.rate

    def rate_with_faults(settings, period):
        warehouse = open_warehouse(load_settings())
        with warehouse.transaction() as tx:  # before rating: two of D4's rows are lost
            tx.execute("DELETE FROM raw.events WHERE event_id IN ('d4-api-10-2', 'd4-api-10-3')")
        result = real_rate(settings, period)
        with warehouse.transaction() as tx:  # after rating: a line altered, an invoice gone
            tx.execute("UPDATE marts.fct_invoice_lines SET amount = 44.00 "
                       "WHERE period = '2026-10' AND billing_account_id = 'C3' AND product_id = 'API_CALLS'")
            tx.execute("DELETE FROM marts.fct_invoice_lines WHERE period = '2026-10' AND billing_account_id = 'F6'")
            tx.execute("DELETE FROM marts.fct_invoices WHERE period = '2026-10' AND billing_account_id = 'F6'")
        return result

    with billing_env(home, DATA / "catalog.yaml") as mp:
        mp.setattr(runner, "rate", rate_with_faults)
        from billing import cli

        with cli.console.capture() as captured:
            assert main(["run", "--month", "2026-10"]) == EXIT_BLOCKED
        yield home / "warehouse.duckdb", captured.get()



def sha256(name: str) -> str:
    return hashlib.sha256((DATA / "usage" / name).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def outcomes(planted):
    """The checks' outcomes, run again on the billed warehouse (the same functions `billing run` ran)."""
    from core.config import load_settings
    from core.periods import month_window

    path, _ = planted
    with billing_env(path.parent, DATA / "catalog.yaml"):
        settings = load_settings()
        from catalog.load import load_catalog
        from quality import checks as q

        with open_warehouse(settings).transaction() as tx:
            return {check.__name__: check(tx, month_window("2026-10"), load_catalog(settings.catalog))
                    for check in q.CHECKS}


def test_the_invoices_are_as_billed_then_tampered(planted):
    path, _ = planted
    assert query(path, "select billing_account_id, total, is_finalizable from marts.fct_invoices "
                       "where period = '2026-10' order by 1") == [
        ("A1", Decimal("24.50"), True), ("B2", Decimal("100.00"), True), ("C3", Decimal("40.00"), True),
        ("D4", Decimal("20.00"), True), ("E5", Decimal("10.00"), False)]
    assert query(path, "select billing_account_id, product_id, quantity, amount from marts.fct_invoice_lines "
                       "where period = '2026-10' order by 1, 2") == [
        ("A1", "API_CALLS", Decimal("10000"), Decimal("20.00")), ("A1", "SMS", Decimal("250"), Decimal("4.50")),
        ("B2", "API_CALLS", Decimal("50000"), Decimal("100.00")), ("C3", "API_CALLS", Decimal("20000"), Decimal("44.00")),
        ("D4", "API_CALLS", Decimal("10000"), Decimal("20.00")), ("E5", "API_CALLS", Decimal("5000"), Decimal("10.00"))]


def test_every_check_fails_on_its_planted_fault_only(outcomes):
    assert set(outcomes) == {*CHECKS, *FILE_CHECKS, *LIFECYCLE_CHECKS}
    assert {name: o.passed for name, o in outcomes.items()} == {**dict.fromkeys(CHECKS, False),
                                                                **dict.fromkeys(FILE_CHECKS, True),
                                                                **dict.fromkeys(LIFECYCLE_CHECKS, True)}
    assert {name: o.blocking for name, o in outcomes.items()} == {
        **dict.fromkeys(CHECKS, True), "anomalies": False, "rejected_files": True, "quarantined_rows": False,
        "conflicting_duplicates": False, "corrections_outside_lookback": False}


def test_unrated_usage_names_the_unknown_products_usage(outcomes):
    assert [(f["reason"], f["customer_id"], f["billing_account_id"], f["product_id"], Decimal(f["quantity"]))
            for f in outcomes["unrated_usage"].findings] == [
        ("unknown_product", "E5", "E5", "VIDEO_MIN", Decimal("300"))]


def test_missed_customers_names_the_customer_whose_invoice_vanished(outcomes):
    # F6 has a contract and no usage: 'contract CT-F6' is why it is active. A1's contract is invoiced.
    assert [(f["billing_account_id"], f["why"]) for f in outcomes["missed_customers"].findings] == [
        ("F6", "contract CT-F6")]


def test_misrated_lines_names_the_altered_line_and_the_vanished_one(planted, outcomes):
    path, _ = planted
    [(c3_line, c3_invoice)] = query(path, "select line_id, invoice_id from marts.fct_invoice_lines "
                                          "where period = '2026-10' and billing_account_id = 'C3'")
    got = [(f["line_id"], f["invoice_id"], f["billing_account_id"], f["line_type"], f["product_id"], f["rate_id"],
            f["amount"] and Decimal(f["amount"]), f["expected_amount"] and Decimal(f["expected_amount"]))
           for f in outcomes["misrated_lines"].findings]
    assert got == [
        (c3_line, c3_invoice, "C3", "usage", "API_CALLS", "default:API_CALLS:USD:1", Decimal("44.00"),
         Decimal("40.00")),
        (None, None, "F6", "minimum_commitment", None, "CT-F6", None, Decimal("150.00"))]


def test_invoice_totals_names_the_invoice_of_the_altered_line(planted, outcomes):
    path, _ = planted
    [(c3_invoice,)] = query(path, "select invoice_id from marts.fct_invoices where billing_account_id = 'C3'")
    assert [(f["invoice_id"], f["billing_account_id"], Decimal(f["total"]), Decimal(f["sum_of_lines"]))
            for f in outcomes["invoice_totals"].findings] == [(c3_invoice, "C3", Decimal("40.00"), Decimal("44.00"))]


def test_conservation_names_the_file_that_lost_rows(outcomes):
    assert [(f["kind"], f["file_id"], f["original_name"], f["rows_received"], f["events"], f["missing_rows"])
            for f in outcomes["conservation"].findings] == [
        ("rows", sha256("october-dogwood.csv"), "october-dogwood.csv", "4", "2", "2-3")]
    assert "rows 2-3 are in none of them" in outcomes["conservation"].findings[0]["detail"]


def test_anomalies_name_the_customer_whose_usage_jumped(outcomes):
    assert [(f["kind"], f["customer_id"], f["product_id"], Decimal(f["units"]), Decimal(f["trailing_average"]))
            for f in outcomes["anomalies"].findings] == [("jump", "B2", "API_CALLS", Decimal("50000"), Decimal("1000"))]
    assert "50.0x" in outcomes["anomalies"].findings[0]["detail"]


def test_the_findings_mart_holds_exactly_the_planted_faults(planted):
    path, printed = planted
    [(c3_line,)] = query(path, "select line_id from marts.fct_invoice_lines where billing_account_id = 'C3'")
    rows = query(path, "select check_name, severity, customer_id, line_id, file_id from marts.quality_findings "
                       "where period = '2026-10'")
    assert sorted(rows, key=repr) == sorted([
        ("unrated_usage", "error", "E5", None, None),
        ("missed_customers", "error", "F6", None, None),
        ("invoice_totals", "error", "C3", None, None),
        ("misrated_lines", "error", "C3", c3_line, None),
        ("misrated_lines", "error", "F6", None, None),
        ("conservation", "error", None, None, sha256("october-dogwood.csv")),
        ("anomalies", "warning", "B2", None, None),
    ], key=repr)
    details = dict(query(path, "select check_name || ':' || coalesce(customer_id, ''), detail "
                               "from marts.quality_findings where period = '2026-10'"))
    assert "44.00" in details["misrated_lines:C3"] and "40.00" in details["misrated_lines:C3"]
    assert "150.00" in details["misrated_lines:F6"]
    assert "october-dogwood.csv" in details["conservation:"] and "rows 2-3" in details["conservation:"]
    assert "CT-F6" in details["missed_customers:F6"]
    # What `billing run` printed: each check failed, naming its fault, and where the findings are.
    assert "checks: 4 passed, 5 failed, 1 with warnings" in printed
    assert "findings: 7 row(s) in marts.quality_findings for 2026-10" in printed
    assert "FROM marts.quality_findings WHERE period = '2026-10'" in printed
    for name in CHECKS[:-1]:
        assert f"check {name}: FAILED" in printed
    assert "check anomalies: WARNING" in printed  # a warning: it does not block finalization


# Each month's usage file as it arrives in production: during (or at the end of) its month.
RECEIVED = {"usage-2026-07.csv": "2026-07-31 18:00:00+00", "usage-2026-08.csv": "2026-08-31 18:00:00+00",
            "usage-2026-09.csv": "2026-09-30 18:00:00+00", "october-main.csv": "2026-10-31 18:00:00+00",
            "october-dogwood.csv": "2026-10-31 18:00:00+00"}


def test_conservation_names_a_broken_file_in_its_own_periods_only(planted, tmp_path):
    """A file is checked with the periods it contributed events to and the period it was received in;
    october-dogwood.csv (rows 2-3 lost) is a finding of October, not of the months that follow."""
    from catalog.load import load_catalog
    from core.periods import month_window
    from quality import checks as q
    from warehouse.store import Warehouse

    path, _ = planted
    copy = copy_warehouse(path, tmp_path)
    for name, at in RECEIVED.items():
        query(copy, "update raw.landed_files set received_at = cast(? as timestamptz) where original_name = ?",
              [at, name])

    def files_at_fault(month: str) -> list[str]:
        with Warehouse(duckdb_path=copy).transaction() as tx:
            outcome = q.conservation(tx, month_window(month), load_catalog(DATA / "catalog.yaml"))
        return [f["original_name"] for f in outcome.findings if f["kind"] == "rows"]

    assert files_at_fault("2026-10") == ["october-dogwood.csv"]
    assert files_at_fault("2026-11") == []  # before: every later month named it again
    assert files_at_fault("2026-09") == []

    # Delivered after October closed: checked with October (its events) and with November (its receipt).
    query(copy, "update raw.landed_files set received_at = timestamptz '2026-11-01 00:30:00+00' "
                "where original_name = 'october-dogwood.csv'")
    assert files_at_fault("2026-10") == ["october-dogwood.csv"]
    assert files_at_fault("2026-11") == ["october-dogwood.csv"]
    assert files_at_fault("2026-12") == []

    # A file that lost every one of its events is still checked with the month it was received in.
    query(copy, "delete from raw.events where file_id = ?", [sha256("usage-2026-08.csv")])
    assert files_at_fault("2026-08") == ["usage-2026-08.csv"]
    assert files_at_fault("2026-10") == ["october-dogwood.csv"]
