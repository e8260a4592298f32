"""The Dagster code location loads with the expected assets, checks, jobs, schedule and resources."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from support import REFERENCE, ROOT


def test_definitions_load_with_the_billing_graph():
    from pipelines.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert {"raw/landed_files", "raw/events", "raw/quarantine", "raw/catalog_customers",
            "staging/stg_usage__events", "intermediate/int_usage_segments_aggregated",
            "marts/fct_invoice_lines", "marts/fct_invoices", "marts/fct_unrated_usage"} <= keys
    # Lineage is one connected graph: an inbox file reaches the invoices.
    upstream = graph.get(dg.AssetKey(["marts", "fct_invoices"])).parent_keys
    assert dg.AssetKey(["marts", "fct_invoice_lines"]) in upstream
    events_children = graph.get(dg.AssetKey(["raw", "events"])).child_keys
    assert dg.AssetKey(["staging", "stg_usage__events"]) in events_children
    assert dg.AssetKey(["raw", "events"]) in graph.get(dg.AssetKey(["staging", "stg_usage__events"])).parent_keys

    checks = {key.name for key in graph.asset_check_keys}
    assert {"unrated_usage", "missed_customers", "invoice_totals", "misrated_lines", "conservation", "anomalies",
            "events_expectations", "invoice_expectations"} <= checks
    # The Great Expectations suites: on the month's events (the month's view of raw.events) and on the invoices.
    assert dg.AssetCheckKey(dg.AssetKey(["staging", "stg_usage__events"]), "events_expectations") in graph.asset_check_keys
    assert dg.AssetCheckKey(dg.AssetKey(["marts", "fct_invoices"]), "invoice_expectations") in graph.asset_check_keys
    # Each list of pipelines/checks.py holds what its name says; the code location registers both.
    from pipelines.checks import asset_checks, expectation_checks, quality_checks

    def names(checks):
        return [key.name for check in checks for key in check.check_keys]

    assert names(quality_checks) == ["unrated_usage", "missed_customers", "invoice_totals", "misrated_lines",
                                     "conservation", "anomalies", "rejected_files", "quarantined_rows",
                                     "conflicting_duplicates", "corrections_outside_lookback"]
    assert names(expectation_checks) == ["events_expectations", "invoice_expectations"]
    assert names(asset_checks) == names(quality_checks) + names(expectation_checks)
    assert set(names(asset_checks)) <= checks  # with the dbt tests, also asset checks

    # Every check is partitioned with its asset: it checks the month it is run for.
    for key in graph.asset_check_keys:
        assert isinstance(graph.get(key).partitions_def, dg.MonthlyPartitionsDefinition), key

    job = defs.resolve_job_def("billing_month")
    assert job.partitions_def is not None
    schedule = defs.resolve_schedule_def("billing_month_schedule")
    assert schedule.cron_schedule == "0 2 1 * *"  # 02:00 UTC on the 1st: bills the month just ended

    fct = graph.get(dg.AssetKey(["marts", "fct_invoices"]))
    assert isinstance(fct.partitions_def, dg.MonthlyPartitionsDefinition)
    assert fct.description  # descriptions are what people read in the UI



def test_definitions_have_sensors_and_without_a_sources_file_the_graph_is_the_inbox(billing_env):
    from core.config import load_settings
    from pipelines.definitions import build_defs, defs

    sensor = defs.resolve_sensor_def("upload_inbox_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED  # switched on deliberately
    assert sensor.job_name == "collect_sources"

    bare = build_defs(load_settings())  # billing_env: no sources file
    assert not any(key.path[0] == "sources" for key in bare.resolve_asset_graph().get_all_asset_keys())
    assert [sensor.name for sensor in bare.sensors] == ["upload_inbox_sensor"]


def test_configured_sources_are_assets_upstream_of_the_manifest_each_with_a_sensor(billing_env, monkeypatch):
    from core.config import load_settings
    from pipelines.definitions import build_defs

    from support import ROOT

    monkeypatch.setenv("BILLING_SOURCES", str(ROOT / "examples" / "sources.yaml"))
    defs = build_defs(load_settings())

    graph = defs.resolve_asset_graph()
    names = ["acme-sftp", "initech-sftp", "globex-api", "umbrella-api", "hooli-api", "partner-uploads"]
    manifest_parents = graph.get(dg.AssetKey(["raw", "landed_files"])).parent_keys
    for name in names:
        node = graph.get(dg.AssetKey(["sources", name]))
        assert node.group_name == "sources" and node.description
        assert node.key in manifest_parents  # lineage: which source fed the events
    assert "sftp" in graph.get(dg.AssetKey(["sources", "acme-sftp"])).kinds
    assert "api" in graph.get(dg.AssetKey(["sources", "globex-api"])).kinds

    sensors = {sensor.name for sensor in defs.sensors}
    assert sensors == {"upload_inbox_sensor", "acme_sftp_sensor", "initech_sftp_sensor", "globex_api_sensor",
                       "umbrella_api_sensor", "hooli_api_sensor", "partner_uploads_sensor"}
    assert defs.resolve_job_def("billing_month").partitions_def is not None


def job_assets(defs: dg.Definitions, name: str) -> set[str]:
    return {key.to_user_string() for key in defs.resolve_job_def(name).asset_layer.selected_asset_keys}


def test_the_month_job_rates_and_checks_and_the_collect_job_loads(billing_env):
    """A backfill of a past month must not collect today's sources or reload today's catalog: the month
    job selects only the month's rating, its record and the issuing; the rest is the collect job's."""
    from core.config import load_settings
    from pipelines.definitions import build_defs

    # Built here, not the module's `defs`: that one holds the sources of whichever test imported it first.
    defs = build_defs(load_settings())  # billing_env: the upload inbox, no sources file

    month = job_assets(defs, "billing_month")
    assert {"marts/fct_invoices", "staging/stg_usage__events", "ledger/rating_run", "ledger/issued_invoices"} <= month
    assert not {key for key in month if key.startswith(("raw/", "sources/"))}
    collect = job_assets(defs, "collect_sources")
    assert collect == {"raw/landed_files", "raw/events", "raw/quarantine", "raw/duplicates", "raw/catalog_receipts",
                       *(f"raw/catalog_{t}" for t in ("customers", "products", "rate_classes", "contracts",
                                                      "account_products", "rates", "rate_tiers", "currencies"))}
    assert defs.resolve_job_def("collect_sources").partitions_def is None
    assert defs.resolve_job_def("billing_month").partitions_def is not None


def test_resources_hold_the_settings_they_were_built_from(tmp_path):
    """Assets, checks and sensors read the settings from the `billing` resource, built once by
    build_defs(settings): every field comes back, the lifecycle's too, whatever the environment says later."""
    from core.config import load_settings
    from pipelines.definitions import build_defs
    from pipelines.resources import BillingResource

    settings = load_settings(REFERENCE / "billing.yaml", env={"BILLING_HOME": str(tmp_path),
                                                                "BILLING_ENGINE": "postgres"})
    assert settings.lifecycle.approval.two_approvers_from  # a non-default lifecycle, to see it come back
    resource = BillingResource.from_settings(settings)
    assert resource.settings() == settings
    assert resource.warehouse.engine == "postgres" and resource.paths.home == str(tmp_path)
    assert "POSTGRES_DSN" not in resource.rest and "postgresql://" not in str(resource)  # no secret in it

    defs = build_defs(settings)
    assert defs.resources["billing"].settings() == settings
    inbox_sensor = defs.resolve_sensor_def("upload_inbox_sensor")
    assert inbox_sensor.job_name == "collect_sources"


def test_dg_check_defs_passes():
    """`dg check defs` (pyproject's [tool.dg]) loads the code location as `dagster dev` would."""
    env = {**os.environ, "VIRTUAL_ENV": str(Path(sys.executable).parent.parent), "DAGSTER_DISABLE_TELEMETRY": "true",
           "DO_NOT_TRACK": "1"}
    done = subprocess.run([str(Path(sys.executable).parent / "dg"), "check", "defs"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "All definitions loaded successfully" in done.stdout + done.stderr
