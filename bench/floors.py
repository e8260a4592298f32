"""Floors: the least the bare work of each stage costs on this machine, with nothing of ours around it.

The end-to-end target of issue 12 is 1,000,000 events/s on 2 cores (10 s for 10 M events). These
figures say how much of those 10 s the tools alone take, measured on the files the benchmark just
collected:

- hash + copy + fsync: sha256 and a copy of every usage file, synced to disk (collect without the
  listing, the settling, the checks and the registration);
- Polars read + type: `normalize.rules.read_batches` + `normalize_frame` of every file (normalize
  without the dedup against history, the quarantine, the key table and the manifest);
- DuckDB INSERT: the typed events appended to an empty table shaped like raw.events, one
  transaction per file, nothing checked (the rest of normalize's writes);
- dbt import + startup: a new process importing dbt and running `dbt build` with the kept parse
  on a selection of no node (what every rating pays before its first query);
- the one query: placing the month's events on their local days and summing them
  (`int_usage_days_aggregated`, from the rate stage's run_results.json), the least any rating reads.

Their CPU seconds over 2 cores are a lower bound of the wall time of the whole run, however well
the work were spread over both cores; everything else the pipeline does (dedup, quarantine,
lineage, the 61 other dbt nodes, the checks, the ledger) comes on top.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .run import Figure, measure

# In a new process, as `billing run` reaches its rate stage: dbt's import (what the run imported before
# it is not counted), then a build that selects no node, with the kept parse (billing.rating), so neither
# parsing nor SQL is in the figure.
_DBT_FIXED = """
import sys, time
from billing import rating
from core.config import load_settings
from core.periods import month_window
import duckdb, polars  # what the run has imported by the rate stage: not dbt's cost
started = time.perf_counter()
import dbt.cli.main
imported = time.perf_counter()
rating.run_dbt(load_settings(), month_window(sys.argv[1]), "build", ["--select", "tag:no-node-has-this-tag"])
print(imported - started, time.perf_counter() - imported)
"""


def hash_copy_sync(paths: list[Path], scratch: Path) -> tuple[int, str]:
    """Each file kept in `scratch` as the landing zone keeps it (collectors.landing.store_stream: sha256 on
    the way, fsync), registering nothing; `scratch` is removed after."""
    from collectors.landing import store_stream

    size = 0
    try:
        for path in paths:
            with path.open("rb") as src:
                size += store_stream(scratch, src, original_name=path.name).size_bytes
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return size, f"{len(paths)} files, {size / 1e6:,.0f} MB"


HASH_FLOOR = "floor: hash + copy + fsync"


@dataclass
class _Spent:
    seconds: float = 0.0
    cpu: float = 0.0

    @contextlib.contextmanager
    def timing(self) -> Iterator[None]:
        began, cpu = time.perf_counter(), time.process_time()
        yield
        self.seconds += time.perf_counter() - began
        self.cpu += time.process_time() - cpu


def type_and_insert(paths: list[Path], database: Path) -> tuple[_Spent, _Spent, int]:
    """Each file typed by the normalize rules (the upload source's default format), then appended to an
    empty raw.events-shaped DuckDB table in one transaction (`Tx.insert_frame`, as normalize writes), nothing
    checked; the two timed apart, a file at a time (memory stays one file's)."""
    from datetime import UTC, datetime

    from core import events
    from formats import SourceFormat
    from normalize.rules import normalize_frame, read_batches
    from warehouse.store import Warehouse

    upload = SourceFormat("upload")
    typing, inserting, rows = _Spent(), _Spent(), 0
    warehouse = Warehouse(duckdb_path=database)
    try:
        with contextlib.ExitStack() as session:
            session.enter_context(warehouse.session())  # one connection, as a normalize run
            with warehouse.transaction() as tx:
                tx.execute(f"CREATE TABLE events ({events.sql_columns('duckdb')})")
            for i, path in enumerate(paths):
                with typing.timing():
                    batches = [normalize_frame(raw, upload).events.rechunk() for raw in read_batches(path, upload)]
                with inserting.timing(), warehouse.transaction() as tx:
                    constants = {"source": "upload", "file_id": f"{i:064d}", "loaded_at": datetime.now(UTC)}
                    rows += sum(tx.insert_frame("events", frame, constants) for frame in batches)
                del batches
            with inserting.timing():
                session.close()  # the session's one checkpoint, as at the end of a normalize run
    finally:
        database.unlink(missing_ok=True)
        database.with_suffix(".duckdb.wal").unlink(missing_ok=True)
    return typing, inserting, rows


def dbt_fixed_cost(env: dict[str, str], month: str) -> tuple[float, float]:
    """(import s, build-of-nothing s) in a new process."""
    done = subprocess.run([sys.executable, "-c", _DBT_FIXED, month], env=env, capture_output=True, text=True,
                          timeout=600, check=True)
    imported, startup = (float(x) for x in done.stdout.split()[-2:])
    return imported, startup


def node_seconds(run_results: Path, node: str) -> float | None:
    try:
        results = json.loads(run_results.read_text())["results"]
    except (OSError, ValueError, KeyError):
        return None
    return next((r["execution_time"] for r in results if r["unique_id"].endswith(f".{node}")), None)


def measure_floors(paths: list[Path], home: Path, env: dict[str, str], month: str, events: int,
                   query: float | None) -> list[Figure]:
    """The floors above, as benchmark rows: `paths` are the landed usage files, `env` a `billing` environment,
    `query` the seconds of int_usage_days_aggregated in the rate stage (`node_seconds`)."""
    figures = []
    with measure(HASH_FLOOR, events=events) as m:
        m.value = hash_copy_sync(paths, home / "floor-copies")[1]
    m.figure.note = m.value
    figures.append(m.figure)

    typing, inserting, inserted = type_and_insert(paths, home / "floor.duckdb")
    figures.append(Figure("floor: Polars read + type", typing.seconds, typing.cpu, events, None, None,
                          "normalize.rules on every file, nothing written"))
    figures.append(Figure("floor: DuckDB INSERT", inserting.seconds, inserting.cpu, events, None, None,
                          f"{inserted:,} typed events into an empty table, a transaction per file"))

    began = time.perf_counter()
    imported, startup = dbt_fixed_cost(env, month)
    seconds = time.perf_counter() - began
    # Its own process, single-threaded: its CPU is taken as its wall time (interpreter start excluded).
    figures.append(Figure("floor: dbt import + startup", imported + startup, imported + startup, None, None, None,
                          f"a new process: import {imported:.1f} s + a build of no node {startup:.1f} s "
                          f"(process {seconds:.1f} s in all)"))

    if query is not None:
        figures.append(Figure("floor: the one query", query, query, None, None, None,
                              "int_usage_days_aggregated in the rate stage: the month's events on their local "
                              "days, summed; its wall time counted as its CPU (DuckDB may use both cores)"))
    return figures


def bound(figures: list[Figure], events: int, cores: int, collect_cpu: float | None = None) -> str:
    """What the floors allow at best: their CPU spread perfectly over `cores`. The collect stage does
    the hash + copy + fsync floor's work and little else, so the lower of the two CPU figures counts
    (the floor, single-threaded after the other stages, can cost more than the stage did)."""
    cpu = sum(f.cpu_seconds if f.name != HASH_FLOOR or collect_cpu is None else min(f.cpu_seconds, collect_cpu)
              for f in figures)
    best = cpu / cores
    return (f"floors: {cpu:.1f} CPU s; spread perfectly over {cores} cores that is at least {best:.1f} s "
            f"for {events:,} events, at most {events / best:,.0f} events/s, before any of the pipeline's own "
            f"work (dedup, quarantine, the other dbt nodes, the checks, the ledger)")
