"""Files loaded in bounded batches land exactly as if loaded whole: every row in one place, the same
duplicates (in the file and against history), the same quarantine reasons, one transaction per file."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

import normalize.rules as rules
from collectors.landing import land_file
from formats import SourceFormat
from normalize.load import load_pending
from normalize.rules import read_batches, read_rows
from warehouse.store import Warehouse

HEADER = "event_id,customer_id,product_id,quantity,occurred_at\n"

# Loaded first, from another file: history for the file below.
HISTORY = [
    ("h1", "C1", "API", "1", "2026-10-01T00:00:00Z"),
    ("h2", "C1", "API", "2", "2026-10-01T00:00:00Z"),
]
# 14 rows; with batches of 3 every kind of repeat crosses a batch boundary.
ROWS = [
    ("e1", "C1", "API", "1", "2026-10-01T00:00:00Z"),  # 1
    ("h1", "C1", "API", "1", "2026-10-01T00:00:00Z"),  # 2 exact duplicate of history
    ("h2", "C1", "API", "9", "2026-10-01T00:00:00Z"),  # 3 conflicts with history
    ("e1", "C1", "API", "1", "2026-10-01T00:00:00Z"),  # 4 exact repeat of row 1 (earlier batch)
    ("e1", "C1", "API", "5", "2026-10-01T00:00:00Z"),  # 5 conflicting repeat of row 1 (earlier batch)
    ("h1", "C1", "API", "1", "2026-10-01T00:00:00Z"),  # 6 repeats row 2 (which repeated history)
    ("e2", "C1", "API", "abc", "2026-10-01T00:00:00Z"),  # 7 not a number
    ("e3", "C1", "API", "1", "2026-10-01 10:00:00"),  # 8 no time zone
    ("h2", "C1", "API", "9", "2026-10-01T00:00:00Z"),  # 9 exact repeat of row 3 (which conflicted with history)
    ("e4", "C1", "API", "2", "2026-10-02T00:00:00Z"),  # 10
    ("e4", "C1", "API", "2", "2026-10-02T00:00:00Z"),  # 11 exact repeat of row 10 (same batch)
    ("e4", "C1", "API", "3", "2026-10-02T00:00:00Z"),  # 12 conflicting repeat of row 10 (next batch)
    ("e5", "C2", "API", "-1", "2026-10-02T00:00:00Z"),  # 13 negative
    ("e6", "C2", "API", "7.5", "2026-10-03T00:00:00Z"),  # 14
]


def write_csv(path: Path, rows) -> Path:
    path.write_text(HEADER + "".join(",".join(r) + "\n" for r in rows))
    return path


def write_jsonl(path: Path, rows) -> Path:
    keys = HEADER.strip().split(",")
    path.write_text("".join(json.dumps(dict(zip(keys, r, strict=True))) + "\n" for r in rows))
    return path


def load(tmp_path: Path, name: str, suffix: str, batch_rows: int, monkeypatch) -> tuple[dict, dict]:
    """History file, then the test file, loaded with `batch_rows`; returns (file loads, raw tables)."""
    monkeypatch.setattr(rules, "BATCH_ROWS", batch_rows)
    folder = tmp_path / name
    folder.mkdir()
    warehouse = Warehouse(duckdb_path=folder / "w.duckdb")
    warehouse.ensure_schema()
    write = write_csv if suffix == ".csv" else write_jsonl
    history = write(folder / f"history{suffix}", HISTORY)
    usage = write(folder / f"usage{suffix}", ROWS)
    land_file(warehouse, folder / "landing", history, source="upload", collector="upload")
    loads = {r.original_name: r for r in load_pending(warehouse)}
    land_file(warehouse, folder / "landing", usage, source="upload", collector="upload")
    loads |= {r.original_name: r for r in load_pending(warehouse)}
    return loads, tables(warehouse, loads)


def tables(warehouse: Warehouse, loads) -> dict[str, list[tuple]]:
    names = {load.file_id: load.original_name for load in loads.values()}

    def name(file_id):
        return names.get(file_id, file_id)

    with warehouse.transaction() as tx:
        events = tx.fetchall("SELECT file_id, row_number, event_id, customer_id, product_id, quantity, occurred_at "
                             "FROM raw.events ORDER BY 1, 2")
        duplicates = tx.fetchall("SELECT file_id, row_number, event_id, duplicate_of_file_id, "
                                 "duplicate_of_row_number FROM raw.duplicates ORDER BY 1, 2")
        quarantine = tx.fetchall("SELECT file_id, row_number, column_name, reason, raw_row FROM raw.quarantine "
                                 "ORDER BY 1, 2")
    return {
        "events": [(name(f), *rest) for f, *rest in events],
        "duplicates": [(name(f), r, e, name(d), dr) for f, r, e, d, dr in duplicates],
        "quarantine": [(name(f), *rest) for f, *rest in quarantine],
    }


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_file_in_batches_lands_exactly_as_in_one_batch(tmp_path, monkeypatch, suffix):
    whole_loads, whole = load(tmp_path, "whole", suffix, 1000, monkeypatch)
    batched_loads, batched = load(tmp_path, "batched", suffix, 3, monkeypatch)
    assert batched == whole
    name = f"usage{suffix}"
    got = batched_loads[name]
    assert got.status == "loaded"
    assert got.rows_received == len(ROWS) == got.rows_loaded + got.rows_quarantined + got.rows_duplicate
    for load_ in (got, whole_loads[name]):
        assert (load_.rows_loaded, load_.rows_quarantined, load_.rows_duplicate) == (3, 6, 5)

    # Where each row went, with the row it repeats: the same as a one-batch load gives.
    assert [e[1] for e in batched["events"] if e[0] == name] == [1, 10, 14]  # plus history's two
    duplicates = {(r, e, d, dr) for f, r, e, d, dr in batched["duplicates"]}
    assert duplicates == {
        (2, "h1", f"history{suffix}", 1),  # history
        (4, "e1", name, 1),  # row 1, loaded in an earlier batch
        (6, "h1", name, 2),  # row 2 of this file, even though row 2 itself repeated history
        (9, "h2", name, 3),
        (11, "e4", name, 10),
    }
    reasons = {r: (c, why) for f, r, c, why, raw in batched["quarantine"]}
    assert set(reasons) == {3, 5, 7, 8, 12, 13}
    assert "already loaded from file" in reasons[3][1] and reasons[3][0] == "event_id"
    assert "repeats row 1 of this file" in reasons[5][1]
    assert "'abc' is not a decimal number" in reasons[7][1] and reasons[7][0] == "quantity"
    assert "has no time zone" in reasons[8][1] and reasons[8][0] == "occurred_at"
    assert "repeats row 10 of this file" in reasons[12][1]
    assert "is negative" in reasons[13][1]
    raw = {r: raw for f, r, c, why, raw in batched["quarantine"]}
    assert json.loads(raw[7])["quantity"] == "abc"


def test_read_batches_number_rows_across_blocks_and_streams(tmp_path, monkeypatch):
    rows = [(f"e{i}", "C1", "API", str(i), "2026-10-01T00:00:00Z") for i in range(1, 101)]
    csv = write_csv(tmp_path / "u.csv", rows)
    jsonl = write_jsonl(tmp_path / "u.jsonl", rows)
    monkeypatch.setattr(rules, "WHOLE_FILE_BYTES", 0)  # stream the CSV file
    monkeypatch.setattr(rules, "JSONL_BLOCK_BYTES", 500)  # a few lines per block
    for path in (csv, jsonl):
        whole = read_rows(path, SourceFormat("s"))
        batches = list(read_batches(path, SourceFormat("s"), batch_rows=7))
        assert max(b.height for b in batches) == 7 and len(batches) == 15
        assert pl.concat(batches).equals(whole), path.name
        assert whole["row_number"].to_list() == list(range(1, 101))


def test_read_batches_of_an_empty_file_yield_one_empty_frame(tmp_path):
    for name, text in (("e.csv", ""), ("h.csv", HEADER), ("e.jsonl", "\n")):
        (tmp_path / name).write_text(text)
        batches = list(read_batches(tmp_path / name, SourceFormat("s")))
        assert len(batches) == 1 and batches[0].height == 0


def test_a_file_rejected_in_a_late_batch_leaves_nothing_behind(tmp_path, monkeypatch):
    monkeypatch.setattr(rules, "BATCH_ROWS", 2)
    monkeypatch.setattr(rules, "JSONL_BLOCK_BYTES", 200)
    warehouse = Warehouse(duckdb_path=tmp_path / "w.duckdb")
    warehouse.ensure_schema()
    good = write_jsonl(tmp_path / "u.jsonl", ROWS[:6])
    good.write_bytes(good.read_bytes() + b'{"event_id":"x","customer_id":"Caf\xe9"}\n')  # not UTF-8, at the end
    land_file(warehouse, tmp_path / "landing", good, source="upload", collector="upload")
    [result] = load_pending(warehouse)
    assert result.status == "rejected" and "not utf-8" in result.error
    with warehouse.transaction() as tx:
        for table in ("events", "duplicates", "quarantine"):
            assert tx.fetchall(f"SELECT count(*) FROM raw.{table}") == [(0,)], table
        assert tx.fetchall("SELECT status FROM raw.landed_files") == [("rejected",)]


def test_quantities_and_times_stay_exact_through_batches(tmp_path, monkeypatch):
    monkeypatch.setattr(rules, "BATCH_ROWS", 2)
    warehouse = Warehouse(duckdb_path=tmp_path / "w.duckdb")
    warehouse.ensure_schema()
    rows = [("a", "C1", "API", "0.000000001", "2026-10-01T02:00:00+02:00"),
            ("b", "C1", "API", "9999999999.999999999", "2026-10-01T00:00:00Z"),
            ("c", "C1", "API", "0.1", "2026-10-01T00:00:00.5Z")]
    land_file(warehouse, tmp_path / "landing", write_csv(tmp_path / "u.csv", rows), source="upload",
              collector="upload")
    list(load_pending(warehouse, {"upload": SourceFormat("upload")}))
    with warehouse.transaction() as tx:
        got = tx.fetchall("SELECT event_id, quantity, occurred_at FROM raw.events ORDER BY event_id")
    assert [(e, q) for e, q, _ in got] == [("a", Decimal("0.000000001")),
                                          ("b", Decimal("9999999999.999999999")), ("c", Decimal("0.1"))]
    assert got[0][2] == datetime(2026, 10, 1, tzinfo=UTC)
    assert got[2][2] == datetime(2026, 10, 1, 0, 0, 0, 500000, tzinfo=UTC)


def test_prefetch_hands_batches_over_in_order_and_skips_what_a_load_left(tmp_path, monkeypatch):
    from normalize.load import _Prefetch

    monkeypatch.setattr(rules, "BATCH_ROWS", 4)
    a = write_csv(tmp_path / "a.csv", ROWS)  # 14 rows: 4 batches
    b = write_csv(tmp_path / "b.csv", HISTORY)
    bad = tmp_path / "bad.csv"
    bad.write_text("only,two\n1,2\n")
    source = SourceFormat("s")
    with _Prefetch([("a", a, source, None), ("bad", bad, source, None), ("b", b, source, None)]) as prefetch:
        first = next(prefetch.batches("a"))
        assert first.normalized.rows_received == 4
        prefetch.skip("a")  # a load that stopped after one batch (e.g. the file was loaded meanwhile)
        with pytest.raises(rules.FileRejected, match="not found"):
            list(prefetch.batches("bad"))
        prefetch.skip("bad")
        [only] = list(prefetch.batches("b"))
        assert only.normalized.events["event_id"].to_list() == ["h1", "h2"]
    with _Prefetch([("a", a, source, None)]) as prefetch:  # leaving early stops the worker
        next(prefetch.batches("a"))
    with _Prefetch([]):
        pass


def _load_file(warehouse: Warehouse, folder: Path, name: str, rows) -> dict:
    land_file(warehouse, folder / "landing", write_csv(folder / name, rows), source="upload", collector="upload")
    return {r.original_name: r for r in load_pending(warehouse)}


def _counts(warehouse: Warehouse) -> tuple[int, int]:
    with warehouse.transaction() as tx:
        return tx.fetchall("SELECT (SELECT count(*) FROM raw.events), (SELECT count(*) FROM raw.event_keys)")[0]


def test_event_keys_follow_the_events_and_history_is_found_however_they_drifted(tmp_path):
    """raw.event_keys (DuckDB) is only a hint for the history lookup: events written or deleted outside
    normalization, a warehouse without the table, or keys from another hash function are noticed and
    the keys rebuilt, so no repeat is missed and no new event is taken for a repeat."""
    warehouse = Warehouse(duckdb_path=tmp_path / "w.duckdb")
    warehouse.ensure_schema()
    _load_file(warehouse, tmp_path, "h.csv", HISTORY)
    assert _counts(warehouse) == (2, 2)

    # An event written by hand, without a key: a file repeating it still finds it in history.
    with warehouse.transaction() as tx:
        tx.execute("INSERT INTO raw.events VALUES ('upload', 'm1', 'C1', 'API', 4, '2026-10-01 00:00:00+00', "
                   "'manual', 1, now())")
    loads = _load_file(warehouse, tmp_path, "a.csv", [("m1", "C1", "API", "4", "2026-10-01T00:00:00Z"),
                                                        ("a1", "C1", "API", "1", "2026-10-01T00:00:00Z")])
    assert (loads["a.csv"].rows_loaded, loads["a.csv"].rows_duplicate) == (1, 1)
    assert _counts(warehouse) == (4, 4)

    # Events deleted by hand: sent again, they are new events, not repeats of a stale key.
    with warehouse.transaction() as tx:
        tx.execute("DELETE FROM raw.events WHERE event_id = 'a1'")
    loads = _load_file(warehouse, tmp_path, "b.csv", [("a1", "C1", "API", "1", "2026-10-01T00:00:00Z"),
                                                        ("b1", "C1", "API", "1", "2026-10-01T00:00:00Z")])
    assert (loads["b.csv"].rows_loaded, loads["b.csv"].rows_duplicate) == (2, 0)
    assert _counts(warehouse) == (5, 5)

    # Keys computed by some other hash (another DuckDB version): rebuilt, repeats still found.
    with warehouse.transaction() as tx:
        tx.execute("UPDATE raw.event_keys SET key_hash = key_hash // 2")
    loads = _load_file(warehouse, tmp_path, "c.csv", [("h1", "C1", "API", "1", "2026-10-01T00:00:00Z"),
                                                        ("h2", "C1", "API", "7", "2026-10-01T00:00:00Z"),
                                                        ("c1", "C1", "API", "1", "2026-10-01T00:00:00Z")])
    assert (loads["c.csv"].rows_loaded, loads["c.csv"].rows_duplicate, loads["c.csv"].rows_quarantined) == (1, 1, 1)

    # A warehouse from before the key table: created and filled on the next load.
    with warehouse.transaction() as tx:
        tx.execute("DROP TABLE raw.event_keys")
    loads = _load_file(warehouse, tmp_path, "d.csv", [("b1", "C1", "API", "1", "2026-10-01T00:00:00Z"),
                                                        ("d1", "C1", "API", "1", "2026-10-01T00:00:00Z")])
    assert (loads["d.csv"].rows_loaded, loads["d.csv"].rows_duplicate) == (1, 1)
    with warehouse.transaction() as tx:
        assert _counts(warehouse) == (7, 7)
        missing = tx.fetchall("SELECT count(*) FROM raw.events e WHERE hash(e.source, e.event_id) NOT IN "
                              "(SELECT key_hash FROM raw.event_keys)")
    assert missing == [(0,)]


def test_a_rolled_back_file_leaves_no_keys(tmp_path, monkeypatch):
    monkeypatch.setattr(rules, "BATCH_ROWS", 2)
    monkeypatch.setattr(rules, "JSONL_BLOCK_BYTES", 200)  # the first batches are written before the bad line is read
    warehouse = Warehouse(duckdb_path=tmp_path / "w.duckdb")
    warehouse.ensure_schema()
    bad = write_jsonl(tmp_path / "u.jsonl", ROWS[:6])
    bad.write_bytes(bad.read_bytes() + b'{"event_id":"x","customer_id":"Caf\xe9"}\n')  # not UTF-8, at the end
    land_file(warehouse, tmp_path / "landing", bad, source="upload", collector="upload")
    [result] = load_pending(warehouse)
    assert result.status == "rejected"
    assert _counts(warehouse) == (0, 0)
