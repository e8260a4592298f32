"""Benchmark the billing pipeline: wall time, events per second and peak memory (RSS) per stage.

    python -m bench.run [--events 1000000] [--customers 240] [--formats mixed|csv|jsonl] [--keep]
                        [--engines duckdb|duckdb,spark]
    (or: EVENTS=... ENGINES=duckdb,spark make bench)

1. Generates the demo dataset (`demo.dataset.generate_demo`, defects planted) into a fresh temporary
   folder; timed on its own, it is not a pipeline stage. `--formats csv` makes every usage file CSV
   (the default `mixed` alternates CSV and JSON lines, as the demo does).
2. Runs the stages in this process through `billing.runner`, exactly as `billing run` does:
   catalog (prepare + load_catalog_stage), collect, normalize, rate (dbt build) for the demo's last
   month, check. Settings come from `core.config.load_settings` with BILLING_HOME = the folder.
   Then, not a stage: the independent re-rater reading raw.events (`quality.rerate.rerate_warehouse`).
   With `--engines duckdb,spark`, the same month is rated again on Spark (local mode, in this process:
   `billing.rating.run_on_spark`), twice: the first run starts Spark, the second finds it running.
   Each prints its steps (Parquet export, staging views, dbt on Spark, copy back, dbt tests).
3. Floors (bench/floors.py): each stage's bare work on the same files, with nothing of ours around
   it, and the best events/s their CPU allows on this machine's cores.
4. Compares CSV parsing + typing only: our `read_rows` + `normalize_frame` against a typical pandas
   script, on the same CSV usage files.

Peak RSS per stage: the kernel's high-water mark (VmHWM) reset before each stage through
/proc/self/clear_refs; where that is refused, a background thread samples VmRSS every 20 ms.
dbt writes its target/ and logs/ inside the temporary folder, never into dbt_project/.
Nothing outside the temporary folder is written; it is deleted at the end unless --keep.
See docs/benchmark.md for what each figure means.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from warehouse.store import open_warehouse

# Wide enough for the tables when the output goes to a file or a pipe (rich would use 80 columns).
console = Console(highlight=False, width=None if sys.stdout.isatty() else 150)

SAMPLE_SECONDS = 0.02
_STATUS = Path("/proc/self/status")


# --------------------------------------------------------------------------------------------------
# memory


def _status_kib(key: str) -> int | None:
    """A `kB` field of /proc/self/status (VmRSS, VmHWM), or None where there is no /proc."""
    try:
        text = _STATUS.read_text()
    except OSError:
        return None
    match = re.search(rf"^{key}:\s+(\d+)\s+kB", text, re.M)
    return int(match.group(1)) if match else None


def _reset_hwm() -> bool:
    """Reset the kernel's peak-RSS mark for this process (Linux >= 4.0); False if refused."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


def _probe_hwm_reset() -> bool:
    """Does resetting VmHWM work here (a reset must bring it back down to the current RSS)?"""
    if _status_kib("VmHWM") is None:
        return False
    ballast = bytearray(64 << 20)  # make the mark visibly higher than the current RSS
    ballast[:: 4096] = b"x" * len(ballast[:: 4096])
    del ballast
    gc.collect()
    if not _reset_hwm():
        return False
    hwm, rss = _status_kib("VmHWM"), _status_kib("VmRSS")
    return hwm is not None and rss is not None and hwm < rss + (32 << 10)


class PeakRss:
    """Peak resident memory of this process while the `with` block runs, in KiB (None if unknown)."""

    use_hwm: bool | None = None  # decided once per process by _probe_hwm_reset

    def __init__(self) -> None:
        if PeakRss.use_hwm is None:
            PeakRss.use_hwm = _probe_hwm_reset()
        self.start_kib: int | None = None
        self.peak_kib: int | None = None
        self.end_kib: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sampled = 0

    @staticmethod
    def method() -> str:
        if PeakRss.use_hwm is None:
            PeakRss.use_hwm = _probe_hwm_reset()
        if PeakRss.use_hwm:
            return "VmHWM, reset before each stage via /proc/self/clear_refs"
        if _status_kib("VmRSS") is not None:
            return f"VmRSS sampled every {SAMPLE_SECONDS * 1000:.0f} ms (spikes shorter than that can be missed)"
        return "not available on this system (/proc/self/status missing)"

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            rss = _status_kib("VmRSS")
            if rss is not None:
                self._sampled = max(self._sampled, rss)

    def __enter__(self) -> PeakRss:
        gc.collect()
        self.start_kib = _status_kib("VmRSS")
        self._sampled = self.start_kib or 0
        if self.use_hwm:
            _reset_hwm()
        elif self.start_kib is not None:
            self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.end_kib = _status_kib("VmRSS")
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=2.0)  # bounded: the sampler wakes every 20 ms
        if self.use_hwm:
            self.peak_kib = _status_kib("VmHWM")
        elif self.start_kib is not None:
            self.peak_kib = max(self._sampled, self.end_kib or 0)


# --------------------------------------------------------------------------------------------------
# figures


def _machine_busy_seconds() -> float | None:
    """CPU time all processes of the machine have used since boot (/proc/stat), None where unknown."""
    try:
        with open("/proc/stat") as handle:
            fields = [int(x) for x in handle.readline().split()[1:]]
        return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class Figure:
    name: str
    seconds: float
    cpu_seconds: float  # user + system time of this process, all threads: less skewed by busy neighbours
    events: int | None  # what events/s is computed from; None = not an event-driven step
    start_kib: int | None
    peak_kib: int | None
    note: str = ""
    others_cpu: float | None = None  # CPU seconds other processes used meanwhile (machine busy - ours)

    @property
    def rate(self) -> float | None:
        if not self.events or self.seconds <= 0:
            return None
        return self.events / self.seconds


@dataclass
class Measured:
    value: Any = None
    figure: Figure | None = None


@contextlib.contextmanager
def measure(name: str, events: int | None = None) -> Iterator[Measured]:
    """Time and memory of the block; set `.figure.events` / `.figure.note` inside or after it."""
    out = Measured()
    console.print(f"[dim]… {name}[/dim]")
    with PeakRss() as rss:
        busy = _machine_busy_seconds()
        started, cpu_started = time.perf_counter(), time.process_time()
        yield out
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        busy_after = _machine_busy_seconds()
    others = None if busy is None or busy_after is None else max(0.0, busy_after - busy - cpu)
    out.figure = Figure(name, seconds, cpu, events, rss.start_kib, rss.peak_kib, others_cpu=others)


def _mib(kib: int | None) -> str:
    return "n/a" if kib is None else f"{kib / 1024:,.0f}"


def _secs(seconds: float) -> str:
    return f"{seconds:,.2f}" if seconds < 100 else f"{seconds:,.0f}"


def _per_second(rate: float | None) -> str:
    return "—" if rate is None else f"{rate:,.0f}"


def _table(title: str, figures: list[Figure], total: Figure | None = None) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("stage")
    table.add_column("wall s", justify="right")
    table.add_column("CPU s", justify="right")
    table.add_column("others' CPU s", justify="right")
    table.add_column("events", justify="right")
    table.add_column("events/s", justify="right")
    table.add_column("peak RSS MiB", justify="right")
    table.add_column("Δ over start MiB", justify="right")
    table.add_column("notes")
    rows = list(figures) + ([total] if total else [])
    for i, f in enumerate(rows):
        delta = None if f.peak_kib is None or f.start_kib is None else max(0, f.peak_kib - f.start_kib)
        style = "bold" if total is not None and i == len(rows) - 1 else None
        table.add_row(f.name, _secs(f.seconds), _secs(f.cpu_seconds),
                      "n/a" if f.others_cpu is None else f"{f.others_cpu:,.1f}",
                      "—" if f.events is None else f"{f.events:,}",
                      _per_second(f.rate), _mib(f.peak_kib), _mib(delta), f.note, style=style,
                      end_section=total is not None and i == len(rows) - 2)
    return table


# --------------------------------------------------------------------------------------------------
# pipeline


def _dbt_in(folder: Path):
    """Point dbt's target/ and logs/ into `folder` (not the shared dbt_project/), for this block."""
    from billing.rating import environment

    return environment({"DBT_TARGET_PATH": str(folder / "dbt-target"), "DBT_LOG_PATH": str(folder / "dbt-logs")})


def _dbt_build_seconds(folder: Path) -> float | None:
    """How long dbt spent running the nodes (run_results.json's elapsed_time: after parsing), if it says."""
    try:
        value = json.loads((folder / "dbt-target" / "run_results.json").read_text()).get("elapsed_time")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) else None


def _events_in(settings, start: datetime, end: datetime) -> int:
    warehouse = open_warehouse(settings)
    with warehouse.transaction() as tx:
        return int(tx.fetchall("SELECT COUNT(*) FROM raw.events WHERE occurred_at >= ? AND occurred_at < ?",
                               [start, end])[0][0])


@dataclass
class Result:
    generate: Figure
    stages: list[Figure] = field(default_factory=list)
    csv: list[Figure] = field(default_factory=list)
    extra: list[Figure] = field(default_factory=list)
    csv_files: int = 0
    csv_bytes: int = 0
    notes: list[str] = field(default_factory=list)
    formats: str = "mixed"
    rerun: Figure | None = None  # `billing run` again with nothing new (its own process)
    floors: list[Figure] = field(default_factory=list)  # bench/floors.py


FORMATS = {"mixed": ("csv", "jsonl"), "csv": ("csv",), "jsonl": ("jsonl",)}  # --formats -> generate_demo


def rate_on_spark(home: Path, settings, period, in_month: int, result: Result) -> None:
    """The month rated again on Spark, on the same warehouse: a cold run (starts Spark) and a warm one."""
    from dataclasses import replace

    from billing.rating import run_on_spark

    spark = replace(settings, engine="spark", spark_dir=home / "spark")
    for run in ("cold: starts Spark", "warm"):
        timings: dict[str, float] = {}
        with measure("rate on spark", events=in_month) as m, _dbt_in(home):
            nodes = run_on_spark(spark, period, timings=timings)
        steps = ", ".join(f"{step} {seconds:.1f} s" for step, seconds in timings.items())
        m.figure.note = f"{run}; {len(nodes)} nodes: {steps}; peak RSS is Python's (Spark's JVM is a child)"
        result.extra.append(m.figure)  # beside, not in, the end-to-end sum


def run_pipeline(home: Path, events: int, customers: int, repeat: int = 3, formats: str = "mixed",
                 engines: tuple[str, ...] = ("duckdb",)) -> Result:
    from billing import runner
    from core.config import load_settings
    from core.periods import month_window
    from demo.dataset import generate_demo

    with measure("generate demo data") as m:
        summary = generate_demo(home, events=events, customers=customers, defects=True, formats=FORMATS[formats])
    generated = m.figure
    generated.events = summary.rows_written
    size = sum(p.stat().st_size for p in summary.files)
    generated.note = (f"{len(summary.files)} {formats} files, {size / 1e6:,.0f} MB, {summary.customers} customers, "
                      f"months {', '.join(summary.months)}")
    result = Result(generated, formats=formats)
    console.print(f"  {generated.note} ({_secs(generated.seconds)} s)")

    # An empty config file pins the settings to BILLING_HOME's defaults: a ./billing.yaml or BILLING_*
    # variables of whoever runs the benchmark cannot redirect it to a real warehouse.
    config = home / "bench-billing.yaml"
    config.write_text("# written by bench.run: every path defaults to BILLING_HOME\n", encoding="utf-8")
    settings = load_settings(env={"BILLING_HOME": str(home), "BILLING_CONFIG": str(config)})
    assert settings.engine == "duckdb" and settings.duckdb_path.is_relative_to(home), settings
    period = month_window(summary.months[-1])
    stages = result.stages

    # dbt's parse of the project, kept from an earlier run in a warehouse billed before (billing/rating.py
    # keeps one per content of the project): timed apart, paid by the first run after the project changed.
    # In a process of its own, as an earlier run was, and before the stages, so that nothing it does overlaps
    # them: the rate stage below still pays dbt's import.
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("BILLING_")}
    env.update({"BILLING_HOME": str(home), "BILLING_CONFIG": str(config),
                "DBT_TARGET_PATH": str(home / "dbt-target"), "DBT_LOG_PATH": str(home / "dbt-logs")})
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", "from billing.rating import keep_parse; from core.config import "
                    f"load_settings; from core.periods import month_window; keep_parse(load_settings(), "
                    f"month_window('{summary.months[0]}'))"], env=env, check=True, timeout=900)
    parse = Figure("dbt import + parse, kept", time.perf_counter() - began, 0.0, None, None, None,
                   "not a stage, a process of its own: what the first run after a change of the dbt project "
                   "(or a new install) pays once; later runs, any month, reuse the kept parse")
    result.extra.append(parse)

    with measure("catalog") as m:
        warehouse = runner.prepare(settings)
        counts = runner.load_catalog_stage(settings, warehouse).counts
    m.figure.note = f"prepare + load_catalog_stage: {sum(counts.values()):,} rows in {len(counts)} tables"
    stages.append(m.figure)

    dropped = time.time() - 3600  # as if dropped an hour ago: collect takes settled files without waiting
    for path in summary.files:
        os.utime(path, (dropped, dropped))
    with measure("collect", events=summary.rows_written) as m:
        landed = runner.collect(settings, warehouse)
    new = sum(1 for item in landed if item.is_new)
    m.figure.note = f"{len(landed)} files landed ({new} new), {sum(i.size_bytes for i in landed) / 1e6:,.0f} MB"
    stages.append(m.figure)

    with measure("normalize") as m:
        loads = runner.normalize(settings, warehouse)
    m.figure.events = sum(load.rows_received for load in loads)
    m.figure.note = (f"{len(loads)} files: {sum(x.rows_loaded for x in loads):,} loaded, "
                     f"{sum(x.rows_quarantined for x in loads)} quarantined, "
                     f"{sum(x.rows_duplicate for x in loads)} duplicates")
    rejected = [x for x in loads if x.status != "loaded"]
    if rejected:
        m.figure.note += f"; {len(rejected)} REJECTED: {rejected[0].error}"
    stages.append(m.figure)
    received = m.figure.events

    start = datetime(period.start.year, period.start.month, period.start.day, tzinfo=UTC)
    end = datetime(period.end.year, period.end.month, period.end.day, tzinfo=UTC)
    in_month = _events_in(settings, start, end)

    # What `billing run` does before rating: compare the month's inputs with its last rating run's
    # (billing/month_inputs.py; a first run finds none and rates).
    with measure("compare inputs") as m:
        inputs = runner.inputs_unchanged(settings, warehouse, period)
    m.figure.note = inputs.describe()
    stages.append(m.figure)

    with measure("rate", events=in_month) as m, _dbt_in(home):
        began = time.perf_counter()
        import dbt.cli.main  # noqa: F401  (timed apart: a `billing run` process pays it once too)

        dbt_import = time.perf_counter() - began
        rerating = runner.start_rerating(warehouse, period)  # as billing run: the checks' re-rating, beside dbt
        nodes = runner.rate(settings, period)
    build = _dbt_build_seconds(home)
    from .floors import node_seconds

    one_query = node_seconds(home / "dbt-target" / "run_results.json", "int_usage_days_aggregated")  # a floor
    m.figure.note = f"dbt build {period.key}: import {dbt_import:.1f} s"
    if build is not None:
        m.figure.note += f" + startup {m.figure.seconds - dbt_import - build:.1f} s (parse kept)"
        m.figure.note += f" + {len(nodes)} nodes {build:.1f} s"
    else:
        m.figure.note += f"; {len(nodes)} nodes"
    stages.append(m.figure)

    with measure("check", events=in_month) as m:
        outcomes = runner.check(settings, warehouse, period, prerated=runner.rerating_made(rerating))
        runner.record_rating_run(settings, warehouse, period, outcomes, inputs=inputs.inputs)  # as billing run
    passed = sum(1 for o in outcomes if o.passed)
    failed = [o.name for o in outcomes if not o.passed]
    m.figure.note = (f"{len(outcomes)} checks, {passed} passed"
                     + (f"; failed: {', '.join(failed)} (see below)" if failed else "") + "; rating run recorded")
    stages.append(m.figure)
    for outcome in outcomes:
        if not outcome.passed:
            result.notes.append(f"check {outcome.name}: {outcome.summary[:160]}")

    result.rerun = rerun_nothing_new(home, config, period.key)

    if "spark" in engines:
        rate_on_spark(home, settings, period, in_month, result)

    # The re-rater reading raw.events itself, a batch of customers at a time (what the check stage's
    # misrated_lines needs); measured on its own, not part of the end-to-end sum.
    from catalog.read import read_from_warehouse
    from quality.rerate import rerate_warehouse

    with measure("re-rate from raw.events", events=in_month) as m:
        with warehouse.transaction() as tx:
            rerated = rerate_warehouse(tx, read_from_warehouse(tx), period)
    m.figure.note = f"quality.rerate.rerate_warehouse: {rerated.lines.height:,} lines (not a stage)"
    result.extra.append(m.figure)

    # The floors: the bare work of each stage on the same files (bench/floors.py), and what they allow at best.
    from .floors import bound, measure_floors

    usage_paths = [item.landing_path for item in landed if item.is_new]
    result.floors = measure_floors(usage_paths, home, env, period.key, received, one_query)
    collect_cpu = next(f.cpu_seconds for f in stages if f.name == "collect")
    result.notes.append(bound(result.floors, received, os.cpu_count() or 1, collect_cpu))

    csv_paths = [item.landing_path for item in landed if item.is_new and item.original_name.endswith(".csv")]
    result.csv_files = len(csv_paths)
    result.csv_bytes = sum(p.stat().st_size for p in csv_paths)
    result.csv = compare_csv(csv_paths, repeat)
    result.notes.insert(0, f"events in {period.key} (UTC, raw.events) used for rate/check: {in_month:,}; "
                           f"rows received by normalize: {received:,}")
    return result


def rerun_nothing_new(home: Path, config: Path, month: str) -> Figure:
    """`billing run --month M` again, as a person runs it (a new process: imports included), with nothing
    new delivered: it must say that nothing changed and neither rate nor check (target: under 3 s)."""
    import resource
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("BILLING_")}
    env.update({"BILLING_HOME": str(home), "BILLING_CONFIG": str(config),
                "DBT_TARGET_PATH": str(home / "dbt-target"), "DBT_LOG_PATH": str(home / "dbt-logs")})
    from desk.rerate import release_dbt_duckdb

    release_dbt_duckdb()  # dbt-duckdb keeps the file open in this process after the rate stage: let go of it
    console.print("[dim]… rerun, nothing new[/dim]")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy = _machine_busy_seconds()
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "billing.cli", "run", "--month", month], env=env,
                          capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - started
    busy_after = _machine_busy_seconds()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out = " ".join(done.stdout.split())
    said = "nothing changed since rating run" in out
    note = (f"`billing run --month {month}` in a new process, exit status {done.returncode}: "
            + ("said nothing changed, not rated" if said else
               "DID NOT say nothing changed: " + (re.search(r"(changed since the last rating run: .*?|no inputs "
                                                             r"recorded[^;]*?)(?: [✓✗] |$)", out) or [None, out[-300:]
                                                                                                       or done.stderr[-300:]])[1]))
    others = None if busy is None or busy_after is None else max(0.0, busy_after - busy - cpu)
    return Figure("rerun, nothing new", seconds, cpu, None, None, after.ru_maxrss, note, others_cpu=others)


# --------------------------------------------------------------------------------------------------
# CSV only: Polars rules vs a typical pandas script


def compare_csv(paths: list[Path], repeat: int = 3) -> list[Figure]:
    """Best of `repeat` rounds (each: Polars, then pandas), so a busy neighbour skews the ratio less."""
    import pandas  # noqa: F401  (import time is not what we compare)

    best: dict[str, Figure] = {}
    peak: dict[str, tuple[int, int | None]] = {}  # highest peak of all rounds, with that round's start
    notes: dict[str, str] = {}
    for _ in range(max(1, repeat)):
        for name, script in (("polars rules", _polars_rules), ("pandas script", _pandas_script)):
            with measure(name) as m:
                rows, notes[name] = script(paths)
            m.figure.events = rows
            if name not in best or m.figure.seconds < best[name].seconds:
                best[name] = m.figure
            if m.figure.peak_kib is not None and m.figure.peak_kib > peak.get(name, (0, None))[0]:
                peak[name] = (m.figure.peak_kib, m.figure.start_kib)
    for name, fig in best.items():  # the fastest round's time, the highest round's memory
        if name in peak:
            fig.peak_kib, fig.start_kib = peak[name]
    polars, pandas_fig = best["polars rules"], best["pandas script"]
    rounds = f"best of {max(1, repeat)}; " if repeat > 1 else ""
    polars.note = rounds + notes["polars rules"]
    pandas_fig.note = rounds + notes["pandas script"]
    return [polars, pandas_fig]


def _polars_rules(paths: list[Path]) -> tuple[int, str]:
    """Our normalization rules, file by file, as the normalize stage runs them (no warehouse)."""
    from formats import SourceFormat
    from normalize.rules import normalize_frame, read_rows

    upload = SourceFormat("upload")  # the upload source's default format
    rows = good = quarantined = 0
    for path in paths:
        normalized = normalize_frame(read_rows(path, upload), upload)
        rows += normalized.rows_received
        good += normalized.events.height
        quarantined += normalized.quarantine.height
        del normalized
    return rows, f"{good:,} typed events (Decimal(38,9) quantity), {quarantined} quarantined with reasons"


def _pandas_script(paths: list[Path]) -> tuple[int, str]:
    """What a typical pandas cleaning script does with these files, one file at a time."""
    import pandas as pd

    rows = good = bad = 0
    for path in paths:
        df = pd.read_csv(path, dtype=str)
        rows += len(df)
        df["quantity"] = pd.to_numeric(df["quantity"], errors="coerce")
        df["occurred_at"] = pd.to_datetime(df["occurred_at"], utc=True, errors="coerce")
        invalid = df["quantity"].isna() | (df["quantity"] < 0) | df["occurred_at"].isna()
        for column in ("event_id", "customer_id", "product_id"):
            invalid |= df[column].isna()
        bad += int(invalid.sum())
        df = df[~invalid].drop_duplicates(subset=["event_id"])
        good += len(df)
        del df
    return rows, f"{good:,} rows kept (float64 quantity), {bad} dropped as invalid"


# --------------------------------------------------------------------------------------------------
# report


def report(result: Result, events: int, elapsed: float) -> None:
    stages = result.stages
    total = Figure(
        "end to end (sum)",
        sum(f.seconds for f in stages),
        sum(f.cpu_seconds for f in stages),
        next((f.events for f in stages if f.name == "normalize"), None),
        stages[0].start_kib if stages else None,
        max((f.peak_kib for f in stages if f.peak_kib is not None), default=None),
        "events/s = rows received / total wall; peak = highest stage peak",
        others_cpu=None if any(f.others_cpu is None for f in stages) else sum(f.others_cpu for f in stages),
    )
    console.print()
    console.print(_table("Demo data (not a pipeline stage)", [result.generate]))
    console.print(_table(f"Pipeline stages, {events:,} events requested", stages, total))
    if result.rerun is not None:
        console.print(_table("The everyday rerun: nothing new since the month was rated", [result.rerun]))
    if result.extra:
        console.print(_table("Not a stage: measured on their own", result.extra))
    if result.floors:
        console.print(_table("Floors: each stage's bare work, nothing of ours around it (bench/floors.py)",
                             result.floors))
    console.print(_table(f"CSV only: parse + type {result.csv_files} CSV files, "
                         f"{result.csv_bytes / 1e6:,.0f} MB (no warehouse writes)", result.csv))
    console.print("[dim]polars rules = normalize.rules.read_rows + normalize_frame per file (what the normalize "
                  "stage runs before its DuckDB writes); pandas script = read_csv(dtype=str), to_numeric, "
                  "to_datetime(utc=True), drop invalid rows, drop_duplicates(subset=['event_id']) per file[/dim]")
    polars, pandas_fig = (result.csv + [None, None])[:2]
    if polars and pandas_fig and polars.rate and pandas_fig.rate:
        console.print(f"polars normalize / pandas, events per second on the CSV files: "
                      f"[bold]{polars.rate / pandas_fig.rate:.2f}x[/bold]")
    normalize = next((f for f in stages if f.name == "normalize"), None)
    if normalize is not None and normalize.rate:
        busy = ("" if normalize.others_cpu is None
                else f"; other processes used {normalize.others_cpu:.1f} CPU s meanwhile")
        console.print(f"normalize ({result.formats} files): [bold]{normalize.events:,} events in "
                      f"{normalize.seconds:.2f} s = {normalize.rate:,.0f} events/s[/bold] "
                      f"({normalize.cpu_seconds:.1f} CPU s, peak RSS {_mib(normalize.peak_kib)} MiB{busy})")
    if total.rate:
        peak = "n/a" if total.peak_kib is None else f"{total.peak_kib / 1024:,.0f} MiB"
        console.print(f"end to end: [bold]{total.events:,} events in {total.seconds:.2f} s = {total.rate:,.0f} "
                      f"events/s[/bold] (target: 1,000,000 events/s on 2 cores, for 10 M events); peak RSS {peak} "
                      f"(target: under 2 GiB); {total.cpu_seconds:.1f} CPU s; load average {_load()}")
    if result.rerun is not None:
        console.print(f"rerun, nothing new: [bold]{result.rerun.seconds:.2f} s[/bold] for the whole command "
                      f"(target: under 3 s; {result.rerun.cpu_seconds:.1f} CPU s): {result.rerun.note}")
    for note in result.notes:
        console.print(f"[dim]{note}[/dim]")
    import duckdb
    import pandas
    import polars as pl

    console.print(f"[dim]peak RSS: {PeakRss.method()}; machine: {os.cpu_count()} CPUs, "
                  f"{platform.machine()}, Python {platform.python_version()}, polars {pl.__version__}, "
                  f"duckdb {duckdb.__version__}, pandas {pandas.__version__}; load average {_load()}; "
                  f"benchmark ran {elapsed:,.0f} s[/dim]")


def _load() -> str:
    """1-minute load average: other processes on the machine skew every figure."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events to generate (default 1,000,000)")
    parser.add_argument("--customers", type=int, default=240, help="customers in the demo catalog (default 240)")
    parser.add_argument("--formats", choices=sorted(FORMATS), default="mixed",
                        help="usage file formats: mixed (default: odd parts CSV, even parts JSON lines), csv or jsonl only")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder and print where it is")
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds of the CSV-only Polars/pandas comparison; the best of each is shown (default 3)")
    parser.add_argument("--engines", default="duckdb",
                        help="duckdb (default), or duckdb,spark: also rate the month on Spark (needs the spark extra)")
    args = parser.parse_args(argv)
    engines = tuple(e.strip() for e in args.engines.split(",") if e.strip())
    if not engines or engines[0] != "duckdb" or not set(engines) <= {"duckdb", "spark"}:
        parser.error("--engines must be duckdb or duckdb,spark (the pipeline always rates on DuckDB first)")
    if args.events < 1000:
        parser.error("--events must be at least 1000 (the planted defects need a few rows per file)")
    if args.customers < 20:
        parser.error("--customers must be at least 20")

    home = Path(tempfile.mkdtemp(prefix="billing-bench-"))
    started = time.perf_counter()
    console.print(f"benchmark: {args.events:,} events ({args.formats} files), {args.customers} customers, in {home}")
    console.print(f"[dim]peak RSS measured as {PeakRss.method()}; load average {_load()}[/dim]")
    try:
        result = run_pipeline(home, args.events, args.customers, args.repeat, args.formats, engines)
        report(result, args.events, time.perf_counter() - started)
    except KeyboardInterrupt:
        console.print("[red]interrupted[/red]")
        return 130
    finally:
        if args.keep:
            console.print(f"kept the benchmark folder: {home} (warehouse: {home / 'warehouse.duckdb'})")
        else:
            shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
