"""Helpers shared by tests (importable as `support`: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import duckdb
import pytest

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "examples" / "reference-month"

# Every setting a shell could carry into a test; `billing_env` clears them all.
BILLING_VARIABLES = ("BILLING_CONFIG", "BILLING_CATALOG", "BILLING_ENGINE", "BILLING_DUCKDB_PATH", "BILLING_INBOX",
                     "BILLING_LANDING", "BILLING_SOURCES", "BILLING_ANOMALY_FACTOR", "BILLING_POSTGRES_DSN")


def drop_reference_usage(inbox: Path) -> list[Path]:
    """Put the reference month's usage files into an inbox, as a person would (with their own mtimes,
    so collecting them needs no wait for them to settle)."""
    return [Path(shutil.copy2(path, inbox / path.name)) for path in sorted((REFERENCE / "usage").iterdir())]


@contextmanager
def billing_env(home: Path, catalog: Path | None = None) -> Iterator[pytest.MonkeyPatch]:
    """Settings pinned to `home` (and `catalog`): no BILLING_* variable of the shell leaks in."""
    with pytest.MonkeyPatch.context() as mp:
        for var in BILLING_VARIABLES:
            mp.delenv(var, raising=False)
        mp.setenv("BILLING_HOME", str(home))
        if catalog is not None:
            mp.setenv("BILLING_CATALOG", str(catalog))
        yield mp


def new_home(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A fresh BILLING_HOME with an empty inbox."""
    home = tmp_path_factory.mktemp(name) / "billing"
    (home / "inbox").mkdir(parents=True)
    return home


@contextmanager
def reference_month_billed(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Path]:
    """October 2026 of the reference month billed with `billing run`; yields its BILLING_HOME
    (the settings stay pinned to it while the caller's fixture is alive)."""
    from billing.cli import EXIT_BLOCKED, main

    home = new_home(tmp_path_factory, name)
    with billing_env(home, REFERENCE / "catalog.yaml"):
        drop_reference_usage(home / "inbox")
        assert main(["run", "--month", "2026-10"]) == EXIT_BLOCKED  # C4's SMS and C999 are unrated
        yield home


def reference_usage_loaded(home: Path, monkeypatch: pytest.MonkeyPatch, folder: Path):
    """The reference month's usage dropped into `home`'s inbox and loaded as `billing run` loads it before
    rating (catalog, collect, normalize), with dbt's target/ and logs/ in `folder`; returns the settings
    (of the current environment: the `billing_env` fixture's, and the engine a test set)."""
    from billing import runner
    from core.config import load_settings

    monkeypatch.setenv("DBT_TARGET_PATH", str(folder / "target"))
    monkeypatch.setenv("DBT_LOG_PATH", str(folder / "logs"))
    drop_reference_usage(home / "inbox")
    settings = load_settings()
    warehouse = runner.prepare(settings)
    runner.load_catalog_stage(settings, warehouse)
    runner.collect(settings, warehouse)
    runner.normalize(settings, warehouse)
    return settings


def query(warehouse: Path, sql: str, params=None) -> list[tuple]:
    """Rows of one statement on a DuckDB file (`warehouse` may be a BILLING_HOME holding warehouse.duckdb)."""
    if warehouse.is_dir():
        warehouse = warehouse / "warehouse.duckdb"
    con = duckdb.connect(str(warehouse))
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def copy_warehouse(warehouse: Path, folder: Path) -> Path:
    """A copy of a DuckDB file that a test may damage, with nothing left in the original's WAL."""
    query(warehouse, "checkpoint")
    return Path(shutil.copy(warehouse, folder / "warehouse.duckdb"))


POSTGRES_DSN = os.environ.get("BILLING_TEST_POSTGRES_DSN") or "postgresql://postgres@127.0.0.1:5432/test"


@contextmanager
def postgres_database(name: str) -> Iterator[str]:
    """A database of its own on the shared test server, dropped afterwards, so tests running at the
    same time never see each other's tables; yields its DSN (a postgresql:// URL). Skips locally without a server (saying
    why), fails when $CI is set."""
    import psycopg

    try:
        admin = psycopg.connect(POSTGRES_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        reason = (f"no PostgreSQL server answers at {POSTGRES_DSN.split('@')[-1]} "
                  f"({str(exc).strip().splitlines()[0]}); start one or set BILLING_TEST_POSTGRES_DSN")
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    database = f"billing_{name}_{os.getpid()}_{secrets.token_hex(3)}"
    with admin:
        admin.execute(f"CREATE DATABASE {database}")
        try:
            # a postgresql:// URL, as the CLI and dbt's profile read it (billing/rating.py postgres_env)
            yield urlparse(POSTGRES_DSN)._replace(path=f"/{database}").geturl()
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
