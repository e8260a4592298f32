"""The one monthly partition definition: a partition is a billing month (UTC calendar month)."""

import dagster as dg

from core.periods import Period, month_window

billing_months = dg.MonthlyPartitionsDefinition(start_date="2025-01-01")


def period_of(partition_key: str) -> Period:
    """'2026-10-01' (Dagster's monthly key) -> the half-open window of October 2026."""
    return month_window(partition_key[:7])
