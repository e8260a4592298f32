"""Load landed files into the warehouse: events, quarantine and duplicates, one transaction per file.

Per file, rows received = events loaded + rows quarantined + duplicates, and the manifest row
records all four. Dedup is by (source, event_id) against all history, not a window: the same id
with the same payload is a duplicate (logged with the event it repeats); with a different
payload it is quarantined as a conflicting duplicate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from collectors.sources import DEFAULT_UPLOAD_SOURCE, SourceConfig
from warehouse.store import RAW_SCHEMA, Tx, Warehouse

from .rules import FileRejected, normalize_frame, read_rows, split_in_file_duplicates

PAYLOAD = ("customer_id", "product_id", "quantity", "occurred_at")


@dataclass(frozen=True)
class FileLoad:
    file_id: str
    original_name: str
    source: str
    status: str  # loaded | rejected
    rows_received: int
    rows_loaded: int
    rows_quarantined: int
    rows_duplicate: int
    error: str | None = None


def pending(warehouse: Warehouse) -> list[tuple[str, str, str, str]]:
    with warehouse.transaction() as tx:
        return tx.fetchall(
            f"SELECT file_id, source, original_name, landing_path FROM {RAW_SCHEMA}.landed_files "
            "WHERE status = 'landed' ORDER BY received_at, file_id"
        )


def load_pending(warehouse: Warehouse, sources: Mapping[str, SourceConfig] | None = None,
                 on_file: Callable[[FileLoad], None] | None = None) -> Iterator[FileLoad]:
    """Normalize and load every landed file not loaded yet, in the order received."""
    sources = dict(sources or {})
    sources.setdefault(DEFAULT_UPLOAD_SOURCE.name, DEFAULT_UPLOAD_SOURCE)
    for file_id, source_name, original_name, landing_path in pending(warehouse):
        source = sources.get(source_name)
        if source is None:
            result = _reject(warehouse, file_id, original_name, source_name,
                             f"no source named '{source_name}' is configured; add it to the sources file")
        else:
            result = load_file(warehouse, file_id, Path(landing_path), original_name, source)
        if on_file:
            on_file(result)
        yield result


def load_file(warehouse: Warehouse, file_id: str, path: Path, original_name: str, source: SourceConfig) -> FileLoad:
    try:
        normalized = normalize_frame(read_rows(path, source), source)
    except FileRejected as exc:
        return _reject(warehouse, file_id, original_name, source.name, str(exc))
    first, repeats, conflicting = split_in_file_duplicates(normalized.events, source.name)
    now = datetime.now(UTC)
    with warehouse.transaction() as tx:
        # Idempotence guard: another run may have loaded this file since we listed it.
        status = tx.fetchall(f"SELECT status FROM {RAW_SCHEMA}.landed_files WHERE file_id = ?", [file_id])
        if status and status[0][0] != "landed":
            return FileLoad(file_id, original_name, source.name, status[0][0], 0, 0, 0, 0, "already loaded")
        new, history_dups, history_conflicts = _against_history(tx, first, source.name)
        tag = {"file_id": file_id, "source": source.name}
        loaded = tx.insert_frame(f"{RAW_SCHEMA}.events", new.select(
            pl.lit(source.name).alias("source"), "event_id", *PAYLOAD, pl.lit(file_id).alias("file_id"),
            "row_number", pl.lit(now).alias("loaded_at")))
        duplicates = pl.concat([
            repeats.select("row_number", "event_id", pl.lit(file_id).alias("duplicate_of_file_id"),
                           "duplicate_of_row_number"),
            history_dups.select("row_number", "event_id", "duplicate_of_file_id", "duplicate_of_row_number"),
        ])
        tx.insert_frame(f"{RAW_SCHEMA}.duplicates", duplicates.with_columns(
            **{k: pl.lit(v) for k, v in tag.items()}, recorded_at=pl.lit(now)))
        conflict_rows = pl.concat([
            conflicting.select("row_number", pl.format(
                "event_id '{}' repeats row {} of this file with a different customer, product, quantity or time; "
                "fix the source so each event id has one payload", "event_id", "duplicate_of_row_number"
            ).alias("reason")),
            history_conflicts.select("row_number", pl.format(
                "event_id '{}' was already loaded from file {} row {} with a different customer, product, "
                "quantity or time; fix the source so each event id has one payload",
                "event_id", "duplicate_of_file_id", "duplicate_of_row_number").alias("reason")),
        ])
        quarantine = pl.concat([
            normalized.quarantine,
            conflict_rows.with_columns(column_name=pl.lit(source.column("event_id")),
                                       raw_row=pl.lit(None, dtype=pl.String)).select(normalized.quarantine.columns),
        ])
        tx.insert_frame(f"{RAW_SCHEMA}.quarantine", quarantine.with_columns(
            **{k: pl.lit(v) for k, v in tag.items()}, quarantined_at=pl.lit(now)))
        result = FileLoad(file_id, original_name, source.name, "loaded", normalized.rows_received, loaded,
                          quarantine.height, duplicates.height)
        assert result.rows_received == loaded + quarantine.height + duplicates.height, "a row went missing"
        tx.execute(
            f"UPDATE {RAW_SCHEMA}.landed_files SET status = 'loaded', rows_received = ?, rows_loaded = ?,"
            " rows_quarantined = ?, rows_duplicate = ?, loaded_at = ? WHERE file_id = ?",
            [result.rows_received, loaded, quarantine.height, duplicates.height, now, file_id],
        )
    return result


def _against_history(tx: Tx, first: pl.DataFrame, source: str) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Split a file's first occurrences into (new, exact duplicates of history, conflicts with history)."""
    if first.height == 0:
        empty = first.with_columns(duplicate_of_file_id=pl.lit(None, pl.String),
                                   duplicate_of_row_number=pl.lit(None, pl.Int64))
        return first, empty, empty
    tx.register("_incoming_events", first)
    same = " AND ".join(f"e.{c} = i.{c}" for c in PAYLOAD)
    seen = tx.frame(
        f"SELECT i.row_number, e.file_id AS duplicate_of_file_id, e.row_number AS duplicate_of_row_number,"
        f" CASE WHEN {same} THEN 1 ELSE 0 END AS is_same"
        f" FROM _incoming_events i JOIN {RAW_SCHEMA}.events e ON e.source = ? AND e.event_id = i.event_id",
        [source],
    )
    if seen.height == 0:
        seen = pl.DataFrame(schema={"row_number": pl.Int64, "duplicate_of_file_id": pl.String,
                                    "duplicate_of_row_number": pl.Int64, "is_same": pl.Int32})
    seen = seen.with_columns(pl.col("row_number").cast(pl.Int64), pl.col("duplicate_of_row_number").cast(pl.Int64))
    joined = first.join(seen, on="row_number", how="left")
    new = joined.filter(pl.col("is_same").is_null()).select(first.columns)
    dups = joined.filter(pl.col("is_same") == 1).drop("is_same")
    conflicts = joined.filter(pl.col("is_same") == 0).drop("is_same")
    return new, dups, conflicts


def _reject(warehouse: Warehouse, file_id: str, original_name: str, source: str, error: str) -> FileLoad:
    with warehouse.transaction() as tx:
        tx.execute(f"UPDATE {RAW_SCHEMA}.landed_files SET status = 'rejected', error = ?, loaded_at = ?"
                   " WHERE file_id = ?", [error, datetime.now(UTC), file_id])
    return FileLoad(file_id, original_name, source, "rejected", 0, 0, 0, 0, error)
