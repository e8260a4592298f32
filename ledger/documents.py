"""Invoice and credit note PDFs, rendered from the snapshot an issued document freezes, and stored by sha256.

Rendering is a pure function of the snapshot: the same snapshot gives the same bytes (the PDF's
creation date is the issue date, its file id is derived from its content), because the issued
invoice records the sha256 of its PDF. Money and quantities arrive as decimal strings and are only
ever parsed with `Decimal`. The PDF uses the core Helvetica font (no Unicode font ships in our
packages), so text is made Windows-1252 safe: accents lose their marks, anything else (CJK, emoji)
becomes `?`.

Snapshot conventions (see `render_invoice_pdf`): `subtotal` is the sum of every line except the
`credit_applied` (negative: credit balance used) and `credit_carried` (positive: what a negative
subtotal carries to the credit balance) lines, and `total` is `subtotal` plus those.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import unicodedata
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from fpdf import FPDF, FontFace

ENCODING = "cp1252"  # what the core fonts' WinAnsiEncoding can show
MAX_TEXT = 400  # characters of a description shown: a table row must fit on a page
MAX_NAME = 160  # characters of a party's name shown: longer is not a name
CREDIT_LINE_TYPES = ("credit_applied", "credit_carried")
CREDIT_LABELS = {"credit_applied": "Credit applied", "credit_carried": "Credit carried to your balance"}
REASONS = {
    "duplicate": "Duplicate charge",
    "order_change": "Order change",
    "product_unsatisfactory": "Product unsatisfactory",
    "fraudulent": "Fraudulent charge",
    "other": "Other",
}

INK = (33, 37, 41)
MUTED = (108, 117, 125)
RULE = (206, 212, 218)
SHADE = (241, 243, 245)
MARGIN = 18  # mm
# Latin letters with no decomposition to a base letter (NFKD leaves them whole)
UNDECOMPOSED = str.maketrans({"Ł": "L", "ł": "l", "Đ": "D", "đ": "d", "Ħ": "H", "ħ": "h", "ı": "i", "Ŧ": "T",
                              "ŧ": "t"})


# --- numbers -------------------------------------------------------------------------------------

def parse_decimal(value: Any, what: str) -> Decimal:
    """A snapshot number as a Decimal: from text (or int/Decimal), never from a binary float."""
    if isinstance(value, bool) or isinstance(value, float):
        raise TypeError(f"{what} is {value!r}: snapshot numbers are decimal strings, never floats")
    try:
        number = Decimal(value) if isinstance(value, Decimal) else Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ValueError(f"{what} is {value!r}: not a decimal number") from None
    if not number.is_finite():
        raise ValueError(f"{what} is {value!r}: not a finite decimal number")
    return number


def format_amount(value: Any, minor_units: int, what: str = "amount") -> str:
    """An amount in the currency's minor units, thousands grouped: 2,527.63 (USD), 1,200 (JPY).

    Issued amounts are already rounded; one with more digits than the currency has is refused rather
    than rounded a second time on paper."""
    number = parse_decimal(value, what)
    shown = number.quantize(Decimal(1).scaleb(-minor_units))
    if shown != number:
        raise ValueError(f"{what} {value} has more than the currency's {minor_units} decimal places")
    return f"{shown.copy_abs() if shown.is_zero() else shown:,.{minor_units}f}"


def format_exact(value: Any, minor_units: int, what: str = "price") -> str:
    """A price or exact tier amount: at least the currency's decimals, more when it has them (0.002)."""
    number = parse_decimal(value, what).normalize()
    places = max(minor_units, -number.as_tuple().exponent)
    return f"{number.copy_abs() if number.is_zero() else number:,.{places}f}"


def format_quantity(value: Any, what: str = "quantity") -> str:
    """A quantity without trailing zeros, thousands grouped: 1,244,567 or 10.5."""
    number = parse_decimal(value, what).normalize()
    return f"{number.copy_abs() if number.is_zero() else number:,f}"


# --- text ----------------------------------------------------------------------------------------

def pdf_text(value: Any, limit: int = MAX_TEXT) -> str:
    """Text the core fonts can show: accents dropped where needed, other characters as '?', controls as
    spaces, at most `limit` characters. Never raises, whatever a customer's name holds."""
    text = unicodedata.normalize("NFC", "" if value is None else str(value)).translate(UNDECOMPOSED)
    out: list[str] = []
    for char in text:
        category = unicodedata.category(char)
        if category in ("Cc", "Zl", "Zp"):
            out.append(" ")
        elif category == "Cf":  # zero-width joiners, direction marks: invisible anyway
            continue
        elif _encodable(char):
            out.append(char)
        else:
            base = "".join(c for c in unicodedata.normalize("NFKD", char) if _encodable(c)
                           and not unicodedata.combining(c))
            out.append(base or "?")
    shown = "".join(out)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def _encodable(char: str) -> bool:
    try:
        char.encode(ENCODING)
    except UnicodeEncodeError:
        return False
    return True


# --- the page ------------------------------------------------------------------------------------

class _Document(FPDF):
    def __init__(self, title: str, number: str, issue_date: date):
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.core_fonts_encoding = ENCODING
        self._footer_text = pdf_text(f"{title} {number}")
        self.set_margins(MARGIN, MARGIN, MARGIN)
        self.set_auto_page_break(True, margin=MARGIN + 4)
        # Fixed metadata: the bytes depend on the snapshot alone.
        self.set_creation_date(datetime(issue_date.year, issue_date.month, issue_date.day, tzinfo=UTC))
        self.set_title(self._footer_text)
        self.set_creator("billing-warehouse")
        self.set_lang("en")
        self.set_text_color(*INK)
        self.set_draw_color(*RULE)
        self.add_page()

    def footer(self) -> None:
        self.set_y(-MARGIN)
        self.set_font("Helvetica", size=7.5)
        self.set_text_color(*MUTED)
        self.cell(0, 4, f"{self._footer_text}  |  page {self.page_no()} of {{nb}}", align="R")
        self.set_text_color(*INK)

    @property
    def content_width(self) -> float:
        return self.w - self.l_margin - self.r_margin

    def text_block(self, x: float, width: float, lines: Iterable[tuple[str, str, float]]) -> None:
        """Lines of (text, style, size) at column x, wrapped to width."""
        for text, style, size in lines:
            self.set_x(x)
            self.set_font("Helvetica", style, size)
            self.multi_cell(width, size * 0.48, text, new_x="LEFT", new_y="NEXT")


def _header(pdf: _Document, snapshot: Mapping[str, Any], title: str, meta: list[tuple[str, str]]) -> None:
    """Seller (left) and the document's title and reference (right), then who it is billed to."""
    top = pdf.get_y()
    seller = snapshot.get("seller") or {}
    right_w, gap = 70.0, 8.0
    left_w = pdf.content_width - right_w - gap
    lines: list[tuple[str, str, float]] = []
    if seller.get("name"):
        lines.append((pdf_text(seller["name"], MAX_NAME), "B", 13))
    for part in str(seller.get("address") or "").splitlines():
        if part.strip():
            lines.append((pdf_text(part.strip()), "", 9))
    if seller.get("tax_id"):
        lines.append((pdf_text(f"Tax ID: {seller['tax_id']}"), "", 9))
    if seller.get("email"):
        lines.append((pdf_text(seller["email"]), "", 9))
    pdf.text_block(pdf.l_margin, left_w, lines)
    after_seller = pdf.get_y()

    x = pdf.l_margin + left_w + gap
    pdf.set_xy(x, top)
    pdf.set_font("Helvetica", "B", 20)
    pdf.cell(right_w, 9, title, align="R", new_x="LEFT", new_y="NEXT")
    pdf.ln(2)
    for label, value in meta:
        pdf.set_x(x)
        pdf.set_font("Helvetica", "", 8.5)
        pdf.set_text_color(*MUTED)
        pdf.cell(28, 5, label)
        pdf.set_text_color(*INK)
        pdf.set_font("Helvetica", "B" if label == meta[0][0] else "", 8.5)
        pdf.multi_cell(right_w - 28, 5, pdf_text(value, 120), align="R", new_x="LEFT", new_y="NEXT")
    after_meta = pdf.get_y()

    pdf.set_y(max(after_seller, after_meta) + 6)
    buyer = snapshot.get("buyer") or {}
    pdf.set_font("Helvetica", "", 8)
    pdf.set_text_color(*MUTED)
    pdf.cell(0, 4.5, "BILL TO", new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(*INK)
    lines = [(pdf_text(buyer.get("name") or buyer.get("billing_account_id") or "", MAX_NAME), "B", 11)]
    if buyer.get("billing_account_id"):
        lines.append((pdf_text(f"Account {buyer['billing_account_id']}"), "", 9))
    pdf.text_block(pdf.l_margin, left_w, lines)
    pdf.ln(6)


def _table(pdf: _Document, widths: tuple[float, ...], headings: list[tuple[str, str]],
           rows: list[tuple[list[str], list[str]]]) -> None:
    """A lines table: each row's cells, then its small grey detail lines (tiers, days, corrections)."""
    heading_style = FontFace(emphasis="BOLD", color=MUTED, fill_color=SHADE, size_pt=8)
    detail_style = FontFace(color=MUTED, size_pt=7.5)
    pdf.set_font("Helvetica", size=9)
    with pdf.table(col_widths=widths, width=pdf.content_width, borders_layout="NONE",
                   headings_style=heading_style, line_height=4.6, padding=(1.6, 1.5),
                   text_align=tuple(align for _, align in headings), v_align="TOP") as table:
        header = table.row()
        for text, align in headings:
            header.cell(text, align=align)
        for cells, details in rows:
            row = table.row()
            padding = (1.6, 1.5, 0.4 if details else 1.6)  # details sit close under their line
            for index, ((_, align), text) in enumerate(zip(headings, cells, strict=True)):
                # a rule above each line, none above its details; the first cell spans both rows so
                # that a page break never separates a line from its details
                row.cell(text, align=align, border="TOP", padding=padding, rowspan=2 if details and not index else 1)
            if details:
                row = table.row(style=detail_style)
                row.cell("\n".join(details), colspan=len(headings) - 1, align="LEFT", padding=(0, 1.5, 1.6))
    pdf.line(pdf.l_margin, pdf.get_y(), pdf.l_margin + pdf.content_width, pdf.get_y())


def _totals(pdf: _Document, rows: list[tuple[str, str, bool]]) -> None:
    """Right-aligned label / amount rows; a bold row is drawn on a shaded band."""
    width, amount_w = 95.0, 35.0
    x = pdf.l_margin + pdf.content_width - width
    pdf.ln(3)
    if pdf.will_page_break(len(rows) * 7 + 4):
        pdf.add_page()
    for label, amount, strong in rows:
        pdf.set_x(x)
        pdf.set_font("Helvetica", "B" if strong else "", 10.5 if strong else 9)
        pdf.set_fill_color(*SHADE)
        height = 8 if strong else 6
        pdf.cell(width - amount_w, height, pdf_text(label, 80), fill=strong, align="R" if not strong else "L")
        pdf.cell(amount_w, height, amount, fill=strong, align="R", new_x="LMARGIN", new_y="NEXT")


def _note(pdf: _Document, lines: list[str]) -> None:
    pdf.ln(6)
    pdf.set_font("Helvetica", size=7.5)
    pdf.set_text_color(*MUTED)
    for line in lines:
        pdf.multi_cell(0, 3.8, pdf_text(line, 600), new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(*INK)


# --- documents -----------------------------------------------------------------------------------

def _require(snapshot: Mapping[str, Any], *keys: str) -> None:
    missing = [key for key in keys if snapshot.get(key) in (None, "")]
    if missing:
        kind = snapshot.get("document_type", "document")
        raise ValueError(f"{kind} snapshot lacks {', '.join(missing)}")


def _date(value: Any, what: str) -> date:
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"{what} is {value!r}: not an ISO date (YYYY-MM-DD)") from None


def _days(start: Any, end: Any) -> str:
    """A half-open [start, end) window as the days a reader counts: 2026-10-01 to 2026-10-31."""
    last = _date(end, "end date") - timedelta(days=1)
    return f"{_date(start, 'start date').isoformat()} \u2013 {last.isoformat()}"


def _minor_units(snapshot: Mapping[str, Any]) -> int:
    units = snapshot.get("minor_units")
    if isinstance(units, bool) or not isinstance(units, int) or not 0 <= units <= 6:
        raise ValueError(f"minor_units is {units!r}: the currency's decimal places, an integer 0-6")
    return units


def _check_sum(parts: Iterable[Any], expected: Any, what: str) -> None:
    got = sum((parse_decimal(v, what) for v in parts), Decimal(0))
    if got != parse_decimal(expected, what):
        raise ValueError(f"{what} is {expected} but its lines add up to {got}")


def _line_details(line: Mapping[str, Any], snapshot: Mapping[str, Any], minor: int) -> list[str]:
    details = []
    if line.get("line_type") == "adjustment" or line.get("corrected_period"):
        text = f"Correction of period {line.get('corrected_period') or '?'}"
        if line.get("corrected_invoice_number"):
            text += f" (invoice {line['corrected_invoice_number']})"
        details.append(text)
    start, end = line.get("segment_start"), line.get("segment_end")
    if start and end and (str(start), str(end)) != (str(snapshot.get("period_start")), str(snapshot.get("period_end"))):
        details.append(f"Days {_days(start, end)}")
    tiers = line.get("tiers") or []
    with_fee = [t for t in tiers if t.get("flat_fee") not in (None, "") and parse_decimal(t["flat_fee"], "flat fee")]
    if len(tiers) > 1 or with_fee:
        parts = []
        for tier in tiers:
            text = (f"{tier.get('tier_number')}: {format_quantity(tier.get('units') or '0', 'tier units')} x "
                    f"{format_exact(tier.get('unit_price') or '0', minor, 'tier unit price')}")
            if tier in with_fee:
                text += f" + {format_exact(tier['flat_fee'], minor, 'flat fee')} flat"
            text += f" = {format_exact(tier.get('amount') or '0', minor, 'tier amount')}"
            parts.append(text)
        details.append("Tiers " + "; ".join(parts))
    return [pdf_text(d, 1000) for d in details]


def render_invoice_pdf(snapshot: Mapping[str, Any]) -> bytes:
    """The PDF of an issued invoice, from its snapshot (module docstring: the format and conventions)."""
    _require(snapshot, "number", "issue_date", "period", "currency", "subtotal", "total")
    minor = _minor_units(snapshot)
    currency = pdf_text(snapshot["currency"], 8)
    lines = list(snapshot.get("lines") or [])
    items = [line for line in lines if line.get("line_type") not in CREDIT_LINE_TYPES]
    credits = [line for line in lines if line.get("line_type") in CREDIT_LINE_TYPES]
    _check_sum((line["amount"] for line in items), snapshot["subtotal"], "subtotal")
    _check_sum([snapshot["subtotal"], *(line["amount"] for line in credits)], snapshot["total"], "total")

    issue_date = _date(snapshot["issue_date"], "issue_date")
    pdf = _Document("Invoice", str(snapshot["number"]), issue_date)
    meta = [("Invoice no.", str(snapshot["number"])), ("Issue date", issue_date.isoformat()),
            ("Period", str(snapshot["period"]))]
    if snapshot.get("period_start") and snapshot.get("period_end"):
        meta.append(("Service dates", _days(snapshot["period_start"], snapshot["period_end"])))
    meta.append(("Currency", currency))
    if snapshot.get("reissue_of"):
        meta.append(("Replaces", f"{snapshot['reissue_of']} (void)"))
    _header(pdf, snapshot, "INVOICE", meta)

    rows = []
    for line in items:
        quantity, price = line.get("quantity"), line.get("unit_price")
        rows.append(([str(line.get("line_number", "")), pdf_text(line.get("description") or line.get("product_id")),
                      format_quantity(quantity) if quantity not in (None, "") else "",
                      format_exact(price, minor, "unit price") if price not in (None, "") else "",
                      format_amount(line["amount"], minor)],
                     _line_details(line, snapshot, minor)))
    _table(pdf, (8, 82, 28, 26, 30),
           [("#", "RIGHT"), ("Description", "LEFT"), ("Quantity", "RIGHT"), ("Unit price", "RIGHT"),
            (f"Amount ({currency})", "RIGHT")], rows)

    totals = [("Subtotal", format_amount(snapshot["subtotal"], minor, "subtotal"), False)]
    totals += [(pdf_text(line.get("description")) if line.get("description") else CREDIT_LABELS[line["line_type"]],
                format_amount(line["amount"], minor), False) for line in credits]
    totals.append((f"Total due ({currency})", format_amount(snapshot["total"], minor, "total"), True))
    _totals(pdf, totals)

    notes = []
    if snapshot.get("catalog_sha256"):
        notes.append(f"Rated with catalog sha256 {snapshot['catalog_sha256']}")
    if snapshot.get("data_fingerprint"):
        notes.append(f"Usage data fingerprint {snapshot['data_fingerprint']}")
    if notes:
        _note(pdf, notes)
    return bytes(pdf.output())


def render_credit_note_pdf(snapshot: Mapping[str, Any]) -> bytes:
    """The PDF of a credit note: its number, the invoice it credits, the reason, the lines and total."""
    _require(snapshot, "number", "issue_date", "currency", "invoice_number", "reason_code", "total")
    minor = _minor_units(snapshot)
    currency = pdf_text(snapshot["currency"], 8)
    lines = list(snapshot.get("lines") or [])
    _check_sum((line["amount"] for line in lines), snapshot["total"], "credit note total")

    issue_date = _date(snapshot["issue_date"], "issue_date")
    pdf = _Document("Credit note", str(snapshot["number"]), issue_date)
    reason_code = str(snapshot["reason_code"])
    meta = [("Credit note no.", str(snapshot["number"])), ("Issue date", issue_date.isoformat()),
            ("Credits invoice", str(snapshot["invoice_number"])),
            ("Reason", REASONS.get(reason_code, reason_code)), ("Reason code", reason_code), ("Currency", currency)]
    _header(pdf, snapshot, "CREDIT NOTE", meta)
    if snapshot.get("comment"):
        pdf.set_font("Helvetica", "I", 9)
        pdf.multi_cell(0, 4.5, pdf_text(f"Comment: {snapshot['comment']}", 1000), new_x="LMARGIN", new_y="NEXT")
        pdf.ln(3)

    rows = []
    for line in lines:
        quantity = line.get("quantity")
        rows.append(([str(line.get("line_number", "")), str(line.get("invoice_line_number", "")),
                      pdf_text(line.get("description")),
                      format_quantity(quantity) if quantity not in (None, "") else "",
                      format_amount(line["amount"], minor)], []))
    _table(pdf, (8, 22, 86, 28, 30),
           [("#", "RIGHT"), ("Invoice line", "RIGHT"), ("Description", "LEFT"), ("Quantity", "RIGHT"),
            (f"Credited ({currency})", "RIGHT")], rows)
    _totals(pdf, [(f"Total credited ({currency})", format_amount(snapshot["total"], minor, "total"), True)])
    _note(pdf, [f"This credit note reduces the amount due on invoice {snapshot['invoice_number']}."])
    return bytes(pdf.output())


# --- storage -------------------------------------------------------------------------------------

def store_document(folder: Path, data: bytes) -> tuple[str, Path]:
    """Keep `data` as `<folder>/<sha256>.pdf` and return (sha256 hex, path).

    Written to a temporary file in the same folder and renamed, so a reader never sees half a file;
    a file already stored under that sha256 is left as it is (same name, same bytes)."""
    digest = hashlib.sha256(data).hexdigest()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{digest}.pdf"
    if path.exists():
        return digest, path
    fd, temp = tempfile.mkstemp(dir=folder, prefix=f".{digest}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return digest, path
