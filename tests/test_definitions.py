"""The Dagster code location loads with the expected assets, checks, job and schedule."""

import dagster as dg


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
    assert {"unrated_usage", "missed_customers", "invoice_totals", "misrated_lines"} <= checks

    job = defs.resolve_job_def("billing_month")
    assert job.partitions_def is not None
    schedule = defs.resolve_schedule_def("billing_month_schedule")
    assert schedule.cron_schedule == "0 2 1 * *"  # 02:00 UTC on the 1st: bills the month just ended

    fct = graph.get(dg.AssetKey(["marts", "fct_invoices"]))
    assert isinstance(fct.partitions_def, dg.MonthlyPartitionsDefinition)
    assert fct.description  # descriptions are what people read in the UI
