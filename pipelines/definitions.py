"""The one Dagster code location: `workspace.yaml` (and `dg`, pyproject's [tool.dg]) loads `defs` from here.

Importing this module reads the settings once (core/config.py: billing.yaml and the environment), the
dbt manifest (built by `make setup` / `dbt parse`) and the sources file, if the config names one
(`sources:` / `$BILLING_SOURCES`: each source becomes an asset `sources/<name>` and gets a sensor);
nothing else. The settings reach every asset, check and sensor as the `billing` resource.

Two jobs bill:
- `collect_sources` (not partitioned): collect every source, normalize, load the catalog; the sensors
  request it for the source they saw change;
- `billing_month` (monthly partitions): rate the month from what is in the warehouse, check it, record
  the rating run and issue what needs no person; the schedule runs it for the month just ended, and a
  backfill of past months never re-collects or reloads anything.
"""

import dagster as dg

from collectors.sources import load_sources
from core.config import Settings, load_settings

from .checks import asset_checks
from .ingest import DEFAULT_SOURCE, build_landed_files, build_source_asset, catalog, raw_events
from .ledger import issue_invoices_job, issued_invoices, ledger_tables, rating_run
from .rating import billing_dbt_models
from .resources import BillingResource
from .sensors import build_collect_job, build_sensors

billing_month_job = dg.define_asset_job(
    "billing_month",
    selection=dg.AssetSelection.assets(billing_dbt_models, rating_run, issued_invoices),
    description="Rate one billing month from what is already in the warehouse (the events and catalog the "
                "collect_sources job loaded), check it, record the rating run, then issue what may be issued "
                "without a person (docs/lifecycle.md). Nothing is collected or reloaded.",
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
        sensors=build_sensors(sources, collect_job, settings),
        resources={"billing": BillingResource.from_settings(settings)},
        # DuckDB allows one writer per file: run a month's steps one after another, in one process.
        executor=dg.in_process_executor,
    )


defs = build_defs()
