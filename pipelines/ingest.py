"""Collection, normalization and the catalog as Dagster assets (the logic lives outside Dagster).

Asset keys are the raw tables they write (`raw/<table>`), which are also the dbt sources, so the
graph runs connected from an inbox file to an invoice line.
"""

import dagster as dg

from billing import runner
from billing.config import load_settings
from warehouse.schema import CATALOG_TABLES


def raw(table: str) -> dg.AssetKey:
    return dg.AssetKey(["raw", table])


@dg.multi_asset(
    specs=[dg.AssetSpec(raw(t), group_name="ingest", kinds={"python"},
                        description=f"Catalog table {t}, replaced whole from the validated catalog file.")
           for t in CATALOG_TABLES],
)
def catalog(context: dg.AssetExecutionContext):
    """The commercial catalog (customers, products, contracts, prices) validated and loaded into raw.catalog_*."""
    settings = load_settings()
    counts = runner.load_catalog_stage(settings, runner.prepare(settings))
    for table, rows in counts.items():
        yield dg.MaterializeResult(asset_key=raw(table),
                                   metadata={"rows": rows, "catalog_file": str(settings.catalog)})


@dg.asset(key=raw("landed_files"), group_name="ingest", kinds={"python"})
def landed_files(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """Files from the upload inbox, kept as received in the content-addressed landing zone, with the manifest."""
    settings = load_settings()
    landed = runner.collect(settings, runner.prepare(settings), context.log.info)
    return dg.MaterializeResult(metadata={
        "files_received": len(landed),
        "new_files": sum(1 for item in landed if item.is_new),
        "landing_zone": str(settings.landing),
    })


@dg.multi_asset(
    specs=[
        dg.AssetSpec(raw("events"), group_name="ingest", kinds={"polars"}, deps=[raw("landed_files")],
                     description="Typed UTC usage events, deduplicated by (source, event_id) across all history."),
        dg.AssetSpec(raw("quarantine"), group_name="ingest", kinds={"polars"}, deps=[raw("landed_files")],
                     description="Rows that could not become events, each with a reason a person can act on."),
        dg.AssetSpec(raw("duplicates"), group_name="ingest", kinds={"polars"}, deps=[raw("landed_files")],
                     description="Rows repeating an event already loaded, with the event they repeat."),
    ],
)
def raw_events(context: dg.AssetExecutionContext):
    """Landed files normalized by Polars; per file, rows received = events + quarantined + duplicates."""
    settings = load_settings()
    loads = runner.normalize(settings, runner.prepare(settings), context.log.info)
    rejected = [f"{item.original_name}: {item.error}" for item in loads if item.status == "rejected"]
    yield dg.MaterializeResult(asset_key=raw("events"), metadata={
        "files_loaded": len(loads),
        "events_loaded": sum(item.rows_loaded for item in loads),
        "files_rejected": dg.MetadataValue.json(rejected),
    })
    yield dg.MaterializeResult(asset_key=raw("quarantine"),
                               metadata={"rows_quarantined": sum(item.rows_quarantined for item in loads)})
    yield dg.MaterializeResult(asset_key=raw("duplicates"),
                               metadata={"rows_duplicate": sum(item.rows_duplicate for item in loads)})
