"""Normalization rules: a received file becomes typed events plus quarantined rows with reasons.

Pure functions over Polars frames, no warehouse access: `normalize_frame` is what the unit tests
exercise and what `normalize.load` calls for every landed file.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from collectors.sources import EVENT_FIELDS, SourceConfig

SCALE = 9  # decimal places kept for quantities (DECIMAL(38, 9) in the warehouse)
QUANTITY = pl.Decimal(38, SCALE)
_HAS_ZONE = r"(Z|z|[+-]\d{2}(:?\d{2})?)$"
_DECIMAL_TEXT = r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$"


class FileRejected(ValueError):
    """The whole file cannot be read as this source's format; nothing from it is loaded."""


@dataclass
class Normalized:
    events: pl.DataFrame  # columns: row_number + EVENT_FIELDS, typed
    quarantine: pl.DataFrame  # columns: row_number, column_name, reason, raw_row
    rows_received: int


def read_rows(path: Path, source: SourceConfig) -> pl.DataFrame:
    """Read a file as all-text columns plus a 1-based `row_number`."""
    fmt = source.format
    if fmt == "auto":
        suffix = path.suffix.lower()
        fmt = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}.get(suffix)
        if fmt is None:
            raise FileRejected(f"cannot tell the format of '{path.name}' from its suffix; use .csv or .jsonl, "
                               f"or set 'format' on source '{source.name}'")
    data = path.read_bytes()
    if not data.strip():
        return pl.DataFrame(schema={"row_number": pl.Int64})
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileRejected(f"'{path.name}' is not UTF-8 text (byte {exc.start}); re-export it as UTF-8") from None
    try:
        if fmt == "csv":
            frame = pl.read_csv(io.BytesIO(data), separator=source.delimiter, infer_schema=False)
        elif fmt == "jsonl":
            frame = pl.read_ndjson(io.BytesIO(data), infer_schema_length=None)
            frame = frame.with_columns(pl.all().cast(pl.String))
        else:
            raise FileRejected(f"source '{source.name}' has unknown format '{fmt}' (csv or jsonl)")
    except (pl.exceptions.PolarsError, ValueError) as exc:
        raise FileRejected(f"'{path.name}' cannot be read as {fmt}: {exc}") from None
    return frame.with_row_index("row_number", offset=1).with_columns(pl.col("row_number").cast(pl.Int64))


def normalize_frame(rows: pl.DataFrame, source: SourceConfig) -> Normalized:
    """Type and validate text rows; every row ends in `events` or `quarantine`, never both."""
    missing = [source.column(f) for f in EVENT_FIELDS if source.column(f) not in rows.columns]
    if rows.height and missing:
        raise FileRejected(f"required column(s) {', '.join(repr(c) for c in missing)} not found; "
                           f"the file has {', '.join(c for c in rows.columns if c != 'row_number')}")
    if rows.height == 0:
        return Normalized(_empty_events(), _empty_quarantine(), 0)

    text = {f: pl.col(source.column(f)).str.strip_chars() for f in EVENT_FIELDS}
    quantity_text = text["quantity"]
    ts_text = text["occurred_at"]
    zoned = ts_text.str.to_datetime("%+", strict=False, time_zone="UTC")
    naive = pl.coalesce(
        [ts_text.str.to_datetime(fmt, strict=False) for fmt in ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f")]
    )
    if source.timezone:
        naive_utc = naive.dt.replace_time_zone(source.timezone, ambiguous="earliest", non_existent="null")
        naive_utc = naive_utc.dt.convert_time_zone("UTC")
    else:
        naive_utc = pl.lit(None, dtype=pl.Datetime("us", "UTC"))
    has_zone = ts_text.str.contains(_HAS_ZONE)
    typed = rows.with_columns(
        _event_id=text["event_id"],
        _customer_id=text["customer_id"],
        _product_id=text["product_id"],
        _quantity=quantity_text.str.to_decimal(scale=SCALE),
        _occurred_at=pl.when(has_zone).then(zoned).otherwise(naive_utc).dt.cast_time_unit("us"),
        _has_zone=has_zone,
        _quantity_ok=quantity_text.str.contains(_DECIMAL_TEXT),
        _too_precise=quantity_text.str.extract(r"\.(\d+)$").str.len_chars() > SCALE,
    )

    def problem(field: str, condition: pl.Expr, message: pl.Expr | str) -> tuple[str, pl.Expr, pl.Expr]:
        return field, condition, message if isinstance(message, pl.Expr) else pl.lit(message)

    def quoted(field: str) -> pl.Expr:
        return pl.lit("'") + pl.col(source.column(field)).fill_null("") + pl.lit("'")

    q_col = source.column("quantity")
    t_col = source.column("occurred_at")
    problems = [
        *[problem(f, pl.col(f"_{f}").fill_null("") == "", f"{source.column(f)} is empty; every row needs one")
          for f in ("event_id", "customer_id", "product_id")],
        problem("quantity", pl.col("_quantity_ok").fill_null(False).not_(),
                pl.lit(f"{q_col} ") + quoted("quantity") + pl.lit(" is not a decimal number")),
        problem("quantity", pl.col("_too_precise").fill_null(False),
                pl.lit(f"{q_col} ") + quoted("quantity") + pl.lit(f" has more than {SCALE} decimal places")),
        problem("quantity", pl.col("_quantity").is_null(),
                pl.lit(f"{q_col} ") + quoted("quantity") + pl.lit(" is out of range")),
        problem("quantity", pl.col("_quantity") < 0,
                pl.lit(f"{q_col} ") + quoted("quantity") + pl.lit(" is negative; usage cannot be below zero "
                                                                   "(send corrections as adjustments)")),
        problem("occurred_at", pl.col("_has_zone").fill_null(False).not_() & pl.lit(source.timezone is None)
                & pl.col("_occurred_at").is_null() & naive.is_not_null(),
                pl.lit(f"{t_col} ") + quoted("occurred_at") + pl.lit(
                    f" has no time zone and source '{source.name}' declares none; add an offset such as Z "
                    "or set 'timezone' on the source")),
        problem("occurred_at", pl.col("_occurred_at").is_null(),
                pl.lit(f"{t_col} ") + quoted("occurred_at") + pl.lit(
                    " is not an ISO 8601 timestamp (e.g. 2026-10-01T12:00:00Z)")),
    ]
    column_name = pl.lit(None, dtype=pl.String)
    reason = pl.lit(None, dtype=pl.String)
    for field, condition, message in reversed(problems):  # first listed problem wins
        column_name = pl.when(condition.fill_null(False)).then(pl.lit(source.column(field))).otherwise(column_name)
        reason = pl.when(condition.fill_null(False)).then(message).otherwise(reason)
    checked = typed.with_columns(_column=column_name, _reason=reason)

    events = checked.filter(pl.col("_reason").is_null()).select(
        "row_number",
        *[pl.col(f"_{f}").alias(f) for f in EVENT_FIELDS],
    )
    original = [c for c in rows.columns if c != "row_number"]
    quarantine = checked.filter(pl.col("_reason").is_not_null()).select(
        "row_number",
        pl.col("_column").alias("column_name"),
        pl.col("_reason").alias("reason"),
        pl.struct(original).struct.json_encode().alias("raw_row"),
    )
    return Normalized(events.with_columns(pl.col("quantity").cast(QUANTITY)), quarantine, rows.height)


def split_in_file_duplicates(events: pl.DataFrame, source_name: str) -> tuple[pl.DataFrame, pl.DataFrame,
                                                                               pl.DataFrame]:
    """Within one file: (first occurrences, exact repeats, conflicting repeats).

    Repeats carry `duplicate_of_row_number`, the row they repeat.
    """
    payload = ["customer_id", "product_id", "quantity", "occurred_at"]
    ranked = events.with_columns(
        _first_row=pl.col("row_number").min().over("event_id"),
        _same=pl.all_horizontal([pl.col(c) == pl.col(c).sort_by("row_number").first().over("event_id")
                                 for c in payload]),
    )
    first = ranked.filter(pl.col("row_number") == pl.col("_first_row")).drop("_first_row", "_same")
    repeats = ranked.filter(pl.col("row_number") != pl.col("_first_row")).rename(
        {"_first_row": "duplicate_of_row_number"})
    exact = repeats.filter(pl.col("_same")).drop("_same")
    conflicting = repeats.filter(~pl.col("_same")).drop("_same")
    return first, exact, conflicting


def _empty_events() -> pl.DataFrame:
    schema = {"row_number": pl.Int64, "event_id": pl.String, "customer_id": pl.String, "product_id": pl.String,
              "quantity": QUANTITY, "occurred_at": pl.Datetime("us", "UTC")}
    return pl.DataFrame(schema=schema)


def _empty_quarantine() -> pl.DataFrame:
    return pl.DataFrame(schema={"row_number": pl.Int64, "column_name": pl.String, "reason": pl.String,
                                "raw_row": pl.String})
