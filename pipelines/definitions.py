"""The one Dagster code location: `workspace.yaml` loads `defs` from here.

Importing this module reads the dbt manifest (built by `make setup` / `dbt parse`) and the sources
file, if the config names one (`sources:` / `$BILLING_SOURCES`: each source becomes an asset
`sources/<name>` and gets a sensor); nothing else.
"""

import dagster as dg

from collectors.sources import load_sources
from core.config import Settings, load_settings

from .checks import asset_checks
from .ingest import DEFAULT_SOURCE, build_landed_files, build_source_asset, catalog, raw_events
from .ledger import issue_invoices_job, issued_invoices, ledger_tables, rating_run
from .rating import billing_dbt_models, dbt_resource
from .sensors import build_collect_job, build_sensors

billing_month_job = dg.define_asset_job(
    "billing_month",
    selection=dg.AssetSelection.all(),
    description="Collect, normalize, load the catalog, rate and check one billing month, then issue what "
                "may be issued without a person (docs/lifecycle.md).",
)

# On the 1st of each month at 02:00 UTC, bill the month that just ended.
month_end_schedule = dg.build_schedule_from_partitioned_job(billing_month_job, hour_of_day=2)


def build_defs(settings: Settings | None = None) -> dg.Definitions:
    """The code location for these settings; with no sources file, only the upload inbox is collected."""
    settings = settings or load_settings()
    sources = load_sources(settings.sources)
    configured = [source for name, source in sources.items() if name != DEFAULT_SOURCE]
    names = [source.name for source in configured]
    collect_job = build_collect_job(names)
    return dg.Definitions(
        assets=[*(build_source_asset(source) for source in configured), build_landed_files(names),
                catalog, raw_events, billing_dbt_models, *ledger_tables, rating_run, issued_invoices],
        asset_checks=asset_checks,
        jobs=[billing_month_job, collect_job, issue_invoices_job],
        schedules=[month_end_schedule],
        sensors=build_sensors(sources, collect_job),
        resources={"dbt": dbt_resource()},
        # DuckDB allows one writer per file: run a month's steps one after another, in one process.
        executor=dg.in_process_executor,
    )


defs = build_defs()
