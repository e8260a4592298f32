"""Spark as the rating engine: the raw tables go out as Parquet, the rated period comes back.

The DuckDB file stays the warehouse of record (what the CLI, the checks and finance read). Rating a
period on Spark (`BILLING_ENGINE=spark`, billing/rating.py) is three steps around `dbt build`:

1. `export_raw`: every dbt source table to Parquet under `<spark_dir>/raw/<schema>/<table>/`, read
   by Spark as tables (dbt_project/macros/spark.sql). Events are partitioned by UTC day
   (`occurred_date=YYYY-MM-DD`); only the period's days (padded as the models pad them) are
   written, each day folder replaced whole, so a rerun never holds a row twice. The other tables are
   small and replaced whole.
2. dbt builds staging, intermediate and marts on Spark; each period-scoped model is a Parquet table
   at `<spark_dir>/tables/<schema>/<model>/` holding this period's rows only.
3. `copy_back`: those rows replace the period's rows of the same tables in DuckDB, all tables in one
   transaction, after checking that column names and types are the same on both sides.

No Spark is needed here: DuckDB writes and reads the Parquet files itself. Paths are local folders
(Spark in local mode); see docs/scale.md for a cluster.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from .store import Warehouse

if TYPE_CHECKING:
    from billing.periods import Period

# Days of events around the period that rating reads (macro period_padded_day: local months of any
# time zone fall inside [start - 2 days, end + 2 days)).
PAD_DAYS = 2
EVENTS = ("raw", "events")
PARTITION_COLUMN = "occurred_date"  # UTC day of occurred_at (macro event_partition_column)


@dataclass(frozen=True)
class Table:
    schema: str
    name: str

    @property
    def sql(self) -> str:
        return f"{self.schema}.{self.name}"


def source_tables(project_dir: Path) -> list[Table]:
    """Every table the dbt project reads as a source (the `sources:` of its model YAML files)."""
    tables: list[Table] = []
    for path in sorted((project_dir / "models").rglob("*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for source in doc.get("sources") or []:
            schema = source.get("schema") or source["name"]
            for table in source.get("tables") or []:
                found = Table(schema, table.get("identifier") or table["name"])
                if found not in tables:
                    tables.append(found)
    return tables


def raw_dir(spark_dir: Path, table: Table) -> Path:
    return spark_dir / table.schema / table.name


def table_dir(spark_dir: Path, table: Table) -> Path:
    """Where Spark keeps a model's table (dbt_project.yml's location_root)."""
    return spark_dir / "tables" / table.schema / table.name


def export_days(period: Period) -> list[date]:
    start = period.start - timedelta(days=PAD_DAYS)
    return [start + timedelta(days=i) for i in range((period.end - period.start).days + 2 * PAD_DAYS)]


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _replace_dir(new: Path, final: Path) -> None:
    """Put `new` where `final` is: the old folder is moved aside first, then removed."""
    final.parent.mkdir(parents=True, exist_ok=True)
    old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex}")
    if final.exists():
        final.rename(old)
    new.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def export_raw(warehouse: Warehouse, spark_dir: Path, period: Period, tables: Sequence[Table]) -> dict[str, int]:
    """Write the source tables as Parquet for Spark; returns rows written per table.

    Exactly once: each table folder (each day folder of events) is written beside the old one and
    swapped in whole, so a rerun, or a run after one that died half-way, leaves each row once.
    """
    if warehouse.dialect != "duckdb":
        raise ValueError("the spark engine rates from a DuckDB warehouse (BILLING_DUCKDB_PATH)")
    spark_dir.mkdir(parents=True, exist_ok=True)
    work = spark_dir / f".export-{uuid.uuid4().hex}"
    counts: dict[str, int] = {}
    try:
        with warehouse.transaction() as tx:  # one consistent snapshot of every table
            present = {(s, n) for s, n in tx.fetchall(
                "SELECT table_schema, table_name FROM information_schema.tables")}
            missing = [t.sql for t in tables if (t.schema, t.name) not in present]
            if missing:
                raise RuntimeError(f"the warehouse has no table {', '.join(missing)} that dbt reads; "
                                   "run `billing run` once on it to create the raw schema")
            for table in tables:
                if (table.schema, table.name) == EVENTS:
                    counts[table.sql] = _export_events(tx, spark_dir, work, table, period)
                    continue
                folder = work / table.schema / table.name
                folder.mkdir(parents=True)
                tx.execute(f"COPY (SELECT * FROM {table.sql}) TO {_quote(folder / 'part-0.parquet')} (FORMAT parquet)")
                counts[table.sql] = int(tx.fetchall(f"SELECT count(*) FROM {table.sql}")[0][0])
        for table in tables:
            if (table.schema, table.name) != EVENTS:
                _replace_dir(work / table.schema / table.name, raw_dir(spark_dir, table))
        events = raw_dir(spark_dir, Table(*EVENTS))
        for day in export_days(period):
            name = f"{PARTITION_COLUMN}={day.isoformat()}"
            _replace_dir(work / "events" / name, events / name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return counts


def _export_events(tx, spark_dir: Path, work: Path, table: Table, period: Period) -> int:
    """The period's days of events, one folder per UTC day; a day without events gets an empty file
    (the columns without rows), so Spark always finds the table's columns and every day of the window."""
    days = export_days(period)
    first, end = days[0], days[-1] + timedelta(days=1)
    folder = work / "events"
    folder.parent.mkdir(parents=True, exist_ok=True)
    window = f"occurred_at >= CAST('{first.isoformat()} 00:00:00+00' AS TIMESTAMPTZ) " \
             f"AND occurred_at < CAST('{end.isoformat()} 00:00:00+00' AS TIMESTAMPTZ)"
    tx.execute(f"""COPY (SELECT *, CAST(timezone('UTC', occurred_at) AS DATE) AS {PARTITION_COLUMN}
                         FROM {table.sql} WHERE {window})
                   TO {_quote(folder)} (FORMAT parquet, PARTITION_BY ({PARTITION_COLUMN}), FILENAME_PATTERN 'part-{{i}}')""")
    for day in days:
        day_dir = folder / f"{PARTITION_COLUMN}={day.isoformat()}"
        if not day_dir.exists():
            day_dir.mkdir(parents=True)
            tx.execute(f"COPY (SELECT * FROM {table.sql} WHERE false) TO {_quote(day_dir / 'part-0.parquet')} "
                       "(FORMAT parquet)")
    return int(tx.fetchall(f"SELECT count(*) FROM {table.sql} WHERE {window}")[0][0])


def _parquet(folder: Path) -> str:
    return f"read_parquet({_quote(folder / '*.parquet')})"


def copy_back(warehouse: Warehouse, spark_dir: Path, period: Period, tables: Iterable[Table]) -> dict[str, int]:
    """Replace the period's rows of each table in the warehouse with what Spark wrote; one transaction
    for all of them. A table new to the warehouse is created with the Parquet's column types; an
    existing one must have the same column names and types, or nothing is copied."""
    tables = list(tables)
    counts: dict[str, int] = {}
    with warehouse.transaction() as tx:
        for table in tables:
            folder = table_dir(spark_dir, table)
            if not any(folder.glob("*.parquet")):
                raise RuntimeError(f"Spark wrote no Parquet file for {table.sql} in {folder}")
            spark_cols = [(name, kind) for name, kind, *_ in tx.fetchall(f"DESCRIBE SELECT * FROM {_parquet(folder)}")]
            have = tx.fetchall("SELECT column_name, data_type FROM information_schema.columns "
                               "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
                               [table.schema, table.name])
            if not have:
                tx.execute(f"CREATE SCHEMA IF NOT EXISTS {table.schema}")
                tx.execute(f"CREATE TABLE {table.sql} AS SELECT * FROM {_parquet(folder)} LIMIT 0")
            elif sorted(have) != sorted(spark_cols):
                raise RuntimeError(
                    f"{table.sql}: the columns Spark wrote differ from the warehouse's "
                    f"(only in Spark's: {sorted(set(spark_cols) - set(have))}; "
                    f"only in the warehouse's: {sorted(set(have) - set(spark_cols))})")
            names = ", ".join(name for name, _ in spark_cols)
            if "period" in dict(spark_cols):
                tx.execute(f"DELETE FROM {table.sql} WHERE period = ?", [period.key])
                rows = f"SELECT {names} FROM {_parquet(folder)} WHERE period = ?"
                tx.execute(f"INSERT INTO {table.sql} ({names}) {rows}", [period.key])
            else:
                tx.execute(f"DELETE FROM {table.sql}")
                tx.execute(f"INSERT INTO {table.sql} ({names}) SELECT {names} FROM {_parquet(folder)}")
            counts[table.sql] = int(tx.fetchall(f"SELECT count(*) FROM {_parquet(folder)}")[0][0])
    return counts
