"""`billing run --month` bills a month from the command line, with a summary a person can act on."""

from decimal import Decimal

import duckdb
import pytest

from billing.cli import EXIT_BLOCKED, main

from support import drop_reference_usage


def test_billing_run_bills_the_reference_month(billing_env, capsys):
    drop_reference_usage(billing_env / "inbox")
    # billed, but unrated usage (C4's SMS, C999) blocks the month: exit status 3, not 0 and not 1
    assert main(["run", "--month", "2026-10"]) == EXIT_BLOCKED == 3
    out = capsys.readouterr().out
    assert "Invoices for 2026-10" in out
    assert "checks: 5 passed, 1 failed" in out
    assert "C999" in out  # the unrated usage check names the customer
    assert "exit status 3: billed, but blocking check(s) failed: unrated_usage" in " ".join(out.split())
    assert "SELECT billing_account_id" in out
    con = duckdb.connect(str(billing_env / "warehouse.duckdb"))
    assert con.execute("select count(*), sum(total) from marts.fct_invoices where currency = 'USD'").fetchone() \
        == (4, Decimal("5666.34"))
    # the inbox is emptied into processed/, and the next run lands nothing new
    assert not [p for p in (billing_env / "inbox").iterdir() if p.is_file()]


def test_bad_month_is_a_clear_error(billing_env, capsys):
    assert main(["run", "--month", "October"]) == 1
    assert "YYYY-MM" in capsys.readouterr().out


def test_broken_catalog_names_file_and_entry(billing_env, tmp_path, monkeypatch, capsys):
    bad = tmp_path / "catalog.yaml"
    bad.write_text("products:\n  - {code: X, prices: [{currency: USD, model: per_unit, unit_price: 0.5}]}\n")
    monkeypatch.setenv("BILLING_CATALOG", str(bad))
    assert main(["run", "--month", "2026-10"]) == 1
    out = capsys.readouterr().out
    assert "catalog.yaml" in out and "products[0]" in out and "binary float" in out


def test_misrated_check_names_exactly_the_altered_line(billing_env):
    from billing import runner
    from billing.config import load_settings
    from billing.periods import month_window

    drop_reference_usage(billing_env / "inbox")
    assert main(["run", "--month", "2026-10"]) == EXIT_BLOCKED
    con = duckdb.connect(str(billing_env / "warehouse.duckdb"))
    con.execute("update marts.fct_invoice_lines set amount = amount + 0.01 "
                "where billing_account_id = 'C1' and product_id = 'SMS'")
    con.close()
    settings = load_settings()
    outcomes = {o.name: o for o in runner.check(settings, settings.warehouse(), month_window("2026-10"))}
    misrated = outcomes["misrated_lines"]
    assert not misrated.passed
    assert [(f["billing_account_id"], f["product_id"], f["amount"], f["expected_amount"])
            for f in misrated.findings] == [("C1", "SMS", "16.510", "16.500")]


def test_user_data_is_printed_as_it_is_and_long_values_are_cut(billing_env):
    """Ids that look like rich markup or emoji codes print as they are; a 1 MiB id is cut in the summary.

    Before: `[/red]` ended the run with a markup error, `account:X:FEE:1` printed as `account❌FEE:1`, and
    highlighting a long id took minutes (100 kB: about 2 minutes; the issue's 8 MiB id: killed after 150 s)."""
    from billing import cli

    long_id = "C-" + "9" * (1 << 20)
    rows = [f"odd-{n},{customer},API_CALLS,5,2026-10-0{n}T10:00:00Z"
            for n, customer in enumerate(["[/red]", "account:X:FEE:1", "[bold]C7[/bold]", long_id], start=1)]
    (billing_env / "inbox" / "odd-ids.csv").write_text("event_id,customer_id,product_id,quantity,occurred_at\n"
                                                       + "\n".join(rows) + "\n")
    with cli.console.capture() as captured:
        assert main(["run", "--month", "2026-10"]) == EXIT_BLOCKED  # unknown customers
    out = captured.get()
    flat = "".join(out.split())  # the console wraps long lines
    assert "checkunrated_usage:FAILED" in flat
    for shown in ("customer[/red]isnot", "customeraccount:X:FEE:1isnot", "customer[bold]C7[/bold]isnot"):
        assert shown in flat
    assert f"customerC-{'9' * 198}...({len(long_id) - 200:,}morecharacters)isnot" in flat
    assert len(out) < 20_000  # the id is in the tables, not on the screen
    con = duckdb.connect(str(billing_env / "warehouse.duckdb"))
    assert con.execute("select count(*) from marts.fct_unrated_usage where customer_id = ?", [long_id]).fetchone() \
        == (1,)


CLEAN_CATALOG = """
products:
  - code: API_CALLS
    name: API calls
    unit: call
    aggregation: sum
    prices:
      - {currency: USD, model: per_unit, unit_price: "0.002"}
customers:
  - {id: C1, name: Northwind, currency: USD}
"""


def test_a_month_every_blocking_check_passes_exits_0(billing_env, monkeypatch, capsys):
    catalog = billing_env / "clean-catalog.yaml"
    catalog.write_text(CLEAN_CATALOG)
    monkeypatch.setenv("BILLING_CATALOG", str(catalog))
    (billing_env / "inbox" / "usage.csv").write_text(
        "event_id,customer_id,product_id,quantity,occurred_at\ne1,C1,API_CALLS,5000,2026-10-03T10:00:00Z\n")
    assert main(["run", "--month", "2026-10"]) == 0
    out = capsys.readouterr().out
    assert "FAILED" not in out and "exit status" not in out
    con = duckdb.connect(str(billing_env / "warehouse.duckdb"))
    assert con.execute("select billing_account_id, total, is_finalizable from marts.fct_invoices").fetchall() == [
        ("C1", Decimal("10.00"), True)]


def test_the_exit_statuses_are_in_the_help(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Exit status: 0 done" in text and "1 an error stopped it" in text
    assert "3 billed, but a blocking check failed" in text
