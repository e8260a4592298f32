"""Invoice and credit note PDFs: what a reader finds in the file, byte-identical re-rendering, hostile
text, the currencies' minor units, and storage by sha256."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime

import pypdf
import pytest

from ledger.documents import (
    format_amount,
    format_exact,
    format_quantity,
    pdf_text,
    render_credit_note_pdf,
    render_invoice_pdf,
    store_document,
)

from support import ROOT

SELLER = {"name": "Acme Metering GmbH", "address": "Hauptstraße 1\n10115 Berlin", "tax_id": "DE123456789",
          "email": "billing@acme.example"}


def _line(number, description, amount, **extra):
    line = {"line_number": number, "line_type": "usage", "description": description, "product_id": description,
            "quantity": None, "unit_price": None, "amount": amount, "rate_level": "product_default",
            "rate_id": f"default:{description}:USD:1", "segment_start": "2026-10-01", "segment_end": "2026-11-01",
            "corrected_period": None, "corrected_invoice_number": None, "tiers": []}
    return {**line, **extra}


def october() -> dict:
    """The reference month's C1 invoice, as the lifecycle freezes it (amounts as DECIMAL(38, 12) text)."""
    return {
        "document_type": "invoice", "number": "INV-2026-000001", "issue_date": "2026-11-02", "period": "2026-10",
        "period_start": "2026-10-01", "period_end": "2026-11-01", "currency": "USD", "minor_units": 2,
        "seller": SELLER, "buyer": {"billing_account_id": "C1", "name": "Northwind"},
        "lines": [
            _line(1, "API_CALLS", "2489.130000000000", quantity="1244567.000000000000",
                  unit_price="0.002000000000",
                  tiers=[{"tier_number": 1, "units": "1244567", "unit_price": "0.002", "flat_fee": "0",
                          "amount": "2489.134"}]),
            _line(2, "BANDWIDTH_GB", "38.50", quantity="385", segment_start="2026-10-10",
                  tiers=[{"tier_number": 1, "units": "100", "unit_price": "0.10", "flat_fee": "0", "amount": "10.00"},
                         {"tier_number": 2, "units": "285", "unit_price": "0.10", "flat_fee": "0",
                          "amount": "28.50"}]),
        ],
        "subtotal": "2527.630000000000", "total": "2527.63", "reissue_of": None,
        "catalog_sha256": "c" * 64, "data_fingerprint": "d" * 64,
    }


def november() -> dict:
    """November carries October's late-usage adjustment and uses a credit balance."""
    snapshot = october()
    snapshot.update(number="INV-2026-000007", issue_date="2026-12-01", period="2026-11", period_start="2026-11-01",
                    period_end="2026-12-01", subtotal="1052.00", total="1002.00")
    snapshot["lines"] = [
        _line(1, "API_CALLS", "1050.00", quantity="525000", unit_price="0.002", segment_start="2026-11-01",
              segment_end="2026-12-01"),
        _line(2, "API_CALLS", "2.00", line_type="adjustment", quantity="1000", segment_start=None,
              segment_end=None, corrected_period="2026-10", corrected_invoice_number="INV-2026-000001"),
        _line(3, "Credit applied", "-50.00", line_type="credit_applied", product_id=None),
    ]
    return snapshot


def credit_note() -> dict:
    return {"document_type": "credit_note", "number": "CN-2026-000001", "issue_date": "2026-11-20",
            "currency": "USD", "minor_units": 2, "seller": SELLER,
            "buyer": {"billing_account_id": "C1", "name": "Northwind"}, "invoice_number": "INV-2026-000002",
            "reason_code": "product_unsatisfactory", "comment": "Outage on 12 October",
            "lines": [{"line_number": 1, "invoice_line_number": 2, "description": "BANDWIDTH_GB", "quantity": "10",
                       "amount": "30.00"},
                      {"line_number": 2, "invoice_line_number": 3, "description": "SUPPORT", "quantity": None,
                       "amount": "1200.50"}],
            "total": "1230.50"}


def text_of(pdf: bytes) -> str:
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    return "\n".join(page.extract_text() for page in reader.pages)


def test_invoice_shows_parties_number_dates_lines_and_totals():
    text = text_of(render_invoice_pdf(october()))
    for expected in ["INVOICE", "INV-2026-000001", "2026-11-02", "2026-10", "Acme Metering GmbH", "Hauptstraße 1",
                     "DE123456789", "Northwind", "Account C1",
                     "API_CALLS", "1,244,567", "0.002", "2,489.13",  # line 1: quantity, unit price, amount
                     "BANDWIDTH_GB", "385", "38.50",
                     "100 x 0.10 = 10.00", "285 x 0.10 = 28.50",  # the tier breakdown
                     "2026-10-10 – 2026-10-31",  # a segment shorter than the period: its days
                     "Subtotal", "2,527.63", "Total due (USD)", "c" * 64]:
        assert expected in text, expected
    assert "2489.134" not in text  # the line shows its amount rounded once, not the exact tier sum


def test_adjustment_names_the_period_and_invoice_it_corrects_and_credit_is_applied():
    text = text_of(render_invoice_pdf(november()))
    assert "Correction of period 2026-10 (invoice INV-2026-000001)" in text
    assert "2.00" in text
    assert "Credit applied" in text and "-50.00" in text
    assert "1,052.00" in text and "1,002.00" in text


def test_credit_note_shows_the_invoice_it_credits_reason_lines_and_total():
    text = text_of(render_credit_note_pdf(credit_note()))
    for expected in ["CREDIT NOTE", "CN-2026-000001", "INV-2026-000002", "product_unsatisfactory",
                     "Product unsatisfactory", "Outage on 12 October", "BANDWIDTH_GB", "30.00", "SUPPORT",
                     "1,200.50", "1,230.50", "2026-11-20"]:
        assert expected in text, expected


def test_same_snapshot_gives_identical_bytes_even_in_another_process():
    first, second = render_invoice_pdf(october()), render_invoice_pdf(october())
    assert first == second
    assert render_credit_note_pdf(credit_note()) == render_credit_note_pdf(credit_note())
    # another interpreter, another hash seed: nothing random or set-ordered reaches the bytes
    script = ("import json, sys, hashlib; from ledger.documents import render_invoice_pdf; "
              "print(hashlib.sha256(render_invoice_pdf(json.loads(sys.stdin.read()))).hexdigest())")
    other = subprocess.run([sys.executable, "-c", script], input=json.dumps(october()), capture_output=True,
                           text=True, check=True, cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": "12345"})
    assert other.stdout.strip() == hashlib.sha256(first).hexdigest()
    # the creation date is the issue date, and a changed amount changes the bytes
    assert pypdf.PdfReader(io.BytesIO(first)).metadata.creation_date == datetime(2026, 11, 2, tzinfo=UTC)
    changed = october()
    changed["lines"][1]["amount"], changed["subtotal"], changed["total"] = "38.51", "2527.64", "2527.64"
    assert render_invoice_pdf(changed) != first


def test_hostile_customer_name_renders():
    snapshot = october()
    name = "<script>alert('x')</script> Zürich 東京 🚀👩‍👩‍👧 \x00\u200b" + "Ä" * 5000
    snapshot["buyer"]["name"] = name
    snapshot["lines"][0]["description"] = "very long " * 600
    snapshot["lines"] += [_line(3 + i, f"PRODUCT_{i}", "0") for i in range(80)]  # several pages
    pdf = render_invoice_pdf(snapshot)
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) > 1
    text = text_of(pdf)
    assert "<script>alert('x')</script> Zürich ?? ???" in text  # shown as text; what Helvetica lacks is '?'
    assert "PRODUCT_79" in text and "2,527.63" in text
    assert render_invoice_pdf(snapshot) == pdf
    assert len(render_credit_note_pdf({**credit_note(), "buyer": {"name": name}, "comment": name})) > 0


def test_pdf_text_keeps_what_the_core_font_shows_and_replaces_the_rest():
    assert pdf_text("Müller & Søn €5 – “quoted”") == "Müller & Søn €5 – “quoted”"  # Windows-1252 has them
    assert pdf_text("Łódź Dvořák") == "Lódz Dvorák"  # letters the font lacks lose their mark
    assert pdf_text("東京 🚀") == "?? ?"
    assert pdf_text("a\nb\tc\x00d") == "a b c d"
    assert pdf_text("x" * 1000, limit=10) == "xxxxxxx..."


@pytest.mark.parametrize(("value", "minor", "expected"), [
    ("2527.63", 2, "2,527.63"),
    ("2527.630000000000", 2, "2,527.63"),
    ("-50", 2, "-50.00"),
    ("0.000", 2, "0.00"),
    ("-0", 2, "0.00"),
    ("1234567", 0, "1,234,567"),  # JPY
    ("1200.000000000000", 0, "1,200"),
    ("1234.567", 3, "1,234.567"),  # KWD
    ("12", 3, "12.000"),
    ("1.2345", 4, "1.2345"),  # CLF
    ("31234.5", 4, "31,234.5000"),
])
def test_amounts_in_the_currency_minor_units(value, minor, expected):
    assert format_amount(value, minor) == expected


def test_prices_and_quantities_keep_their_digits():
    assert format_exact("0.002000000", 2) == "0.002"
    assert format_exact("49", 2) == "49.00"
    assert format_exact("1.5", 0) == "1.5"
    assert format_quantity("1244567.000000000") == "1,244,567"
    assert format_quantity("10.500") == "10.5"
    assert format_quantity("1E+6") == "1,000,000"


@pytest.mark.parametrize(("currency", "minor", "amounts", "expected"), [
    ("JPY", 0, ("120000", "1500"), ["120,000", "1,500", "121,500"]),
    ("KWD", 3, ("12.345", "0.005"), ["12.345", "0.005", "12.350"]),
    ("CLF", 4, ("1.2345", "10"), ["1.2345", "10.0000", "11.2345"]),
])
def test_rendered_invoice_in_other_currencies(currency, minor, amounts, expected):
    snapshot = october()
    snapshot.update(currency=currency, minor_units=minor)
    snapshot["lines"] = [_line(1, "API_CALLS", amounts[0]), _line(2, "SUPPORT", amounts[1])]
    snapshot["subtotal"] = snapshot["total"] = expected[-1].replace(",", "")
    text = text_of(render_invoice_pdf(snapshot))
    assert f"Amount ({currency})" in text and f"Total due ({currency})" in text
    for shown in expected:
        assert shown in text, shown


def test_refuses_what_it_cannot_show_exactly():
    with pytest.raises(ValueError, match="more than the currency's 2 decimal places"):
        format_amount("2489.134", 2)
    with pytest.raises(TypeError, match="never floats"):
        format_amount(2527.63, 2)
    wrong = october()
    wrong["total"] = "2527.64"
    with pytest.raises(ValueError, match="total is 2527.64 but its lines add up to 2527.63"):
        render_invoice_pdf(wrong)
    with pytest.raises(ValueError, match="lacks number"):
        render_invoice_pdf({**october(), "number": None})
    with pytest.raises(ValueError, match="minor_units"):
        render_invoice_pdf({**october(), "minor_units": "2"})


def test_store_document_by_sha256(tmp_path):
    data = render_invoice_pdf(october())
    digest, path = store_document(tmp_path / "documents", data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert path == tmp_path / "documents" / f"{digest}.pdf"
    assert path.read_bytes() == data
    before = path.stat()
    assert store_document(tmp_path / "documents", data) == (digest, path)
    assert path.stat().st_mtime_ns == before.st_mtime_ns and path.stat().st_ino == before.st_ino  # left as is
    assert sorted(p.name for p in (tmp_path / "documents").iterdir()) == [f"{digest}.pdf"]  # no temp file left
    other, _ = store_document(tmp_path / "documents", render_credit_note_pdf(credit_note()))
    assert other != digest and len(list((tmp_path / "documents").iterdir())) == 2


def test_reissue_names_the_void_invoice():
    snapshot = {**october(), "number": "INV-2026-000009", "reissue_of": "INV-2026-000004"}
    assert "INV-2026-000004 (void)" in text_of(render_invoice_pdf(snapshot))
