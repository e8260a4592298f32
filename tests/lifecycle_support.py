"""Helpers of the lifecycle tests: a billed reference month with its people and policy, and runs."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from billing.cli import main
from core.config import load_settings
from ledger.lifecycle import Lifecycle

from support import REFERENCE, billing_env, drop_reference_usage, postgres_database  # noqa: F401 (re-exported)

BLOCKED = 3  # `billing run`: billed, but a blocking check failed (the reference month has unrated usage)


def run_month(month: str) -> None:
    """`billing run --month M`, which must bill (0, or the blocked code for a month with findings)."""
    assert main(["run", "--month", month]) in (0, BLOCKED)


@contextmanager
def reference_lifecycle(home: Path, postgres_dsn: str | None = None) -> Iterator[Lifecycle]:
    """October 2026 billed into `home` (or the PostgreSQL database `postgres_dsn`) with the
    reference people file and approval policy."""
    with billing_env(home) as mp:
        mp.setenv("BILLING_CONFIG", str(REFERENCE / "billing.yaml"))
        if postgres_dsn:
            mp.setenv("BILLING_ENGINE", "postgres")
            mp.setenv("BILLING_POSTGRES_DSN", postgres_dsn)
        drop_reference_usage(home / "inbox")
        run_month("2026-10")
        yield Lifecycle(load_settings())


def late_event(inbox: Path, name: str, account: str, quantity: int, day: str, event_id: str) -> None:
    """A usage file with one API_CALLS event, dropped into the inbox as a late delivery would be."""
    row = {"event_id": event_id, "customer_id": account, "product_id": "API_CALLS", "quantity": str(quantity),
           "occurred_at": f"{day}T12:00:00Z"}
    path = inbox / name
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    finished = time.time() - 60  # written a minute ago: the inbox takes only files that stopped changing
    os.utime(path, (finished, finished))


def rows(lifecycle: Lifecycle, sql: str, params=None) -> list[tuple]:
    """Rows of one statement on the lifecycle's warehouse, whichever engine (`?` placeholders)."""
    with lifecycle.warehouse.transaction() as tx:
        if sql.lstrip().upper().startswith(("UPDATE", "DELETE", "INSERT")):
            tx.execute(sql, params)
            return []
        return tx.fetchall(sql, params)
