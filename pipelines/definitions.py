"""The one Dagster code location: `workspace.yaml` loads `defs` from here.

Importing this module reads the dbt manifest (built by `make setup` / `dbt parse`) and nothing else.
"""

import dagster as dg

from .checks import invoice_checks
from .ingest import catalog, landed_files, raw_events
from .rating import billing_dbt_models, dbt_resource

billing_month_job = dg.define_asset_job(
    "billing_month",
    selection=dg.AssetSelection.all(),
    description="Collect, normalize, load the catalog, rate and check one billing month.",
)

# On the 1st of each month at 02:00 UTC, bill the month that just ended.
month_end_schedule = dg.build_schedule_from_partitioned_job(billing_month_job, hour_of_day=2)

defs = dg.Definitions(
    assets=[catalog, landed_files, raw_events, billing_dbt_models],
    asset_checks=invoice_checks,
    jobs=[billing_month_job],
    schedules=[month_end_schedule],
    resources={"dbt": dbt_resource()},
    # DuckDB allows one writer per file: run a month's steps one after another, in one process.
    executor=dg.in_process_executor,
)
