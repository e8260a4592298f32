"""A month billed from the command line, reported to the Dagster instance of the same deployment.

`billing run` does what the two Dagster jobs do (billing/runner.py); when `DAGSTER_HOME` names an
instance, it then reports what it produced as runless asset events: a materialization of every asset
it wrote (the month's partition for the month's assets), and each quality check's evaluation on the
month. The Dagster UI then shows the month as billed, by `billing run`, with its checks.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from core.config import Settings
from core.periods import Period

from .checks import FCT_INVOICES, MONTH_EVENTS
from .ingest import DEFAULT_SOURCE, EVENT_TABLES, raw, source_key
from .ledger import rating_run
from .rating import billing_dbt_models


def partition_key(period: Period) -> str:
    """Dagster's key of the month's partition: 2026-10 -> 2026-10-01."""
    return period.start.isoformat()


def month_assets(settings: Settings, sources: Sequence[str]) -> tuple[list[dg.AssetKey], list[dg.AssetKey]]:
    """(unpartitioned, partitioned) keys of the assets a `billing run` of a month writes."""
    from warehouse.schema import CATALOG_TABLES

    loaded = [source_key(name) for name in sources if name != DEFAULT_SOURCE]
    loaded += [raw("landed_files"), *(raw(t) for t in EVENT_TABLES), *(raw(t) for t in CATALOG_TABLES)]
    return loaded, sorted(billing_dbt_models.keys, key=lambda k: k.path) + [rating_run.key]


def report_month(instance: dg.DagsterInstance, settings: Settings, period: Period, run_id: str,
                 sources: Sequence[str], outcomes: Sequence) -> int:
    """Report a month billed outside Dagster to `instance`; returns how many asset events were reported."""
    unpartitioned, partitioned = month_assets(settings, sources)
    tags = {"billing/run_id": run_id, "billing/by": "billing_run"}  # tag values: no spaces
    metadata = {"billed_by": "billing run", "run_id": run_id, "period": period.key, "engine": settings.engine}
    for key in unpartitioned:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, metadata=metadata, tags=tags))
    for key in partitioned:
        instance.report_runless_asset_event(dg.AssetMaterialization(
            asset_key=key, partition=partition_key(period), metadata=metadata, tags=tags))
    for outcome in outcomes:
        instance.report_runless_asset_event(dg.AssetCheckEvaluation(
            asset_key=MONTH_EVENTS if outcome.name == "events_expectations" else FCT_INVOICES,
            check_name=outcome.name, passed=outcome.passed,
            severity=dg.AssetCheckSeverity.ERROR if outcome.blocking else dg.AssetCheckSeverity.WARN,
            description=outcome.summary, partition=partition_key(period),
            metadata={"billed_by": "billing run", "run_id": run_id, "finding_count": len(outcome.findings)}))
    return len(unpartitioned) + len(partitioned)
