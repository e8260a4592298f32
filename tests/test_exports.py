"""CSV exports of a period: the documented columns, values exactly as stored, on DuckDB and PostgreSQL."""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import pytest

from ledger.exports import CREDIT_NOTE_COLUMNS, INVOICE_COLUMNS, LINE_COLUMNS, export_period
from ledger.schema import ddl
from warehouse.store import Warehouse

from support import ROOT, postgres_database

PG_DSN = os.environ.get("BILLING_TEST_POSTGRES_DSN") or "postgresql://postgres@127.0.0.1:5432/test"
TRICKY = 'Onboarding, "premium" \u2013 Z\u00fcrich \u6771\u4eac\nsecond line'

INVOICE = ("INSERT INTO ledger.invoices (invoice_number, series, sequence_number, invoice_id, period, period_start, "
           "period_end, billing_account_id, customer_name, currency, subtotal, total, issue_date, issued_at, issued_by, "
           "reissue_of, draft_fingerprint, data_fingerprint, catalog_sha256, rating_run_id, pdf_sha256, snapshot) "
           "VALUES (?, 'INV-2026', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'p-fin', ?, 'fp', 'data-fp', 'cat-sha', 'run-1', "
           "?, '{}')")
LINE = ("INSERT INTO ledger.invoice_lines (invoice_number, line_number, line_id, line_type, product_id, description, "
        "quantity, unit_price, amount, rate_level, rate_id, segment_start, segment_end, corrected_period, "
        "corrected_invoice_number) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
CREDIT_NOTE = ("INSERT INTO ledger.credit_notes (credit_note_number, series, sequence_number, invoice_number, "
               "billing_account_id, currency, total, reason_code, comment, issue_date, issued_at, issued_by, pdf_sha256, "
               "snapshot) VALUES (?, 'CN-2026', ?, ?, ?, ?, ?, ?, ?, ?, ?, 'p-fin', ?, '{}')")
CREDIT_LINE = ("INSERT INTO ledger.credit_note_lines (credit_note_number, line_number, invoice_number, "
               "invoice_line_number, quantity, amount) VALUES (?, ?, ?, ?, ?, ?)")


def fill_ledger(warehouse: Warehouse, *, with_marts: bool) -> None:
    """October: C1 issued, C2 issued then voided and re-issued, C3 a draft never issued; November: C1 issued
    with October's adjustment and a credit note of its own (neither belongs to October's export)."""
    with warehouse.transaction() as tx:
        for statement in ddl():
            tx.execute(statement)
        oct_ = ["2026-10", "2026-10-01", "2026-11-01"]
        tx.execute(INVOICE, ["INV-2026-000001", 1, "inv-oct-c1", *oct_, "C1", "Northwind", "USD", "2527.63",
                             "2527.63", "2026-11-02", "2026-11-02 09:15:00+00", None, "a" * 64])
        tx.execute(INVOICE, ["INV-2026-000002", 2, "inv-oct-c2", *oct_, "C2", "Kyoto Keiki \u682a\u5f0f\u4f1a\u793e",
                             "JPY", "120000", "120000", "2026-11-02", "2026-11-02 09:16:30.5+00", None, "b" * 64])
        tx.execute(INVOICE, ["INV-2026-000003", 3, "inv-oct-c2", *oct_, "C2", "Kyoto Keiki \u682a\u5f0f\u4f1a\u793e",
                             "JPY", "118000", "118000", "2026-11-05", "2026-11-05 14:00:00+00", "INV-2026-000002",
                             "c" * 64])
        tx.execute(INVOICE, ["INV-2026-000004", 4, "inv-nov-c1", "2026-11", "2026-11-01", "2026-12-01", "C1",
                             "Northwind", "USD", "1052.00", "1002.00", "2026-12-01", "2026-12-01 08:00:00+00", None,
                             "d" * 64])
        tx.execute("INSERT INTO ledger.voids VALUES ('INV-2026-000002', 'wrong address', 'p-fin', "
                   "'2026-11-04 10:00:00+00')")
        lines = [
            ("INV-2026-000001", 1, "l-1", "usage", "API_CALLS", "API_CALLS", "1244567", "0.002", "2489.13",
             "product_default", "default:API_CALLS:USD:1", "2026-10-01", "2026-11-01", None, None),
            ("INV-2026-000001", 2, "l-2", "manual", None, TRICKY, None, None, "38.50", "manual", "m-1",
             None, None, None, None),
            ("INV-2026-000002", 1, "l-3", "usage", "SEATS", "SEATS", "12", "10000", "120000", "contract_rate",
             "contract:CT-2:SEATS:1", "2026-10-01", "2026-11-01", None, None),
            ("INV-2026-000003", 1, "l-3", "usage", "SEATS", "SEATS", "12", "9833.333333333333", "118000",
             "contract_rate", "contract:CT-2:SEATS:1", "2026-10-01", "2026-11-01", None, None),
            ("INV-2026-000004", 1, "l-9", "adjustment", "API_CALLS", "API_CALLS", "1000", None, "2.00",
             "product_default", "default:API_CALLS:USD:1", None, None, "2026-10", "INV-2026-000001"),
        ]
        for line in lines:
            tx.execute(LINE, list(line))
        tx.execute(CREDIT_NOTE, ["CN-2026-000001", 1, "INV-2026-000001", "C1", "USD", "30.00",
                                 "product_unsatisfactory", 'Outage; "agreed"', "2026-11-20",
                                 "2026-11-20 12:00:00+00", "e" * 64])
        tx.execute(CREDIT_LINE, ["CN-2026-000001", 1, "INV-2026-000001", 1, "10000", "20.00"])
        tx.execute(CREDIT_LINE, ["CN-2026-000001", 2, "INV-2026-000001", 2, None, "10.00"])
        tx.execute(CREDIT_NOTE, ["CN-2026-000002", 2, "INV-2026-000004", "C1", "USD", "0", "duplicate", None,
                                 "2026-12-02", "2026-12-02 12:00:00+00", "f" * 64])
        tx.execute(CREDIT_LINE, ["CN-2026-000002", 1, "INV-2026-000004", 1, None, "0"])
        if with_marts:  # the columns of dbt's marts.fct_invoices and marts.dim_customers that the export reads
            tx.execute("CREATE SCHEMA IF NOT EXISTS marts")
            tx.execute("CREATE TABLE marts.fct_invoices (period VARCHAR, invoice_id VARCHAR, "
                       "billing_account_id VARCHAR, currency VARCHAR, period_start DATE, "
                       "period_end DATE, line_count BIGINT, total DECIMAL(38, 3), unrated_usage_count BIGINT, "
                       "is_finalizable BOOLEAN, status VARCHAR, catalog_sha256 VARCHAR)")
            for row in [("2026-10", "inv-oct-c1", "C1", "USD", "2529.630", True),
                        ("2026-10", "inv-oct-c2", "C2", "JPY", "118000.000", True),
                        ("2026-10", "inv-oct-c3", "C3", "EUR", "0.000", False),
                        ("2026-11", "inv-nov-c3", "C3", "EUR", "9.000", True)]:
                tx.execute("INSERT INTO marts.fct_invoices VALUES (?, ?, ?, ?, '2026-10-01', '2026-11-01', 1, ?, "
                           "0, ?, 'draft', ?)", [*row, "9" * 64])
            # the catalog now: C2 renamed since its invoices were issued
            tx.execute("CREATE TABLE marts.dim_customers (customer_id VARCHAR, customer_name VARCHAR)")
            for row in [("C1", "Northwind"), ("C2", "Kyoto Keiki (renamed)"), ("C3", "Contoso")]:
                tx.execute("INSERT INTO marts.dim_customers VALUES (?, ?)", list(row))


def read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


def check_october(folder: Path, paths: list[Path], *, with_marts: bool) -> None:
    assert [p.name for p in paths] == ["invoices-2026-10.csv", "invoice_lines-2026-10.csv", "credit_notes-2026-10.csv"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in paths)  # no temp file left

    header, invoices = read(paths[0])
    assert header == INVOICE_COLUMNS
    got = [(r["status"], r["invoice_number"], r["invoice_id"], r["billing_account_id"], r["reissue_of"]) for r in invoices]
    expected = [("issued", "INV-2026-000001", "inv-oct-c1", "C1", ""),
                ("void", "INV-2026-000002", "inv-oct-c2", "C2", ""),
                ("issued", "INV-2026-000003", "inv-oct-c2", "C2", "INV-2026-000002")]
    if with_marts:  # only the draft that was never issued; not November's, not those issued
        expected.append(("draft", "", "inv-oct-c3", "C3", ""))
    assert got == expected
    c1, void, reissue = invoices[:3]
    assert (c1["subtotal"], c1["total"]) == ("2527.630000000000", "2527.630000000000")  # DECIMAL(38, 12) text
    assert (c1["period_start"], c1["period_end"], c1["issue_date"]) == ("2026-10-01", "2026-11-01", "2026-11-02")
    assert c1["issued_at"] == "2026-11-02T09:15:00Z" and c1["pdf_sha256"] == "a" * 64
    assert (c1["voided_at"], c1["void_reason"], c1["is_finalizable"]) == ("", "", "")
    assert void["issued_at"] == "2026-11-02T09:16:30.500000Z"
    assert (void["voided_at"], void["voided_by"], void["void_reason"]) == ("2026-11-04T10:00:00Z", "p-fin",
                                                                          "wrong address")
    assert void["customer_name"] == "Kyoto Keiki \u682a\u5f0f\u4f1a\u793e" and reissue["total"] == "118000.000000000000"
    if with_marts:
        draft = invoices[3]
        assert (draft["total"], draft["subtotal"], draft["is_finalizable"], draft["currency"]) == (
            "0.000", "", "false", "EUR")
        # a draft is named by the catalog (dim_customers); an issued invoice by what it was issued with
        assert draft["customer_name"] == "Contoso"
        assert (draft["catalog_sha256"], c1["catalog_sha256"]) == ("9" * 64, "cat-sha")  # the catalog it was priced with

    header, lines = read(paths[1])
    assert header == LINE_COLUMNS
    assert [(r["invoice_number"], r["line_number"]) for r in lines] == [
        ("INV-2026-000001", "1"), ("INV-2026-000001", "2"), ("INV-2026-000002", "1"), ("INV-2026-000003", "1")]
    assert (lines[0]["quantity"], lines[0]["unit_price"], lines[0]["amount"]) == (
        "1244567.000000000000", "0.002000000000", "2489.130000000000")
    assert (lines[0]["rate_id"], lines[0]["segment_end"], lines[0]["billing_account_id"]) == (
        "default:API_CALLS:USD:1", "2026-11-01", "C1")
    assert lines[1]["description"] == TRICKY and lines[1]["quantity"] == "" and lines[1]["product_id"] == ""
    assert lines[3]["unit_price"] == "9833.333333333333"

    header, notes = read(paths[2])
    assert header == CREDIT_NOTE_COLUMNS
    assert [(r["credit_note_number"], r["line_number"], r["invoice_line_number"], r["amount"]) for r in notes] == [
        ("CN-2026-000001", "1", "1", "20.000000000000"), ("CN-2026-000001", "2", "2", "10.000000000000")]
    assert notes[0]["credit_note_total"] == "30.000000000000" and notes[0]["comment"] == 'Outage; "agreed"'
    assert notes[0]["quantity"] == "10000.000000000000" and notes[1]["quantity"] == ""
    assert (notes[0]["reason_code"], notes[0]["issued_at"]) == ("product_unsatisfactory", "2026-11-20T12:00:00Z")

    raw = paths[1].read_bytes()
    assert raw.startswith(b"invoice_number,line_number,") and b"\r\n" in raw
    assert '"Onboarding, ""premium"" \u2013 Z\u00fcrich \u6771\u4eac\nsecond line"'.encode() in raw  # RFC 4180


@pytest.mark.parametrize("with_marts", [True, False])
def test_export_october_on_duckdb(tmp_path, with_marts):
    warehouse = Warehouse(duckdb_path=tmp_path / "warehouse.duckdb")
    fill_ledger(warehouse, with_marts=with_marts)
    with warehouse.transaction() as tx:
        paths = export_period(tx, "2026-10", tmp_path / "exports")
    check_october(tmp_path / "exports", paths, with_marts=with_marts)


def test_export_of_november_and_of_an_empty_period(tmp_path):
    warehouse = Warehouse(duckdb_path=tmp_path / "warehouse.duckdb")
    fill_ledger(warehouse, with_marts=True)
    with warehouse.transaction() as tx:
        november = export_period(tx, "2026-11-01", tmp_path)  # the month in any form month_window takes
        empty = export_period(tx, "2027-01", tmp_path)
    _, invoices = read(november[0])
    assert [(r["status"], r["invoice_number"], r["invoice_id"]) for r in invoices] == [
        ("issued", "INV-2026-000004", "inv-nov-c1"), ("draft", "", "inv-nov-c3")]
    _, lines = read(november[1])
    assert [(r["line_type"], r["corrected_period"], r["corrected_invoice_number"], r["amount"]) for r in lines] == [
        ("adjustment", "2026-10", "INV-2026-000001", "2.000000000000")]
    _, notes = read(november[2])
    assert [(r["credit_note_number"], r["amount"], r["comment"]) for r in notes] == [
        ("CN-2026-000002", "0.000000000000", "")]  # zero: never 0E-12
    for path, columns in zip(empty, [INVOICE_COLUMNS, LINE_COLUMNS, CREDIT_NOTE_COLUMNS], strict=True):
        assert read(path) == (columns, [])
    with warehouse.transaction() as tx, pytest.raises(ValueError, match="YYYY-MM"):
        export_period(tx, "../../etc", tmp_path)


def test_columns_are_documented():
    """docs/exports.md lists every column of each file, in the files' order."""
    doc = (ROOT / "docs" / "exports.md").read_text()
    for name, columns in [("invoices", INVOICE_COLUMNS), ("invoice_lines", LINE_COLUMNS),
                          ("credit_notes", CREDIT_NOTE_COLUMNS)]:
        section = doc.split(f"## `{name}-<period>.csv`")[1].split("\n## ")[0]
        assert re.findall(r"^\| `(\w+)` \|", section, flags=re.MULTILINE) == columns, name


@pytest.fixture
def postgres_warehouse():
    """A database of this test's own on the shared server (created and dropped)."""
    with postgres_database("exports") as dsn:
        yield Warehouse(postgres_dsn=dsn)


def test_export_october_on_postgres(postgres_warehouse, tmp_path):
    fill_ledger(postgres_warehouse, with_marts=True)
    with postgres_warehouse.transaction() as tx:
        paths = export_period(tx, "2026-10", tmp_path / "exports")
    check_october(tmp_path / "exports", paths, with_marts=True)
