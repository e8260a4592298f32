"""`billing demo` (what `make demo` runs), at a small size: the checks find exactly the planted defects.

The demo generator plants defects (demo/dataset.py, `DemoSummary.defects`). Two are the billed
month's unrated usage, and are its only blocking findings: the unknown customer and the EUR
customer's SMS (no EUR price). The naive timestamp, a row of the billed month's part 3, is in
`raw.quarantine` and a warning (`quarantined_rows`). The others are accounted for in earlier months:
malformed and negative quantities in `raw.quarantine`, the repeated row in `raw.duplicates`, the
re-delivered file as a second receipt.
"""

from __future__ import annotations

from decimal import Decimal

import polars as pl
import pytest

from billing import cli
from demo.dataset import UNKNOWN_CUSTOMER, generate_demo

from support import billing_env, query

EVENTS = 20_000


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """Run `billing demo --events 20000` into a fresh BILLING_HOME; yields (home, printed output, summary)."""
    root = tmp_path_factory.mktemp("demo-month")
    home = root / "billing"
    with billing_env(home):
        with cli.console.capture() as captured:
            assert cli.main(["demo", "--events", str(EVENTS)]) == 0
    # The generator is deterministic: the same arguments give the same files and the same defects.
    summary = generate_demo(root / "expected", events=EVENTS)
    yield home, captured.get(), summary



def planted_row(summary, defect) -> dict:
    path = summary.inbox / defect.file
    frame = (pl.read_csv(path, infer_schema=False) if path.suffix == ".csv"
             else pl.read_ndjson(path, schema={c: pl.String for c in ("event_id", "customer_id", "product_id",
                                                                        "quantity", "occurred_at")}))
    return frame.row(defect.row - 1, named=True)


def test_the_findings_mart_lists_exactly_the_planted_unrated_usage(demo_run):
    home, _, summary = demo_run
    month = summary.months[-1]
    by_kind = {}
    for d in summary.defects:
        by_kind.setdefault(d.kind, []).append(d)
    [no_price] = by_kind["no_price"]
    [naive] = by_kind["naive_timestamp"]
    [(naive_file,)] = query(home, "select file_id from raw.landed_files where original_name = ?", [naive.file])
    eur_customer = planted_row(summary, no_price)["customer_id"]
    assert query(home, "select check_name, severity, customer_id, line_id, file_id from marts.quality_findings "
                       "where period = ? order by check_name, customer_id", [month]) == [
        ("quarantined_rows", "warning", None, None, naive_file),
        *sorted([("unrated_usage", "error", UNKNOWN_CUSTOMER, None, None),
                 ("unrated_usage", "error", eur_customer, None, None)])]
    # What each finding is: the unknown customer's planted calls, summed; the planted SMS in EUR.
    unknown_calls = sum(Decimal(planted_row(summary, d)["quantity"]) for d in by_kind["unknown_customer"])
    assert query(home, "select reason, customer_id, product_id, currency, quantity from marts.fct_unrated_usage "
                       "where period = ? order by reason", [month]) == [
        ("no_price", eur_customer, "SMS", "EUR", Decimal(planted_row(summary, no_price)["quantity"])),
        ("unknown_customer", UNKNOWN_CUSTOMER, "API_CALLS", None, unknown_calls)]
    # The EUR customer's invoice exists and is blocked by its unrated SMS.
    assert query(home, "select currency, is_finalizable from marts.fct_invoices where period = ? and "
                       "billing_account_id = ?", [month, eur_customer]) == [("EUR", False)]


def test_the_other_planted_defects_are_accounted_for(demo_run):
    home, _, summary = demo_run

    def where(kinds):
        return sorted((d.file, d.row) for d in summary.defects if d.kind in kinds)

    assert sorted(query(home, "select f.original_name, q.row_number from raw.quarantine q "
                              "join raw.landed_files f using (file_id)")) == where(
        {"malformed_quantity", "negative_quantity", "naive_timestamp"})
    assert sorted(query(home, "select f.original_name, d.row_number from raw.duplicates d "
                              "join raw.landed_files f using (file_id)")) == where({"duplicate_event"})
    [resent] = [d.file for d in summary.defects if d.kind == "duplicate_file"]
    assert query(home, "select is_first_delivery from raw.file_receipts where original_name = ?", [resent]) == [
        (False,)]


def test_the_demo_prints_the_checks_and_the_findings_count(demo_run):
    _, printed, summary = demo_run
    month = summary.months[-1]
    assert "checks: 8 passed, 1 failed, 1 with warnings" in printed
    assert "check unrated_usage: FAILED" in printed
    assert "check quarantined_rows: WARNING" in printed  # the naive timestamp
    for name in ("missed_customers", "invoice_totals", "misrated_lines", "conservation", "anomalies",
                 "rejected_files", "conflicting_duplicates"):
        assert f"check {name}: passed" in printed
    assert f"findings: 3 row(s) in marts.quality_findings for {month}" in printed
    assert (f"SELECT check_name, severity, customer_id, line_id, file_id, detail FROM marts.quality_findings "
            f"WHERE period = '{month}'") in printed
    assert "planted defects:" in printed and "no_price" in printed


def test_the_demo_exits_0_because_its_only_blocking_findings_are_the_planted_ones(demo_run):
    _, printed, summary = demo_run
    planted = sorted(summary.planted_blocking_findings())
    assert [check for check, _ in planted] == ["unrated_usage", "unrated_usage"]
    assert UNKNOWN_CUSTOMER in [who for _, who in planted]
    flat = " ".join(printed.split())
    assert (f"the only blocking findings of {summary.months[-1]} are the demo's planted ones ("
            + ", ".join(f"{check} {who}" for check, who in planted) + "): `billing run` exits 3 on this month, "
            "the demo 0") in flat
