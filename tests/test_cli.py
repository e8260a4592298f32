"""`billing run --month` bills a month from the command line, with a summary a person can act on."""

from decimal import Decimal

import duckdb
import pytest

from billing.cli import EXIT_BLOCKED, main
from warehouse.store import open_warehouse

from support import drop_reference_usage


def test_billing_run_bills_the_reference_month(billing_env, capsys):
    drop_reference_usage(billing_env / "inbox")
    # billed, but unrated usage (C4's SMS, C999) blocks the month: exit status 3, not 0 and not 1
    assert main(["run", "--month", "2026-10"]) == EXIT_BLOCKED == 3
    out = capsys.readouterr().out
    assert "Invoices for 2026-10" in out
    assert "checks: 9 passed, 1 failed" in out
    assert "C999" in out  # the unrated usage check names the customer
    assert "exit status 3: billed, but blocking check(s) failed: unrated_usage" in " ".join(out.split())
    con = duckdb.connect(str(billing_env / "warehouse.duckdb"))
    # the query the run suggests ("try: ...") runs as printed, and names each USD invoice's customer
    [suggested] = [line.split("try: ", 1)[1] for line in out.splitlines() if line.startswith("try: ")]
    suggested_rows = con.execute(suggested.rstrip(";")).fetchall()
    assert len(suggested_rows) == con.execute(
        "select count(*) from marts.fct_invoices where period = '2026-10'").fetchone()[0]
    assert all(row[1] for row in suggested_rows if row[2] == "USD")
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
    from core.config import load_settings
    from core.periods import month_window

    drop_reference_usage(billing_env / "inbox")
    assert main(["run", "--month", "2026-10"]) == EXIT_BLOCKED
    con = duckdb.connect(str(billing_env / "warehouse.duckdb"))
    con.execute("update marts.fct_invoice_lines set amount = amount + 0.01 "
                "where billing_account_id = 'C1' and product_id = 'SMS'")
    con.close()
    settings = load_settings()
    outcomes = {o.name: o for o in runner.check(settings, open_warehouse(settings), month_window("2026-10"))}
    misrated = outcomes["misrated_lines"]
    assert not misrated.passed
    assert [(f["billing_account_id"], f["product_id"], f["amount"], f["expected_amount"])
            for f in misrated.findings] == [("C1", "SMS", "16.51", "16.50")]


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


SEMICOLONS = "event_id;customer_id;product_id;quantity;occurred_at\n" + "".join(
    f"semi-{n};C1;API_CALLS;1000;2026-10-{n:02d}T12:00:00Z\n" for n in range(1, 6))
WITH_BAD_ROWS = ("event_id,customer_id,product_id,quantity,occurred_at\n"
                 "ok-1,C1,API_CALLS,100,2026-10-02T10:00:00Z\n"
                 "bad-1,C1,API_CALLS,N/A,2026-10-02T11:00:00Z\n"
                 "bad-2,C1,API_CALLS,-3,2026-10-02T12:00:00Z\n"
                 "ok-1,C1,API_CALLS,999,2026-10-02T10:00:00Z\n")  # ok-1 again, another quantity


def test_a_rejected_file_blocks_the_month_and_quarantined_rows_are_warnings(billing_env, monkeypatch):
    """A file with the wrong delimiter (5,000 units) was "0 events, 0 quarantined, 0 duplicates", every check
    passed and nothing was written: now the CLI names it and why, and it is a blocking finding of October."""
    import hashlib

    from billing import cli
    from collectors.landing import land_file
    from core.config import load_settings
    from core.periods import month_window
    from normalize.load import load_pending
    from quality.checks import rejected_files

    catalog = billing_env / "clean-catalog.yaml"
    catalog.write_text(CLEAN_CATALOG)
    monkeypatch.setenv("BILLING_CATALOG", str(catalog))
    (billing_env / "inbox" / "semicolon.csv").write_text(SEMICOLONS)
    (billing_env / "inbox" / "with-bad-rows.csv").write_text(WITH_BAD_ROWS)
    semicolon_id = hashlib.sha256(SEMICOLONS.encode()).hexdigest()
    bad_rows_id = hashlib.sha256(WITH_BAD_ROWS.encode()).hexdigest()
    with cli.console.capture() as captured:
        assert main(["run", "--month", "2026-10"]) == EXIT_BLOCKED
    out = " ".join(captured.get().split())
    assert "REJECTED semicolon.csv (source upload," in out and "column(s) 'event_id'" in out
    assert "check rejected_files: FAILED - 1 file(s) rejected, none of their rows billed: semicolon.csv" in out
    assert "check quarantined_rows: WARNING" in out and "check conflicting_duplicates: WARNING" in out
    assert "exit status 3: billed, but blocking check(s) failed: rejected_files" in out
    assert semicolon_id not in out.split("REJECTED")[1].split(")")[1]  # the reason names the file as delivered
    con = duckdb.connect(str(billing_env / "warehouse.duckdb"))
    [(error,)] = con.execute("select error from raw.landed_files where file_id = ?", [semicolon_id]).fetchall()
    assert error.startswith("required column(s) 'event_id', 'customer_id'") and semicolon_id not in error
    findings = con.execute("select check_name, severity, customer_id, file_id, detail from marts.quality_findings "
                           "where period = '2026-10' order by check_name").fetchall()
    con.close()
    assert [row[:4] for row in findings] == [
        ("conflicting_duplicates", "warning", None, bad_rows_id),
        ("quarantined_rows", "warning", None, bad_rows_id),
        ("rejected_files", "error", None, semicolon_id)]
    details = {row[0]: row[4] for row in findings}
    assert "with-bad-rows.csv" in details["conflicting_duplicates"] and ": 1 row(s) repeat an event id" in \
        details["conflicting_duplicates"] and "first, row 4: event_id 'ok-1' repeats row 1" in \
        details["conflicting_duplicates"]
    assert ": 2 row(s) quarantined on column quantity" in details["quarantined_rows"]
    assert "first, row 2: quantity 'N/A' is not a decimal number" in details["quarantined_rows"]
    assert "semicolon.csv" in details["rejected_files"] and "was rejected, none of its rows is billed" in \
        details["rejected_files"]

    # Which months it blocks: the months of the dates it shows, the month it was received in and the one
    # before; not a month that ended before it was received with none of its dates.
    settings = load_settings()
    warehouse = open_warehouse(settings)
    received = query_one(warehouse, "select received_at from raw.landed_files where file_id = ?", semicolon_id)
    this_month = month_window(f"{received.year:04d}-{received.month:02d}")
    with warehouse.transaction() as tx:
        assert not rejected_files(tx, this_month).passed
        assert rejected_files(tx, month_window("2026-09")).passed
    # Delivered again corrected, under the same name: no longer a finding.
    fixed = billing_env / "fixed" / "semicolon.csv"
    fixed.parent.mkdir()
    fixed.write_text(SEMICOLONS.replace(";", ","))
    land_file(warehouse, settings.landing, fixed, source="upload", collector="upload")
    assert [load.status for load in load_pending(warehouse)] == ["loaded"]
    with warehouse.transaction() as tx:
        assert rejected_files(tx, month_window("2026-10")).passed


def query_one(warehouse, sql, *params):
    with warehouse.transaction() as tx:
        [(value,)] = tx.fetchall(sql, list(params))
    return value
