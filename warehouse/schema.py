"""The warehouse's tables: one registry of them, one way to create them.

Every table the warehouse holds besides dbt's models is a `Table` registered here: the raw schema
below (what collectors, normalization and the catalog loader write; dbt reads them as sources),
and the tables other modules declare beside the code that writes them (ledger/schema.py,
quality/findings.py, a collector kind's state). `Warehouse.ensure_schema()` creates every one where
missing, never dropping or rewriting anything, so a new warehouse has all its tables before anything
writes; `create(tx, tables)` does the same for a few (for a writer that may run first).

A registry rather than one file listing every table: a table's columns stay beside the code that
writes them (a collector kind stays one module), while how a table is created (schemas, what differs
between engines, columns added to older warehouses) is written once, here. Plain SQL that DuckDB
and PostgreSQL both accept.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from core import events, money

RAW_SCHEMA = "raw"

# Exact decimals, never binary floats, sized by core/money.py (the one place the limits live).
QUANTITY = money.QUANTITY.sql  # usage quantities, included units, tier bounds
UNIT_PRICE = money.PRICE.sql  # unit prices and package prices: 12 decimal places
FEE_AMOUNT = money.FEE.sql  # flat fees, flat amounts, minimum commitments

TABLES: dict[str, str] = {
    # One row per distinct file content (sha256) that reached the landing zone.
    "landed_files": """
        file_id VARCHAR PRIMARY KEY,            -- sha256 of the bytes as received
        source VARCHAR NOT NULL,                -- first source that delivered it
        collector VARCHAR NOT NULL,             -- upload | sftp | api
        original_name VARCHAR NOT NULL,
        landing_path VARCHAR NOT NULL,
        size_bytes BIGINT NOT NULL,
        received_at TIMESTAMPTZ NOT NULL,
        status VARCHAR NOT NULL,                -- landed | loaded | rejected
        rows_received BIGINT,
        rows_loaded BIGINT,
        rows_quarantined BIGINT,
        rows_duplicate BIGINT,
        error VARCHAR,
        loaded_at TIMESTAMPTZ
    """,
    # Every delivery, including the same bytes delivered again (which then loads nothing).
    "file_receipts": """
        file_id VARCHAR NOT NULL,
        source VARCHAR NOT NULL,
        collector VARCHAR NOT NULL,
        original_name VARCHAR NOT NULL,
        received_at TIMESTAMPTZ NOT NULL,
        is_first_delivery BOOLEAN NOT NULL
    """,
    "events": events.sql_columns(),  # the event contract (core/events.py); (source, event_id) is unique
    "quarantine": """
        file_id VARCHAR NOT NULL,
        source VARCHAR NOT NULL,
        row_number BIGINT NOT NULL,
        column_name VARCHAR,
        reason VARCHAR NOT NULL,
        raw_row VARCHAR,                        -- the row as received, for a person to fix
        quarantined_at TIMESTAMPTZ NOT NULL
    """,
    "duplicates": """
        file_id VARCHAR NOT NULL,
        source VARCHAR NOT NULL,
        row_number BIGINT NOT NULL,
        event_id VARCHAR NOT NULL,
        duplicate_of_file_id VARCHAR NOT NULL,
        duplicate_of_row_number BIGINT NOT NULL,
        recorded_at TIMESTAMPTZ NOT NULL
    """,
    # Every load that changed the warehouse's catalog: the file's sha256 (its bytes are kept in the
    # landing zone under it), where it was read from and when. The latest row is the catalog the
    # raw.catalog_* tables hold (each of their rows carries the same catalog_sha256).
    "catalog_receipts": """
        catalog_sha256 VARCHAR NOT NULL,        -- sha256 of the catalog file's bytes
        source_path VARCHAR NOT NULL,           -- the file it was read from
        landing_path VARCHAR NOT NULL,          -- its copy in the landing zone, named by the sha256
        size_bytes BIGINT NOT NULL,
        loaded_at TIMESTAMPTZ NOT NULL
    """,
    "catalog_currencies": """
        currency VARCHAR PRIMARY KEY,
        minor_units INTEGER NOT NULL
    """,
    "catalog_customers": """
        customer_id VARCHAR PRIMARY KEY,
        customer_name VARCHAR NOT NULL,
        currency VARCHAR NOT NULL,
        timezone VARCHAR NOT NULL,
        bill_to_customer_id VARCHAR,
        billing_account_id VARCHAR NOT NULL,    -- bill_to followed to the top
        rate_class_id VARCHAR,
        active_from DATE,
        active_to DATE,
        csm VARCHAR,                            -- person id of the customer success manager
        require_csm_approval BOOLEAN            -- invoices need the CSM's approval too
    """,
    "catalog_products": """
        product_id VARCHAR PRIMARY KEY,
        product_name VARCHAR NOT NULL,
        unit VARCHAR NOT NULL,
        aggregation VARCHAR NOT NULL            -- sum | count | max | last | none (recurring)
    """,
    "catalog_rate_classes": """
        rate_class_id VARCHAR PRIMARY KEY,
        rate_class_name VARCHAR NOT NULL,
        currency VARCHAR NOT NULL
    """,
    "catalog_contracts": f"""
        contract_id VARCHAR PRIMARY KEY,
        customer_id VARCHAR NOT NULL,
        currency VARCHAR NOT NULL,
        rate_class_id VARCHAR,
        effective_from DATE NOT NULL,
        effective_to DATE,
        minimum_commitment {FEE_AMOUNT}
    """,
    "catalog_account_products": """
        account_product_id VARCHAR PRIMARY KEY,
        customer_id VARCHAR NOT NULL,
        product_id VARCHAR NOT NULL,
        effective_from DATE NOT NULL,
        effective_to DATE,
        override_rate_id VARCHAR
    """,
    # Every price in the hierarchy, one shape: level says where it sits.
    "catalog_rates": f"""
        rate_id VARCHAR PRIMARY KEY,
        level VARCHAR NOT NULL,                 -- account_override | contract_rate | rate_class | product_default
        level_rank INTEGER NOT NULL,            -- 1 wins over 2 over 3 over 4
        product_id VARCHAR NOT NULL,
        currency VARCHAR NOT NULL,
        customer_id VARCHAR,
        contract_id VARCHAR,
        rate_class_id VARCHAR,
        effective_from DATE,
        effective_to DATE,
        model VARCHAR NOT NULL,
        included_units {QUANTITY} NOT NULL,
        package_size BIGINT,
        package_price {UNIT_PRICE},
        flat_amount {FEE_AMOUNT}
    """,
    "catalog_rate_tiers": f"""
        rate_id VARCHAR NOT NULL,
        tier_number INTEGER NOT NULL,
        lower_bound {QUANTITY} NOT NULL,           -- exclusive: the previous tier's up_to (0 for the first)
        up_to {QUANTITY},                          -- inclusive; NULL = unbounded
        unit_price {UNIT_PRICE} NOT NULL,
        flat_fee {FEE_AMOUNT} NOT NULL,
        PRIMARY KEY (rate_id, tier_number)
    """,
}

CATALOG_RECEIPTS = "catalog_receipts"
# The tables the catalog loader replaces whole (catalog/write.py). Each also has a `catalog_sha256`
# column (added by `ddl`, so old and new warehouses have it in the same place): the catalog its rows
# came from, the latest row of raw.catalog_receipts.
CATALOG_TABLES = [name for name in TABLES if name.startswith("catalog_") and name != CATALOG_RECEIPTS]

# DuckDB only: a compact lookup key of every row of raw.events, so the dedup against all history
# scans 8 bytes a stored event instead of its event id text (DuckDB has no index it would use for a
# join of a million ids). Written by normalization in the same transaction as the events;
# `warehouse.store.sync_event_keys` rebuilds it from raw.events when it is missing, when its row
# count differs from raw.events' (rows written or deleted outside normalization, a warehouse from
# before this table) or when DuckDB's `hash` no longer gives the stored values (another version).
# A key is only a hint: a match is always confirmed on (source, event_id) in raw.events.
EVENT_KEYS = "event_keys"
EVENT_KEYS_COLUMNS = """
        key_hash UBIGINT NOT NULL               -- DuckDB hash(source, event_id) of a raw.events row
"""
EVENT_KEY = "hash({source}, {event_id})"  # the SQL expression of a key (DuckDB)


@dataclass(frozen=True)
class Table:
    """A table of the warehouse: schema, name, column definitions, and what else creating it takes."""

    schema: str
    name: str
    columns: str
    added: tuple[str, ...] = ()  # columns added after warehouses were created: added where missing
    postgres: tuple[str, ...] = ()  # PostgreSQL only, after creating it ({table}: schema.name), e.g. an index
    dialects: tuple[str, ...] = ("duckdb", "postgres")  # the engines whose warehouse has it
    duckdb_columns: str | None = None  # DuckDB's column definitions, where they add storage hints to `columns`

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    def ddl(self, dialect: str) -> list[str]:
        if dialect not in self.dialects:
            return []
        columns = self.duckdb_columns if dialect == "duckdb" and self.duckdb_columns else self.columns
        return [f"CREATE TABLE IF NOT EXISTS {self.qualified} ({columns})",
                *(f"ALTER TABLE {self.qualified} ADD COLUMN IF NOT EXISTS {column}" for column in self.added),
                *(s.format(table=self.qualified) for s in (self.postgres if dialect == "postgres" else ()))]


_REGISTERED: dict[str, Table] = {}

# The modules that declare tables; `tables()` imports them, so that `ensure_schema` creates every
# table whoever calls it. (A module registering more, a collector kind, is imported by its users.)
DECLARED_IN = ("ledger.schema", "quality.findings")


def register(*tables: Table) -> tuple[Table, ...]:
    """Add tables to the warehouse's; the same table declared twice, differently, is refused."""
    for table in tables:
        known = _REGISTERED.setdefault(table.qualified, table)
        if known != table:
            raise ValueError(f"table {table.qualified} is declared twice, differently ({known} and {table})")
    return tables


def tables() -> list[Table]:
    """Every table of the warehouse, in the order registered."""
    for module in DECLARED_IN:
        importlib.import_module(module)
    return list(_REGISTERED.values())


def ddl(dialect: str = "duckdb", of: Iterable[Table] | None = None) -> list[str]:
    """Statements creating the schemas and the tables `of` (default: every table) where missing."""
    chosen = tables() if of is None else list(of)
    statements = [f"CREATE SCHEMA IF NOT EXISTS {schema}" for schema in dict.fromkeys(t.schema for t in chosen)]
    for table in chosen:
        statements += table.ddl(dialect)
    return statements


def create(tx: Any, of: Iterable[Table]) -> None:
    """Create these tables where missing, in the transaction `tx` (a warehouse.store.Tx)."""
    for statement in ddl(tx.dialect, of):
        tx.execute(statement)


RAW_TABLES = register(*(
    Table(RAW_SCHEMA, name, columns,
          # columns added after a warehouse may have been created (never dropped, never rewritten)
          added=(("csm VARCHAR", "require_csm_approval BOOLEAN") if name == "catalog_customers" else ())
          + (("catalog_sha256 VARCHAR",) if name in CATALOG_TABLES else ()),
          # PostgreSQL looks ids up through an index (the dedup against history, normalize/load.py)
          postgres=("CREATE INDEX IF NOT EXISTS events_source_event_id ON {table} (source, event_id)",)
          if name == "events" else (),
          duckdb_columns=events.sql_columns("duckdb") if name == "events" else None)
    for name, columns in TABLES.items()))
EVENT_KEYS_TABLE, = register(Table(RAW_SCHEMA, EVENT_KEYS, EVENT_KEYS_COLUMNS, dialects=("duckdb",)))
