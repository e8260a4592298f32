"""One small interface over the two warehouse engines: DuckDB (embedded default) and PostgreSQL.

Everything that writes the raw schema goes through `Warehouse.transaction()`, so a load either
lands whole or not at all.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from .schema import EVENT_KEY, EVENT_KEYS, EVENT_KEYS_TABLE, RAW_SCHEMA, create, ddl

if TYPE_CHECKING:
    from core.config import Settings

SESSION_MEMORY_LIMIT = "1GB"  # DuckDB's memory during a `Warehouse.session()` (a normalize run)


COPY_ROWS = 100_000  # rows per CSV slice sent to PostgreSQL's COPY (bounds the text held at once)


class Tx:
    """A transaction: SQL with `?` placeholders on either engine, plus bulk frame inserts."""

    def __init__(self, conn: Any, dialect: str):
        self._conn = conn
        self.dialect = dialect

    def _sql(self, sql: str) -> str:
        return re.sub(r"\?", "%s", sql) if self.dialect == "postgres" else sql

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        if self.dialect == "postgres":
            with self._conn.cursor() as cur:
                cur.execute(self._sql(sql), params)
        else:
            self._conn.execute(sql, params).complete()

    def fetchall(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        if self.dialect == "postgres":
            with self._conn.cursor() as cur:
                cur.execute(self._sql(sql), params)
                return cur.fetchall()
        return self._conn.execute(sql, params).fetchall()

    def frame(self, sql: str, params: Sequence[Any] | None = None) -> pl.DataFrame:
        """Run a query and return a Polars frame (decimals stay decimals)."""
        if self.dialect == "postgres":
            with self._conn.cursor() as cur:
                cur.execute(self._sql(sql), params)
                columns = list(cur.description)
                rows = cur.fetchall()
            # Column types from the result's declared types, not guessed from the values, so that an
            # empty result, an all-NULL column or an INTEGER column has the type DuckDB would give it.
            types = {}
            for i, col in enumerate(columns):
                dtype = _pl_type(col, [row[i] for row in rows])
                if dtype is not None:
                    types[col.name] = dtype
            return pl.DataFrame(rows, schema=[c.name for c in columns], orient="row", schema_overrides=types,
                                infer_schema_length=None)
        return self._conn.sql(sql, params=params).pl()

    def insert_frame(self, table: str, frame: pl.DataFrame, constants: Mapping[str, Any] | None = None) -> int:
        """Append `frame` to `table` (columns by name), plus `constants`: columns with one value for
        every row (passed once as parameters, not repeated in the frame). Returns rows written."""
        if frame.height == 0:
            return 0
        constants = dict(constants or {})
        columns = ", ".join([*frame.columns, *constants])
        if self.dialect == "postgres":
            # COPY of Polars' CSV text, a slice at a time: exact decimals and timestamps, NULL (an empty
            # field) kept apart from '' (every text is quoted, so no value can read as the end marker);
            # about 3x faster than handing psycopg the rows one by one.
            rows = frame.with_columns(pl.lit(v).alias(k) for k, v in constants.items())
            with self._conn.cursor() as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT csv)") as copy:
                for part in rows.iter_slices(COPY_ROWS):
                    copy.write(part.write_csv(include_header=False, quote_style="non_numeric"))
        else:
            self._conn.register("_frame_to_insert", _arrow(frame))
            values = ", ".join([*frame.columns, *("?" for _ in constants)])
            try:
                self.execute(f"INSERT INTO {table} ({columns}) SELECT {values} FROM _frame_to_insert",
                             list(constants.values()) or None)
            finally:
                self._conn.unregister("_frame_to_insert")
        return frame.height

    def register(self, name: str, frame: pl.DataFrame) -> None:
        """Make a frame queryable by name inside this transaction (a temp table on Postgres)."""
        if self.dialect == "postgres":
            # pg_temp: never drop a real table that happens to have the same name
            self.execute(f"DROP TABLE IF EXISTS pg_temp.{name}")
            cols = ", ".join(f"{c} {_pg_type(t)}" for c, t in frame.schema.items())
            self.execute(f"CREATE TEMP TABLE {name} ({cols}) ON COMMIT DROP")
            self.insert_frame(name, frame)
        else:
            self._conn.register(name, _arrow(frame))

    def insert_registered(self, table: str, name: str, columns: Sequence[str],
                          constants: Mapping[str, Any] | None = None) -> None:
        """Append the `columns` of a frame made queryable by `register` to `table`, plus `constants`
        (as in `insert_frame`); saves converting the same frame a second time."""
        constants = dict(constants or {})
        targets = ", ".join([*columns, *constants])
        values = ", ".join([*columns, *("?" for _ in constants)])
        self.execute(f"INSERT INTO {table} ({targets}) SELECT {values} FROM {name}", list(constants.values()) or None)

    def unregister(self, name: str) -> None:
        """Forget a frame made queryable by `register` (before the transaction ends)."""
        if self.dialect == "postgres":
            self.execute(f"DROP TABLE IF EXISTS pg_temp.{name}")
        else:
            self._conn.unregister(name)


def _arrow(frame: pl.DataFrame) -> Any:
    """The frame as Arrow for DuckDB, without copying its text: Polars' string views are handed over as
    Arrow string views (the default conversion copies every string into a large_string buffer)."""
    return frame.to_arrow(compat_level=pl.CompatLevel.newest())


def _pg_type(dtype: pl.DataType) -> str:
    """PostgreSQL column type for a Polars column (temp tables of `Tx.register`)."""
    if isinstance(dtype, pl.Decimal):
        return f"NUMERIC({dtype.precision or 38}, {dtype.scale})"
    if isinstance(dtype, pl.Datetime):
        return "TIMESTAMPTZ" if dtype.time_zone else "TIMESTAMP"
    pg = {
        pl.Int64: "BIGINT", pl.Int32: "INTEGER", pl.Int16: "SMALLINT", pl.Int8: "SMALLINT",
        pl.UInt64: "NUMERIC(20, 0)", pl.UInt32: "BIGINT", pl.UInt16: "INTEGER", pl.UInt8: "SMALLINT",
        pl.Boolean: "BOOLEAN", pl.Date: "DATE", pl.Time: "TIME", pl.String: "VARCHAR",
        pl.Null: "VARCHAR",  # a column of NULLs only
    }.get(dtype.base_type())
    if pg is None:  # e.g. a float (money is never a float) or a nested type: say so, do not guess
        raise TypeError(f"no PostgreSQL column type for Polars type {dtype}")
    return pg


# PostgreSQL type OIDs -> Polars types of `Tx.frame` (NUMERIC is handled by `_pl_type`).
_PG_OID_TYPES: dict[int, pl.DataType] = {
    16: pl.Boolean(), 20: pl.Int64(), 21: pl.Int16(), 23: pl.Int32(), 25: pl.String(), 19: pl.String(),
    1042: pl.String(), 1043: pl.String(), 1082: pl.Date(), 1083: pl.Time(), 1114: pl.Datetime("us"),
    1184: pl.Datetime("us", "UTC"), 700: pl.Float32(), 701: pl.Float64(),
}
_PG_NUMERIC = 1700


def _pl_type(column: Any, values: list[Any]) -> pl.DataType | None:
    """Polars type of a result column from its declared type; None lets Polars infer it."""
    if column.type_code == _PG_NUMERIC:
        if column.scale is not None:  # NUMERIC(p, s): as declared, like DuckDB's DECIMAL(p, s)
            return pl.Decimal(column.precision or 38, column.scale)
        # unconstrained NUMERIC (e.g. SUM of a NUMERIC(p, s)): exact, at the largest scale present
        scale = max((-v.as_tuple().exponent for v in values if v is not None and v.is_finite()), default=0)
        return pl.Decimal(38, max(scale, 0))
    return _PG_OID_TYPES.get(column.type_code)


_KEYWORD_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


def masked_dsn(dsn: str) -> str:
    """A PostgreSQL DSN with its password replaced by ***: a URL (`postgresql://user:pw@host/db`, the
    password in the user info or a `password=` query parameter) or key=value pairs (`password=...`,
    quoted or not).

    The user info of a URL is taken as everything before its last '@': a password holding ':', '/',
    '?' or an unencoded '@' is masked whole, never cut at the first of them (an '@' later in the URL
    only hides more than needed).
    """
    scheme, sep, rest = dsn.partition("://")
    if not sep or not re.fullmatch(r"postgres(ql)?", scheme, re.IGNORECASE):
        return _KEYWORD_PASSWORD.sub(r"\1***", dsn)
    userinfo, at, hosts = rest.rpartition("@")
    if at and ":" in userinfo:
        rest = f"{userinfo.split(':', 1)[0]}:***@{hosts}"
    return _QUERY_PASSWORD.sub(r"\1***", f"{scheme}://{rest}")


class Warehouse:
    """Where the raw tables and the dbt marts live: a DuckDB file, or a PostgreSQL database."""

    def __init__(self, *, duckdb_path: Path | None = None, postgres_dsn: str | None = None):
        if (duckdb_path is None) == (postgres_dsn is None):
            raise ValueError("give exactly one of duckdb_path or postgres_dsn")
        self.duckdb_path = Path(duckdb_path) if duckdb_path else None
        self.postgres_dsn = postgres_dsn
        self.dialect = "postgres" if postgres_dsn else "duckdb"
        self._local = threading.local()  # the connection of an open `session()`, per thread

    def describe(self) -> str:
        """Where the data is, safe to print (no password)."""
        if self.duckdb_path:
            return str(self.duckdb_path)
        return masked_dsn(self.postgres_dsn or "")

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Keep one connection open for the transactions of this thread inside the block.

        Each `transaction()` inside is still its own transaction (commit or roll back); only the
        cost of opening and closing the database per transaction is saved. Nested sessions reuse
        the outer one.
        """
        if getattr(self._local, "conn", None) is not None:
            yield
            return
        conn = self._connect(autocommit=True)
        if self.dialect == "duckdb":
            # Many small commits: let the write-ahead log grow instead of checkpointing every ~16 MB
            # (each checkpoint rewrites the table's last row groups); one checkpoint at the end.
            conn.execute("SET checkpoint_threshold = '1GB'")
            # Bounded memory whatever the history size: DuckDB's buffer pool (which keeps the blocks
            # it scanned, e.g. every stored event id) may otherwise grow to 80% of the machine's RAM.
            conn.execute(f"SET memory_limit = '{SESSION_MEMORY_LIMIT}'")
        self._local.conn = conn
        try:
            yield
        finally:
            self._local.conn = None
            try:
                if self.dialect == "duckdb":
                    conn.execute("RESET checkpoint_threshold")
                    conn.execute("RESET memory_limit")
                    conn.execute("CHECKPOINT")
            finally:
                conn.close()

    def _connect(self, *, autocommit: bool = False) -> Any:
        if self.dialect == "postgres":
            import psycopg

            conn = psycopg.connect(self.postgres_dsn, autocommit=autocommit)
            # Timestamps are UTC (docs: Time): naive values are read, and instants returned, in UTC,
            # whatever the server's or the client's default time zone is.
            conn.execute("SET TIME ZONE 'UTC'")
            return conn
        import duckdb

        self.duckdb_path.parent.mkdir(parents=True, exist_ok=True)
        return duckdb.connect(str(self.duckdb_path))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Tx]:
        """Commit on success, roll back everything on any error."""
        shared = getattr(self._local, "conn", None)
        if self.dialect == "postgres":
            if shared is not None:
                with shared.transaction():  # commits or rolls back on exit
                    yield Tx(shared, "postgres")
                return
            with self._connect() as conn:  # commits or rolls back on exit
                yield Tx(conn, "postgres")
            return
        conn = shared if shared is not None else self._connect()
        try:
            conn.execute("BEGIN TRANSACTION").complete()
            yield Tx(conn, "duckdb")
            conn.execute("COMMIT").complete()
        except BaseException:
            conn.execute("ROLLBACK").complete()
            raise
        finally:
            if shared is None:
                conn.close()

    def ensure_schema(self) -> None:
        """Create every table of the warehouse (warehouse/schema.py's registry: raw, ledger, findings,
        ...) where it is missing, in one transaction; never drops or rewrites anything."""
        with self.transaction() as tx:
            for statement in ddl(self.dialect):
                tx.execute(statement)


KEY_SAMPLE_ROWS = 8  # stored events whose keys are recomputed to check DuckDB's hash has not changed


def sync_event_keys(tx: Tx, *, check_hash: bool = True) -> bool:
    """Make `raw.event_keys` hold exactly the key of every row of raw.events (DuckDB); True if rebuilt.

    Cheap when in order (two row counts from metadata and a look-up of a few keys); otherwise the
    table is rebuilt from raw.events inside `tx` (one scan of the stored ids). `check_hash=False`
    skips the look-up of a few keys (a scan of every key): for a caller that already made this
    check in this process on this warehouse, and wrote every key since (DuckDB's hash does not
    change while a process runs); the row counts are still compared.
    """
    if tx.dialect != "duckdb":
        return False
    keys = f"{RAW_SCHEMA}.{EVENT_KEYS}"
    create(tx, [EVENT_KEYS_TABLE])
    stored = tx.fetchall(f"SELECT (SELECT count(*) FROM {RAW_SCHEMA}.events), (SELECT count(*) FROM {keys})")[0]
    in_order = stored[0] == stored[1]
    if in_order and stored[0] and check_hash:
        expression = EVENT_KEY.format(source="source", event_id="event_id")
        sample = [row[0] for row in tx.fetchall(
            f"SELECT DISTINCT {expression} FROM (SELECT source, event_id FROM {RAW_SCHEMA}.events "
            f"LIMIT {KEY_SAMPLE_ROWS})")]
        found = tx.fetchall(f"SELECT count(DISTINCT key_hash) FROM {keys} WHERE key_hash IN "
                            f"({', '.join('?' for _ in sample)})", sample)[0][0]
        in_order = found == len(sample)
    if in_order:
        return False
    tx.execute(f"DELETE FROM {keys}")
    tx.execute(f"INSERT INTO {keys} SELECT {EVENT_KEY.format(source='source', event_id='event_id')} "
               f"FROM {RAW_SCHEMA}.events")
    return True


def open_warehouse(settings: Settings) -> Warehouse:
    """The warehouse of record for these settings. With the spark engine it is the DuckDB file: Spark
    rates, and the period's rated rows are copied back into it (warehouse/spark.py). The PostgreSQL
    DSN is read from the environment variable the settings name, here and nowhere else."""
    if settings.engine == "postgres":
        import os

        dsn = os.environ.get(settings.dsn_env)
        if not dsn:
            raise RuntimeError(
                f"warehouse engine is postgres but ${settings.dsn_env} is not set; "
                "export it, e.g. postgresql://postgres@127.0.0.1:5432/test"
            )
        return Warehouse(postgres_dsn=dsn)
    return Warehouse(duckdb_path=settings.duckdb_path)
