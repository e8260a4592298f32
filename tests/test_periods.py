from datetime import date

import pytest

from billing.rating import dbt_args
from core.periods import month_window, previous_month


def test_month_is_half_open_and_knows_its_length():
    october = month_window("2026-10")
    assert (october.start, october.end, october.days) == (date(2026, 10, 1), date(2026, 11, 1), 31)
    assert month_window("2024-02").days == 29
    december = month_window("2025-12")
    assert december.end == date(2026, 1, 1)


def test_month_accepts_dagster_keys_and_dates():
    assert month_window("2026-10-01") == month_window("2026-10") == month_window(date(2026, 10, 17))


@pytest.mark.parametrize("bad", ["2026-13", "2026/10", "October", "2026-10-15", ""])
def test_bad_month_says_what_is_expected(bad):
    with pytest.raises(ValueError, match="YYYY-MM|no month"):
        month_window(bad)


def test_previous_month_is_what_the_month_end_schedule_bills():
    assert previous_month(date(2026, 11, 1)).key == "2026-10"
    assert previous_month(date(2027, 1, 15)).key == "2026-12"


def test_dbt_receives_the_month_as_a_half_open_window():
    args = dbt_args("build", month_window("2026-10"))
    assert args[0] == "build"
    assert args[args.index("--vars") + 1] == '{"period_start": "2026-10-01", "period_end": "2026-11-01"}'
