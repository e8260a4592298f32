"""Billing periods: a month is the half-open window [first day, first day of next month).

Everything about months and their edges is here: the UTC bounds, the padded UTC window that holds
every local day of the period in any time zone, the inner window whose events are on a day of the
period in every time zone, and month arithmetic (the months before, trailing months). The dbt macro
`period_padded_day` (dbt_project/macros/period.sql) pads by the same PAD_DAYS;
tests/test_periods.py compiles it and holds it equal to `Period.padded_days`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

_MONTH = re.compile(r"^(\d{4})-(\d{2})(?:-01)?$")

# UTC offsets of civil time zones lie between -12:00 (Etc/GMT+12) and +14:00 (Pacific/Kiritimati),
# DST included, so a local midnight is less than a day away from the UTC midnight of the same date.
EDGE = timedelta(days=1)
# Days of UTC padding around a period: its local days in any time zone lie inside (one would do; two
# leave room to spare).
PAD_DAYS = 2


def local_day(at: datetime, zone: str) -> date:
    """The day an instant falls on in a time zone: the day rating puts an event on (its customer's
    zone, UTC for an unknown customer). It belongs to a period when start <= day < end."""
    return at.astimezone(ZoneInfo(zone)).date()


def instant(day: date) -> datetime:
    """Midnight UTC at the start of `day`."""
    return datetime.combine(day, time(), UTC)


def around_midnight(day: date) -> tuple[datetime, datetime]:
    """UTC instants [lo, hi) whose local day is `day` or the day before, depending on the time zone:
    outside it, every time zone puts an instant on the same side of `day`'s midnight as UTC does."""
    return instant(day) - EDGE, instant(day) + EDGE


def month_index(day: date) -> int:
    """Months since year 0 (2026-10 -> 24321): a difference of two is a number of months."""
    return day.year * 12 + day.month - 1


def month_start(index: int) -> date:
    """The first day of the month `month_index` gives `index` for."""
    return date(index // 12, index % 12 + 1, 1)


def add_months(day: date, months: int) -> date:
    """The first day of the month `months` after `day`'s month (before it when negative)."""
    return month_start(month_index(day) + months)


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

    def utc_window(self) -> tuple[datetime, datetime]:
        """[start 00:00 UTC, end 00:00 UTC): the instants of the month in UTC."""
        return instant(self.start), instant(self.end)

    def padded_days(self) -> tuple[date, date]:
        """[first, last) UTC days whose events may fall on a local day of the period in some time zone."""
        return self.start - timedelta(days=PAD_DAYS), self.end + timedelta(days=PAD_DAYS)

    def padded_window(self) -> tuple[datetime, datetime]:
        """UTC instants [lo, hi) holding every event on a local day of the period, in any time zone:
        what rating (int_events_localized), the re-rater and the checks read before placing events
        on their customers' local days."""
        first, last = self.padded_days()
        return instant(first), instant(last)

    def inner_window(self) -> tuple[datetime, datetime]:
        """UTC instants [lo, hi) whose events are on a local day of the period in every time zone:
        only events outside it (and inside `padded_window`) need their time zone to be placed."""
        lo, hi = self.utc_window()
        return lo + EDGE, hi - EDGE

    def shifted(self, months: int) -> Period:
        """The month `months` after this one (before it when negative)."""
        return month_window(add_months(self.start, months))

    def trailing(self, months: int) -> list[Period]:
        """The `months` months before this one, oldest first."""
        return [self.shifted(-back) for back in range(months, 0, -1)]

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
    return Period(start, add_months(start, 1))


def previous_month(today: date) -> Period:
    """The month that ended most recently before `today` (what the month-end schedule bills)."""
    return month_window(add_months(today, -1))
