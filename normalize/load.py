"""Load landed files into the warehouse: events, quarantine and duplicates, one transaction per file.

Per file, rows received = events loaded + rows quarantined + duplicates, and the manifest row
records all four. Dedup is by (source, event_id) against all history, not a window: the same id
with the same payload is a duplicate (logged with the event it repeats); with a different
payload it is quarantined as a conflicting duplicate.

A file is read and written in batches of at most `rules.BATCH_ROWS` rows, so memory does not
grow with the file; all batches of a file are written inside the file's one transaction, and the
manifest row is updated in that same transaction, so a file lands whole or not at all. A repeat
of an event id seen in an earlier batch of the same file is an in-file repeat, exactly as if the
file had been one batch: it points at the first row of the file with that id.
"""

from __future__ import annotations

import contextlib
import queue
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from core import events as events_contract
from formats import SourceFormat
from warehouse.schema import EVENT_KEY, EVENT_KEYS
from warehouse.store import RAW_SCHEMA, Tx, Warehouse, sync_event_keys

from .rules import FileRejected, Normalized, normalize_frame, read_batches, split_in_file_duplicates

PAYLOAD = events_contract.PAYLOAD  # what makes a repeat the same event (core/events.py)
# In the reason of every conflicting duplicate (quarantined): quality.checks tells them from other quarantined rows by it.
CONFLICT_MARK = "with a different customer, product, quantity or time"
UPLOAD = SourceFormat("upload")  # the always-present upload source reads with the default format
PREFETCH = True  # prepare the next batch in a background thread while this one is written


@dataclass(frozen=True)
class FileLoad:
    file_id: str
    original_name: str
    source: str
    status: str  # loaded | rejected
    rows_received: int
    rows_loaded: int
    rows_quarantined: int
    rows_duplicate: int
    error: str | None = None


def pending(warehouse: Warehouse) -> list[tuple[str, str, str, str, datetime]]:
    with warehouse.transaction() as tx:
        return tx.fetchall(
            f"SELECT file_id, source, original_name, landing_path, received_at FROM {RAW_SCHEMA}.landed_files "
            "WHERE status = 'landed' ORDER BY received_at, file_id"
        )


def load_pending(warehouse: Warehouse, sources: Mapping[str, SourceFormat] | None = None,
                 on_file: Callable[[FileLoad], None] | None = None) -> Iterator[FileLoad]:
    """Normalize and load every landed file not loaded yet, in the order received.

    One warehouse connection serves all the files (each still its own transaction): opening and
    closing a DuckDB file per file cost more than loading a small file. A background thread reads
    and types the next batch (pure Polars, no warehouse access) while this thread writes the
    current one, so parsing and the warehouse's writes overlap.
    """
    sources = dict(sources or {})
    sources.setdefault(UPLOAD.name, UPLOAD)
    with warehouse.session():
        todo = pending(warehouse)
        readable = [(file_id, Path(landing_path), sources[source_name], received_at)
                    for file_id, source_name, _, landing_path, received_at in todo if source_name in sources]
        keys_checked = False  # raw.event_keys' hash checked by a load committed in this session
        with _Prefetch(readable if PREFETCH else []) as prefetch:
            for file_id, source_name, original_name, landing_path, received_at in todo:
                source = sources.get(source_name)
                if source is None:
                    result = _reject(warehouse, file_id, original_name, source_name,
                                     f"no source named '{source_name}' is configured; add it to the sources file")
                else:
                    result = load_file(warehouse, file_id, Path(landing_path), original_name, source,
                                       received_at=received_at, check_key_hash=not keys_checked,
                                       prepared=prefetch.batches(file_id) if PREFETCH else None)
                    keys_checked = keys_checked or result.status == "loaded"
                    if PREFETCH:
                        prefetch.skip(file_id)  # whatever the load did not consume (already loaded, rejected)
                if on_file:
                    on_file(result)
                yield result


@dataclass
class _Prepared:
    """One batch, typed and split (Polars only): what `load_batch` writes."""

    normalized: Normalized
    split: tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]  # split_in_file_duplicates of its events


def _prepare(rows: pl.DataFrame, source: SourceFormat, received_at: datetime | None) -> _Prepared:
    normalized = normalize_frame(rows, source, received_at=received_at)
    # One chunk per column (normalize_frame's events usually are), made here in the thread that
    # prepares batches: the writing thread hands the events to DuckDB as Arrow, and a frame whose
    # columns are chunked apart would be copied into one there, on the critical path.
    normalized.events = normalized.events.rechunk()
    return _Prepared(normalized, split_in_file_duplicates(normalized.events, source.name))


def _prepare_file(path: Path, source: SourceFormat, received_at: datetime | None,
                  batch_rows: int | None = None) -> Iterator[_Prepared]:
    """The batches of a file, typed; `received_at` (the file's landing time) bounds its event times."""
    for rows in read_batches(path, source, batch_rows=batch_rows):
        prepared = _prepare(rows, source, received_at)
        del rows  # not held while the prepared batch waits to be written
        yield prepared


class _Prefetch:
    """Prepares the batches of `files`, in order, in a background thread, at most `depth` ahead."""

    def __init__(self, files: list[tuple[str, Path, SourceFormat, datetime | None]], depth: int = 1):
        self._files = files
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="normalize-prefetch", daemon=True)
        self._done: set[str] = set()

    def __enter__(self) -> _Prefetch:
        if self._files:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.ident is None:  # never started: nothing to prepare
            return
        while self._thread.is_alive():  # unblock a worker waiting on a full queue
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.05)
        self._thread.join()

    def _put(self, item: tuple) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        for file_id, path, source, received_at in self._files:
            try:
                for prepared in _prepare_file(path, source, received_at):
                    if not self._put(("batch", file_id, prepared)):
                        return
                    del prepared
                item = ("end", file_id, None)
            except BaseException as exc:  # handed to the loading thread, raised there
                item = ("error", file_id, exc)
            if not self._put(item):
                return

    def batches(self, file_id: str) -> Iterator[_Prepared]:
        """The prepared batches of `file_id` (the next file in order); raises what preparing raised."""
        while file_id not in self._done:
            kind, got, item = self._queue.get()
            assert got == file_id, f"prefetch out of order: expected {file_id}, got {got}"
            if kind != "batch":
                self._done.add(file_id)
                if kind == "error":
                    raise item
                return
            yield item

    def skip(self, file_id: str) -> None:
        """Drop what is left of `file_id`'s batches (a load that stopped early)."""
        with contextlib.suppress(BaseException):
            for _ in self.batches(file_id):
                pass


class _AlreadyLoaded(Exception):
    def __init__(self, status: str):
        self.status = status


def load_file(warehouse: Warehouse, file_id: str, path: Path, original_name: str, source: SourceFormat,
              *, received_at: datetime | None = None, batch_rows: int | None = None,
              prepared: Iterator[_Prepared] | None = None, check_key_hash: bool = True) -> FileLoad:
    """Load one landed file in one transaction; `prepared` are its batches if already typed.

    `received_at` is the file's landing time (`raw.landed_files.received_at`): events dated more
    than the source's future margin after it are quarantined (None: now). `check_key_hash=False`:
    an earlier load of this session committed, so DuckDB's hash of the stored keys was checked
    (`sync_event_keys`; at 10 M events the check scans every key, per file)."""
    now = datetime.now(UTC)
    try:
        with warehouse.transaction() as tx:
            # Idempotence guard: another run may have loaded this file since we listed it.
            status = tx.fetchall(f"SELECT status FROM {RAW_SCHEMA}.landed_files WHERE file_id = ?", [file_id])
            if status and status[0][0] != "landed":
                raise _AlreadyLoaded(status[0][0])
            sync_event_keys(tx, check_hash=check_key_hash)  # the history lookup relies on raw.event_keys (DuckDB)
            counts = _FileCounts()
            loader = _FileLoader(tx, file_id, source, now)
            for batch in prepared if prepared is not None else _prepare_file(path, source, received_at, batch_rows):
                counts.add(loader.load_batch(batch))
            result = FileLoad(file_id, original_name, source.name, "loaded", counts.received, counts.loaded,
                              counts.quarantined, counts.duplicates)
            tx.execute(
                f"UPDATE {RAW_SCHEMA}.landed_files SET status = 'loaded', rows_received = ?, rows_loaded = ?,"
                " rows_quarantined = ?, rows_duplicate = ?, loaded_at = ? WHERE file_id = ?",
                [counts.received, counts.loaded, counts.quarantined, counts.duplicates, now, file_id],
            )
    except _AlreadyLoaded as already:  # nothing was written: the transaction rolled back
        return FileLoad(file_id, original_name, source.name, already.status, 0, 0, 0, 0, "already loaded")
    except FileRejected as exc:  # whatever batches were written are rolled back with the transaction
        return _reject(warehouse, file_id, original_name, source.name, _named(str(exc), file_id, original_name))
    except Exception as exc:  # one file must not stop the others, nor every later run
        # Rolled back like a rejection; left `landed`, it would fail the same way in every run after this one.
        return _reject(warehouse, file_id, original_name, source.name, _named(
            f"could not be loaded ({type(exc).__name__}: {exc}); nothing of it is stored", file_id, original_name))
    return result


def _named(message: str, file_id: str, original_name: str) -> str:
    """A reason naming the file as it was delivered, not as it is kept (`<sha256>.csv` in the landing zone)."""
    return re.sub(re.escape(file_id) + r"[\w.]*", lambda _: original_name, message)


@dataclass
class _FileCounts:
    received: int = 0
    loaded: int = 0
    quarantined: int = 0
    duplicates: int = 0

    def add(self, other: _FileCounts) -> None:
        self.received += other.received
        self.loaded += other.loaded
        self.quarantined += other.quarantined
        self.duplicates += other.duplicates


class _FileLoader:
    """Writes one file's batches inside its transaction and remembers what later batches need."""

    def __init__(self, tx: Tx, file_id: str, source: SourceFormat, now: datetime):
        self.tx, self.file_id, self.source, self.now = tx, file_id, source, now
        self.batches = 0
        # First occurrences in this file that were not loaded because history already had their id
        # (exact duplicates or conflicts): a later batch repeating that id repeats this row. Loaded
        # first occurrences need no memory: they are in raw.events with this file's id.
        self.unloaded_firsts = pl.DataFrame(schema={"event_id": pl.String, "duplicate_of_row_number": pl.Int64,
                                                    **{f"_{c}": t for c, t in _payload_schema().items()}})

    def load_batch(self, batch: _Prepared) -> _FileCounts:
        normalized = batch.normalized
        events = normalized.events
        counts = _FileCounts(received=normalized.rows_received)
        seen = _in_history(self.tx, events, self.source.name)  # every row of the batch whose id is stored
        earlier = _EMPTY_SEEN.select(*_EARLIER)
        if self.batches and events.height:
            earlier = self._earlier_in_file(events, seen)
        self.batches += 1
        if earlier.height:  # repeats of earlier batches are settled; split what is left again
            events = events.join(earlier.select("row_number"), on="row_number", how="anti")
            first, repeats, conflicting = split_in_file_duplicates(events, self.source.name)
        else:
            first, repeats, conflicting = batch.split
        stored_elsewhere = seen.filter(pl.col("duplicate_of_file_id") != self.file_id).drop("event_id")
        if stored_elsewhere.height == 0:  # the usual case: every first occurrence is new
            history = first.clear().join(stored_elsewhere, on="row_number")
            new = first
        else:
            history = first.join(stored_elsewhere, on="row_number")
            new = first.join(history.select("row_number"), on="row_number", how="anti")
        history_dups = history.filter(pl.col("is_same") == 1)
        history_conflicts = history.filter(pl.col("is_same") == 0)
        if history.height:
            self.unloaded_firsts = pl.concat([self.unloaded_firsts, history.select(
                "event_id", pl.col("row_number").alias("duplicate_of_row_number"),
                *[pl.col(c).alias(f"_{c}") for c in PAYLOAD])])

        tag = {"file_id": self.file_id, "source": self.source.name}
        columns = ["event_id", *PAYLOAD, "row_number"]
        if new.height and new.height == normalized.events.height:  # all new: insert what _in_history registered
            self.tx.insert_registered(f"{RAW_SCHEMA}.events", _INCOMING, columns, {**tag, "loaded_at": self.now})
            _insert_keys(self.tx, _INCOMING, self.source.name)
            counts.loaded = new.height
        else:
            counts.loaded = self.tx.insert_frame(f"{RAW_SCHEMA}.events", new.select(*columns),
                                                 constants={**tag, "loaded_at": self.now})
            if counts.loaded and self.tx.dialect == "duckdb":
                self.tx.register(_NEW_IDS, new.select("event_id"))
                try:
                    _insert_keys(self.tx, _NEW_IDS, self.source.name)
                finally:
                    self.tx.unregister(_NEW_IDS)
        if normalized.events.height:
            self.tx.unregister(_INCOMING)
        in_file_key = ["row_number", "event_id", "duplicate_of_row_number"]
        duplicates = pl.concat([
            pl.concat([earlier.filter(pl.col("is_same") == 1).select(*in_file_key), repeats.select(*in_file_key)])
            .with_columns(duplicate_of_file_id=pl.lit(self.file_id)),
            history_dups.select(*in_file_key, "duplicate_of_file_id"),
        ]).select("row_number", "event_id", "duplicate_of_file_id", "duplicate_of_row_number")
        counts.duplicates = self.tx.insert_frame(f"{RAW_SCHEMA}.duplicates", duplicates,
                                                 constants={**tag, "recorded_at": self.now})
        in_file_conflicts = pl.concat([earlier.filter(pl.col("is_same") == 0).select(*in_file_key),
                                       conflicting.select(*in_file_key)])
        conflict_rows = pl.concat([
            in_file_conflicts.select("row_number", pl.format(
                "event_id '{}' repeats row {} of this file " + CONFLICT_MARK + "; "
                "fix the source so each event id has one payload", "event_id", "duplicate_of_row_number"
            ).alias("reason")),
            history_conflicts.select("row_number", pl.format(
                "event_id '{}' was already loaded from file {} row {} " + CONFLICT_MARK + "; "
                "fix the source so each event id has one payload",
                "event_id", "duplicate_of_file_id", "duplicate_of_row_number").alias("reason")),
        ])
        quarantine = pl.concat([
            normalized.quarantine,
            conflict_rows.with_columns(column_name=pl.lit(self.source.column("event_id")),
                                       raw_row=pl.lit(None, dtype=pl.String)).select(normalized.quarantine.columns),
        ])
        counts.quarantined = self.tx.insert_frame(f"{RAW_SCHEMA}.quarantine", quarantine,
                                                  constants={**tag, "quarantined_at": self.now})
        assert counts.received == counts.loaded + counts.quarantined + counts.duplicates, "a row went missing"
        return counts

    def _earlier_in_file(self, events: pl.DataFrame, seen: pl.DataFrame) -> pl.DataFrame:
        """Rows repeating an id first seen in an earlier batch of this file: (row_number, event_id,
        duplicate_of_row_number, is_same), is_same comparing the payload with that first row."""
        loaded = seen.filter(pl.col("duplicate_of_file_id") == self.file_id).select(*_EARLIER)
        if self.unloaded_firsts.height == 0:
            return loaded
        same = pl.all_horizontal([pl.col(c) == pl.col(f"_{c}") for c in PAYLOAD])
        unloaded = events.join(self.unloaded_firsts, on="event_id").select(
            "row_number", "event_id", "duplicate_of_row_number", same.cast(pl.Int32).alias("is_same"))
        return pl.concat([loaded, unloaded], how="vertical_relaxed")


def _payload_schema() -> dict[str, pl.DataType]:
    return events_contract.polars_schema(PAYLOAD)


_EMPTY_SEEN = pl.DataFrame(schema={"row_number": pl.Int64, "event_id": pl.String, "duplicate_of_file_id": pl.String,
                                   "duplicate_of_row_number": pl.Int64, "is_same": pl.Int32})
_EARLIER = ["row_number", "event_id", "duplicate_of_row_number", "is_same"]
_INCOMING = "_incoming_events"  # the batch's events, registered in the transaction by _in_history
_NEW_IDS = "_new_event_ids"  # the ids of the events loaded from a batch that was not all new


def _insert_keys(tx: Tx, registered: str, source: str) -> None:
    """Add the keys of the events just inserted from `registered` to raw.event_keys (DuckDB only;
    same transaction, so the keys and the events land together)."""
    if tx.dialect == "duckdb":
        tx.execute(f"INSERT INTO {RAW_SCHEMA}.{EVENT_KEYS} SELECT {EVENT_KEY.format(source='?', event_id='event_id')} "
                   f"FROM {registered}", [source])


def _in_history(tx: Tx, events: pl.DataFrame, source: str) -> pl.DataFrame:
    """For each row of `events` whose (source, event_id) is already in raw.events (history, or an
    earlier batch of this file): the stored row and whether the payload is the same (1) or not (0).

    The warehouse only finds the stored rows whose id is in the batch (a semi join returning the few
    matches); the payloads are compared here. On DuckDB the batch's keys are looked up in
    raw.event_keys first (a scan of 8 bytes per stored event): when none is there, which is the
    usual case, no stored event id is read at all; when some are, the ids are compared exactly.
    """
    if events.height == 0:
        return _EMPTY_SEEN
    tx.register(_INCOMING, events.select("row_number", "event_id", *PAYLOAD))  # the caller unregisters it
    if tx.dialect == "duckdb":
        known = tx.fetchall(
            f"SELECT count(*) FROM {RAW_SCHEMA}.{EVENT_KEYS} WHERE key_hash IN "
            f"(SELECT {EVENT_KEY.format(source='?', event_id='event_id')} FROM {_INCOMING})", [source])[0][0]
        if not known:
            return _EMPTY_SEEN
    ids_in_batch = (f"SEMI JOIN {_INCOMING} i ON e.event_id = i.event_id WHERE e.source = ?" if tx.dialect == "duckdb"
                    else f"WHERE e.source = ? AND EXISTS (SELECT 1 FROM {_INCOMING} i WHERE i.event_id = e.event_id)")
    stored = tx.frame(
        f"SELECT e.event_id, e.file_id AS duplicate_of_file_id, e.row_number AS duplicate_of_row_number, "
        f"{', '.join(f'e.{c} AS _{c}' for c in PAYLOAD)} FROM {RAW_SCHEMA}.events e {ids_in_batch}",
        [source],
    )
    if stored.height == 0:
        return _EMPTY_SEEN
    stored = stored.with_columns(pl.col("_occurred_at").dt.convert_time_zone("UTC"),  # DuckDB says Etc/UTC
                                 pl.col("_quantity").cast(pl.Decimal(38, 9)))
    same = pl.all_horizontal([pl.col(c) == pl.col(f"_{c}") for c in PAYLOAD])
    return events.join(stored, on="event_id").select(
        "row_number", "event_id", pl.col("duplicate_of_file_id").cast(pl.String),
        pl.col("duplicate_of_row_number").cast(pl.Int64), same.cast(pl.Int32).alias("is_same"))


REASON_CHARS = 2_000  # of a rejection's reason (an error may quote a whole row)


def _reject(warehouse: Warehouse, file_id: str, original_name: str, source: str, error: str) -> FileLoad:
    error = error.replace("\x00", "<NUL>")  # PostgreSQL cannot store a NUL in text
    if len(error) > REASON_CHARS:
        error = f"{error[:REASON_CHARS]}... ({len(error) - REASON_CHARS:,} more characters)"
    with warehouse.transaction() as tx:
        tx.execute(f"UPDATE {RAW_SCHEMA}.landed_files SET status = 'rejected', error = ?, loaded_at = ?"
                   " WHERE file_id = ?", [error, datetime.now(UTC), file_id])
    return FileLoad(file_id, original_name, source, "rejected", 0, 0, 0, 0, error)
