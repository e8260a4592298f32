"""Normalization rules: a received file becomes typed events plus quarantined rows with reasons.

Pure functions over Polars frames, no warehouse access: `normalize_frame` is what the unit tests
exercise and what `normalize.load` calls for every landed file.
"""

from __future__ import annotations

import codecs
import contextlib
import gzip
import hashlib
import io
import json
import re
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import BinaryIO

import polars as pl

from core import events as contract
from core.events import RECEIVED as EVENT_FIELDS
from core.money import QUANTITY as QUANTITY_DIGITS
from formats import SourceFormat

NUL = "\x00"  # a text value holding it cannot be stored by PostgreSQL: such a row is quarantined (on every engine)
SCALE = QUANTITY_DIGITS.fraction  # decimal places kept for quantities (core/money.py)
QUANTITY = contract.QUANTITY
# The largest quantity accepted (core/money.py): beyond it, a line's quantity x price would not
# stay exact within 38 digits, so the row is quarantined instead.
_QUANTITY_LIMIT = pl.lit(QUANTITY_DIGITS.largest, dtype=QUANTITY)
_HAS_ZONE = r"(Z|z|[+-]\d{2}(:?\d{2})?)$"
_DECIMAL_TEXT = r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$"
_UTC_SECONDS = "%Y-%m-%dT%H:%M:%SZ"  # a fast exact format for the usual timestamps (see normalize_frame)
_SHAPE_PROBE_ROWS = 100
_UTC_US = pl.Datetime("us", "UTC")


class FileRejected(ValueError):
    """The whole file cannot be read as this source's format; nothing from it is loaded."""


@dataclass
class Normalized:
    events: pl.DataFrame  # columns: row_number + EVENT_FIELDS, typed
    quarantine: pl.DataFrame  # columns: row_number, column_name, reason, raw_row
    rows_received: int


_ASCII_COMPATIBLE = {"utf-8", "latin-1", "iso8859-1", "iso8859-15", "cp1252", "ascii"}
MAX_EXPANDED_BYTES = 4 << 30  # a compressed file may expand to at most this (zip bombs stop here)
EXPAND_CHUNK = 1 << 20  # a compressed file is expanded to disk this many bytes at a time
_FORMAT_BY_SUFFIX = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet"}


BATCH_ROWS = 1_000_000  # rows normalized and written at a time: memory is bounded by this, not by the file
WHOLE_FILE_BYTES = 256 << 20  # plain CSV files up to this size are parsed in one go (faster than streaming)
JSONL_BLOCK_BYTES = 128 << 20  # JSON lines are parsed in blocks of about this many bytes
JSONL_SCHEMA_LINES = 10_000  # keys (columns) of a JSON-lines file: those of its first lines
JSONL_SCHEMA_BYTES = 8 << 20  # ... within its first 8 MB


def _format_of(name: str, source: SourceFormat) -> str:
    fmt = source.format
    if fmt == "auto":
        fmt = _FORMAT_BY_SUFFIX.get(Path(name).suffix.lower())
        if fmt is None:
            raise FileRejected(f"cannot tell the format of '{name}' from its suffix; use .csv, .jsonl or .parquet "
                               f"(optionally .gz or .zip), or set 'format' on source '{source.name}'")
    if fmt not in ("csv", "jsonl", "parquet"):
        raise FileRejected(f"source '{source.name}' has unknown format '{fmt}' (csv, jsonl or parquet)")
    return fmt


def read_rows(path: Path, source: SourceFormat, *, max_expanded_bytes: int | None = None) -> pl.DataFrame:
    """Read a file (expanding .gz / .zip first) as all-text columns plus a 1-based `row_number`."""
    batches = list(read_batches(path, source, batch_rows=1 << 62, max_expanded_bytes=max_expanded_bytes))
    return batches[0] if len(batches) == 1 else pl.concat(batches)


def read_batches(path: Path, source: SourceFormat, *, batch_rows: int | None = None,
                 max_expanded_bytes: int | None = None) -> Iterator[pl.DataFrame]:
    """The rows of `read_rows`, as frames of at most `batch_rows` rows (numbered across the file).

    Plain UTF-8 JSON-lines files are parsed block by block, and plain UTF-8 CSV files larger than
    `WHOLE_FILE_BYTES` are streamed, so memory stays bounded whatever the file size. A compressed
    file is first expanded to a temporary plain file in bounded chunks (`_expanded`), then read
    like one. Parquet and non-UTF-8 files are read whole, then sliced.
    Sources that derive event ids number identical payloads across the whole file: one batch.
    Always yields at least one frame (possibly empty).
    """
    batch_rows = batch_rows or BATCH_ROWS
    if source.derive_event_id:
        batch_rows = 1 << 62
    if path.suffix.lower() in (".gz", ".zip"):
        with _expanded(path, max_expanded_bytes or MAX_EXPANDED_BYTES) as plain:
            yield from _read_plain(plain, source, batch_rows)
        return
    yield from _read_plain(path, source, batch_rows)


def _read_plain(path: Path, source: SourceFormat, batch_rows: int) -> Iterator[pl.DataFrame]:
    fmt = _format_of(path.name, source)
    if codecs.lookup(source.encoding).name == "utf-8" and fmt == "jsonl":
        yield from _rebatch(_jsonl_blocks(path, source), batch_rows)
    elif codecs.lookup(source.encoding).name == "utf-8" and fmt == "csv":
        if path.stat().st_size > WHOLE_FILE_BYTES:
            yield from _rebatch(_csv_stream(path, source, batch_rows), batch_rows)
        else:
            yield from _rebatch(iter([_read_csv(path, path.name, source)]), batch_rows)
    else:
        yield from _rebatch(iter([_read_whole(path, fmt, source)]), batch_rows)


def _read_whole(path: Path, fmt: str, source: SourceFormat) -> pl.DataFrame:
    """A Parquet or non-UTF-8 file, read into memory whole (without `row_number`)."""
    name = path.name
    if fmt == "parquet":
        return _read_parquet(path, name, source)
    data = path.read_bytes()
    if not data or data.isspace():
        return pl.DataFrame()
    data = _as_utf8(data, name, source)
    if fmt == "csv":
        return _read_csv(data, name, source)
    return _read_jsonl(data, name, _jsonl_schema(data, name))


def _rebatch(frames: Iterator[pl.DataFrame], batch_rows: int) -> Iterator[pl.DataFrame]:
    """Number rows across the file (1-based) and cut them into frames of at most `batch_rows`.

    No local variable holds a yielded frame, so a batch the caller has dropped is freed while
    this generator waits.
    """
    pending: list[pl.DataFrame] = []
    held = 0
    row = 1
    header: pl.DataFrame | None = None  # an empty frame with the file's columns (a header-only CSV)
    for frame in frames:
        frame = frame.with_row_index("row_number", offset=row).with_columns(pl.col("row_number").cast(pl.Int64))
        if frame.height == 0:
            header = frame if header is None else header
            continue
        row += frame.height
        held += frame.height
        pending.append(frame)
        del frame
        while held >= batch_rows:
            if len(pending) > 1:
                pending[:] = [pl.concat(pending)]
            pending.append(pending[0].slice(batch_rows))
            held = pending[-1].height
            yield pending.pop(0).slice(0, batch_rows)
            if not held:
                pending.clear()
    if pending:
        if len(pending) > 1:
            pending[:] = [pl.concat(pending)]
        yield pending.pop()
    elif row == 1:
        yield header if header is not None else pl.DataFrame(schema={"row_number": pl.Int64})


def _read_csv(data: bytes | Path, name: str, source: SourceFormat) -> pl.DataFrame:
    """CSV bytes, or a plain UTF-8 file (Polars maps it: no copy through Python), as text columns."""
    try:
        frame = pl.read_csv(data if isinstance(data, Path) else io.BytesIO(data), separator=source.delimiter,
                            infer_schema=False, has_header=source.header, skip_rows=source.skip_rows,
                            quote_char=source.quote_char)
    except pl.exceptions.NoDataError:
        return pl.DataFrame()
    except (pl.exceptions.PolarsError, ValueError) as exc:
        if isinstance(data, Path) and "utf-8" in str(exc):
            _check_utf8_blocks(data, source)  # raises, naming the first bad byte
        raise FileRejected(f"'{name}' cannot be read as csv: {exc}") from None
    if not source.header:  # name columns column_1, column_2, ... as docs/sources.md says
        frame.columns = [f"column_{i}" for i in range(1, frame.width + 1)]
    return frame


def _csv_stream(path: Path, source: SourceFormat, batch_rows: int) -> Iterator[pl.DataFrame]:
    """A large plain CSV file, streamed by Polars in chunks (UTF-8 checked block by block first)."""
    _check_utf8_blocks(path, source)
    scan = pl.scan_csv(path, separator=source.delimiter, infer_schema=False, has_header=source.header,
                       skip_rows=source.skip_rows, quote_char=source.quote_char, empty_string_is_null=True)
    try:
        for frame in scan.collect_batches(chunk_size=batch_rows):
            if not source.header:
                frame.columns = [f"column_{i}" for i in range(1, frame.width + 1)]
            yield frame
    except (pl.exceptions.PolarsError, ValueError) as exc:
        raise FileRejected(f"'{path.name}' cannot be read as csv: {exc}") from None


def _not_text(name: str, source: SourceFormat, byte: int) -> FileRejected:
    return FileRejected(f"'{name}' is not {source.encoding} text (byte {byte}); re-export it as "
                        f"{source.encoding} or set 'encoding' on source '{source.name}'")


def _check_utf8_blocks(path: Path, source: SourceFormat) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with path.open("rb") as handle:
        while block := handle.read(16 << 20):
            if not block.isascii():
                try:
                    decoder.decode(block)
                except UnicodeDecodeError as exc:
                    raise _not_text(path.name, source, offset + exc.start) from None
            offset += len(block)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise _not_text(path.name, source, offset) from None


def _jsonl_blocks(path: Path, source: SourceFormat) -> Iterator[pl.DataFrame]:
    """A plain UTF-8 JSON-lines file, parsed in blocks cut at line ends (never inside a line).

    A file of at most one block is handed to Polars by path (no copy through Python); if Polars
    refuses it, the block path below reads it again to say exactly why.
    """
    size = path.stat().st_size
    if size <= JSONL_BLOCK_BYTES:
        with path.open("rb") as handle:
            head = handle.read(min(size, JSONL_SCHEMA_BYTES))
        if len(head) == size and (not head or head.isspace()):
            return
        cut = len(head) if len(head) == size else head.rfind(b"\n") + 1
        if head[:cut].strip() and not _file_may_round_numbers(path):
            try:
                schema = _jsonl_schema(head[:cut], path.name)
                # Polars' streaming engine parses the same lines into the same frame (and fails on the
                # same ones) with about a fifth less CPU than read_ndjson's in-memory engine.
                frame = pl.scan_ndjson(path, schema=schema).collect(engine="streaming")
            except (FileRejected, pl.exceptions.PolarsError, ValueError):
                pass  # the block path names the problem (e.g. the first byte that is not UTF-8)
            else:
                yield frame
                return
    schema = None
    offset = 0
    carry = b""
    with path.open("rb") as handle:
        while True:
            chunk = handle.read(JSONL_BLOCK_BYTES)
            data = carry + chunk
            if chunk:
                cut = data.rfind(b"\n") + 1
                if cut == 0:  # one very long line: keep reading
                    carry = data
                    continue
                data, carry = data[:cut], data[cut:]
            else:
                carry = b""
            if data and not data.isspace():
                if not data.isascii():
                    try:
                        data.decode("utf-8")
                    except UnicodeDecodeError as exc:
                        raise _not_text(path.name, source, offset + exc.start) from None
                if schema is None:
                    schema = _jsonl_schema(data, path.name)
                yield _read_jsonl(data, path.name, schema)
            offset += len(data)
            if not chunk:
                return


def _jsonl_schema(data: bytes, name: str) -> dict[str, pl.DataType]:
    """Columns of a JSON-lines file, all text: the keys of its first `JSONL_SCHEMA_LINES` lines
    (of its first `JSONL_SCHEMA_BYTES` when the file is read by path).

    Nested values (lists, objects) are refused as before: they are not a usage row's fields.
    """
    try:
        head = pl.read_ndjson(io.BytesIO(data), infer_schema_length=JSONL_SCHEMA_LINES, n_rows=JSONL_SCHEMA_LINES)
    except (pl.exceptions.PolarsError, ValueError) as exc:
        raise FileRejected(f"'{name}' cannot be read as jsonl: {exc}") from None
    for column, dtype in head.schema.items():
        if dtype.is_nested():
            raise FileRejected(f"'{name}' cannot be read as jsonl: column '{column}' holds {dtype} values, "
                               "not text or numbers")
    return {column: pl.String for column in head.columns}


def _read_jsonl(data: bytes, name: str, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    try:
        if _may_round_numbers(data):
            return _read_jsonl_exact(data, schema)
        return pl.read_ndjson(io.BytesIO(data), schema=schema)
    except (pl.exceptions.PolarsError, ValueError) as exc:
        raise FileRejected(f"'{name}' cannot be read as jsonl: {exc}") from None


# Polars parses every JSON number with a fraction or exponent as a binary float, and a float keeps
# about 15 significant digits: 1234567.123456789 would come back as 1234567.1234567890 or worse.
# A bare number of 17 or more digit-or-dot characters is the only kind that can lose digits, so a
# block holding one (rare: quantities seldom carry 16 digits) is parsed by Python's json instead,
# with every number kept as its exact decimal text.
_DIGITS_AS_ZERO = bytes.maketrans(b"0123456789.", b"0" * 11)
_LONG_BARE_NUMBER = (b":" + b"0" * 17, b":-" + b"0" * 17)


_SCAN_PIECE = 256 << 10  # bytes translated at a time by `_may_round_numbers` (in the CPU cache: faster too)


def _may_round_numbers(data: bytes) -> bool:
    # Fast: no run of 17 digits anywhere. A piece at a time (each with the 16 bytes after it, so a run
    # across a cut is seen whole in one piece): `translate` holds the GIL, and on a whole 100 MB file it
    # kept the thread that writes to the warehouse waiting for a third of a second.
    long_run = b"0" * 17
    if all(data[start:start + _SCAN_PIECE + 16].translate(_DIGITS_AS_ZERO).find(long_run) < 0
           for start in range(0, len(data), _SCAN_PIECE)):
        return False
    squeezed = data.translate(_DIGITS_AS_ZERO, b" \t\r\n")
    return any(squeezed.find(pattern) >= 0 for pattern in _LONG_BARE_NUMBER)


def _file_may_round_numbers(path: Path) -> bool:
    """`_may_round_numbers` of a file's bytes, read a piece at a time (not the whole file in memory)."""
    long_run = b"0" * 17
    with path.open("rb") as handle:
        tail = b""
        while piece := handle.read(_SCAN_PIECE):
            piece = tail + piece  # with the 16 bytes before it: a run across a cut is seen whole
            if piece.translate(_DIGITS_AS_ZERO).find(long_run) >= 0:
                return _may_round_numbers(path.read_bytes())  # a long run of digits: the whole rule, rarely
            tail = piece[-16:]
    return False


def _read_jsonl_exact(data: bytes, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """JSON lines as text columns, numbers as their exact decimal text (the slow, rare path)."""
    def text(value: object) -> str | None:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (dict, list)):
            raise ValueError(f"a nested value {json.dumps(value)[:40]} is not a usage row's field")
        return value  # already exact text (parse_float / parse_int below)

    columns: dict[str, list[str | None]] = {column: [] for column in schema}
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line, parse_float=lambda s: format(Decimal(s), "f"), parse_int=str,
                                parse_constant=str)
        except json.JSONDecodeError as exc:
            raise ValueError(f"line {number}: {exc}") from None
        if not isinstance(record, dict):
            raise ValueError(f"line {number} is not a JSON object")
        for column, values in columns.items():
            values.append(text(record.get(column)))
    return pl.DataFrame(columns, schema=schema)


@contextlib.contextmanager
def _expanded(path: Path, limit: int) -> Iterator[Path]:
    """A .gz / .zip file expanded into a temporary file, `EXPAND_CHUNK` bytes at a time.

    Memory stays bounded whatever the compression ratio: the expansion goes to disk and stops,
    refused as a possible bomb, once it passes `limit` bytes. The temporary folder sits beside the
    file (the landing zone's disk, sized for data; /tmp may be memory) and goes when the caller is done.
    """
    try:
        scratch = tempfile.TemporaryDirectory(prefix=".expanding-", dir=path.parent)
    except OSError:  # a folder we may not write to: the system's temporary folder then
        scratch = tempfile.TemporaryDirectory(prefix="billing-expanding-")
    with scratch as folder:
        if path.suffix.lower() == ".gz":
            yield _gunzip(path, Path(folder), limit)
        else:
            yield _unzip(path, Path(folder), limit)


def _gunzip(path: Path, folder: Path, limit: int) -> Path:
    """Every member of a gzip file (`cat a.gz b.gz` makes one file of two), as one plain file."""
    name = path.name
    target = folder / _scratch_name(name[:-3])
    try:
        with gzip.open(path, "rb") as src, target.open("wb") as out:
            _copy_bounded(src, out, name, limit)
    except EOFError:
        raise FileRejected(f"'{name}' is a truncated gzip file; send it again") from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise FileRejected(f"'{name}' is not a valid gzip file ({exc}); send it again") from None
    return target


def _unzip(path: Path, folder: Path, limit: int) -> Path:
    name = path.name
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            if len(members) != 1:
                raise FileRejected(f"'{name}' holds {len(members)} files; send one usage file per zip")
            member = members[0]
            if member.file_size > limit:
                raise FileRejected(f"'{name}' expands to {member.file_size} bytes, over the {limit}-byte "
                                   "limit; refused as a possible bomb")
            target = folder / _scratch_name(Path(member.filename).name)
            with archive.open(member) as src, target.open("wb") as out:
                _copy_bounded(src, out, name, limit)  # never trust the declared size alone
            return target
    except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise FileRejected(f"'{name}' is not a readable zip file ({exc}); send it again") from None
    except (NotImplementedError, RuntimeError) as exc:  # an unsupported method, a password
        raise FileRejected(f"'{name}' cannot be expanded ({exc}); send it as a plain zip or gzip") from None


def _copy_bounded(src: BinaryIO, out: BinaryIO, name: str, limit: int) -> None:
    total = 0
    while chunk := src.read(EXPAND_CHUNK):
        total += len(chunk)
        if total > limit:
            raise FileRejected(f"'{name}' expands to more than {limit} bytes; refused as a possible bomb")
        out.write(chunk)


def _scratch_name(name: str) -> str:
    """The expanded file's name (its suffix says its format), safe to create in the scratch folder."""
    return re.sub(r"[^\w.()+=@ -]", "_", name).lstrip(". ") or "expanded"


def _as_utf8(data: bytes, name: str, source: SourceFormat) -> bytes:
    if data.isascii() and codecs.lookup(source.encoding).name in _ASCII_COMPATIBLE:
        return data  # nothing to decode or re-encode (the usual case; decoding 100 MB costs time)
    try:
        text = data.decode(source.encoding)
    except UnicodeDecodeError as exc:
        raise _not_text(name, source, exc.start) from None
    return data if source.encoding.replace("-", "").lower() == "utf8" else text.encode("utf-8")


def _read_parquet(data: bytes | Path, name: str, source: SourceFormat) -> pl.DataFrame:
    try:
        frame = pl.read_parquet(data if isinstance(data, Path) else io.BytesIO(data))
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise FileRejected(f"'{name}' cannot be read as parquet: {exc}") from None
    quantity = source.column("quantity")
    if quantity in frame.columns and frame.schema[quantity] in (pl.Float32, pl.Float64):
        raise FileRejected(f"'{name}': column '{quantity}' is a binary float; export it as a decimal or text "
                           "so no quantity is rounded on the way")
    return frame.with_columns(pl.all().cast(pl.String))


def normalize_frame(rows: pl.DataFrame, source: SourceFormat, *, received_at: datetime | None = None) -> Normalized:
    """Type and validate text rows; every row ends in `events` or `quarantine`, never both.

    Fast path first: every row is typed once (zoned ISO 8601 timestamp, decimal quantity) and checked
    with cheap boolean tests. Only the rows failing that test (usually none) go through the full
    rules: naive timestamps in the source's zone, and the reason naming column, value and what was
    expected. A row passing the fast test is exactly a row the full rules give no reason for.

    `received_at` is when the file was received (its landing time): an event dated more than the
    source's `future_margin` after it is quarantined. Unknown (None) means now.
    """
    required = [f for f in EVENT_FIELDS if not (f == "event_id" and source.derive_event_id)]
    missing = [source.column(f) for f in required if source.column(f) not in rows.columns]
    if rows.height and missing:
        raise FileRejected(f"required column(s) {', '.join(repr(c) for c in missing)} not found; "
                           f"the file has {', '.join(c for c in rows.columns if c != 'row_number')}")
    if rows.height == 0:
        return Normalized(_empty_events(), _empty_quarantine(), 0)
    # Columns in one chunk each: a parse leaves the text columns in dozens of chunks and `row_number`
    # in one, and every expression below would line them up again; once here is cheaper, and the
    # events come out in one chunk (what the warehouse's Arrow insert takes without a copy).
    rows = rows.rechunk()

    if source.derive_event_id:
        rows = rows.with_columns(pl.lit("-").alias("_derived_event_id"))
        source = _with_column(source, "event_id", "_derived_event_id")
    bounds = _TimeBounds(source, received_at)
    text = {f: pl.col(source.column(f)).str.strip_chars() for f in EVENT_FIELDS}
    # The fast test reads the quantity and the timestamp as received, not stripped (stripping copies
    # every value): a value with spaces around it fails the anchored checks below, and the full rules
    # (`_checked_rest`) type that row again from the stripped text, as before.
    quantity_text = pl.col(source.column("quantity"))
    ts_text = pl.col(source.column("occurred_at"))
    # Every timestamp ending in Z (the usual file) has a zone: the regex (a scan of every value) is not needed.
    all_z = rows.select(ts_text.str.ends_with("Z").all(ignore_nulls=False)).item() is True
    has_zone = pl.lit(True) if all_z else ts_text.str.contains(_HAS_ZONE)
    any_zone = ts_text.str.to_datetime("%+", strict=False, time_zone="UTC").dt.cast_time_unit("us")
    # Whole seconds in UTC (`...T12:00:00Z`, the most common shape) parse ~2.5x faster with their exact
    # format, and give the same instant as "%+" for every text both accept; tried when the first rows
    # have that shape, and any row it cannot parse is parsed with "%+" after all (below).
    utc_seconds = rows.height > 0 and rows.head(_SHAPE_PROBE_ROWS).select(
        ts_text.str.to_datetime(_UTC_SECONDS, strict=False, time_zone="UTC").is_not_null().all()).item()
    zoned = (ts_text.str.to_datetime(_UTC_SECONDS, strict=False, time_zone="UTC").dt.cast_time_unit("us")
             if utc_seconds else any_zone)
    typed = rows.with_columns(
        _event_id=text["event_id"],
        _customer_id=text["customer_id"],
        _product_id=text["product_id"],
        _quantity=_scaled(quantity_text.str.to_decimal(scale=SCALE), source.quantity_scale),
        _has_zone=has_zone,
        _occurred_at=zoned,  # kept only with a zone (below); naive timestamps: only for the rows that need it
        _quantity_ok=quantity_text.str.contains(_DECIMAL_TEXT),
        _too_precise=quantity_text.str.contains(rf"\.\d{{{SCALE + 1},}}$"),  # more than SCALE places
    )
    if utc_seconds and typed.select(pl.col("_occurred_at").null_count()).item():
        typed = typed.with_columns(_occurred_at=pl.coalesce(pl.col("_occurred_at"), any_zone))
    quantity = pl.col("_quantity")
    fine = [
        *[pl.col(f"_{f}") != "" for f in ("event_id", "customer_id", "product_id")],
        *[pl.col(f"_{f}").str.contains(NUL, literal=True).not_() for f in ("event_id", "customer_id", "product_id")],
        pl.col("_quantity_ok"),
        pl.col("_too_precise").fill_null(False).not_(),
        quantity >= 0,  # null (out of range) is not fine either
        quantity <= _QUANTITY_LIMIT,
        pl.col("_has_zone"),
        pl.col("_occurred_at").is_between(bounds.earliest, bounds.latest),  # null (unparsed) is not fine
    ]
    if source.quantity_scale != 1:
        fine.append(quantity == quantity.cast(QUANTITY))
    ok = pl.all_horizontal([condition.fill_null(False) for condition in fine])
    typed = typed.with_columns(_ok=ok)
    typed_events = ["row_number", *[pl.col(f"_{f}").alias(f) for f in EVENT_FIELDS]]
    if typed.select(pl.col("_ok").all()).item():  # the usual case: no row to set aside, nothing to copy
        events = typed.select(typed_events)
        rest = typed.clear()
    else:
        events = typed.filter(pl.col("_ok")).select(typed_events)
        rest = typed.filter(~pl.col("_ok"))
    original = [c for c in rows.columns if c not in ("row_number", "_derived_event_id")]
    quarantine = _empty_quarantine()
    if rest.height:
        checked = _checked_rest(rest, source, text, bounds)
        rescued = checked.filter(pl.col("_reason").is_null())
        if rescued.height:  # naive timestamps read in the source's zone
            events = pl.concat([events, rescued.select(typed_events)]).sort("row_number")
        quarantine = checked.filter(pl.col("_reason").is_not_null()).select(
            "row_number",
            pl.col("_column").alias("column_name"),
            pl.col("_reason").alias("reason"),
            pl.struct(original).struct.json_encode().alias("raw_row"),
        )
    events = events.with_columns(pl.col("quantity").cast(QUANTITY))
    if source.derive_event_id:
        events = derive_event_ids(events)
    return Normalized(events, quarantine, rows.height)


class _TimeBounds:
    """The plausible instants of a source's events: [earliest_date 00:00 UTC, received_at + future_margin]."""

    def __init__(self, source: SourceFormat, received_at: datetime | None):
        self.received = received = (received_at or datetime.now(UTC)).astimezone(UTC)
        self.margin = source.future_margin
        self.earliest_date = source.earliest_date
        self.latest_at = received + source.future_margin
        self.earliest = pl.lit(datetime.combine(source.earliest_date, time(), UTC), dtype=_UTC_US)
        self.latest = pl.lit(self.latest_at, dtype=_UTC_US)


def _hours(delta: timedelta) -> str:
    hours = delta / timedelta(hours=1)
    return f"{hours:g} hour{'' if hours == 1 else 's'}"


def _checked_rest(rest: pl.DataFrame, source: SourceFormat, text: dict[str, pl.Expr],
                  bounds: _TimeBounds) -> pl.DataFrame:
    """The full rules on the rows the fast test did not pass: `_occurred_at` (naive timestamps in the
    source's zone), and `_column` + `_reason` (null when the row is an event after all)."""
    ts_text = text["occurred_at"]
    naive = pl.coalesce(
        [ts_text.str.to_datetime(fmt, strict=False) for fmt in ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f")]
    )
    if source.timezone:
        # A local time in the hour the clocks go back occurs twice; one in the hour they skip, never.
        # Both are quarantined with their own reason (DESIGN.md: times are never guessed).
        first = naive.dt.replace_time_zone(source.timezone, ambiguous="earliest", non_existent="null")
        second = naive.dt.replace_time_zone(source.timezone, ambiguous="latest", non_existent="null")
        ambiguous = first != second
        skipped = naive.is_not_null() & first.is_null()
        naive_utc = pl.when(first == second).then(first).dt.convert_time_zone("UTC")
    else:
        ambiguous = skipped = pl.lit(False)
        naive_utc = pl.lit(None, dtype=pl.Datetime("us", "UTC"))
    zoned = ts_text.str.to_datetime("%+", strict=False, time_zone="UTC")
    quantity_text = text["quantity"]
    rest = rest.with_columns(  # the fast test's columns, from the stripped text
        _quantity=_scaled(quantity_text.str.to_decimal(scale=SCALE), source.quantity_scale),
        _has_zone=ts_text.str.contains(_HAS_ZONE),
        _quantity_ok=quantity_text.str.contains(_DECIMAL_TEXT),
        _too_precise=quantity_text.str.contains(rf"\.\d{{{SCALE + 1},}}$"),
    )
    rest = rest.with_columns(
        _occurred_at=pl.when(pl.col("_has_zone")).then(zoned).otherwise(naive_utc).dt.cast_time_unit("us"),
        _naive=naive,
        _ambiguous=pl.col("_has_zone").not_() & ambiguous,
        _skipped=pl.col("_has_zone").not_() & skipped,
    )

    def problem(field: str, condition: pl.Expr, message: pl.Expr | str) -> tuple[str, pl.Expr, pl.Expr]:
        return field, condition, message if isinstance(message, pl.Expr) else pl.lit(message)

    def quoted(field: str) -> pl.Expr:  # a NUL shown as <NUL>: PostgreSQL cannot store it in a reason either
        return pl.lit("'") + pl.col(source.column(field)).fill_null("").str.replace_all(NUL, "<NUL>", literal=True) \
            + pl.lit("'")

    q_col = source.column("quantity")
    t_col = source.column("occurred_at")
    problems = [
        *[problem(f, pl.col(f"_{f}").fill_null("") == "", f"{source.column(f)} is empty; every row needs one")
          for f in ("event_id", "customer_id", "product_id")],
        *[problem(f, pl.col(f"_{f}").str.contains(NUL, literal=True),
                  pl.lit(f"{source.column(f)} ") + quoted(f) + pl.lit(
                      " holds a NUL character (byte 0, shown as <NUL>), which the warehouse cannot store as text; "
                      "remove it at the source"))
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
        problem("quantity", pl.col("_quantity") > _QUANTITY_LIMIT,
                pl.lit(f"{q_col} ") + quoted("quantity") + pl.lit(
                    f" is above the largest quantity kept, {QUANTITY_DIGITS.largest:f} "
                    f"({QUANTITY_DIGITS.describe()}; docs/catalog.md)")),
        problem("quantity", pl.col("_quantity") < 0,
                pl.lit(f"{q_col} ") + quoted("quantity") + pl.lit(" is negative; usage cannot be below zero "
                                                                   "(send corrections as adjustments)")),
        problem("occurred_at", pl.col("_has_zone").fill_null(False).not_() & pl.lit(source.timezone is None)
                & pl.col("_occurred_at").is_null() & pl.col("_naive").is_not_null(),
                pl.lit(f"{t_col} ") + quoted("occurred_at") + pl.lit(
                    f" has no time zone and source '{source.name}' declares none; add an offset such as Z "
                    "or set 'timezone' on the source")),
        problem("occurred_at", pl.col("_ambiguous"),
                pl.lit(f"{t_col} ") + quoted("occurred_at") + pl.lit(" is ambiguous: that local time occurs twice on ")
                + pl.col("_naive").dt.strftime("%Y-%m-%d") + pl.lit(
                    f" in {source.timezone} (clocks go back); add its UTC offset so it is not guessed")),
        problem("occurred_at", pl.col("_skipped"),
                pl.lit(f"{t_col} ") + quoted("occurred_at") + pl.lit(" does not exist: it is skipped by the DST change on ")
                + pl.col("_naive").dt.strftime("%Y-%m-%d") + pl.lit(
                    f" in {source.timezone} (clocks go forward); check the clock that wrote it, or add its UTC offset")),
        problem("occurred_at", pl.col("_occurred_at").is_null(),
                pl.lit(f"{t_col} ") + quoted("occurred_at") + pl.lit(
                    " is not an ISO 8601 timestamp (e.g. 2026-10-01T12:00:00Z)")),
        problem("occurred_at", pl.col("_occurred_at") > bounds.latest,
                pl.lit(f"{t_col} ") + quoted("occurred_at") + pl.lit(
                    f" is more than {_hours(bounds.margin)} after the file was received ({_iso(bounds.received)}), "
                    f"later than {_iso(bounds.latest_at)}; fix the clock that wrote it, or raise "
                    f"'future_margin_hours' on source '{source.name}'")),
        problem("occurred_at", pl.col("_occurred_at") < bounds.earliest,
                pl.lit(f"{t_col} ") + quoted("occurred_at") + pl.lit(
                    f" is before {bounds.earliest_date.isoformat()}, the earliest date source '{source.name}' "
                    "accepts ('earliest_date')")),
    ]
    column_name = pl.lit(None, dtype=pl.String)
    reason = pl.lit(None, dtype=pl.String)
    for field, condition, message in reversed(problems):  # first listed problem wins
        column_name = pl.when(condition.fill_null(False)).then(pl.lit(source.column(field))).otherwise(column_name)
        reason = pl.when(condition.fill_null(False)).then(message).otherwise(reason)
    return rest.with_columns(_column=column_name, _reason=reason)


def _iso(instant: datetime) -> str:
    return instant.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def derive_event_ids(events: pl.DataFrame) -> pl.DataFrame:
    """For sources without ids: sha256 of customer, product, quantity, UTC time and the payload's
    occurrence number in the file. The same file delivered twice gives the same ids (loads once);
    two identical rows in one file stay two events; the same usage re-exported in a different
    file with different neighbours still matches, as long as identical payloads keep their order.
    """
    payload = list(contract.PAYLOAD)
    keyed = events.with_columns(
        _occurrence=pl.int_range(pl.len()).over(payload),
        _text=pl.concat_str([pl.col(c).cast(pl.String) for c in payload], separator="|"),
    )
    ids = [hashlib.sha256(f"{text}|{n}".encode()).hexdigest()
           for text, n in zip(keyed["_text"], keyed["_occurrence"], strict=True)]
    return keyed.with_columns(event_id=pl.Series(ids, dtype=pl.String)).drop("_occurrence", "_text")


def _with_column(source: SourceFormat, event_field: str, column: str) -> SourceFormat:
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

    Repeats carry `duplicate_of_row_number`, the row they repeat. Only the rows whose event id
    occurs more than once (usually none) go through the window expressions.
    """
    # Distinct hashes mean distinct ids (equal ids hash equally); counting hashes is cheaper than
    # counting strings, and a collision only sends the batch through the exact path below.
    if events.select(pl.col("event_id").hash().n_unique()).item() == events.height:
        empty = events.clear().with_columns(duplicate_of_row_number=pl.lit(None, pl.Int64))
        return events, empty, empty
    repeated = events.select(pl.col("event_id").is_duplicated()).to_series()
    payload = contract.PAYLOAD
    ranked = events.filter(repeated).with_columns(
        _first_row=pl.col("row_number").min().over("event_id"),
        _same=pl.all_horizontal([pl.col(c) == pl.col(c).sort_by("row_number").first().over("event_id")
                                 for c in payload]),
    )
    first = pl.concat([
        events.filter(~repeated),
        ranked.filter(pl.col("row_number") == pl.col("_first_row")).drop("_first_row", "_same"),
    ]).sort("row_number")
    repeats = ranked.filter(pl.col("row_number") != pl.col("_first_row")).rename(
        {"_first_row": "duplicate_of_row_number"})
    exact = repeats.filter(pl.col("_same")).drop("_same")
    conflicting = repeats.filter(~pl.col("_same")).drop("_same")
    return first, exact, conflicting


def _empty_events() -> pl.DataFrame:
    return pl.DataFrame(schema={"row_number": pl.Int64, **contract.polars_schema(EVENT_FIELDS)})


def _empty_quarantine() -> pl.DataFrame:
    return pl.DataFrame(schema={"row_number": pl.Int64, "column_name": pl.String, "reason": pl.String,
                                "raw_row": pl.String})
