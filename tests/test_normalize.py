"""Normalization rules: every received row ends as an event, in quarantine, or as a duplicate."""

from datetime import UTC, date, datetime
from decimal import Decimal

import polars as pl
import pytest

from formats import SourceFormat
from normalize.rules import FileRejected, normalize_frame, read_rows, split_in_file_duplicates


def rows(**columns) -> pl.DataFrame:
    n = len(next(iter(columns.values()))) if columns else 1
    base = {"event_id": [f"e{i}" for i in range(n)], "customer_id": ["C1"] * n, "product_id": ["API"] * n,
            "quantity": ["1"] * n, "occurred_at": ["2026-10-01T00:00:00Z"] * n}
    base.update(columns)
    return pl.DataFrame(base).with_row_index("row_number", offset=1).with_columns(pl.col("row_number").cast(pl.Int64))


def test_valid_rows_become_typed_utc_decimal_events():
    out = normalize_frame(rows(quantity=["1.5", "2"], occurred_at=["2026-10-01T02:00:00+02:00",
                                                                    "2026-10-01T00:00:00Z"]), SourceFormat("s"))
    assert out.quarantine.height == 0
    assert out.events["quantity"].to_list() == [Decimal("1.5"), Decimal("2")]
    assert out.events.schema["quantity"] == pl.Decimal(38, 9)
    assert out.events["occurred_at"].to_list() == [datetime(2026, 10, 1, tzinfo=UTC)] * 2


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("quantity", "abc", "is not a decimal number"),
        ("quantity", "-3", "is negative"),
        ("quantity", "0.1234567891", "more than 9 decimal places"),
        ("occurred_at", "yesterday", "is not an ISO 8601 timestamp"),
        ("occurred_at", "2026-10-01 10:00:00", "has no time zone"),
        ("event_id", "", "event_id is empty"),
        ("customer_id", " ", "customer_id is empty"),
    ],
)
def test_bad_rows_are_quarantined_with_a_reason_naming_the_column(column, value, reason):
    good = rows()[column][0]
    out = normalize_frame(rows(**{column: [good, value]}), SourceFormat("s"))
    assert out.events.height == 1 and out.quarantine.height == 1
    bad = out.quarantine.row(0, named=True)
    assert bad["row_number"] == 2 and bad["column_name"] == column and reason in bad["reason"]
    assert out.rows_received == out.events.height + out.quarantine.height


def test_naive_timestamps_are_read_in_the_zone_the_source_names():
    out = normalize_frame(rows(occurred_at=["2026-10-01 00:30:00"]), SourceFormat("s", timezone="Europe/Budapest"))
    assert out.events["occurred_at"].to_list() == [datetime(2026, 9, 30, 22, 30, tzinfo=UTC)]


def test_repeats_inside_a_file_are_split_into_duplicates_and_conflicts():
    events = normalize_frame(rows(event_id=["a", "a", "a", "b"], quantity=["1", "1", "2", "5"]),
                             SourceFormat("s")).events
    first, exact, conflicting = split_in_file_duplicates(events, "s")
    assert first["row_number"].to_list() == [1, 4]
    assert exact.select("row_number", "duplicate_of_row_number").rows() == [(2, 1)]
    assert conflicting.select("row_number", "duplicate_of_row_number").rows() == [(3, 1)]


def test_missing_column_rejects_the_file_naming_the_column(tmp_path):
    path = tmp_path / "u.csv"
    path.write_text("event_id,customer_id,quantity,occurred_at\ne1,C1,1,2026-10-01T00:00:00Z\n")
    with pytest.raises(FileRejected, match="'product_id'"):
        normalize_frame(read_rows(path, SourceFormat("s")), SourceFormat("s"))


def test_empty_and_header_only_files_have_no_rows(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "header.csv").write_text("event_id,customer_id,product_id,quantity,occurred_at\n")
    for name in ("empty.csv", "header.csv"):
        out = normalize_frame(read_rows(tmp_path / name, SourceFormat("s")), SourceFormat("s"))
        assert (out.rows_received, out.events.height, out.quarantine.height) == (0, 0, 0)


def test_non_utf8_file_is_rejected(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("event_id,customer_id,product_id,quantity,occurred_at\ne1,Café,A,1,2026-10-01T00:00:00Z\n"
                     .encode("latin-1"))
    with pytest.raises(FileRejected, match="not utf-8 text"):
        read_rows(path, SourceFormat("s"))


TIMESTAMP_SHAPES = [
    "2026-10-01T12:00:00Z", "2026-10-01T12:00:00z", "2026-10-01t12:00:00Z", "2026-10-01 12:00:00Z",
    "2026-10-01T12:00:00.5Z", "2026-10-01T12:00:00.123456789Z", "2026-10-01T12:00:00.Z", "2026-1-01T12:00:00Z",
    "2026-10-1T12:00:00Z", "2026-10-01T1:00:00Z", "2026-10-01T12:00:60Z", "2026-10-01T24:00:00Z",
    "2026-02-30T12:00:00Z", "+2026-10-01T12:00:00Z", "02026-10-01T12:00:00Z", "2026-10-01T12:00:00ZZ",
    " 2026-10-01T12:00:00Z", "2026-10-01T12:00:00Z ", "2026-10-01T12:00Z", "2026-10-01T12:00:00+00:00",
    "2026-10-01T12:00:00+0200", "2026-10-01T12:00:00-02", "20261001T120000Z", "2026-10-01T12:00:00,5Z",
    "2026-10-01T12:00:00GMT", "", "2026-10-01T12:00:00", "2026-10-01T12:0:00Z", "1969-12-31T23:59:59.5Z",
    "0001-01-01T00:00:00Z", "2026-10-01T12:00:00.000Z", None,
]


@pytest.mark.parametrize("first", ["2026-10-01T00:00:00Z", "2026-10-01T00:00:00.250Z"])
def test_the_fast_timestamp_format_gives_what_iso_8601_parsing_gives(first):
    """normalize_frame parses whole-second UTC timestamps with an exact format when the first rows have
    that shape (faster); every row, of any shape, must come out as the general "%+" parse says."""
    shapes = [first] * 150 + TIMESTAMP_SHAPES  # the first rows decide which parse is tried first
    source = SourceFormat("s", timezone="UTC", earliest_date=date(1, 1, 1))  # parsing only: no date is too early
    out = normalize_frame(rows(occurred_at=shapes), source)
    expected = pl.Series(shapes).str.strip_chars().str.to_datetime("%+", strict=False, time_zone="UTC")
    by_row = dict(zip(out.events["row_number"].to_list(), out.events["occurred_at"].to_list(), strict=True))
    for number, (text, instant) in enumerate(zip(shapes, expected.dt.cast_time_unit("us").to_list(), strict=True), 1):
        if instant is not None:
            assert by_row.get(number) == instant, text
    assert out.events.height + out.quarantine.height == len(shapes)


def test_spaces_around_values_give_the_same_events_and_reasons_as_without():
    """The fast test reads quantities and timestamps unstripped; values with spaces (or tabs) around
    them must still be typed from the stripped text, exactly as if sent without."""
    quantities = ["1.5", "2", "abc", "-3", "0.1234567891", "7", "8", "9"]
    times = ["2026-10-01T02:00:00+02:00", "2026-10-01T00:00:00Z", "2026-10-01T00:00:00Z", "2026-10-01T00:00:00Z",
             "2026-10-01T00:00:00Z", "2026-10-01 10:00:00", "yesterday", "2026-10-01T00:00:00.5Z"]
    source = SourceFormat("s")
    plain = normalize_frame(rows(quantity=quantities, occurred_at=times), source)
    for pad in (" {} ", "\t{}", "{}  ", " {}"):
        padded = normalize_frame(rows(quantity=[pad.format(q) for q in quantities],
                                      occurred_at=[pad.format(t) for t in times]), source)
        assert padded.events.equals(plain.events), pad
        assert padded.quarantine.select("row_number", "column_name").equals(
            plain.quarantine.select("row_number", "column_name")), pad
    assert plain.events["row_number"].to_list() == [1, 2, 8]
    assert plain.events["quantity"].to_list() == [Decimal("1.5"), Decimal("2"), Decimal("9")]
