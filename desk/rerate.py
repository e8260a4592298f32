"""Re-rating a period after a manual charge or price override, as `billing invoices charge` does, without
keeping the warehouse: dbt runs in this process, and dbt-duckdb keeps its DuckDB database open after a
run, which would lock every other process (`billing run`, the CLI) out of the file while the desk runs."""

from __future__ import annotations

import threading

from core.config import Settings

_one_at_a_time = threading.Lock()  # dbt's in-process runner is not made for concurrent invocations


def rerate(settings: Settings, period: str) -> None:
    from billing import runner
    from core.periods import month_window

    with _one_at_a_time:
        try:
            runner.rerate(settings, month_window(period))
        finally:
            release_dbt_duckdb()


def release_dbt_duckdb() -> None:
    """Close the DuckDB database dbt-duckdb keeps open in the process after a run (a no-op otherwise)."""
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager as manager
    except ImportError:
        return
    with manager._LOCK:
        if manager._ENV is not None:
            manager._ENV.close()
            manager._ENV = None
