"""Event times that cannot be right are quarantined with their own reason, never loaded or guessed:
far in the future of the file's receipt, before the earliest plausible date, or a naive local time
that a DST change makes ambiguous or skips."""

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from collectors.landing import land_file
from collectors.sources import parse_sources
from formats import SourceFormat
from normalize.load import load_pending
from normalize.rules import normalize_frame
from warehouse.store import Warehouse

RECEIVED = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


def rows(*times: str) -> pl.DataFrame:
    n = len(times)
    return pl.DataFrame({"event_id": [f"e{i}" for i in range(1, n + 1)], "customer_id": ["C1"] * n,
                         "product_id": ["API"] * n, "quantity": ["1"] * n, "occurred_at": list(times)},
                        ).with_row_index("row_number", offset=1).with_columns(pl.col("row_number").cast(pl.Int64))


def outcome(times: list[str], source: SourceFormat, received_at: datetime = RECEIVED) -> dict[str, str | None]:
    """Each timestamp -> None when it became an event, else its quarantine reason."""
    out = normalize_frame(rows(*times), source, received_at=received_at)
    assert out.events.height + out.quarantine.height == len(times)
    reasons = dict(zip(out.quarantine["row_number"], out.quarantine["reason"], strict=True))
    assert set(out.quarantine["column_name"]) <= {"occurred_at"}
    return {text: reasons.get(number) for number, text in enumerate(times, 1)}


def test_events_dated_after_the_files_receipt_plus_the_margin_are_quarantined():
    got = outcome(["9999-12-31T23:59:59Z", "2026-11-03T09:30:00Z", "2026-11-03T09:30:01Z",
                   "2026-11-03T10:30:00+01:00", "2026-10-31T12:00:00Z"], SourceFormat("s"))
    assert got["2026-11-03T09:30:00Z"] is None  # exactly one day after receipt: still plausible
    assert got["2026-11-03T10:30:00+01:00"] is None  # the same instant, written with an offset
    assert got["2026-10-31T12:00:00Z"] is None
    reason = got["9999-12-31T23:59:59Z"]
    assert reason == ("occurred_at '9999-12-31T23:59:59Z' is more than 24 hours after the file was received "
                      "(2026-11-02T09:30:00Z), later than 2026-11-03T09:30:00Z; fix the clock that wrote it, "
                      "or raise 'future_margin_hours' on source 's'")
    assert "'2026-11-03T09:30:01Z' is more than 24 hours after" in got["2026-11-03T09:30:01Z"]


def test_the_future_margin_is_the_sources_setting():
    source = SourceFormat("s", future_margin=timedelta(hours=2))
    got = outcome(["2026-11-02T11:30:00Z", "2026-11-02T11:30:01Z"], source)
    assert got["2026-11-02T11:30:00Z"] is None
    assert "is more than 2 hours after the file was received" in got["2026-11-02T11:30:01Z"]


def test_events_dated_before_the_earliest_date_are_quarantined():
    times = ["1999-12-31T23:59:59Z", "2000-01-01T00:00:00Z", "1970-01-01T00:00:00Z", "2000-01-01 00:30:00"]
    got = outcome(times, SourceFormat("s", timezone="Europe/Berlin"))  # the last one is 1999-12-31T23:30Z
    assert got["2000-01-01T00:00:00Z"] is None
    assert got["1970-01-01T00:00:00Z"] == ("occurred_at '1970-01-01T00:00:00Z' is before 2000-01-01, the "
                                           "earliest date source 's' accepts ('earliest_date')")
    assert "is before 2000-01-01" in got["1999-12-31T23:59:59Z"]
    assert "is before 2000-01-01" in got["2000-01-01 00:30:00"]
    older = outcome(times, SourceFormat("s", timezone="Europe/Berlin", earliest_date=date(1970, 1, 1)))
    assert older == dict.fromkeys(times)


def test_far_future_events_of_a_landed_file_are_quarantined_against_its_receipt_time(tmp_path):
    """Through the loader: the bound is the file's landing time (raw.landed_files.received_at), so a file
    received long ago and loaded now is judged by when it arrived, the same on every reload."""
    warehouse = Warehouse(duckdb_path=tmp_path / "w.duckdb")
    warehouse.ensure_schema()
    path = tmp_path / "future.csv"
    path.write_text("event_id,customer_id,product_id,quantity,occurred_at\n"
                    "e1,C1,API,5,2026-10-01T00:00:00Z\n"
                    "e2,C1,API,7,9999-12-31T23:59:59Z\n"
                    "e3,C1,API,9,2026-10-20T00:00:00Z\n")
    land_file(warehouse, tmp_path / "landing", path, source="upload", collector="upload")
    with warehouse.transaction() as tx:  # received on 10 October: e3 (the 20th) is 10 days ahead of it
        tx.execute("UPDATE raw.landed_files SET received_at = ?", [datetime(2026, 10, 10, tzinfo=UTC)])
    [result] = load_pending(warehouse)
    assert (result.rows_received, result.rows_loaded, result.rows_quarantined) == (3, 1, 2)
    with warehouse.transaction() as tx:
        assert tx.fetchall("SELECT event_id FROM raw.events") == [("e1",)]
        reasons = dict(tx.fetchall("SELECT row_number, reason FROM raw.quarantine ORDER BY row_number"))
    assert reasons[2].startswith("occurred_at '9999-12-31T23:59:59Z' is more than 24 hours after the file was "
                                 "received (2026-10-10T00:00:00Z)")
    assert reasons[3].startswith("occurred_at '2026-10-20T00:00:00Z' is more than 24 hours after")


BUDAPEST = SourceFormat("s", timezone="Europe/Budapest")  # 2026: +02:00 until 25 Oct 03:00, from 29 Mar 03:00


def test_a_naive_time_in_the_hour_clocks_go_back_is_quarantined_as_ambiguous():
    got = outcome(["2026-10-25 02:30:00", "2026-10-25T02:00:00", "2026-10-25 01:59:59", "2026-10-25 03:00:00",
                   "2026-10-25T02:30:00+01:00"], BUDAPEST)
    assert got["2026-10-25 02:30:00"] == (
        "occurred_at '2026-10-25 02:30:00' is ambiguous: that local time occurs twice on 2026-10-25 in "
        "Europe/Budapest (clocks go back); add its UTC offset so it is not guessed")
    assert "is ambiguous" in got["2026-10-25T02:00:00"]
    assert got["2026-10-25 01:59:59"] is None and got["2026-10-25 03:00:00"] is None
    assert got["2026-10-25T02:30:00+01:00"] is None  # with its offset it is one instant


def test_a_naive_time_the_clocks_skip_is_quarantined_as_non_existent():
    got = outcome(["2026-03-29 02:30:00", "2026-03-29 01:59:59", "2026-03-29 03:00:00"], BUDAPEST)
    assert got["2026-03-29 02:30:00"] == (
        "occurred_at '2026-03-29 02:30:00' does not exist: it is skipped by the DST change on 2026-03-29 in "
        "Europe/Budapest (clocks go forward); check the clock that wrote it, or add its UTC offset")
    assert got["2026-03-29 01:59:59"] is None and got["2026-03-29 03:00:00"] is None
    out = normalize_frame(rows("2026-03-29 01:59:59", "2026-03-29 03:00:00"), BUDAPEST, received_at=RECEIVED)
    assert out.events["occurred_at"].to_list() == [datetime(2026, 3, 29, 0, 59, 59, tzinfo=UTC),
                                                   datetime(2026, 3, 29, 1, tzinfo=UTC)]


def test_the_bounds_are_set_per_source_in_the_sources_file():
    sources = parse_sources({"sources": [{"name": "s", "future_margin_hours": 1.5, "earliest_date": date(2020, 1, 1)},
                                         {"name": "t", "earliest_date": "2019-06-01"}, {"name": "u"}]},
                            base_dir=Path("."), origin="sources.yaml")
    assert sources["s"].file_format.future_margin == timedelta(minutes=90) and sources["s"].file_format.earliest_date == date(2020, 1, 1)
    assert sources["t"].file_format.earliest_date == date(2019, 6, 1)
    assert (sources["u"].file_format.future_margin, sources["u"].file_format.earliest_date) == (timedelta(days=1), date(2000, 1, 1))
    for entry, message in [({"future_margin_hours": -1}, "future_margin_hours: must be 0 or more"),
                           ({"earliest_date": "01/01/2000"}, "earliest_date: must be a date such as 2000-01-01"),
                           ({"earliest_date": datetime(2000, 1, 1)}, "earliest_date: must be a date")]:
        with pytest.raises(ValueError, match=message):
            parse_sources({"sources": [{"name": "s", **entry}]}, base_dir=Path("."), origin="sources.yaml")
