"""A small catalog and usage file billed through the real pipeline (catalog, collect, normalize, dbt,
checks) on DuckDB or on a PostgreSQL database of the test's own. Importable as `scenario`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from billing import runner
from core.config import Settings, load_settings
from core.periods import month_window
from warehouse.store import Warehouse

from support import billing_env

SERVER_DSN = os.environ.get("BILLING_TEST_POSTGRES_DSN") or "postgresql://postgres@127.0.0.1:5432/test"


def bill(home: Path, catalog: str, usage: str, months: list[str], *, postgres_dsn: str | None = None,
         checks: bool = True) -> tuple[Settings, dict]:
    """Bill `months` from a catalog text and one usage CSV; returns the settings and the check outcomes
    of the last month by name. The settings stay pinned to `home` only inside this call."""
    (home / "inbox").mkdir(parents=True, exist_ok=True)
    (home / "catalog.yaml").write_text(catalog)
    (home / "inbox" / "usage.csv").write_text(usage)
    with billing_env(home, home / "catalog.yaml") as mp:
        if postgres_dsn:
            mp.setenv("BILLING_ENGINE", "postgres")
            mp.setenv("BILLING_POSTGRES_DSN", postgres_dsn)
        settings = load_settings()
        warehouse = runner.prepare(settings)
        runner.load_catalog_stage(settings, warehouse)
        runner.collect(settings, warehouse)
        runner.normalize(settings, warehouse)
        outcomes = {}
        for month in months:
            runner.rate(settings, month_window(month))
            if checks:
                outcomes = {o.name: o for o in runner.check(settings, warehouse, month_window(month))}
    return settings, outcomes


def rows(settings: Settings, sql: str, params=None, *, postgres_dsn: str | None = None) -> list[tuple]:
    warehouse = Warehouse(postgres_dsn=postgres_dsn) if postgres_dsn else Warehouse(duckdb_path=settings.duckdb_path)
    with warehouse.transaction() as tx:
        return tx.fetchall(sql, params)


@contextmanager
def own_postgres_database(name: str) -> Iterator[str]:
    """A database of this test's own on the shared server (created, then dropped); yields its DSN as a
    postgresql:// URL, the form `billing` hands to dbt (support.postgres_database yields key=value
    text). Skips locally, fails under CI, when no server answers."""
    try:
        admin = psycopg.connect(SERVER_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        reason = f"no PostgreSQL server answers for {name} ({str(exc).strip().splitlines()[0]})"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    database = f"billing_{name}_{os.getpid()}"
    with admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{database}"')
        try:
            yield SERVER_DSN.rsplit("/", 1)[0] + "/" + database
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
