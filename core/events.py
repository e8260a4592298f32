"""The event contract: what a usage event is, written once.

A source delivers the RECEIVED fields (mapped from its own column names by its `columns` setting);
normalization types them and adds where the event came from; `raw.events` stores every column
below. warehouse/schema.py creates the table from it, normalize, the re-rater, the expectations
suite, formats and the demo generator take their columns from it, and tests/test_core.py holds
dbt's source and staging model to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from .money import QUANTITY as QUANTITY_DIGITS

# Quantities as Polars holds them: the stored places, 38 digits wide so a month's sums never overflow.
QUANTITY = pl.Decimal(38, QUANTITY_DIGITS.fraction)
INSTANT = pl.Datetime("us", "UTC")  # every timestamp, in UTC


@dataclass(frozen=True)
class Column:
    name: str
    sql: str  # the column's type in raw.events (DuckDB and PostgreSQL)
    polars: pl.DataType
    received: bool  # a field each source delivers (the rest are added by normalization)
    description: str
    duckdb_storage: str = ""  # DuckDB only: how the column is stored, after its type (see event_id)


COLUMNS: tuple[Column, ...] = (
    Column("source", "VARCHAR", pl.String(), False, "the configured source that delivered the file"),
    Column("event_id", "VARCHAR", pl.String(), True,
           "the source's id of the event ((source, event_id) is unique; derived when a source has none)",
           # Ids are unique, so DuckDB's string compression (FSST) gains little on them and cost about a
           # quarter of normalize's INSERT into raw.events (docs/benchmark.md); stored plainly, a 10 M
           # month's ids take ~170 MB more on disk and are scanned faster.
           duckdb_storage="USING COMPRESSION uncompressed"),
    Column("customer_id", "VARCHAR", pl.String(), True, "the customer, as the source names it"),
    Column("product_id", "VARCHAR", pl.String(), True, "the product (meter), as the source names it"),
    Column("quantity", QUANTITY_DIGITS.sql, QUANTITY, True, "units used, an exact decimal >= 0"),
    Column("occurred_at", "TIMESTAMPTZ", INSTANT, True, "when it happened, in UTC"),
    Column("file_id", "VARCHAR", pl.String(), False, "sha256 of the landed file it was read from"),
    Column("row_number", "BIGINT", pl.Int64(), False, "1-based data row in that file"),
    Column("loaded_at", "TIMESTAMPTZ", INSTANT, False, "when normalization stored it"),
)
BY_NAME = {c.name: c for c in COLUMNS}

STORED = tuple(c.name for c in COLUMNS)  # raw.events, in order; every column is required (NOT NULL)
RECEIVED = tuple(c.name for c in COLUMNS if c.received)  # what a source maps: event_id .. occurred_at
# What makes two deliveries of one event id the same event (a repeat) or a conflict.
PAYLOAD = ("customer_id", "product_id", "quantity", "occurred_at")
# What rating and the re-rater read of an event.
RATED = ("source", "event_id", "customer_id", "product_id", "quantity", "occurred_at")


def polars_schema(names: tuple[str, ...] = STORED) -> dict[str, pl.DataType]:
    """Polars types of these event columns."""
    return {name: BY_NAME[name].polars for name in names}


def sql_columns(dialect: str = "postgres") -> str:
    """raw.events' column definitions in this engine's DDL (warehouse/schema.py)."""
    return ", ".join(f"{c.name} {c.sql} NOT NULL" + (f" {c.duckdb_storage}" if dialect == "duckdb" and c.duckdb_storage
                                                      else "") for c in COLUMNS)
