"""Run the dbt project for one billing period against the configured warehouse.

The period reaches dbt as vars (`Period.dbt_vars`); the warehouse location reaches the profile
through environment variables, never through files in the repository.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from .config import Settings
from .periods import Period

DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt_project"


def dbt_env(settings: Settings) -> dict[str, str]:
    """Environment the dbt profile reads (dbt_project/profiles.yml)."""
    env = {"DBT_PROFILES_DIR": str(DBT_PROJECT_DIR), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
           "DO_NOT_TRACK": "1", "BILLING_DBT_TARGET": settings.engine}
    if settings.engine == "duckdb":
        env["BILLING_DUCKDB_PATH"] = str(settings.duckdb_path.resolve())
    else:
        env.update(postgres_env(settings.warehouse().postgres_dsn or ""))
    return env


def postgres_env(dsn: str) -> dict[str, str]:
    """Split a postgresql:// DSN into the variables the profile reads."""
    url = urlparse(dsn)
    if url.scheme not in ("postgres", "postgresql"):
        raise ValueError("the PostgreSQL DSN must look like postgresql://user@host:5432/dbname")
    env = {
        "BILLING_PG_HOST": url.hostname or "127.0.0.1",
        "BILLING_PG_PORT": str(url.port or 5432),
        "BILLING_PG_USER": unquote(url.username or "postgres"),
        "BILLING_PG_PASSWORD": unquote(url.password or ""),
        "BILLING_PG_DBNAME": (url.path or "/postgres").lstrip("/") or "postgres",
        # libpq variables, read by dbt's connections: sessions in UTC, like warehouse/store.py's
        "PGTZ": "UTC",
    }
    sslmode = parse_qs(url.query).get("sslmode")
    if sslmode:  # ?sslmode=require in the DSN holds for dbt too
        env["PGSSLMODE"] = sslmode[-1]
    return env


def dbt_args(command: str, period: Period, extra: Sequence[str] = (), lookback_periods: int | None = None) -> list[str]:
    """Arguments for one dbt invocation over one period (pure; tested)."""
    import json

    return [command, "--project-dir", str(DBT_PROJECT_DIR), "--vars", json.dumps(period.dbt_vars(lookback_periods)),
            *extra]


@contextmanager
def environment(values: dict[str, str]):
    """Set these environment variables for the block, then put back what was there."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


class RatingFailed(RuntimeError):
    pass


def run_dbt(settings: Settings, period: Period, command: str = "build", extra: Sequence[str] = ()) -> list[dict]:
    """Run `dbt <command>` for the period in-process; return one dict per node result."""
    from dbt.cli.main import dbtRunner

    with environment(dbt_env(settings)):
        result = dbtRunner().invoke(dbt_args(command, period, ["--quiet", *extra],
                                             settings.lifecycle.lookback_periods))
    nodes = []
    for item in (result.result or []) if hasattr(result.result, "__iter__") else []:
        nodes.append({"name": item.node.name, "status": str(item.status), "message": item.message})
    if not result.success:
        failed = [n for n in nodes if n["status"] in ("error", "fail")]
        detail = "; ".join(f"{n['name']}: {n['message']}" for n in failed) or str(result.exception)
        raise RatingFailed(f"dbt {command} failed for {period.key}: {detail}")
    return nodes
