"""File formats: how a source's files are read and mapped onto the event contract.

A concern of its own, below both the collectors (which land files as received) and normalize
(which reads them): neither imports the other. The settings are the format keys of a source in
the sources file (docs/sources.md: format, delimiter, timezone, columns, ...), read by
`read_format`; `SourceFormat` is what normalize needs to read one source's files.

The event contract every source is mapped onto: event_id, customer_id, product_id, quantity,
occurred_at. A source names, for each, the column in its files that holds it (`columns`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.events import RECEIVED

from .section import Section, SourceConfigError

EVENT_FIELDS = RECEIVED  # the fields a source maps from its own columns (core/events.py)
FORMATS = ("auto", "csv", "jsonl", "parquet")
# Plausible event times (docs/sources.md): at most this long after the file was received ...
DEFAULT_FUTURE_MARGIN = timedelta(days=1)
# ... and not before this day (UTC). Usage billed today is not from the last century: an earlier
# date is a default value (1970-01-01, 1900-01-01, 0001-01-01) or a broken clock.
DEFAULT_EARLIEST_DATE = date(2000, 1, 1)


@dataclass(frozen=True)
class SourceFormat:
    """How the files of source `name` are read; `name` is also the source of every event they hold."""

    name: str
    format: str = "auto"  # auto (by file suffix) | csv | jsonl | parquet; .gz and .zip are expanded first
    delimiter: str = ","
    timezone: str | None = None  # zone of naive timestamps; None = naive timestamps are refused
    columns: dict[str, str] = field(default_factory=lambda: {f: f for f in EVENT_FIELDS})
    header: bool = True  # CSV: first line names the columns (else columns are column_1, column_2, ...)
    skip_rows: int = 0  # CSV: lines to skip before the header (banners, report titles)
    quote_char: str | None = '"'  # CSV: None = no quoting
    encoding: str = "utf-8"  # text files are read in this encoding
    quantity_scale: Decimal = Decimal(1)  # quantities are multiplied by this (bytes -> GB: "0.000000001")
    derive_event_id: bool = False  # the source has no event ids: derive one from the row (docs/sources.md)
    future_margin: timedelta = DEFAULT_FUTURE_MARGIN  # events dated later after their file's receipt: quarantined
    earliest_date: date = DEFAULT_EARLIEST_DATE  # events dated before this day (00:00 UTC): quarantined

    def column(self, event_field: str) -> str:
        return self.columns.get(event_field, event_field)


def read_format(top: Section, name: str) -> SourceFormat:
    """The format settings of one source entry (its top-level keys); errors name the source and key."""
    fmt = top.get("format", str, "auto")
    if fmt not in FORMATS:
        raise top.fail("format", f"must be one of {', '.join(FORMATS)}, got {fmt!r}")
    delimiter = top.get("delimiter", str, ",")
    if len(delimiter) != 1:
        raise top.fail("delimiter", f"must be a single character, got {delimiter!r}")
    timezone = top.get("timezone", str)
    if timezone is not None:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise top.fail("timezone", f"{timezone!r} is not an IANA time zone (e.g. UTC, Europe/Berlin)") from None
    header = top.get("header", bool, True)
    skip_rows = top.count("skip_rows", 0, minimum=0)
    quote_char = top.raw("quote_char", '"')
    quote_char = None if quote_char is False else quote_char
    if quote_char is not None and (not isinstance(quote_char, str) or len(quote_char) != 1):
        raise top.fail("quote_char", f"must be a single character (or false for none), got {quote_char!r}")
    encoding = top.get("encoding", str, "utf-8")
    try:
        "".encode(encoding)
    except LookupError:
        raise top.fail("encoding", f"{encoding!r} is not a text encoding Python knows (e.g. utf-8, latin-1)") from None
    scale_text = top.get("quantity_scale", (str, int), 1)
    try:
        quantity_scale = Decimal(str(scale_text))
    except InvalidOperation:
        raise top.fail("quantity_scale", f"must be a decimal number such as \"0.000000001\", got {scale_text!r}") from None
    if not quantity_scale.is_finite() or quantity_scale <= 0:
        raise top.fail("quantity_scale", f"must be above 0, got {scale_text!r}")
    derive_event_id = top.get("derive_event_id", bool, False)
    margin_hours = top.get("future_margin_hours", float, DEFAULT_FUTURE_MARGIN / timedelta(hours=1))
    if margin_hours < 0:
        raise top.fail("future_margin_hours", f"must be 0 or more, got {margin_hours}")
    earliest_date = top.date("earliest_date", DEFAULT_EARLIEST_DATE)
    columns = {f: f for f in EVENT_FIELDS}
    for event_field, column in top.str_map("columns").items():
        if event_field not in EVENT_FIELDS:
            raise top.fail("columns", f"{event_field!r} is not an event field; map {', '.join(EVENT_FIELDS)}")
        if not column.strip():
            raise top.fail(f"columns.{event_field}", "must name a column")
        columns[event_field] = column
    return SourceFormat(name=name, format=fmt, delimiter=delimiter, timezone=timezone, columns=columns,
                        header=header, skip_rows=skip_rows, quote_char=quote_char, encoding=encoding,
                        quantity_scale=quantity_scale, derive_event_id=derive_event_id,
                        future_margin=timedelta(hours=margin_hours), earliest_date=earliest_date)


__all__ = ["DEFAULT_EARLIEST_DATE", "DEFAULT_FUTURE_MARGIN", "EVENT_FIELDS", "FORMATS", "Section",
           "SourceConfigError", "SourceFormat", "read_format"]
