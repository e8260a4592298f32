"""Every table of the warehouse is declared once (warehouse/schema.py's registry) and created by one
`ensure_schema`, on DuckDB and PostgreSQL alike."""

from __future__ import annotations

import re

import pytest

from warehouse import schema
from warehouse.store import Warehouse

from support import ROOT, postgres_database

PACKAGES = ("billing", "catalog", "collectors", "core", "demo", "desk", "formats", "ledger", "normalize", "pipelines",
            "quality", "warehouse")


def _tables_in(warehouse: Warehouse) -> set[str]:
    with warehouse.transaction() as tx:
        rows = tx.fetchall("SELECT table_schema, table_name FROM information_schema.tables "
                           "WHERE table_schema IN ('raw', 'ledger', 'marts') AND table_type = 'BASE TABLE'")
    return {f"{s}.{n}" for s, n in rows}


def _declared(dialect: str) -> set[str]:
    return {t.qualified for t in schema.tables() if dialect in t.dialects}


def test_a_new_duckdb_warehouse_has_every_declared_table(tmp_path):
    warehouse = Warehouse(duckdb_path=tmp_path / "w.duckdb")
    warehouse.ensure_schema()
    warehouse.ensure_schema()  # again: nothing to do, nothing dropped
    declared = _declared("duckdb")
    assert {"raw.events", "raw.catalog_rates", "raw.event_keys", "ledger.invoices", "ledger.actions",
            "marts.quality_findings"} <= declared
    assert _tables_in(warehouse) == declared


def test_a_new_postgres_warehouse_has_every_declared_table():
    with postgres_database("tables") as dsn:
        warehouse = Warehouse(postgres_dsn=dsn)
        warehouse.ensure_schema()
        warehouse.ensure_schema()
        assert _tables_in(warehouse) == _declared("postgres") == _declared("duckdb") - {"raw.event_keys"}
        with warehouse.transaction() as tx:  # the dedup's index on the events' ids
            assert tx.fetchall("SELECT indexname FROM pg_indexes WHERE tablename = 'events'") == [
                ("events_source_event_id",)]


def test_only_the_registry_creates_tables():
    """No module writes its own CREATE TABLE: it declares a schema.Table (temporary tables apart)."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == ROOT / "warehouse" / "schema.py":
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if re.search(r"CREATE\s+(UNLOGGED\s+)?TABLE", line):  # SQL as we write it; TEMP tables apart
                    found.append(f"{path.relative_to(ROOT)}:{n}")
    assert not found, "declare the table with warehouse.schema.Table and register(): " + ", ".join(found)


def test_a_table_declared_twice_differently_is_refused():
    events = next(t for t in schema.tables() if t.qualified == "raw.events")
    assert schema.register(events) == (events,)  # the same declaration again is harmless
    with pytest.raises(ValueError, match="raw.events is declared twice, differently"):
        schema.register(schema.Table("raw", "events", "event_id VARCHAR"))
