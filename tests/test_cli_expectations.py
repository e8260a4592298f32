"""`billing run --expectations`: the Great Expectations suites run after the checks, under the run's id.

The reference month is billed once with `--expectations`, with one fault planted after rating (as
tests/test_planted_faults.py does): C1's SMS line is billed 0.01 more than its unrounded amount
rounded, which the `fct_invoice_lines` suite must catch. Without the flag no suite runs
(tests/test_quality_checks.py).
"""

from __future__ import annotations

import json

import pytest

from billing import cli, runner
from warehouse.store import open_warehouse

from support import REFERENCE, billing_env, drop_reference_usage, new_home, query

SUITES = ("raw_events", "fct_invoices", "fct_invoice_lines", "fct_invoice_line_tiers")


@pytest.fixture(scope="module")
def billed(tmp_path_factory):
    """Bill October 2026 with --expectations; yields (home, printed output)."""
    from core.config import load_settings

    home = new_home(tmp_path_factory, "cli-expectations")
    real_rate = runner.rate

    def rate_then_alter_a_line(settings, period):
        result = real_rate(settings, period)
        with open_warehouse(load_settings()).transaction() as tx:
            tx.execute("UPDATE marts.fct_invoice_lines SET amount = amount + 0.01 "
                       "WHERE period = '2026-10' AND billing_account_id = 'C1' AND product_id = 'SMS'")
        return result

    with billing_env(home, REFERENCE / "catalog.yaml") as mp:
        mp.setattr(runner, "rate", rate_then_alter_a_line)
        drop_reference_usage(home / "inbox")
        with cli.console.capture() as captured:
            assert cli.main(["run", "--month", "2026-10", "--expectations"]) == cli.EXIT_BLOCKED
        yield home, captured.get()



def test_the_suites_ran_and_their_results_are_kept_under_the_runs_id(billed):
    home, printed = billed
    [(run_id,)] = query(home, "select distinct run_id from marts.quality_findings where period = '2026-10'")
    folder = home / "quality" / "validations" / "2026-10" / run_id
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{s}.{ext}" for s in SUITES for ext in ("json", "html"))
    for suite in SUITES:
        document = json.loads((folder / f"{suite}.json").read_text())
        assert document["meta"]["billing"]["run_id"] == run_id and document["meta"]["billing"]["period"] == "2026-10"
        assert document["success"] is (suite != "fct_invoice_lines")
        assert "<html" in (folder / f"{suite}.html").read_text().lower()
    # The summary: each suite passed or failed, and where the results are.
    for suite in ("raw_events", "fct_invoices", "fct_invoice_line_tiers"):
        assert f"suite {suite}: passed" in printed
    assert "suite fct_invoice_lines: FAILED" in printed
    assert f"validation results (<suite>.json, <suite>.html): {folder}" in printed
    assert "check events_expectations: passed" in printed and "check invoice_expectations: FAILED" in printed
    assert "expectations: not run" not in printed


def test_the_failed_expectation_names_the_altered_line_in_the_findings_mart(billed):
    home, printed = billed
    [(line_id,)] = query(home, "select line_id from marts.fct_invoice_lines "
                               "where period = '2026-10' and billing_account_id = 'C1' and product_id = 'SMS'")
    rows = query(home, "select check_name, severity, customer_id, line_id, detail from marts.quality_findings "
                       "where period = '2026-10' and check_name like '%expectations' order by check_name")
    assert [(c, s, cust, line) for c, s, cust, line, _ in rows] == [
        ("invoice_expectations", "error", "C1", line_id)]
    assert "amount_expected" in rows[0][4]
    # The other checks ran too, in the same run: the re-rater and the totals see the same line.
    assert ("misrated_lines", "C1") in query(home, "select check_name, customer_id from marts.quality_findings "
                                                   "where period = '2026-10'")
    assert "checks: 8 passed, 4 failed" in printed  # unrated_usage (by design), the line three ways
