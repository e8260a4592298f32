"""The dbt project as Dagster assets, partitioned by billing month.

The assets come from the dbt manifest (one per model, lineage from the raw tables to the invoice
marts), and materializing a month rates it exactly as `billing run` does: `runner.rate` (billing/
rating.py), on DuckDB, PostgreSQL or Spark (export to Parquet, dbt on Spark, copy back). dbt's own
tests run inside that `dbt build` and fail the step; they are not separate asset checks.
"""

from collections.abc import Mapping
from graphlib import TopologicalSorter
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtProject, dbt_assets

from billing.rating import DBT_PROJECT_DIR

from . import month
from .partitions import billing_months, period_of
from .resources import BillingResource

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR)


class BillingTranslator(DagsterDbtTranslator):
    """Groups dbt models by layer (staging, intermediate, marts) in the asset graph; a dbt source is
    the warehouse table it reads (raw/events, ledger/invoices), the asset that writes it, whatever
    domain the source is named after (catalog, usage, ingest)."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return dg.AssetKey([dbt_resource_props["schema"], dbt_resource_props["identifier"]])
        return super().get_asset_key(dbt_resource_props)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] == "model":
            return dbt_resource_props["fqn"][1] if len(dbt_resource_props["fqn"]) > 2 else "dbt"
        return super().get_group_name(dbt_resource_props)


translator = BillingTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=False))


@dbt_assets(
    manifest=dbt_project.manifest_path,
    # a month builds the models and data tests; the unit tests (SQL, not data) run in `make test`,
    # as with `billing run` (dbt_project/selectors.yml)
    exclude="test_type:unit",
    dagster_dbt_translator=translator,
    partitions_def=billing_months,
    # One run per month, like the other assets of the month job: a month's late-usage adjustments read
    # the months before it, so a backfill rates them one after another.
    backfill_policy=dg.BackfillPolicy.multi_run(1),
)
def billing_dbt_models(context: dg.AssetExecutionContext, billing: BillingResource):
    """Staging, rating and invoice marts for one billing month, rated by the code `billing run` uses."""
    period = period_of(context.partition_key)
    settings = billing.settings()
    kept = month.unchanged(context, settings, billing.open_warehouse(), period)
    if kept is not None:  # as `billing run`: nothing changed since the month's latest rating run
        context.log.info(f"{period.key}: {kept.describe()}; not rated again (run tag {month.FORCE_TAG}=true "
                         "rates anyway)")
        nodes, status = {}, f"unchanged since rating run {kept.previous.run_id}"
    else:
        month.start_rerating(context, billing.open_warehouse(), period)  # the checks' re-rating, beside dbt
        nodes = {node["name"]: node for node in billing.dbt.rate(settings, period)}  # model names are unique
        status = "not run (nothing to rebuild)"
    selected = context.selected_asset_keys
    deps = context.assets_def.asset_deps
    # Dagster takes a multi-asset's results upstream first.
    for key in TopologicalSorter({key: deps.get(key, set()) & selected for key in selected}).static_order():
        node = nodes.get(key.path[-1])  # a model's key is [schema, name]
        yield dg.MaterializeResult(asset_key=key, metadata={
            "period": period.key,
            "engine": settings.engine,
            "dbt_status": node["status"] if node else status,
        })
