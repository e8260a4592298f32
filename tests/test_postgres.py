"""The reference month (../shared/scenarios/reference-month.md) on PostgreSQL, end to end.

The same stages as `billing run` (billing.runner: prepare, catalog, collect, normalize, dbt build,
checks) bill October 2026 into PostgreSQL; every invoice total and line amount of the
specification is asserted; a rerun with the same files delivered again changes nothing; and the
same month billed on DuckDB gives identical invoice tables, value for value.

The server: $BILLING_TEST_POSTGRES_DSN (default postgresql://postgres@127.0.0.1:5432/test). With
no server the test is skipped locally and fails when $CI is set. The database may be shared: the
test holds an advisory lock while it runs and starts by dropping the warehouse's schemas (raw,
staging, intermediate, marts), so it never depends on what an earlier run left behind.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, date, datetime
from decimal import Decimal

import polars as pl
import psycopg
import pytest

from billing import runner
from core.config import Settings, load_settings
from core.periods import month_window
from warehouse.store import Warehouse, open_warehouse

from support import drop_reference_usage

D = Decimal
DSN = os.environ.get("BILLING_TEST_POSTGRES_DSN") or "postgresql://postgres@127.0.0.1:5432/test"
SCHEMAS = ("raw", "staging", "intermediate", "marts", "ledger")
OCTOBER = month_window("2026-10")
INVOICE_TABLES = ("fct_invoices", "fct_invoice_lines", "fct_invoice_line_tiers", "fct_unrated_usage")
LOCK_KEY = 0x62696C6C  # pg_advisory_lock key: one run of this test at a time per database

# The specification, per billing account: (currency, total, status, finalizable) and its lines as
# (product, quantity, amount, rate level); C3's price change also fixes its lines' segments.
EXPECTED_INVOICES = {
    "C1": ("USD", D("2527.63"), "draft", True),
    "C2": ("USD", D("1000.00"), "draft", True),
    "C3": ("USD", D("1938.71"), "draft", True),
    "C4": ("EUR", D("180.00"), "draft", False),  # unrated SMS blocks it
    "C5": ("USD", D("200.00"), "draft", True),
}
EXPECTED_LINES = {
    "C1": {  # C6's 10,000 calls billed to its parent C1
        ("API_CALLS", D("1244567"), D("2489.13"), "product_default"),
        ("STORAGE_GB", D("250"), D("22.00"), "product_default"),  # max reading, graduated 100 x 0.10 + 150 x 0.08
        ("SMS", D("1050"), D("16.50"), "product_default"),  # 11 blocks of 100
    },
    "C2": {
        ("API_CALLS", D("1500000"), D("750.00"), "contract_rate"),  # 1,000,000 included
        ("BANDWIDTH_GB", D("1000"), D("80.00"), "rate_class"),  # exactly on the boundary: first tier
        (None, None, D("170.00"), "contract"),  # minimum commitment true-up
    },
    "C3": {
        ("API_CALLS", D("600000"), D("1200.00"), "product_default"),
        ("API_CALLS", D("400000"), D("400.00"), "account_override"),
        ("SUPPORT", D("0"), D("338.71"), "product_default"),  # 500 x 21/31
    },
    "C4": {("API_CALLS", D("100000"), D("180.00"), "rate_class")},
    "C5": {(None, None, D("200.00"), "contract")},
}
EXPECTED_SEGMENTS_C3 = [  # the price change on Oct 16 splits the month
    ("API_CALLS", date(2026, 10, 1), date(2026, 10, 16)),
    ("API_CALLS", date(2026, 10, 16), date(2026, 11, 1)),
    ("SUPPORT", date(2026, 10, 11), date(2026, 11, 1)),
]


def _safe(dsn: str) -> str:
    return re.sub(r"(//[^:@/]*:)[^@/]*@", r"\1***@", dsn)


def connect() -> psycopg.Connection:
    """An autocommit connection to the test server; skip (locally) or fail (under CI) without one."""
    try:
        return psycopg.connect(DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        reason = (f"no PostgreSQL server answers at {_safe(DSN)} ({str(exc).strip().splitlines()[0]}); "
                  "start one or point BILLING_TEST_POSTGRES_DSN at one")
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture
def postgres(billing_env, monkeypatch):
    """A connection to the test server with the warehouse schemas dropped; env points billing at it."""
    with connect() as conn:
        # Another run of this test on the same database waits here instead of dropping our tables.
        conn.execute("SET lock_timeout = '15min'")
        conn.execute("SELECT pg_advisory_lock(%s)", [LOCK_KEY])
        for schema in SCHEMAS:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        monkeypatch.setenv("BILLING_ENGINE", "postgres")
        monkeypatch.setenv("BILLING_POSTGRES_DSN", DSN)
        yield conn
        conn.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])


def bill_october(settings: Settings):
    """The stages of `billing run --month 2026-10`; returns (landed, loads, check outcomes)."""
    warehouse = runner.prepare(settings)
    runner.load_catalog_stage(settings, warehouse)
    landed = runner.collect(settings, warehouse)
    loads = runner.normalize(settings, warehouse)
    runner.rate(settings, OCTOBER)
    outcomes = runner.check(settings, warehouse, OCTOBER)
    return landed, loads, outcomes


def _order_key(row: tuple) -> tuple:
    return tuple((value is None, value if value is not None else 0) for value in row)


def invoice_tables(settings: Settings) -> dict[str, tuple[list[str], list[tuple]]]:
    """Every column of every invoice table, rows in a fixed order (sorted here: no collation involved)."""
    tables = {}
    with open_warehouse(settings).transaction() as tx:
        for table in INVOICE_TABLES:
            columns = [name for (name,) in tx.fetchall(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'marts' "
                "AND table_name = ? ORDER BY ordinal_position", [table])]
            assert columns, f"marts.{table} does not exist"
            rows = tx.fetchall(f"SELECT {', '.join(columns)} FROM marts.{table} WHERE period = ?", [OCTOBER.key])
            tables[table] = (columns, sorted(rows, key=_order_key))
    return tables


def raw_counts(settings: Settings) -> dict[str, int]:
    with open_warehouse(settings).transaction() as tx:
        return {t: tx.fetchall(f"SELECT COUNT(*) FROM raw.{t}")[0][0]
                for t in ("landed_files", "file_receipts", "events", "duplicates", "quarantine")}


def outcomes_of(outcomes) -> list[tuple]:
    return [(o.name, o.passed, o.blocking, o.summary, o.findings) for o in outcomes]


def assert_reference_numbers(tables) -> None:
    def rows(table):
        columns, data = tables[table]
        return [dict(zip(columns, row, strict=True)) for row in data]

    invoices = {r["billing_account_id"]: r for r in rows("fct_invoices")}
    assert set(invoices) == set(EXPECTED_INVOICES)  # no C6 (billed to C1), no C999 (unknown)
    for account, expected in EXPECTED_INVOICES.items():
        got = invoices[account]
        assert (got["currency"], got["total"], got["status"], got["is_finalizable"]) == expected, account
        assert isinstance(got["total"], Decimal)
    lines = rows("fct_invoice_lines")
    for account, expected in EXPECTED_LINES.items():
        mine = [r for r in lines if r["billing_account_id"] == account]
        got = {(r["product_id"], r["quantity"], r["amount"], r["rate_level"]) for r in mine}
        assert got == expected, account
        assert len(mine) == len(expected) == invoices[account]["line_count"], account
        assert sum(r["amount"] for r in mine) == invoices[account]["total"], account
        assert all(isinstance(r["amount"], Decimal) for r in mine)
    c3 = sorted((r["product_id"], r["segment_start"], r["segment_end"])
                for r in lines if r["billing_account_id"] == "C3")
    assert c3 == EXPECTED_SEGMENTS_C3
    c2_api = [r for r in lines if r["billing_account_id"] == "C2" and r["product_id"] == "API_CALLS"]
    assert [(r["included_units"], r["billable_quantity"]) for r in c2_api] == [(D("1000000"), D("500000"))]
    storage = {r["line_id"] for r in lines if r["billing_account_id"] == "C1" and r["product_id"] == "STORAGE_GB"}
    tiers = [(r["tier_number"], r["units"], r["unit_price"], r["amount_unrounded"])
             for r in rows("fct_invoice_line_tiers") if r["line_id"] in storage]
    assert tiers == [(1, D("100"), D("0.1"), D("10")), (2, D("150"), D("0.08"), D("12"))]
    unrated = {(r["reason"], r["customer_id"], r["product_id"], r["currency"], r["quantity"])
               for r in rows("fct_unrated_usage")}
    assert unrated == {("no_price", "C4", "SMS", "EUR", D("500")),
                       ("unknown_customer", "C999", "API_CALLS", None, D("5000"))}


def test_reference_month_on_postgres_matches_duckdb(postgres, billing_env, tmp_path, monkeypatch):
    # 1. PostgreSQL, from empty schemas.
    settings = load_settings()
    assert settings.engine == "postgres"
    drop_reference_usage(settings.inbox)
    landed, loads, outcomes = bill_october(settings)
    assert landed and all(item.is_new for item in landed), "the schemas were not fresh"
    assert sum(load.rows_loaded for load in loads) == 22
    assert sum(load.rows_duplicate for load in loads) == 1  # c1-api-dup delivered twice
    on_postgres = invoice_tables(settings)
    assert_reference_numbers(on_postgres)
    checks = {o.name: o for o in outcomes}
    assert checks["missed_customers"].passed and checks["invoice_totals"].passed
    assert not checks["unrated_usage"].passed
    assert {(f["reason"], f["customer_id"]) for f in checks["unrated_usage"].findings} == {
        ("no_price", "C4"), ("unknown_customer", "C999")}

    # 2. A rerun, with every file delivered again: nothing changes.
    counts = raw_counts(settings)
    drop_reference_usage(settings.inbox)
    landed_again, loads_again, outcomes_again = bill_october(settings)
    assert landed_again and not any(item.is_new for item in landed_again)
    assert loads_again == []
    assert invoice_tables(settings) == on_postgres
    assert outcomes_of(outcomes_again) == outcomes_of(outcomes)
    assert raw_counts(settings) == {**counts, "file_receipts": counts["file_receipts"] + len(landed_again)}

    # 3. The same month on DuckDB (a temporary file): identical invoice tables and check results.
    duck_home = tmp_path / "duckdb"
    (duck_home / "inbox").mkdir(parents=True)
    monkeypatch.setenv("BILLING_ENGINE", "duckdb")
    monkeypatch.setenv("BILLING_HOME", str(duck_home))
    duck = load_settings()
    assert duck.engine == "duckdb" and duck.duckdb_path.parent == duck_home
    drop_reference_usage(duck.inbox)
    _, _, duck_outcomes = bill_october(duck)
    on_duckdb = invoice_tables(duck)
    for table in INVOICE_TABLES:
        pg_columns, pg_rows = on_postgres[table]
        duck_columns, duck_rows = on_duckdb[table]
        assert pg_columns == duck_columns, table
        assert len(pg_rows) == len(duck_rows), table
        for pg_row, duck_row in zip(pg_rows, duck_rows, strict=True):
            assert [type(v) for v in pg_row] == [type(v) for v in duck_row], (table, pg_row, duck_row)
            assert pg_row == duck_row, table  # Decimal values compared as numbers
    assert outcomes_of(duck_outcomes) == outcomes_of(outcomes)


def test_frames_and_registered_tables_look_the_same_on_both_engines(tmp_path):
    """`Tx.frame` types come from the declared SQL types, as DuckDB's do; `Tx.register` round-trips."""
    connect().close()
    incoming = pl.DataFrame(
        {"event_id": ["a", "b"], "quantity": [D("1.5"), D("2.000000001")], "n": [1, 2],
         "occurred_at": [datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 10, 31, 23, 59, 59, tzinfo=UTC)],
         "day": [date(2026, 10, 1), None]},
        schema_overrides={"quantity": pl.Decimal(38, 9), "n": pl.Int32})
    queries = [
        "SELECT CAST(1.5 AS DECIMAL(38, 3)) AS a, CAST(2 AS INTEGER) AS i, CAST(3 AS BIGINT) AS b, "
        "CAST(NULL AS VARCHAR) AS n, CAST('2026-10-01' AS DATE) AS d, TRUE AS t, 'x' AS s",
        "SELECT SUM(x) AS total, COUNT(*) AS c FROM (VALUES (CAST(1.25 AS DECIMAL(38, 3))), "
        "(CAST(2.5 AS DECIMAL(38, 3)))) AS v(x)",
        "SELECT CAST(1 AS INTEGER) AS i, CAST(1.5 AS DECIMAL(38, 9)) AS q WHERE 1 = 0",  # empty
        "SELECT event_id, quantity, n, day, CASE WHEN n = ? THEN 1 ELSE 0 END AS is_one, quantity * 2 AS twice "
        "FROM _incoming ORDER BY event_id",
    ]
    results = {}
    for warehouse in (Warehouse(postgres_dsn=DSN), Warehouse(duckdb_path=tmp_path / "frames.duckdb")):
        with warehouse.transaction() as tx:
            tx.register("_incoming", incoming)
            frames = [tx.frame(sql, [1] if "?" in sql else None) for sql in queries]
            instants = tx.fetchall("SELECT occurred_at FROM _incoming ORDER BY event_id")
        results[warehouse.dialect] = [(f.schema, f.rows()) for f in frames], [i for (i,) in instants]
    assert results["postgres"] == results["duckdb"]
    assert results["postgres"][1] == incoming["occurred_at"].to_list()


def test_frames_reach_postgresql_value_for_value():
    """Tx.insert_frame's COPY keeps what CSV text could blur: '' apart from NULL, quotes, commas and
    line breaks inside text, a lone backslash-dot, 9-decimal and 38-digit decimals, microseconds."""
    connect().close()  # skip (locally) or fail (under CI) without a server
    frame = pl.DataFrame({
        "text": ["", None, 'a,"b"\nc', "\\.", "\\N", "é ünï"],
        "amount": pl.Series([D("0.000000001"), None, D("12345678901234567890123456789.123456789"), D("-1"),
                             D("0"), D("2.5")], dtype=pl.Decimal(38, 9)),
        "at": [datetime(2026, 10, 1, 12, 30, 1, 123456, tzinfo=UTC), None, datetime(1999, 12, 31, tzinfo=UTC),
               None, None, None],
        "day": [date(2026, 10, 1), None, None, None, None, None],
        "n": [1, None, 3, 4, 5, 6],
    })
    with Warehouse(postgres_dsn=DSN).transaction() as tx:
        tx.register("_copied", frame)  # a temp table filled by insert_frame's COPY
        tx.insert_frame("_copied", frame.head(2).drop("n"), constants={"n": 7})
        got = tx.frame("SELECT text, amount, at, day, n FROM _copied")
    assert got.head(6).rows() == frame.rows()
    assert got.tail(2).rows() == [(*row[:4], 7) for row in frame.head(2).rows()]
