"""Spark as the rating engine: the raw tables go out as Parquet, the rated period comes back.

The DuckDB file stays the warehouse of record (what the CLI, the checks and finance read). Rating a
period on Spark (`BILLING_ENGINE=spark`, billing/rating.py) wraps `dbt run` on Spark:

1. `export_raw`: every dbt source table to Parquet under `<spark_dir>/<schema>/<table>/`, read by
   Spark as tables (dbt_project/macros/spark.sql). Events are partitioned by UTC day
   (`occurred_date=YYYY-MM-DD`); only the period's days (padded as the models pad them) are
   written, each day folder replaced whole, so a rerun never holds a row twice. The other tables are
   small and replaced whole.
2. `seed_history`: the warehouse's other periods of each period-scoped model table, as Parquet
   partitioned by period where Spark keeps that model's table (`<spark_dir>/tables/<schema>/<model>/`):
   models that read earlier periods (late-usage corrections) see them, and dbt's insert_overwrite
   replaces only this period's partition.
3. dbt runs on Spark; then `copy_back`: the period's partition of each table replaces the period's
   rows of the same table in DuckDB, all tables in one transaction, after checking that the column
   names and types are the same on both sides.

No Spark is needed here: DuckDB writes and reads the Parquet files itself. Paths are local folders
(Spark in local mode); see docs/scale.md for a cluster.
"""

from __future__ import annotations

import re
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
    from core.periods import Period

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
    """Where the export of a source table is (macro register_raw_tables reads the same place)."""
    return spark_dir / table.schema / table.name


def table_dir(spark_dir: Path, table: Table) -> Path:
    """Where Spark keeps a model's table (dbt_project.yml's location_root)."""
    return spark_dir / "tables" / table.schema / table.name


def export_days(period: Period) -> list[date]:
    """The UTC days of events that rating reads: the period's padded window (core/periods.py)."""
    first, last = period.padded_days()
    return [first + timedelta(days=i) for i in range((last - first).days)]


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


def model_tables(warehouse: Warehouse, project_dir: Path) -> tuple[list[Table], list[str]]:
    """The period-scoped model tables the warehouse has (intermediate and marts tables named after a
    model, with a period column), and the names of the project's models it does not have yet."""
    models = {path.stem for path in (project_dir / "models").rglob("*.sql")}
    with warehouse.transaction() as tx:
        rows = tx.fetchall("""SELECT t.table_schema, t.table_name FROM information_schema.tables t
                              JOIN information_schema.columns c USING (table_schema, table_name)
                              WHERE t.table_type = 'BASE TABLE' AND c.column_name = 'period'
                                AND t.table_schema IN ('intermediate', 'marts')
                              ORDER BY 1, 2""")
    tables = [Table(schema, name) for schema, name in rows if name in models]
    return tables, sorted(models - {t.name for t in tables})


def seed_history(warehouse: Warehouse, spark_dir: Path, period: Period, tables: Sequence[Table]) -> dict[str, bool]:
    """Every period but this one of each period-scoped table, as Parquet partitioned by period where
    Spark keeps the model's table (models such as int_invoice_corrections read earlier periods).
    Each table folder is replaced whole; a table without other periods gets no folder, and dbt
    creates it. Returns, per table, whether it has history (macro register_period_tables)."""
    work = spark_dir / f".history-{uuid.uuid4().hex}"
    has: dict[str, bool] = {}
    try:
        with warehouse.transaction() as tx:
            for table in tables:
                rows = int(tx.fetchall(f"SELECT count(*) FROM {table.sql} WHERE period <> ?", [period.key])[0][0])
                has[table.sql] = rows > 0
                if rows:
                    folder = work / table.schema / table.name
                    folder.parent.mkdir(parents=True, exist_ok=True)
                    # Spark has no 128-bit integer: DuckDB's HUGEINT sums go as BIGINT (a cast that fails
                    # rather than wraps), the type Spark's own sums have
                    columns = ", ".join(f"CAST({name} AS BIGINT) AS {name}" if kind == "HUGEINT" else name
                                        for name, kind in tx.fetchall(
                                            "SELECT column_name, data_type FROM information_schema.columns "
                                            "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
                                            [table.schema, table.name]))
                    tx.execute(f"COPY (SELECT {columns} FROM {table.sql} WHERE period <> {_literal(period.key)}) "
                               f"TO {_quote(folder)} (FORMAT parquet, PARTITION_BY (period), FILENAME_PATTERN 'part-{{i}}')")
        for table in tables:
            final = table_dir(spark_dir, table)
            if has[table.sql]:
                _replace_dir(work / table.schema / table.name, final)
            elif final.exists():
                shutil.rmtree(final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return has


ANSI = "spark.sql.ansi.enabled"


def keep_profile_ansi_mode() -> None:
    """Let profiles.yml's spark.sql.ansi.enabled stand (true: a decimal that overflows is an error).

    dbt-spark (1.11) overwrites it with "false" in SparkCredentials.__post_init__, and its session
    method applies its parameters to the session before every statement: a value too large for its
    decimal type became a NULL amount, silently. Called before dbt runs on Spark; idempotent."""
    from dbt.adapters.spark.connections import SparkCredentials

    original = SparkCredentials.__post_init__
    if getattr(original, "keeps_profile_ansi_mode", False):
        return

    def __post_init__(self) -> None:
        wanted = (self.server_side_parameters or {}).get(ANSI)
        original(self)
        if wanted is not None:
            self.server_side_parameters[ANSI] = str(wanted).lower()

    __post_init__.keeps_profile_ansi_mode = True  # type: ignore[attr-defined]
    SparkCredentials.__post_init__ = __post_init__  # type: ignore[method-assign]


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _parquet(folder: Path) -> str:
    # the columns of the files only: a partition folder's name (period=...) is not a column here
    return f"read_parquet({_quote(folder / '*.parquet')}, hive_partitioning = false)"


# Where the engines type an unconstrained sum differently, a copied-back value only widens: Spark's
# integer sums are 64-bit where DuckDB's are 128-bit, and Spark sums a DECIMAL(p, s) as
# DECIMAL(p + 10, s) where DuckDB makes it DECIMAL(38, s). Any other difference (a decimal's scale
# above all) stops the copy. The marts' contracts pin their types, so there both sides agree exactly.
WIDENS = {("BIGINT", "HUGEINT"), ("INTEGER", "BIGINT"), ("INTEGER", "HUGEINT")}
_DECIMAL = re.compile(r"DECIMAL\((\d+),\s*(\d+)\)")


def _widens(spark: str, warehouse: str) -> bool:
    if spark == warehouse or (spark, warehouse) in WIDENS:
        return True
    theirs, ours = _DECIMAL.fullmatch(spark), _DECIMAL.fullmatch(warehouse)
    return bool(theirs and ours and theirs[2] == ours[2] and int(theirs[1]) <= int(ours[1]))


def _differences(spark_cols: list[tuple[str, str]], expected: list[tuple[str, str]]) -> list[str]:
    theirs, ours = dict(spark_cols), dict(expected)
    out = [f"{name}: only in Spark's" for name in theirs.keys() - ours.keys()]
    out += [f"{name}: only in the warehouse's" for name in ours.keys() - theirs.keys()]
    out += [f"{name}: {theirs[name]} from Spark, {ours[name]} in the warehouse" for name in theirs.keys() & ours.keys()
            if not _widens(theirs[name], ours[name])]
    return sorted(out)


def copy_back(warehouse: Warehouse, spark_dir: Path, period: Period, tables: Iterable[Table]) -> dict[str, int]:
    """Replace the period's rows of each table in the warehouse with the period's partition Spark
    wrote; one transaction for all of them. The warehouse's table must have the same column names
    and types as Spark's Parquet, or nothing is copied."""
    tables = list(tables)
    counts: dict[str, int] = {}
    with warehouse.transaction() as tx:
        for table in tables:
            folder = table_dir(spark_dir, table) / f"period={period.key}"
            have = tx.fetchall("SELECT column_name, data_type FROM information_schema.columns "
                               "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
                               [table.schema, table.name])
            if not have:
                raise RuntimeError(f"the warehouse has no table {table.sql} to copy Spark's rows into")
            tx.execute(f"DELETE FROM {table.sql} WHERE period = ?", [period.key])
            if not any(folder.glob("*.parquet")):  # the period has no rows: Spark wrote no partition
                counts[table.sql] = 0
                continue
            spark_cols = [(name, kind) for name, kind, *_ in tx.fetchall(f"DESCRIBE SELECT * FROM {_parquet(folder)}")]
            expected = [(name, kind) for name, kind in have if name != "period"]
            differences = _differences(spark_cols, expected)
            if differences:
                raise RuntimeError(f"{table.sql}: the columns Spark wrote differ from the warehouse's: "
                                   + "; ".join(differences))
            names = ", ".join(name for name, _ in spark_cols)
            tx.execute(f"INSERT INTO {table.sql} (period, {names}) SELECT ?, {names} FROM {_parquet(folder)}",
                       [period.key])
            counts[table.sql] = int(tx.fetchall(f"SELECT count(*) FROM {_parquet(folder)}")[0][0])
    return counts
