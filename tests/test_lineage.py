"""Lineage: every usage line of the reference month traced to the files and rows it came from.

The month is billed with `billing run`; marts.fct_invoice_line_sources must name, per line, each
source file (by sha256 and manifest) with the events and rows that contributed. The Globex file
is then delivered again through another collector and the month re-run: it still appears once.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from decimal import Decimal

import pytest

from billing.cli import EXIT_BLOCKED, main
from collectors.landing import land_file
from core.config import load_settings
from warehouse.store import open_warehouse

from support import REFERENCE, ROOT, query, reference_month_billed

D = Decimal


@pytest.fixture(scope="module")
def billed(tmp_path_factory):
    with reference_month_billed(tmp_path_factory, "lineage") as home:
        yield home



def sources_of(home, account: str, product: str) -> list[tuple]:
    return query(home, """
        select s.original_name, s.collector, s.event_count, s.quantity, s.first_row_number, s.last_row_number
        from marts.fct_invoice_line_sources s
        join marts.fct_invoice_lines l on l.line_id = s.line_id and l.period = s.period
        where s.period = '2026-10' and l.billing_account_id = ? and l.product_id = ?
        order by s.original_name, s.first_row_number""", [account, product])


def test_c1_api_calls_line_names_its_files_and_rows(billed):
    # c1-api-1, c1-api-2 and C6's c6-api-1 (billed to its parent) come from october-main.csv
    # rows 1-9; c1-api-dup was first loaded from october-late.jsonl (row 1), and its repeat in
    # october-main.csv went to raw.duplicates, so it is not counted twice.
    assert sources_of(billed, "C1", "API_CALLS") == [
        ("october-late.jsonl", "upload", 1, D("7"), 1, 1),
        ("october-main.csv", "upload", 3, D("1244560"), 1, 9),
    ]


def test_every_sum_line_is_fully_traced(billed):
    # For sum meters, the files' quantities add up to the line's quantity and event count.
    rows = query(billed, """
        select l.line_id, l.quantity, l.event_count, sum(s.quantity), sum(s.event_count)
        from marts.fct_invoice_lines l
        join marts.fct_invoice_line_sources s on s.line_id = l.line_id and s.period = l.period
        where l.period = '2026-10' and l.product_id in ('API_CALLS', 'SMS', 'BANDWIDTH_GB')
        group by l.line_id, l.quantity, l.event_count""")
    assert len(rows) == 7
    for line_id, quantity, events, traced_quantity, traced_events in rows:
        assert (quantity, events) == (traced_quantity, traced_events), line_id


def test_sha256_and_manifest_come_with_each_file(billed):
    rows = query(billed, """
        select distinct s.file_id, s.source, s.original_name, s.received_at, f.received_at, f.original_name
        from marts.fct_invoice_line_sources s join raw.landed_files f on f.file_id = s.file_id""")
    assert len(rows) == 3
    for file_id, _source, name, received, manifest_received, manifest_name in rows:
        assert len(file_id) == 64 and (name, received) == (manifest_name, manifest_received)


def test_file_delivered_twice_appears_once(billed):
    settings = load_settings()
    again = settings.home / "resent.csv"
    shutil.copy(REFERENCE / "usage" / "globex-october.csv", again)
    landed = land_file(open_warehouse(settings), settings.landing, again, source="sftp-drop", collector="sftp",
                       original_name="GLOBEX_OCT_RESEND.csv")
    assert not landed.is_new
    before = query(billed, "select * from marts.fct_invoice_line_sources order by line_id, file_id")
    assert main(["run", "--month", "2026-10"]) == EXIT_BLOCKED  # the reference month's unrated usage
    assert query(billed, "select * from marts.fct_invoice_line_sources order by line_id, file_id") == before
    assert sources_of(billed, "C2", "API_CALLS") == [("globex-october.csv", "upload", 2, D("1500000"), 1, 2)]
    assert sources_of(billed, "C2", "BANDWIDTH_GB") == [("globex-october.csv", "upload", 2, D("1000"), 3, 4)]


def line_id(home, account: str, product: str) -> str:
    [(found,)] = query(home, "select line_id from marts.fct_invoice_lines where period = '2026-10' "
                             "and billing_account_id = ? and product_id = ?", [account, product])
    return found


def test_explain_names_rate_tiers_rollup_and_files(billed, capsys):
    storage = line_id(billed, "C1", "STORAGE_GB")
    [(sha256,)] = query(billed, "select file_id from raw.landed_files where original_name = 'october-main.csv'")
    capsys.readouterr()
    assert main(["explain", storage]) == 0
    out = capsys.readouterr().out
    assert "C1 Northwind" in out and "amount 22.00 USD" in out
    assert "rate: default:STORAGE_GB:USD:1, source level product_default" in out
    assert "tier 1: 100 units x 0.1" in out and "tier 2: 150 units x 0.08" in out
    assert "quantity 250 GB (meter: max), 3 event(s)" in out
    assert "october-main.csv via upload" in out and f"sha256 {sha256}" in out
    assert "3 row(s) contributing (rows 4-6)" in out
    assert "events:" not in out
    catalog = hashlib.sha256((REFERENCE / "catalog.yaml").read_bytes()).hexdigest()  # the file it was priced with
    assert f"catalog: sha256 {catalog}, loaded " in out and f"from {REFERENCE / 'catalog.yaml'}" in out


def test_explain_events_are_capped_and_counted(billed, capsys):
    api = line_id(billed, "C1", "API_CALLS")
    capsys.readouterr()
    assert main(["explain", api, "--events", "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert "source level product_default" in out
    assert "october-late.jsonl" in out and "october-main.csv" in out
    assert "c1-api-1 (C1) 1000000" in out and "c6-api-1 (C6) 10000" in out
    assert "... and 2 more" in out


def test_explain_contract_rate_and_true_up(billed, capsys):
    capsys.readouterr()
    assert main(["explain", line_id(billed, "C2", "API_CALLS")]) == 0
    out = capsys.readouterr().out
    assert "source level contract_rate" in out and "included units 1000000" in out
    assert "globex-october.csv" in out
    [(true_up,)] = query(billed, "select line_id from marts.fct_invoice_lines where period = '2026-10' "
                                 "and billing_account_id = 'C2' and line_type = 'minimum_commitment'")
    assert main(["explain", true_up]) == 0
    out = capsys.readouterr().out
    assert "amount 170.00 USD" in out and "source level contract" in out and "no usage events" in out


def test_explain_unknown_line_is_a_clear_error(billed, capsys):
    assert main(["explain", "no-such-line"]) == 1
    assert "no invoice line no-such-line" in capsys.readouterr().out


def test_documented_sql_runs_and_traces_the_line(billed):
    # Every query of docs/lineage.md runs as written (with the line id bound as a parameter).
    blocks = re.findall(r"```sql\n(.*?)```", (ROOT / "docs" / "lineage.md").read_text(), re.S)
    assert len(blocks) == 5
    api = line_id(billed, "C1", "API_CALLS")
    view, tiers, rollup, events = (query(billed, sql.replace(":line_id", "?"), [api]) for sql in blocks[:4])
    [(invoice,)] = query(billed, "SELECT invoice_id FROM marts.fct_invoice_lines WHERE line_id = ?", [api])
    catalog = hashlib.sha256((REFERENCE / "catalog.yaml").read_bytes()).hexdigest()
    assert [r[:3] for r in query(billed, blocks[4].replace(":invoice_id", "?"), [invoice])] == [
        (invoice, catalog, str(REFERENCE / "catalog.yaml"))]
    assert [(r[16], r[17], r[21]) for r in view] == [("october-late.jsonl", "upload", 1),
                                                      ("october-main.csv", "upload", 3)]
    assert all(len(r[19]) == 64 for r in view)
    assert len(tiers) == 1 and rollup[0][1] == "sum"
    assert sorted(e[0] for e in events) == ["c1-api-1", "c1-api-2", "c1-api-dup", "c6-api-1"]
