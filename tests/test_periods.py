import json
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import duckdb
import pytest

from billing.rating import dbt_args
from core.periods import (
    add_months,
    around_midnight,
    local_day,
    month_index,
    month_start,
    month_window,
    previous_month,
)

from support import ROOT


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


# Time zones at the extremes of UTC offsets (-12:00 .. +14:00, every whole hour between), odd
# offsets, and zones whose DST changes inside the months below.
WHOLE_HOURS = [f"Etc/GMT{-h:+d}" if h else "UTC" for h in range(-12, 15)]  # Etc/GMT-14 is UTC+14
ZONES = [*WHOLE_HOURS, "Pacific/Kiritimati", "Pacific/Chatham", "Asia/Kathmandu", "America/St_Johns",
         "Europe/Budapest", "America/New_York", "Australia/Lord_Howe", "Pacific/Apia"]
MONTHS = ["2026-03", "2026-04", "2026-10", "2026-11", "2026-12", "2024-02"]


def _local_midnight(day: date, zone: str) -> datetime:
    """The UTC instant a local day begins (the earlier one if a DST change makes midnight ambiguous)."""
    return datetime.combine(day, time(), ZoneInfo(zone)).astimezone(UTC)


@pytest.mark.parametrize("month", MONTHS)
def test_every_local_day_of_the_period_is_inside_the_padded_window_in_every_zone(month):
    period = month_window(month)
    lo, hi = period.padded_window()
    inner_lo, inner_hi = period.inner_window()
    assert (lo, hi) == (datetime(*period.padded_days()[0].timetuple()[:3], tzinfo=UTC),
                        datetime(*period.padded_days()[1].timetuple()[:3], tzinfo=UTC))
    assert set(WHOLE_HOURS) <= set(ZONES) and len(WHOLE_HOURS) == 27
    for zone in ZONES:
        first, end = _local_midnight(period.start, zone), _local_midnight(period.end, zone)
        assert lo <= first and end <= hi, zone  # every instant of the local month is read
        assert local_day(first, zone) == period.start and local_day(end, zone) == period.end, zone
        assert local_day(first - timedelta(microseconds=1), zone) < period.start, zone
        assert first <= inner_lo and inner_hi <= end, zone  # the inner window is inside every local month
        for edge in (period.start, period.end):  # an instant outside around_midnight is on UTC's side
            around_lo, around_hi = around_midnight(edge)
            assert around_lo <= _local_midnight(edge, zone) < around_hi, zone


def test_month_arithmetic_crosses_years():
    assert month_window("2026-01").shifted(-1).key == "2025-12"
    assert month_window("2026-11").shifted(2).key == "2027-01"
    assert [p.key for p in month_window("2026-02").trailing(3)] == ["2025-11", "2025-12", "2026-01"]
    assert add_months(date(2026, 3, 31), -1) == date(2026, 2, 1)
    assert month_index(date(2026, 10, 5)) - month_index(date(2025, 12, 31)) == 10
    assert month_start(month_index(date(2026, 10, 5))) == date(2026, 10, 1)


def test_the_sql_padded_window_is_the_python_one(tmp_path, monkeypatch):
    """dbt's macro period_padded_instant (what int_events_localized reads) is Period.padded_window."""
    from dbt.cli.main import dbtRunner

    monkeypatch.setenv("DBT_PROFILES_DIR", str(ROOT / "dbt_project"))
    monkeypatch.setenv("BILLING_DBT_TARGET", "duckdb")
    monkeypatch.setenv("BILLING_DUCKDB_PATH", str(tmp_path / "w.duckdb"))
    period = month_window("2026-12")  # across a year's end
    sql = ("select {{ period_padded_instant('start') }} as lo, {{ period_padded_instant('end') }} as hi, "
           "{{ months_before_period(\"'2025-11'\") }} as back, {{ month_index(\"'2026-10'\") }} as idx")
    result = dbtRunner().invoke(["compile", "--project-dir", str(ROOT / "dbt_project"), "--inline", sql, "--vars",
                                 json.dumps(period.dbt_vars()), "--quiet", "--target-path", str(tmp_path / "target")])
    assert result.success, result.exception
    compiled = result.result.results[0].node.compiled_code
    lo, hi, back, idx = duckdb.connect().execute(f"set TimeZone = 'UTC'; {compiled}").fetchone()
    assert (lo, hi) == period.padded_window() == (datetime(2026, 11, 29, tzinfo=UTC), datetime(2027, 1, 3, tzinfo=UTC))
    # the SQL month arithmetic (int_invoice_corrections' periods back) is core/periods.py's
    assert idx == month_index(date(2026, 10, 1))
    assert back == month_index(period.start) - month_index(date(2025, 11, 1)) == 13
