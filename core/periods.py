"""Billing periods: a month is the half-open window [first day, first day of next month)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

_MONTH = re.compile(r"^(\d{4})-(\d{2})(?:-01)?$")


@dataclass(frozen=True)
class Period:
    """One billing month. `start` is included, `end` is not."""

    start: date
    end: date

    @property
    def key(self) -> str:
        """The month as people write it: 2026-10."""
        return f"{self.start:%Y-%m}"

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    def dbt_vars(self, lookback_periods: int | None = None) -> dict[str, str | int]:
        """The window as dbt receives it (`>= period_start and < period_end`), and how many issued
        periods back a late change is still adjusted (billing.yaml `lookback_periods`)."""
        found: dict[str, str | int] = {"period_start": self.start.isoformat(), "period_end": self.end.isoformat()}
        if lookback_periods is not None:
            found["lookback_periods"] = lookback_periods
        return found


def month_window(month: str | date) -> Period:
    """Parse '2026-10' (or '2026-10-01', or a date in the month) into its half-open window."""
    if isinstance(month, date):
        year, mon = month.year, month.month
    else:
        match = _MONTH.match(month.strip())
        if not match:
            raise ValueError(f"month {month!r} is not of the form YYYY-MM (for example 2026-10)")
        year, mon = int(match.group(1)), int(match.group(2))
        if not 1 <= mon <= 12:
            raise ValueError(f"month {month!r} has no month number {mon}")
    start = date(year, mon, 1)
    end = date(year + 1, 1, 1) if mon == 12 else date(year, mon + 1, 1)
    return Period(start, end)


def previous_month(today: date) -> Period:
    """The month that ended most recently before `today` (what the month-end schedule bills)."""
    first = date(today.year, today.month, 1)
    return month_window(date(first.year - 1, 12, 1) if first.month == 1 else date(first.year, first.month - 1, 1))
