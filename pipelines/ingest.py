"""Collection, normalization and the catalog as Dagster assets (the logic lives outside Dagster).

Asset keys are the raw tables they write (`raw/<table>`), which are also the dbt sources, so the
graph runs connected from an inbox file to an invoice line. Each source configured in the sources
file (docs/sources.md) is an asset `sources/<name>` upstream of `raw/landed_files`, so lineage shows
which source fed the events; the default upload inbox is collected by `raw/landed_files` itself.
"""

from collections.abc import Iterable

import dagster as dg

from billing import runner
from collectors import registry
from collectors.sources import DEFAULT_SOURCE, SourceConfig, load_sources
from warehouse.schema import CATALOG_RECEIPTS, CATALOG_TABLES

from .resources import BillingResource

# DEFAULT_SOURCE, the always-present upload source (the config's inbox), is collected by raw/landed_files.
EVENT_TABLES = ("events", "quarantine", "duplicates")


def raw(table: str) -> dg.AssetKey:
    return dg.AssetKey(["raw", table])


def source_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["sources", name])


def configured_sources(sources_file=None) -> dict[str, SourceConfig]:
    """The sources file's sources, except the default `upload` one; empty when there is no file."""
    if sources_file is None:
        return {}
    return {name: source for name, source in load_sources(sources_file).items() if name != DEFAULT_SOURCE}


def describe_source(source: SourceConfig) -> str:
    """What the UI shows for a source asset: where it collects from (its kind says), and its format."""
    fmt = source.file_format
    return (f"Source '{source.name}' ({source.kind}, format {fmt.format}"
            f"{', naive times in ' + fmt.timezone if fmt.timezone else ''}): collects "
            f"{registry.kind_of(source).where(source)} into the content-addressed landing zone and the manifest.")


def build_source_asset(source: SourceConfig) -> dg.AssetsDefinition:
    """One configured source as an asset that lands what it has waiting (one poll of one collector)."""
    name = source.name

    @dg.asset(key=source_key(name), group_name="sources", kinds={"python", source.kind},
              description=describe_source(source))
    def _collect(context: dg.AssetExecutionContext, billing: BillingResource) -> dg.MaterializeResult:
        settings = billing.settings()
        landed = runner.collect(settings, runner.prepare(settings), context.log.info, only=[name])
        return dg.MaterializeResult(metadata={
            "source": name,
            "collector": source.kind,
            "files_received": len(landed),
            "new_files": sum(1 for item in landed if item.is_new),
            "landing_zone": str(settings.landing),
        })

    return _collect


@dg.multi_asset(
    specs=[dg.AssetSpec(raw(CATALOG_RECEIPTS), group_name="ingest", kinds={"python"},
                        description="Every load of a catalog file: its sha256 (its bytes kept in the landing zone "
                                    "under it), the path it was read from, when.")]
    + [dg.AssetSpec(raw(t), group_name="ingest", kinds={"python"},
                    description=f"Catalog table {t}, replaced whole from the validated catalog file; every row "
                                "carries the file's catalog_sha256.")
       for t in CATALOG_TABLES],
)
def catalog(context: dg.AssetExecutionContext, billing: BillingResource):
    """The commercial catalog (customers, products, contracts, prices) validated, kept in the landing zone by
    sha256 and loaded into raw.catalog_*; the same file loaded again changes nothing."""
    settings = billing.settings()
    load = runner.load_catalog_stage(settings, runner.prepare(settings))
    about = {"catalog_file": str(settings.catalog), "catalog_sha256": load.sha256, "changed": load.changed}
    yield dg.MaterializeResult(asset_key=raw(CATALOG_RECEIPTS), metadata=about)
    for table in CATALOG_TABLES:
        rows = {"rows": load.counts[table]} if load.changed else {}
        yield dg.MaterializeResult(asset_key=raw(table), metadata={**rows, **about})


def build_landed_files(source_names: Iterable[str] = ()) -> dg.AssetsDefinition:
    """The manifest asset, downstream of every configured source's asset."""

    @dg.asset(key=raw("landed_files"), group_name="ingest", kinds={"python"},
              deps=[source_key(name) for name in source_names])
    def landed_files(context: dg.AssetExecutionContext, billing: BillingResource) -> dg.MaterializeResult:
        """Every file received, kept as received in the content-addressed landing zone, with the manifest.

        Collects the upload inbox here; each configured source lands its files through its own
        `sources/<name>` asset upstream.
        """
        settings = billing.settings()
        landed = runner.collect(settings, runner.prepare(settings), context.log.info, only=[DEFAULT_SOURCE])
        return dg.MaterializeResult(metadata={
            "files_received": len(landed),
            "new_files": sum(1 for item in landed if item.is_new),
            "landing_zone": str(settings.landing),
        })

    return landed_files


landed_files = build_landed_files()


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
def raw_events(context: dg.AssetExecutionContext, billing: BillingResource):
    """Landed files normalized by Polars; per file, rows received = events + quarantined + duplicates."""
    settings = billing.settings()
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
