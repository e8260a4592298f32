"""A month through Dagster's two jobs, as the sensors and the schedule run them, and a month billed
from the CLI as the Dagster instance of the same DAGSTER_HOME sees it.

The settings reach Dagster as the `billing` resource of `build_defs(settings)`: these tests build
their own, for their own folders, and patch no BILLING_* variable for the Dagster runs.
"""

from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest

from core.config import Settings, load_settings

from support import REFERENCE, drop_reference_usage, new_home, query

D = Decimal
OCTOBER = "2026-10-01"
TOTALS = {"C1": D("2527.63"), "C2": D("1000.00"), "C3": D("1938.71"), "C4": D("180.00"), "C5": D("200.00")}
LATE = "event_id,customer_id,product_id,quantity,occurred_at\nlate-1,C5,API_CALLS,500,2026-10-12T08:00:00Z\n"


RERATINGS: list[int] = []  # one per re-rating of the month job in `jobs`


def settings_of(home: Path) -> Settings:
    return load_settings(env={"BILLING_HOME": str(home), "BILLING_CATALOG": str(home / "catalog.yaml")})


def totals(home: Path, month: str) -> dict[str, Decimal]:
    return dict(query(home, "SELECT billing_account_id, total FROM marts.fct_invoices WHERE period = ?", [month]))


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    """The reference month's files collected by `collect_sources`; then, before the month job runs, a
    late file waits in the inbox and the catalog file is edited (C5's commitment doubled)."""
    from pipelines.definitions import build_defs

    home = new_home(tmp_path_factory, "dagster-month")
    shutil.copy(REFERENCE / "catalog.yaml", home / "catalog.yaml")
    drop_reference_usage(home / "inbox")
    defs = build_defs(settings_of(home))
    instance = dg.DagsterInstance.ephemeral()
    collected = defs.resolve_job_def("collect_sources").execute_in_process(instance=instance)
    assert collected.success
    landed = query(home, "SELECT count(*) FROM raw.landed_files")[0][0]
    (home / "inbox" / "late.csv").write_text(LATE)
    catalog = (home / "catalog.yaml").read_text()
    assert catalog.count('minimum_commitment: "200.00"') == 1
    (home / "catalog.yaml").write_text(catalog.replace('minimum_commitment: "200.00"', 'minimum_commitment: "400.00"'))
    import quality.checks as q

    real = q.rerate_warehouse
    with pytest.MonkeyPatch.context() as patch:  # counted: how often the month job re-rates the month
        patch.setattr(q, "rerate_warehouse", lambda *args, **kwargs: RERATINGS.append(1) or real(*args, **kwargs))
        month = defs.resolve_job_def("billing_month").execute_in_process(partition_key=OCTOBER, instance=instance)
    return home, defs, instance, landed, month


def test_the_month_job_rates_what_the_collect_job_loaded(jobs):
    home, _, _, landed, month = jobs
    assert month.success
    assert totals(home, "2026-10") == TOTALS  # the specification's totals: no late file, no edited catalog
    assert (home / "inbox" / "late.csv").exists()  # not collected by the month job
    assert query(home, "SELECT count(*) FROM raw.landed_files")[0][0] == landed
    assert query(home, "SELECT count(*) FROM raw.events WHERE event_id = 'late-1'") == [(0,)]
    assert query(home, "SELECT minimum_commitment FROM raw.catalog_contracts WHERE contract_id = 'CT-5'") == [
        (D("200.00"),)]  # the catalog as the collect job loaded it
    # The rating run is recorded by this run (what issuing checks against), as `billing run` does.
    assert query(home, "SELECT run_id FROM ledger.rating_runs WHERE period = '2026-10'") == [(month.run_id,)]


def test_the_month_job_re_rates_once_beside_dbt_for_all_its_checks(jobs):
    """As `billing run`: the dbt step starts the checks' re-rating beside dbt, and both the misrated_lines
    asset check and ledger/rating_run's checks use it instead of re-rating the month again each."""
    _, _, _, _, month = jobs
    assert month.success
    assert len(RERATINGS) == 1


def test_checks_are_partitioned_with_their_asset(jobs):
    _, _, _, _, month = jobs
    evaluations = {ev.check_name: ev for ev in month.get_asset_check_evaluations()}
    assert {"unrated_usage", "missed_customers", "invoice_totals", "misrated_lines", "conservation",
            "events_expectations", "invoice_expectations"} <= set(evaluations)
    assert {ev.partition for ev in evaluations.values()} == {OCTOBER}
    assert not evaluations["unrated_usage"].passed  # C4's SMS and C999: the reference month's faults
    assert evaluations["missed_customers"].passed and evaluations["invoice_totals"].passed
    # The catalog file was edited after the collect run: the checks re-price with the catalog in the
    # warehouse, the one the month was priced with, and confirm every line.
    assert evaluations["misrated_lines"].passed, evaluations["misrated_lines"].description


def test_a_backfill_of_a_past_month_reads_the_warehouse(jobs):
    home, defs, instance, landed, _ = jobs
    september = defs.resolve_job_def("billing_month").execute_in_process(partition_key="2026-09-01",
                                                                         instance=instance)
    assert september.success
    evaluations = {ev.check_name: ev for ev in september.get_asset_check_evaluations()}
    assert {ev.partition for ev in evaluations.values()} == {"2026-09-01"}
    assert query(home, "SELECT count(*) FROM raw.landed_files")[0][0] == landed  # nothing collected
    assert (home / "inbox" / "late.csv").exists()
    assert totals(home, "2026-10") == TOTALS  # October untouched by September's run


def test_the_collect_job_then_the_month_job_bill_the_late_file_and_the_edited_catalog(jobs):
    home, defs, instance, landed, _ = jobs
    assert defs.resolve_job_def("collect_sources").execute_in_process(instance=instance).success
    assert not (home / "inbox" / "late.csv").exists()
    assert defs.resolve_job_def("billing_month").execute_in_process(partition_key=OCTOBER, instance=instance).success
    # C5 used 500 calls late (priced inside its commitment) and its commitment is now 400.00.
    assert totals(home, "2026-10") == {**TOTALS, "C5": D("400.00")}


@pytest.fixture
def dagster_home(tmp_path, monkeypatch) -> Path:
    """A real Dagster instance (SQLite storage) in a folder of its own, as `make dev` keeps one."""
    folder = tmp_path / "dagster_home"
    folder.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(folder))
    return folder


def test_a_month_billed_from_the_cli_shows_in_the_dagster_instance(billing_env, dagster_home, capsys):
    from billing.cli import EXIT_BLOCKED, main
    from pipelines.rating import billing_dbt_models

    drop_reference_usage(billing_env / "inbox")
    assert main(["run", "--month", "2026-10"]) == EXIT_BLOCKED
    out = capsys.readouterr().out
    assert "reported to Dagster" in out
    [(run_id,)] = query(billing_env, "SELECT run_id FROM ledger.rating_runs WHERE period = '2026-10'")

    with dg.DagsterInstance.get() as instance:
        # Every dbt model and the rating run: materialized for October, by `billing run`.
        for key in [*billing_dbt_models.keys, dg.AssetKey(["ledger", "rating_run"])]:
            assert instance.get_materialized_partitions(key) == {OCTOBER}, key
        invoices = instance.get_latest_materialization_event(dg.AssetKey(["marts", "fct_invoices"]))
        assert invoices.asset_materialization.partition == OCTOBER
        assert invoices.asset_materialization.tags["billing/run_id"] == run_id
        assert instance.get_latest_materialization_event(dg.AssetKey(["raw", "events"])) is not None
        assert instance.get_latest_materialization_event(dg.AssetKey(["raw", "catalog_rates"])) is not None
        # The checks' evaluations too, on the month's partition of the invoices.
        unrated = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey(["marts", "fct_invoices"]), "unrated_usage")])
        [execution] = unrated.values()
        evaluation = execution.event.dagster_event.event_specific_data
        assert not evaluation.passed and evaluation.partition == OCTOBER



def test_a_month_job_with_nothing_new_keeps_the_month_as_billing_run_does(jobs):
    """The skip of `billing run` (billing/month_inputs.py): nothing changed since the month's latest
    rating run, so the month job keeps its invoices, record and check results; the tag forces a rating."""
    home, defs, instance, _, _ = jobs
    job = defs.resolve_job_def("billing_month")
    runs = query(home, "SELECT run_id FROM ledger.rating_runs WHERE period = '2026-10' ORDER BY finished_at")
    before = totals(home, "2026-10")

    again = job.execute_in_process(partition_key=OCTOBER, instance=instance)
    assert again.success
    invoices = [m for m in again.get_asset_materialization_events()
                if m.asset_key == dg.AssetKey(["marts", "fct_invoices"])]
    [status] = [m.step_materialization_data.materialization.metadata["dbt_status"].value for m in invoices]
    assert status == f"unchanged since rating run {runs[-1][0]}"
    assert query(home, "SELECT run_id FROM ledger.rating_runs WHERE period = '2026-10' ORDER BY finished_at") == runs
    evaluations = {ev.check_name: ev for ev in again.get_asset_check_evaluations()}
    assert not evaluations["unrated_usage"].passed  # that run's outcome, with its findings
    assert evaluations["unrated_usage"].metadata["unchanged_since"].value == runs[-1][0]
    assert totals(home, "2026-10") == before

    forced = job.execute_in_process(partition_key=OCTOBER, instance=instance, tags={"billing/force": "true"})
    assert forced.success
    assert query(home, "SELECT run_id FROM ledger.rating_runs WHERE period = '2026-10' ORDER BY finished_at") == [
        *runs, (forced.run_id,)]
    assert totals(home, "2026-10") == before


def test_the_month_jobs_comparisons_are_kept_for_the_latest_runs_only(monkeypatch):
    """A long-lived Dagster process keeps one comparison per run and month it rated, not one per run ever made."""
    from types import SimpleNamespace

    from billing import runner
    from core.periods import month_window
    from pipelines import month

    made = []
    monkeypatch.setattr(runner, "inputs_unchanged", lambda settings, warehouse, period: made.append(1) or len(made))
    monkeypatch.setattr(month, "_compared", {})
    period = month_window("2026-10")
    for n in range(month.KEPT_RUNS * 3):
        context = SimpleNamespace(run=SimpleNamespace(run_id=f"run-{n}", asset_selection=None, tags={}))
        assert month.comparison(context, None, None, period) == n + 1
        assert month.comparison(context, None, None, period) == n + 1  # the same run: made once
    assert len(made) == month.KEPT_RUNS * 3
    assert len(month._compared) == month.KEPT_RUNS
