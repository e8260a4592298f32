"""Run a billing month, stage by stage, without Dagster (the CLI, the benchmark and tests use it).

Dagster's assets in `pipelines/` call the same stage functions, so both paths bill identically:
`billing run` and the Dagster jobs differ only in who calls them.
Stages: prepare -> catalog -> collect -> normalize (Dagster: the `collect_sources` job) -> rate (dbt)
-> check and record the rating run (Dagster: the partitioned `billing_month` job) -> expectations, if asked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor

from catalog.land import CatalogLoad, land_catalog
from collectors import registry
from collectors.landing import Landed
from collectors.registry import CollectContext
from collectors.sources import SourceConfig, SourceConfigError, file_formats, load_sources
from core.config import Settings
from core.periods import Period
from normalize.load import FileLoad, load_pending
from warehouse.store import Warehouse, open_warehouse

Progress = Callable[[str], None]


def prepare(settings: Settings) -> Warehouse:
    """Open the warehouse and create the raw schema if it is new."""
    warehouse = open_warehouse(settings)
    warehouse.ensure_schema()
    return warehouse


def load_catalog_stage(settings: Settings, warehouse: Warehouse) -> CatalogLoad:
    """Validate the catalog file, keep it in the landing zone by sha256 and make it the warehouse's
    catalog, with a receipt (catalog/land.py); nothing changes when the warehouse already holds it."""
    return land_catalog(warehouse, settings.landing, settings.catalog)


def collect(settings: Settings, warehouse: Warehouse, progress: Progress | None = None,
            only: Iterable[str] | None = None) -> list[Landed]:
    """Land what is waiting at every source, each by its kind's collector (collectors/registry.py).

    The source `upload` collects the config's `inbox` (and its own `connection.inbox`, if the sources
    file gives it one); every other source is collected as its kind says (docs/sources.md). `only`
    limits the run to the named sources (Dagster collects one source per asset). A source that fails
    is reported and the others still run; then one error lists every failed source, so a run never
    bills with a source missing.
    """
    sources = load_sources(settings.sources)
    wanted = list(sources) if only is None else list(only)
    unknown = [name for name in wanted if name not in sources]
    if unknown:
        where = settings.sources or "the sources file (none configured)"
        raise SourceConfigError(f"unknown source(s) {', '.join(unknown)}; not defined in {where}")

    def say(message: str) -> None:
        if progress:
            progress(message)

    def collect_one(source: SourceConfig) -> list[Landed]:
        return registry.kind_of(source).collect(CollectContext(source, warehouse, settings, say))

    landed: list[Landed] = []
    failed: list[tuple[str, str]] = []
    for name in wanted:
        source = sources[name]
        say(f"source {name} ({source.kind}): collecting")
        try:
            items = collect_one(source)
        except Exception as exc:  # one source down must not hide what the others delivered
            failed.append((name, f"{type(exc).__name__}: {exc}"))
            say(f"source {name} ({source.kind}): FAILED: {exc}")
            continue
        for item in items:
            say(f"landed {item.original_name} from {name}{'' if item.is_new else ' (already received)'}")
        say(f"source {name} ({source.kind}): {len(items)} file(s), {sum(i.is_new for i in items)} new")
        landed.extend(items)
    if failed:
        lines = "\n".join(f"  - {name}: {error}" for name, error in failed)
        raise RuntimeError(
            f"collection failed for {len(failed)} of {len(wanted)} source(s); what the other sources "
            f"delivered is landed, but billing with these sources missing would under-bill. Fix them and "
            f"run again (landing is content-addressed, nothing loads twice):\n{lines}")
    return landed


def normalize(settings: Settings, warehouse: Warehouse, progress: Progress | None = None) -> list[FileLoad]:
    """Normalize every landed file not loaded yet into events, quarantine and duplicates."""
    def report(result: FileLoad) -> None:
        if not progress:
            return
        if result.status == "rejected":
            progress(f"REJECTED {result.original_name} (source {result.source}, {result.file_id}): {result.error}; "
                     "none of its rows is loaded (check rejected_files: it blocks the month's invoices)")
        elif result.error == "already loaded":
            progress(f"skipped {result.original_name}: already loaded by another run")
        else:
            progress(f"normalized {result.original_name}: {result.rows_loaded} events, "
                     f"{result.rows_quarantined} quarantined, {result.rows_duplicate} duplicates")

    return list(load_pending(warehouse, file_formats(load_sources(settings.sources)), on_file=report))


def rate(settings: Settings, period: Period) -> list[dict]:
    """Price the period with dbt (staging -> intermediate -> marts, with dbt's own tests)."""
    from .rating import run_dbt

    return run_dbt(settings, period)


def start_rerating(warehouse: Warehouse, period: Period) -> Future:
    """Start the independent re-rating of the period (quality.checks.prerate) in a background thread, to
    run while dbt rates it: it reads only raw.events and the catalog, and spends its time in Polars and
    DuckDB, on the core dbt's Python leaves idle. Hand `.result()` to `check` / `check_month`."""
    from quality.checks import prerate

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rerate")
    future = pool.submit(prerate, warehouse, period)
    pool.shutdown(wait=False)  # its thread ends with the re-rating
    return future


def rerating_made(future: Future):
    """The re-rating `start_rerating` made, or None if it failed: then the check re-rates by itself,
    and an error that is real is raised there."""
    try:
        return future.result()
    except Exception:  # noqa: BLE001
        return None


def check(settings: Settings, warehouse: Warehouse, period: Period, run_id: str | None = None, prerated=None):
    """Run the quality checks on the rated period, by the catalog in the warehouse (the one dbt priced
    with, never the file, which may have changed since); findings are recorded under `run_id`.
    `prerated`: the re-rating made beside dbt (`start_rerating`), used by misrated_lines if still current."""
    from quality.checks import run_checks

    return run_checks(warehouse, period, run_id=run_id, anomaly_factor=settings.anomaly_factor, prerated=prerated)


def check_month(settings: Settings, warehouse: Warehouse, period: Period, run_id: str | None = None, inputs=None,
                prerated=None):
    """The step after rating, in `billing run` and in the Dagster month job (`ledger/rating_run`): run the
    checks and record the rating run (the drafts and blocking findings that issuing checks against, and
    the `inputs` it was rated from, if given)."""
    outcomes = check(settings, warehouse, period, run_id, prerated)
    record_rating_run(settings, warehouse, period, outcomes, run_id, inputs=inputs)
    return outcomes


def rerate(settings: Settings, period: Period):
    """Rate and check the period again without collecting, after the ledger changed it (a manual charge,
    a price override: `billing invoices charge`, the desk), and record the run with its inputs as
    `billing run` does, so the next run of the month finds nothing changed."""
    warehouse = prepare(settings)
    inputs = inputs_unchanged(settings, warehouse, period).inputs
    rerating = start_rerating(warehouse, period)
    rate(settings, period)
    return check_month(settings, warehouse, period, inputs=inputs, prerated=rerating_made(rerating))


def record_rating_run(settings: Settings, warehouse: Warehouse, period: Period, outcomes,
                      run_id: str | None = None, inputs=None) -> str:
    """Record the drafts this run produced and its blocking findings: what issuing checks against
    (ledger/drafts.py). Approvals of drafts that changed lapse, and the action log says why.
    `inputs` (billing.month_inputs.MonthInputs, computed before rating) are recorded with the run:
    the next run of the month compares against them (`inputs_unchanged`)."""
    from ledger.drafts import record_rating_run as record

    with warehouse.transaction() as tx:
        run_id = record(tx, period.key, outcomes, run_id=run_id)  # cites the warehouse's catalog
        if inputs is not None:
            from .month_inputs import record_inputs

            record_inputs(tx, inputs, run_id, outcomes)
        return run_id


def inputs_unchanged(settings: Settings, warehouse: Warehouse, period: Period):
    """The period's inputs now against those of its latest rating run (billing.month_inputs.Comparison):
    `.unchanged` means rating and checking again would give the same invoices and findings."""
    from .month_inputs import compare

    return compare(settings, warehouse, period)


def expectations(settings: Settings, warehouse: Warehouse, period: Period, run_id: str | None = None):
    """Run the Great Expectations suites on the rated period (checks `events_expectations` and
    `invoice_expectations`, as Dagster's asset checks do): each suite's result is kept under
    <BILLING_HOME>/quality/validations/<period>/<run_id>/ (JSON and HTML) and the failures are
    recorded in marts.quality_findings. Returns quality.expectations.ExpectationCheck's.

    Not part of every run: importing Great Expectations alone takes about 6 seconds."""
    from quality.expectations import run_checks

    return run_checks(warehouse, period, settings.home, run_id)
