"""The Spark tier: the same dbt models rate on Apache Spark (dbt-spark, session method, local mode).

Each scenario is billed twice through the stages of `billing run`: on DuckDB, and with
BILLING_ENGINE=spark (raw tables exported to Parquet, dbt on Spark, the period copied back into the
DuckDB warehouse). The invoice tables must be equal cell for cell, types included, and the checks
must say the same. dbt-spark's session method runs Spark inside this process: the first run starts
it and every later dbt invocation of the module reuses it (one SparkSession for the tier).

Without pyspark / dbt-spark / Java the tier is skipped locally and fails when $CI is set
(`make setup` installs the `spark` extra).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal

import duckdb
import pytest
from test_precision import limits_scenario
from test_zones_and_rounding import CATALOG as ZONES_CATALOG
from test_zones_and_rounding import USAGE as ZONES_USAGE

from billing import runner
from billing.rating import RatingFailed
from core.config import Settings, load_settings
from core.money import QUANTITY
from core.periods import Period, month_window
from warehouse.spark import EVENTS, PARTITION_COLUMN, Table, export_days, raw_dir

from support import REFERENCE, billing_env, drop_reference_usage, new_home

# A Spark run of a small month is dominated by Spark's own start-up and per-query planning (about a
# minute a run on 2 quiet cores, several on a busy machine): more than the suite's default per-test limit.
pytestmark = [pytest.mark.spark, pytest.mark.timeout(1800)]

# Small data: Spark's settings for a month of a few events (profiles.yml reads them; they change
# speed only). The JIT stops at its first tier and queries run without generated code, which costs
# more than it saves on a few rows; one shuffle partition, no adaptive re-planning.
SMALL_DATA = {"BILLING_SPARK_JAVA_OPTIONS": "-XX:TieredStopAtLevel=1", "BILLING_SPARK_CODEGEN": "false",
              "BILLING_SPARK_ADAPTIVE": "false", "BILLING_SPARK_PARTITIONS": "1"}

D = Decimal
OCTOBER = month_window("2026-10")
INVOICE_TABLES = ("fct_invoices", "fct_invoice_lines", "fct_invoice_line_tiers", "fct_unrated_usage",
                  "fct_invoice_line_sources")


def _spark_missing() -> str | None:
    if importlib.util.find_spec("pyspark") is None or importlib.util.find_spec("dbt.adapters.spark") is None:
        return "pyspark / dbt-spark are not installed (`uv sync --extra spark`, which `make setup` runs)"
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return "no Java runtime for Spark (java on PATH or JAVA_HOME)"
    return None


@pytest.fixture(scope="module", autouse=True)
def spark_available() -> Iterator[None]:
    missing = _spark_missing()
    if missing and os.environ.get("CI"):
        pytest.fail(f"the Spark tier must run in CI: {missing}", pytrace=False)
    if missing:
        pytest.skip(missing)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in SMALL_DATA.items():
            mp.setenv(key, value)
        yield


def bill(settings: Settings, periods: list[Period]):
    """The stages of `billing run` for each period; returns the check outcomes of the last."""
    warehouse = runner.prepare(settings)
    runner.load_catalog_stage(settings, warehouse)
    runner.collect(settings, warehouse)
    runner.normalize(settings, warehouse)
    outcomes = None
    for period in periods:
        runner.rate(settings, period)
        outcomes = runner.check(settings, warehouse, period)
    return outcomes


def bill_with_dagster(settings: Settings, period: Period) -> list[tuple]:
    """The Dagster path on the same settings: the collect_sources job, then the billing_month job for the
    month (its dbt assets rate through the code `billing run` uses, here on Spark). Returns the quality
    checks' evaluations as `outcomes_of` gives the runner's outcomes."""
    import dagster as dg

    from pipelines.definitions import build_defs
    from quality.checks import CHECKS

    defs = build_defs(settings)
    instance = dg.DagsterInstance.ephemeral()
    assert defs.resolve_job_def("collect_sources").execute_in_process(instance=instance).success
    month = defs.resolve_job_def("billing_month").execute_in_process(partition_key=period.start.isoformat(),
                                                                     instance=instance)
    assert month.success
    evaluations = {ev.check_name: ev for ev in month.get_asset_check_evaluations()}
    return [(name, ev.passed, ev.severity == dg.AssetCheckSeverity.ERROR, ev.description,
             ev.metadata["findings"].value) for name, ev in ((fn.__name__, evaluations[fn.__name__]) for fn in CHECKS)]


def _order_key(row: tuple) -> tuple:
    return tuple((value is None, value if value is not None else 0) for value in row)


def invoice_tables(settings: Settings, period: Period) -> dict[str, tuple[list[tuple], list[tuple]]]:
    """Every column (name and type) and every row of the period, in a fixed order, per invoice table."""
    tables = {}
    con = duckdb.connect(str(settings.duckdb_path))
    try:
        for table in INVOICE_TABLES:
            columns = con.execute("SELECT column_name, data_type FROM information_schema.columns "
                                  "WHERE table_schema = 'marts' AND table_name = ? ORDER BY ordinal_position",
                                  [table]).fetchall()
            assert columns, f"marts.{table} does not exist"
            rows = con.execute(f"SELECT {', '.join(c for c, _ in columns)} FROM marts.{table} WHERE period = ?",
                               [period.key]).fetchall()
            tables[table] = (columns, sorted(rows, key=_order_key))
    finally:
        con.close()
    return tables


# When each home received its files: the two warehouses differ there by construction.
RECEIVED_AT = ("fct_invoice_line_sources", "received_at")


def assert_same_tables(spark: dict, duck: dict) -> None:
    for table in INVOICE_TABLES:
        spark_columns, spark_rows = spark[table]
        duck_columns, duck_rows = duck[table]
        assert spark_columns == duck_columns, table
        assert len(spark_rows) == len(duck_rows), table
        if table == RECEIVED_AT[0]:
            at = [name for name, _ in spark_columns].index(RECEIVED_AT[1])
            spark_rows = [row[:at] + row[at + 1:] for row in spark_rows]
            duck_rows = [row[:at] + row[at + 1:] for row in duck_rows]
        for spark_row, duck_row in zip(spark_rows, duck_rows, strict=True):
            assert [type(v) for v in spark_row] == [type(v) for v in duck_row], (table, spark_row, duck_row)
            # Decimals compared digit for digit (1.50 and 1.5 differ here), not only as numbers
            assert [str(v) for v in spark_row] == [str(v) for v in duck_row], table


def records(tables: dict, table: str) -> list[dict]:
    columns, rows = tables[table]
    return [dict(zip([name for name, _ in columns], row, strict=True)) for row in rows]


def outcomes_of(outcomes) -> list[tuple]:
    return [(o.name, o.passed, o.blocking, o.summary, o.findings) for o in outcomes]


def raw_counts(settings: Settings) -> dict[str, int]:
    con = duckdb.connect(str(settings.duckdb_path))
    try:
        return {t: con.execute(f"SELECT COUNT(*) FROM raw.{t}").fetchone()[0]
                for t in ("landed_files", "file_receipts", "events", "duplicates", "quarantine")}
    finally:
        con.close()


# --------------------------------------------------------------------------------------------------
# the reference month


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Iterator[dict]:
    """October 2026 of the reference month on DuckDB, then on Spark, then on Spark again with every
    file delivered again, through the Dagster jobs this time."""
    out: dict = {}
    duck_home = new_home(tmp_path_factory, "duck")
    with billing_env(duck_home, REFERENCE / "catalog.yaml"):
        drop_reference_usage(duck_home / "inbox")
        duck = load_settings()
        out["duck_outcomes"] = bill(duck, [OCTOBER])
        out["duck"] = invoice_tables(duck, OCTOBER)
    spark_home = new_home(tmp_path_factory, "spark")
    with billing_env(spark_home, REFERENCE / "catalog.yaml") as env:
        env.setenv("BILLING_ENGINE", "spark")
        drop_reference_usage(spark_home / "inbox")
        spark = load_settings()
        assert spark.engine == "spark" and spark.spark_dir == spark_home / "spark"
        out["spark_outcomes"] = bill(spark, [OCTOBER])
        out["spark"] = invoice_tables(spark, OCTOBER)
        out["counts"] = raw_counts(spark)
        out["settings"] = spark
        drop_reference_usage(spark_home / "inbox")
        out["rerun_outcomes"] = bill_with_dagster(spark, OCTOBER)
        out["rerun"] = invoice_tables(spark, OCTOBER)
        out["rerun_counts"] = raw_counts(spark)
        yield out


def test_reference_month_on_spark_equals_duckdb_cell_for_cell(reference):
    assert_same_tables(reference["spark"], reference["duck"])
    totals = {row["billing_account_id"]: row["total"] for row in records(reference["spark"], "fct_invoices")}
    assert totals == {  # the specification's totals
        "C1": D("2527.63"), "C2": D("1000.00"), "C3": D("1938.71"), "C4": D("180.00"), "C5": D("200.00")}


def test_line_sources_keep_when_the_spark_home_received_each_file(reference):
    con = duckdb.connect(str(reference["settings"].duckdb_path))
    mismatched = con.execute("""SELECT s.file_id FROM marts.fct_invoice_line_sources s
                                JOIN raw.landed_files f USING (file_id)
                                WHERE s.received_at IS DISTINCT FROM f.received_at""").fetchall()
    sources = con.execute("SELECT count(*) FROM marts.fct_invoice_line_sources").fetchone()[0]
    con.close()
    assert sources > 0 and mismatched == []


def test_the_checks_say_the_same_on_the_spark_result(reference):
    assert outcomes_of(reference["spark_outcomes"]) == outcomes_of(reference["duck_outcomes"])
    checks = {o.name: o for o in reference["spark_outcomes"]}
    assert checks["misrated_lines"].passed and checks["invoice_totals"].passed
    assert checks["missed_customers"].passed and checks["conservation"].passed
    assert {(f["reason"], f["customer_id"]) for f in checks["unrated_usage"].findings} == {
        ("no_price", "C4"), ("unknown_customer", "C999")}


def test_a_rerun_on_spark_changes_nothing(reference):
    """The rerun goes through Dagster's jobs (collect_sources, billing_month): the month job rates on Spark
    as `billing run` does, and says what its checks said."""
    assert reference["rerun"] == reference["spark"]
    assert reference["rerun_outcomes"] == outcomes_of(reference["spark_outcomes"])
    assert reference["rerun_counts"] == {**reference["counts"],
                                         "file_receipts": reference["counts"]["file_receipts"] + 3}


def test_spark_reads_each_event_once_from_day_partitions(reference):
    settings = reference["settings"]
    events = raw_dir(settings.spark_dir, Table(*EVENTS))
    days = sorted(p.name for p in events.iterdir())
    assert days == [f"{PARTITION_COLUMN}={d.isoformat()}" for d in export_days(OCTOBER)]  # Sep 29 .. Nov 2
    con = duckdb.connect()
    exported = con.execute(f"SELECT source, event_id, count(*) FROM read_parquet('{events}/*/*.parquet') "
                           "GROUP BY ALL ORDER BY ALL").fetchall()
    con.close()
    assert all(n == 1 for *_, n in exported)  # after two exports, each event once
    assert len(exported) == 22  # every event loaded (October's, and the two just outside it)


# --------------------------------------------------------------------------------------------------
# local months and rounding per currency (tests/test_zones_and_rounding.py's scenario)

ZONE_MONTHS = [month_window("2024-12"), month_window("2025-01")]


def bill_scenario(tmp_path_factory, name: str, catalog: str, usage: str, periods: list[Period],
                  engine: str) -> tuple[dict[str, dict], list]:
    """The invoice tables of each period, and the check outcomes of the last."""
    home = new_home(tmp_path_factory, f"{name}-{engine}")
    (home / "catalog.yaml").write_text(catalog, encoding="utf-8")
    (home / "inbox" / "usage.csv").write_text(usage, encoding="utf-8")
    with billing_env(home, home / "catalog.yaml") as env:
        env.setenv("BILLING_ENGINE", engine)
        settings = load_settings()
        outcomes = bill(settings, periods)
        return {period.key: invoice_tables(settings, period) for period in periods}, outcomes


@pytest.fixture(scope="module")
def zones(tmp_path_factory) -> dict[str, dict]:
    return {engine: bill_scenario(tmp_path_factory, "zones", ZONES_CATALOG, ZONES_USAGE, ZONE_MONTHS, engine)[0]
            for engine in ("duckdb", "spark")}


def test_local_months_and_rounding_on_spark_equal_duckdb(zones):
    for period in ZONE_MONTHS:
        assert_same_tables(zones["spark"][period.key], zones["duckdb"][period.key])
    invoices = {(row["period"], row["billing_account_id"])
                for month in zones["spark"].values() for row in records(month, "fct_invoices")}
    # 2024-12-31T23:30Z is 1 January in Budapest, still 31 December in UTC
    assert invoices == {("2024-12", "UTC1"), ("2025-01", "BUD"), ("2025-01", "KWD1"), ("2025-01", "YEN")}
    amounts = {row["billing_account_id"]: (row["amount_unrounded"], row["amount"])
               for row in records(zones["spark"]["2025-01"], "fct_invoice_lines")}
    assert amounts == {"BUD": (D("3.685"), D("3.69")),  # 0.067 x 55, half away from zero (not 3.68)
                       "KWD1": (D("1.0005"), D("1.001")),  # 3 places
                       "YEN": (D("2.5"), D("3"))}  # 0 places


# --------------------------------------------------------------------------------------------------
# decimals at the catalog's limits (core/money.py; the scenario is tests/test_precision.py's)


def test_amounts_at_the_catalogs_limits_are_exact_on_spark(tmp_path_factory):
    catalog, usage, exact = limits_scenario()
    march = month_window("2025-03")
    runs = {engine: bill_scenario(tmp_path_factory, "limits", catalog, usage, [march], engine)
            for engine in ("spark", "duckdb")}
    spark, duck = runs["spark"][0][march.key], runs["duckdb"][0][march.key]
    assert_same_tables(spark, duck)
    lines = records(spark, "fct_invoice_lines")
    assert {line["product_id"]: line["amount_unrounded"] for line in lines} == exact
    for line in lines:
        assert line["amount"] == line["amount_unrounded"].quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    # the independent re-rater (Python decimals) confirms every line, and every check passes, on both
    for engine, (_, outcomes) in runs.items():
        assert [(o.name, o.summary) for o in outcomes if not o.passed] == [], engine
    assert outcomes_of(runs["spark"][1]) == outcomes_of(runs["duckdb"][1])


def test_a_month_beyond_the_limits_stops_the_rating_on_spark_not_a_null_amount(tmp_path_factory):
    """Spark runs in ANSI mode (profiles.yml; dbt-spark switches it off unless warehouse/spark.py
    keeps it): a value too large for its decimal type is an error, as on DuckDB, never a NULL."""
    largest = QUANTITY.largest
    catalog = """
products:
  - code: X
    prices: [{currency: USD, model: per_unit, unit_price: "1"}]
customers:
  - {id: BIG, currency: USD}
"""
    usage = ("event_id,customer_id,product_id,quantity,occurred_at\n"
             f"a,BIG,X,{largest},2025-03-05T00:00:00Z\nb,BIG,X,{largest},2025-03-06T00:00:00Z\n")
    with pytest.raises(RatingFailed, match=r"cannot be represented as Decimal\(19, 9\)"):
        bill_scenario(tmp_path_factory, "overflow", catalog, usage, [month_window("2025-03")], "spark")
