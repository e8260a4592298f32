"""No single file stops the others, or every run after it, on either engine.

A row holding a value the warehouse cannot store (a NUL character: PostgreSQL refuses it in text)
is quarantined with a reason, the same way on DuckDB and PostgreSQL; a file whose load fails for
any other reason is marked rejected with the error as its reason, and the next files still load.
Before: on PostgreSQL the NUL made the load raise (`invalid byte sequence for encoding "UTF8":
0x00`), the file stayed `landed`, and every later run failed the same way before billing anything.

PostgreSQL: each test creates and drops its own database on the shared server (skipped with a
reason when no server answers, failed when $CI is set).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from collectors.landing import land_file
from normalize.load import load_pending
from warehouse.store import Warehouse

from support import postgres_database

SERVER = os.environ.get("BILLING_TEST_POSTGRES_DSN") or "postgresql://postgres@127.0.0.1:5432/test"
HEADER = "event_id,customer_id,product_id,quantity,occurred_at\n"
GOOD = HEADER + "g-1,C1,API_CALLS,10,2026-10-02T10:00:00Z\ng-2,C2,API_CALLS,20,2026-10-03T10:00:00Z\n"


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse(request, tmp_path):
    if request.param == "duckdb":
        store = Warehouse(duckdb_path=tmp_path / "warehouse.duckdb")
        store.ensure_schema()
        yield store
        return
    with postgres_database("load") as dsn:
        store = Warehouse(postgres_dsn=dsn)
        store.ensure_schema()
        yield store


def deliver(warehouse: Warehouse, tmp_path: Path, name: str, text: str):
    path = tmp_path / "delivered" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(text.encode())
    return land_file(warehouse, tmp_path / "landing", path, source="upload", collector="upload")


def test_a_nul_in_an_id_is_quarantined_with_a_reason_on_both_engines(warehouse, tmp_path):
    deliver(warehouse, tmp_path, "nul.csv", HEADER + "n-1,C1,API_CALLS,5,2026-10-02T10:00:00Z\n"
            "n-2,C\x001,API_CALLS,6,2026-10-02T11:00:00Z\n"
            "n\x003,C1,API_CALLS,7,2026-10-02T12:00:00Z\n"
            "n-4,C1,API\x00CALLS,8,2026-10-02T13:00:00Z\n")
    deliver(warehouse, tmp_path, "good.csv", GOOD)
    loads = list(load_pending(warehouse))
    assert [(f.original_name, f.status, f.rows_received, f.rows_loaded, f.rows_quarantined) for f in loads] == [
        ("nul.csv", "loaded", 4, 1, 3), ("good.csv", "loaded", 2, 2, 0)]
    with warehouse.transaction() as tx:
        quarantined = tx.fetchall("SELECT row_number, column_name, reason, raw_row FROM raw.quarantine "
                                  "ORDER BY row_number")
        events = tx.fetchall("SELECT event_id FROM raw.events ORDER BY event_id")
    assert [(row, column) for row, column, _, _ in quarantined] == [
        (2, "customer_id"), (3, "event_id"), (4, "product_id")]
    assert quarantined[0][2] == ("customer_id 'C<NUL>1' holds a NUL character (byte 0, shown as <NUL>), which the "
                                 "warehouse cannot store as text; remove it at the source")
    assert '"customer_id":"C\\u00001"' in quarantined[0][3]  # the row as received, JSON-escaped
    assert events == [("g-1",), ("g-2",), ("n-1",)]
    assert list(load_pending(warehouse)) == []  # nothing left over for the next run


def test_a_file_whose_load_fails_is_rejected_and_the_next_files_load(warehouse, tmp_path):
    gone = deliver(warehouse, tmp_path, "gone.csv", HEADER + "x-1,C1,API_CALLS,5,2026-10-02T10:00:00Z\n")
    deliver(warehouse, tmp_path, "good.csv", GOOD)
    gone.landing_path.unlink()  # the landed copy vanished: reading it fails
    loads = list(load_pending(warehouse))
    assert [(f.original_name, f.status, f.rows_loaded) for f in loads] == [("gone.csv", "rejected", 0),
                                                                           ("good.csv", "loaded", 2)]
    assert loads[0].error.startswith("could not be loaded (FileNotFoundError: ")
    assert loads[0].error.endswith("; nothing of it is stored")
    with warehouse.transaction() as tx:
        assert tx.fetchall("SELECT status, error FROM raw.landed_files WHERE file_id = ?", [gone.file_id]) == [
            ("rejected", loads[0].error)]
    assert list(load_pending(warehouse)) == []  # the next run does not fail on it again


def test_a_value_postgresql_cannot_index_rejects_its_file_only(warehouse, tmp_path):
    """A 20,000-character random event id: PostgreSQL's index on event ids refuses it (DuckDB stores it)."""
    long_id = secrets.token_hex(10_000)
    deliver(warehouse, tmp_path, "long-id.csv", HEADER + f"{long_id},C1,API_CALLS,5,2026-10-02T10:00:00Z\n")
    deliver(warehouse, tmp_path, "good.csv", GOOD)
    loads = list(load_pending(warehouse))
    if warehouse.dialect == "duckdb":
        assert [f.status for f in loads] == ["loaded", "loaded"]
        return
    assert [(f.original_name, f.status) for f in loads] == [("long-id.csv", "rejected"), ("good.csv", "loaded")]
    assert "could not be loaded (ProgramLimitExceeded: index row requires" in loads[0].error
    assert list(load_pending(warehouse)) == []
