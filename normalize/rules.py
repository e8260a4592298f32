"""Normalization rules: a received file becomes typed events plus quarantined rows with reasons.

Pure functions over Polars frames, no warehouse access: `normalize_frame` is what the unit tests
exercise and what `normalize.load` calls for every landed file.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
import zlib
from dataclasses import dataclass
from decimal import Decimal
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


MAX_EXPANDED_BYTES = 4 << 30  # a compressed file may expand to at most this (zip bombs stop here)
_FORMAT_BY_SUFFIX = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet"}


def read_rows(path: Path, source: SourceConfig, *, max_expanded_bytes: int | None = None) -> pl.DataFrame:
    """Read a file (expanding .gz / .zip first) as all-text columns plus a 1-based `row_number`."""
    limit = max_expanded_bytes or MAX_EXPANDED_BYTES
    name, data = _expand(path, path.read_bytes(), limit)
    fmt = source.format
    if fmt == "auto":
        fmt = _FORMAT_BY_SUFFIX.get(Path(name).suffix.lower())
        if fmt is None:
            raise FileRejected(f"cannot tell the format of '{name}' from its suffix; use .csv, .jsonl or .parquet "
                               f"(optionally .gz or .zip), or set 'format' on source '{source.name}'")
    if fmt == "parquet":
        frame = _read_parquet(data, name, source)
    else:
        if not data.strip():
            return pl.DataFrame(schema={"row_number": pl.Int64})
        data = _as_utf8(data, name, source)
        try:
            if fmt == "csv":
                frame = pl.read_csv(io.BytesIO(data), separator=source.delimiter, infer_schema=False,
                                    has_header=source.header, skip_rows=source.skip_rows,
                                    quote_char=source.quote_char)
                if not source.header:  # name columns column_1, column_2, ... as docs/sources.md says
                    frame.columns = [f"column_{i}" for i in range(1, frame.width + 1)]
            elif fmt == "jsonl":
                frame = pl.read_ndjson(io.BytesIO(data), infer_schema_length=None)
                frame = frame.with_columns(pl.all().cast(pl.String))
            else:
                raise FileRejected(f"source '{source.name}' has unknown format '{fmt}' (csv, jsonl or parquet)")
        except (pl.exceptions.PolarsError, ValueError) as exc:
            raise FileRejected(f"'{name}' cannot be read as {fmt}: {exc}") from None
    return frame.with_row_index("row_number", offset=1).with_columns(pl.col("row_number").cast(pl.Int64))


def _expand(path: Path, data: bytes, limit: int) -> tuple[str, bytes]:
    """Undo .gz / .zip, refusing truncated archives and anything that expands past `limit` bytes."""
    name = path.name
    suffix = Path(name).suffix.lower()
    if suffix == ".gz":
        out = bytearray()
        decompressor = zlib.decompressobj(wbits=47)  # gzip header, bounded output per call
        chunk = data
        try:
            while chunk:
                out += decompressor.decompress(chunk, limit + 1 - len(out))
                if len(out) > limit:
                    raise FileRejected(f"'{name}' expands to more than {limit} bytes; refused as a possible bomb")
                chunk = decompressor.unconsumed_tail
            if not decompressor.eof:
                raise FileRejected(f"'{name}' is a truncated gzip file; send it again")
        except zlib.error as exc:
            raise FileRejected(f"'{name}' is not a valid gzip file ({exc}); send it again") from None
        return name[:-3], bytes(out)
    if suffix == ".zip":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                members = [m for m in archive.infolist() if not m.is_dir()]
                if len(members) != 1:
                    raise FileRejected(f"'{name}' holds {len(members)} files; send one usage file per zip")
                member = members[0]
                if member.file_size > limit:
                    raise FileRejected(f"'{name}' expands to {member.file_size} bytes, over the {limit}-byte "
                                       "limit; refused as a possible bomb")
                with archive.open(member) as handle:
                    content = handle.read(limit + 1)  # never trust the declared size alone
                if len(content) > limit:
                    raise FileRejected(f"'{name}' expands to more than {limit} bytes; refused as a possible bomb")
                return Path(member.filename).name, content
        except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
            raise FileRejected(f"'{name}' is not a readable zip file ({exc}); send it again") from None
    return name, data


def _as_utf8(data: bytes, name: str, source: SourceConfig) -> bytes:
    try:
        text = data.decode(source.encoding)
    except UnicodeDecodeError as exc:
        raise FileRejected(f"'{name}' is not {source.encoding} text (byte {exc.start}); re-export it as "
                           f"{source.encoding} or set 'encoding' on source '{source.name}'") from None
    return data if source.encoding.replace("-", "").lower() == "utf8" else text.encode("utf-8")


def _read_parquet(data: bytes, name: str, source: SourceConfig) -> pl.DataFrame:
    try:
        frame = pl.read_parquet(io.BytesIO(data))
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise FileRejected(f"'{name}' cannot be read as parquet: {exc}") from None
    quantity = source.column("quantity")
    if quantity in frame.columns and frame.schema[quantity] in (pl.Float32, pl.Float64):
        raise FileRejected(f"'{name}': column '{quantity}' is a binary float; export it as a decimal or text "
                           "so no quantity is rounded on the way")
    return frame.with_columns(pl.all().cast(pl.String))


def normalize_frame(rows: pl.DataFrame, source: SourceConfig) -> Normalized:
    """Type and validate text rows; every row ends in `events` or `quarantine`, never both."""
    required = [f for f in EVENT_FIELDS if not (f == "event_id" and source.derive_event_id)]
    missing = [source.column(f) for f in required if source.column(f) not in rows.columns]
    if rows.height and missing:
        raise FileRejected(f"required column(s) {', '.join(repr(c) for c in missing)} not found; "
                           f"the file has {', '.join(c for c in rows.columns if c != 'row_number')}")
    if rows.height == 0:
        return Normalized(_empty_events(), _empty_quarantine(), 0)

    if source.derive_event_id:
        rows = rows.with_columns(pl.lit("-").alias("_derived_event_id"))
        source = _with_column(source, "event_id", "_derived_event_id")
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
        _quantity=_scaled(quantity_text.str.to_decimal(scale=SCALE), source.quantity_scale),
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
        problem("quantity", pl.col("_quantity") != pl.col("_quantity").cast(QUANTITY),
                pl.lit(f"{q_col} ") + quoted("quantity") + pl.lit(
                    f" times the source's quantity_scale {source.quantity_scale} has more than {SCALE} decimal places")),
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
    if source.derive_event_id:
        events = derive_event_ids(events.with_columns(pl.col("quantity").cast(QUANTITY)))
    original = [c for c in rows.columns if c not in ("row_number", "_derived_event_id")]
    quarantine = checked.filter(pl.col("_reason").is_not_null()).select(
        "row_number",
        pl.col("_column").alias("column_name"),
        pl.col("_reason").alias("reason"),
        pl.struct(original).struct.json_encode().alias("raw_row"),
    )
    return Normalized(events.with_columns(pl.col("quantity").cast(QUANTITY)), quarantine, rows.height)


def derive_event_ids(events: pl.DataFrame) -> pl.DataFrame:
    """For sources without ids: sha256 of customer, product, quantity, UTC time and the payload's
    occurrence number in the file. The same file delivered twice gives the same ids (loads once);
    two identical rows in one file stay two events; the same usage re-exported in a different
    file with different neighbours still matches, as long as identical payloads keep their order.
    """
    payload = ["customer_id", "product_id", "quantity", "occurred_at"]
    keyed = events.with_columns(
        _occurrence=pl.int_range(pl.len()).over(payload),
        _text=pl.concat_str([pl.col(c).cast(pl.String) for c in payload], separator="|"),
    )
    ids = [hashlib.sha256(f"{text}|{n}".encode()).hexdigest()
           for text, n in zip(keyed["_text"], keyed["_occurrence"], strict=True)]
    return keyed.with_columns(event_id=pl.Series(ids, dtype=pl.String)).drop("_occurrence", "_text")


def _with_column(source: SourceConfig, event_field: str, column: str) -> SourceConfig:
    from dataclasses import replace

    return replace(source, columns={**source.columns, event_field: column})


def _scaled(quantity: pl.Expr, scale: Decimal) -> pl.Expr:
    if scale == 1:
        return quantity
    exponent = max(-scale.as_tuple().exponent, 0)
    return quantity * pl.lit(scale, dtype=pl.Decimal(38, exponent))


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
