"""Quality checks on the reference month: conservation of rows and units, and the findings mart.

The month is billed once with `billing run`; tests that plant a fault work on a copy of the
warehouse file, so each sees the month as billed.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from catalog.load import load_catalog
from core.config import load_settings
from core.periods import month_window
from quality import checks as q
from quality.findings import write_findings
from warehouse.store import Warehouse

from support import copy_warehouse, drop_reference_usage, query, reference_month_billed

OCTOBER = month_window("2026-10")


@pytest.fixture(scope="module")
def billed(tmp_path_factory):
    with reference_month_billed(tmp_path_factory, "quality") as home:
        yield home / "warehouse.duckdb"


@pytest.fixture
def copy(billed, tmp_path):
    """A copy of the billed warehouse that a test may damage."""
    return copy_warehouse(billed, tmp_path)


def run(path, check):
    with Warehouse(duckdb_path=path).transaction() as tx:
        return check(tx, OCTOBER)  # by the warehouse's catalog, as every run checks



def test_the_reference_month_passes_every_check_but_its_faults_by_design(copy):
    """reference-month.md: C4's SMS has no EUR price and C999 is no customer; nothing else is wrong."""
    with Warehouse(duckdb_path=copy).transaction() as tx:
        outcomes = {check.__name__: check(tx, OCTOBER) for check in q.CHECKS}
    assert {name: o.passed for name, o in outcomes.items()} == {
        "unrated_usage": False, "missed_customers": True, "invoice_totals": True, "misrated_lines": True,
        "conservation": True, "anomalies": True, "rejected_files": True, "quarantined_rows": True,
        "conflicting_duplicates": True, "corrections_outside_lookback": True}
    assert [o.findings for name, o in outcomes.items() if name != "unrated_usage"] == [[]] * 9
    assert [(f["reason"], f["customer_id"], f["product_id"], f["currency"], Decimal(f["quantity"]))
            for f in outcomes["unrated_usage"].findings] == [
        ("no_price", "C4", "SMS", "EUR", Decimal("500")), ("unknown_customer", "C999", "API_CALLS", None, Decimal("5000"))]


def test_conservation_holds_on_the_reference_month(copy):
    outcome = run(copy, q.conservation)
    assert outcome.passed and outcome.blocking and outcome.findings == [], outcome.summary
    assert q.conservation in q.CHECKS


def test_conservation_names_a_file_whose_events_were_partly_deleted(copy):
    [(file_id,)] = query(copy, "select file_id from raw.landed_files where original_name = 'october-main.csv'")
    # After loading (and rating), C1's 234,560-call event and C4's event vanish from raw.events.
    query(copy, "delete from raw.events where event_id in ('c1-api-2', 'c4-api-1')")
    outcome = run(copy, q.conservation)
    assert not outcome.passed
    files = [f for f in outcome.findings if f["kind"] == "rows"]
    assert [(f["file_id"], f["original_name"], f["rows_received"], f["events"]) for f in files] == [
        (file_id, "october-main.csv", "15", "12")]
    units = [(f["customer_id"], f["product_id"], f["event_units"], f["invoiced_units"])
             for f in outcome.findings if f["kind"] == "units"]
    assert [(a, p) for a, p, *_ in units] == [("C1", "API_CALLS"), ("C4", "API_CALLS")]
    assert "october-main.csv" in outcome.summary and "C1 API_CALLS" in outcome.summary


def test_conservation_names_units_missing_from_the_invoice(copy):
    query(copy, "delete from marts.fct_invoice_lines where billing_account_id = 'C1' and product_id = 'SMS'")
    outcome = run(copy, q.conservation)
    assert [(f["kind"], f["customer_id"], f["product_id"]) for f in outcome.findings] == [("units", "C1", "SMS")]



@pytest.mark.parametrize(("instant", "in_october"), [("2026-09-30 22:30:00+00", True),   # 00:30 on 1 Oct in Budapest
                                                      ("2026-09-30 21:30:00+00", False),  # 23:30 on 30 Sep there
                                                      ("2026-11-01 00:30:00+00", False)])  # 01:30 on 1 Nov
def test_conservation_counts_units_on_the_customers_local_days(copy, instant, in_october):
    # An event added after rating is on no invoice: conservation must count it exactly when its local
    # day (Budapest) is in October, whatever its UTC day.
    def unaccounted() -> Decimal:
        return sum((Decimal(f["event_units"]) - Decimal(f["invoiced_units"]) - Decimal(f["unrated_units"])
                    for f in run(copy, q.conservation).findings
                    if f["kind"] == "units" and (f["customer_id"], f["product_id"]) == ("C3", "API_CALLS")),
                   Decimal(0))

    query(copy, "update raw.catalog_customers set timezone = 'Europe/Budapest' where customer_id = 'C3'")
    before = unaccounted()  # C3's own events move with its zone; only the difference matters here
    query(copy, f"insert into raw.events values ('upload', 'late-1', 'C3', 'API_CALLS', 7, timestamptz '{instant}', "
                "'planted', 1, now())")
    assert unaccounted() - before == (7 if in_october else 0)


def test_findings_of_the_reference_month_are_in_the_mart(billed):
    rows = query(billed, "select check_name, severity, period, customer_id, detail from marts.quality_findings "
                         "order by customer_id")
    assert [(c, s, p, cust) for c, s, p, cust, _ in rows] == [("unrated_usage", "error", "2026-10", "C4"),
                                                            ("unrated_usage", "error", "2026-10", "C999")]
    assert "C999" in rows[1][4]


def test_findings_are_replaced_per_check_and_period(copy):
    warehouse = Warehouse(duckdb_path=copy)
    outcomes = q.run_checks(warehouse, OCTOBER, run_id="second")
    assert {o.name for o in outcomes} == {fn.__name__ for fn in q.CHECKS}
    assert query(copy, "select run_id, count(*) from marts.quality_findings group by run_id") == [("second", 2)]
    # A check that finds something new replaces only its own rows.
    query(copy, "delete from marts.fct_invoices where billing_account_id = 'C5'")
    with warehouse.transaction() as tx:
        missed = q.missed_customers(tx, OCTOBER)
    write_findings(warehouse, [missed], OCTOBER.key, run_id="third")
    assert query(copy, "select check_name, customer_id, run_id from marts.quality_findings "
                       "order by check_name, customer_id") == [
        ("missed_customers", "C5", "third"), ("unrated_usage", "C4", "second"), ("unrated_usage", "C999", "second")]


def test_anomalies_are_quiet_on_the_reference_month(copy):
    outcome = run(copy, q.anomalies)
    assert outcome.passed and not outcome.blocking, outcome.summary


def test_anomalies_name_a_jump_a_stop_and_a_silent_source(copy):
    def event(source, event_id, customer, product, quantity, at):
        return (f"insert into raw.events values ('{source}', '{event_id}', '{customer}', '{product}', {quantity}, "
                f"timestamptz '{at} 00:00:00+00', 'planted', 1, now())")

    for month in ("07", "08", "09"):
        # C2's API calls were ~30,000 a month; October's 1,500,000 is 50x that.
        query(copy, event("upload", f"c2-{month}", "C2", "API_CALLS", 30000, f"2026-{month}-10"))
        # C4's units of October stay within 10x of its recent months: no finding.
        query(copy, event("upload", f"c4-{month}", "C4", "API_CALLS", 40000, f"2026-{month}-10"))
        # C3 used bandwidth every month until October; the 'acme-sftp' source that sent it went silent.
        query(copy, event("acme-sftp", f"c3-bw-{month}", "C3", "BANDWIDTH_GB", 5, f"2026-{month}-20"))
    # C1's September API calls alone are no baseline (no usage in July and August): no finding.
    outcome = run(copy, q.anomalies)
    assert not outcome.passed and not outcome.blocking
    got = [(f["kind"], f.get("customer_id"), f.get("product_id"), f.get("source")) for f in outcome.findings]
    assert got == [("jump", "C2", "API_CALLS", None), ("stopped", "C3", "BANDWIDTH_GB", None),
                   ("silent_source", None, None, "acme-sftp")]
    assert "50.0x" in outcome.findings[0]["detail"]
    with Warehouse(duckdb_path=copy).transaction() as tx:
        assert q.anomalies(tx, OCTOBER, factor=Decimal("100")).findings[0]["kind"] == "stopped"
    # the factor is a setting (anomaly_factor, BILLING_ANOMALY_FACTOR) that run_checks passes on
    settings = load_settings(env={"BILLING_HOME": str(copy.parent), "BILLING_ANOMALY_FACTOR": "60"})
    assert settings.anomaly_factor == Decimal("60")
    outcomes = q.run_checks(Warehouse(duckdb_path=copy), OCTOBER,
                            anomaly_factor=settings.anomaly_factor)
    assert [f["kind"] for o in outcomes if o.name == "anomalies" for f in o.findings] == ["stopped", "silent_source"]



def test_anomalies_count_usage_in_the_customers_local_month(copy):
    # C3 (now in Budapest) used bandwidth every month; its October usage is one event at 00:30 on
    # 1 October local time, 22:30 on 30 September UTC. Counted in UTC months it would look stopped.
    query(copy, "update raw.catalog_customers set timezone = 'Europe/Budapest' where customer_id = 'C3'")
    at = ["2026-07-20 00:00:00+00", "2026-08-20 00:00:00+00", "2026-09-20 00:00:00+00", "2026-09-30 22:30:00+00"]
    for n, instant in enumerate(at):
        query(copy, f"insert into raw.events values ('acme-sftp', 'c3-bw-{n}', 'C3', 'BANDWIDTH_GB', 5, "
                    f"timestamptz '{instant}', 'planted', 1, now())")
    outcome = run(copy, q.anomalies)
    assert outcome.passed, outcome.summary
    # An hour earlier it is 23:30 on 30 September in Budapest: October has no usage, and says so.
    query(copy, "update raw.events set occurred_at = timestamptz '2026-09-30 21:30:00+00' where event_id = 'c3-bw-3'")
    got = [(f["kind"], f.get("customer_id"), f.get("source")) for f in run(copy, q.anomalies).findings]
    assert got == [("stopped", "C3", None), ("silent_source", None, "acme-sftp")]

def test_dagster_asset_checks_write_findings_with_their_run_id(billing_env):
    import dagster as dg

    from core.config import load_settings
    from pipelines.definitions import build_defs

    defs = build_defs(load_settings())
    drop_reference_usage(billing_env / "inbox")
    result = dg.materialize([*defs.assets, *defs.asset_checks], partition_key="2026-10-01",
                            resources=defs.resources, instance=dg.DagsterInstance.ephemeral())
    assert result.success
    checks = {ev.check_name: ev for ev in result.get_asset_check_evaluations()}
    assert checks["conservation"].passed and checks["anomalies"].passed
    assert query(billing_env / "warehouse.duckdb", "select check_name, customer_id, run_id from marts.quality_findings "
                 "order by customer_id") == [("unrated_usage", "C4", result.run_id),
                                             ("unrated_usage", "C999", result.run_id)]


def test_billing_run_runs_no_expectation_suite_unless_asked(billed):
    """Great Expectations takes seconds to import: `billing run` runs the suites with --expectations only."""
    home = billed.parent
    assert not (home / "quality" / "validations").exists()
    assert query(billed, "select count(*) from marts.quality_findings where check_name like '%expectations'") == [(0,)]


EDITED_CATALOG = """
products:
  - code: API
    prices: [{currency: USD, model: per_unit, unit_price: "0.002"}]
customers:
  - {id: C1, currency: USD}
"""
EDITED_USAGE = "event_id,customer_id,product_id,quantity,occurred_at\ne1,C1,API,1000,2026-10-05T10:00:00Z\n"


def test_the_checks_judge_by_the_catalog_the_month_was_priced_with_not_the_file_edited_since(tmp_path):
    import hashlib

    from scenario import bill

    from billing import runner

    settings, outcomes = bill(tmp_path / "home", EDITED_CATALOG, EDITED_USAGE, ["2026-10"])
    assert outcomes["misrated_lines"].passed, outcomes["misrated_lines"].summary
    first = hashlib.sha256(EDITED_CATALOG.encode()).hexdigest()
    drafts = "SELECT catalog_sha256, total FROM marts.fct_invoices WHERE period = '2026-10'"
    assert query(settings.duckdb_path, drafts) == [(first, Decimal("2.00"))]
    settings.catalog.write_text(EDITED_CATALOG.replace('"0.002"', '"0.003"'))  # edited after rating, not loaded
    warehouse = Warehouse(duckdb_path=settings.duckdb_path)
    again = {o.name: o for o in runner.check(settings, warehouse, OCTOBER)}
    assert again["misrated_lines"].passed, again["misrated_lines"].summary
    assert again["misrated_lines"].summary == "all 1 lines confirmed by the re-rater"
    # the edit matters: judged by the file as it is now, the month's only line would be wrong
    with warehouse.transaction() as tx:
        by_file = q.misrated_lines(tx, OCTOBER, load_catalog(settings.catalog))
    assert not by_file.passed
    assert [(f["amount"], f["expected_amount"]) for f in by_file.findings] == [("2.00", "3.00")]

    # the edit loaded, the month not rated again: its drafts were priced with the other catalog; the check says so
    loaded = runner.load_catalog_stage(settings, warehouse)
    assert loaded.changed and loaded.previous_sha256 == first and loaded.sha256 != first
    stale = {o.name: o for o in runner.check(settings, warehouse, OCTOBER)}["misrated_lines"]
    assert not stale.passed and stale.blocking
    assert f"priced with catalog {first}, but the warehouse now holds catalog {loaded.sha256}" in stale.summary
    assert "rate the month again" in stale.summary
    # the rerun: the drafts show the catalog they were priced with now, and its prices are confirmed
    runner.rate(settings, OCTOBER)
    rerun = {o.name: o for o in runner.check(settings, warehouse, OCTOBER)}["misrated_lines"]
    assert rerun.passed, rerun.summary
    assert query(settings.duckdb_path, drafts) == [(loaded.sha256, Decimal("3.00"))]


def test_a_rerating_made_beside_dbt_serves_misrated_lines_only_while_its_inputs_hold(copy, monkeypatch):
    """`billing run` re-rates the month while dbt rates it (runner.start_rerating); the check uses that
    re-rating only if the warehouse still holds the events and catalog it was made from."""
    prerated = q.prerate(Warehouse(duckdb_path=copy), OCTOBER)
    with monkeypatch.context() as patched:  # a current re-rating is used as it is, not made again
        patched.setattr(q, "rerate_warehouse", lambda *a, **k: pytest.fail("re-rated again"))
        assert run(copy, lambda tx, period: q.misrated_lines(tx, period, prerated=prerated)).passed
    # A file loaded since (its event not rated yet): the re-rating made before it is stale, so the
    # check re-rates, and the drafts lack the new usage.
    query(copy, "insert into raw.landed_files (file_id, source, collector, original_name, landing_path, size_bytes, "
                "received_at, status, rows_received, rows_loaded, rows_quarantined, rows_duplicate, loaded_at) "
                "values ('late', 'upload', 'upload', 'late.csv', '/nowhere/late.csv', 1, now(), 'loaded', 1, 1, 0, 0, "
                "now())")
    query(copy, "insert into raw.events values ('upload', 'late-1', 'C1', 'API_CALLS', 1000000, "
                "timestamptz '2026-10-15 12:00:00+00', 'late', 1, now())")
    outcome = run(copy, lambda tx, period: q.misrated_lines(tx, period, prerated=prerated))
    assert not outcome.passed and "C1 API_CALLS" in outcome.summary, outcome.summary
    assert outcome.findings == run(copy, q.misrated_lines).findings
