"""Run a billing month, stage by stage, without Dagster (the CLI, the benchmark and tests use it).

Dagster's assets in `pipelines/` call the same stage functions, so both paths bill identically.
Stages: prepare -> catalog -> collect -> normalize -> rate (dbt) -> check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from catalog.load import load_catalog
from catalog.write import write_catalog
from collectors.landing import Landed
from collectors.upload import collect_inbox
from normalize.load import FileLoad, load_pending
from warehouse.store import Warehouse

from .config import Settings
from .periods import Period

Progress = Callable[[str], None]


def prepare(settings: Settings) -> Warehouse:
    """Open the warehouse and create the raw schema if it is new."""
    warehouse = settings.warehouse()
    warehouse.ensure_schema()
    return warehouse


def load_catalog_stage(settings: Settings, warehouse: Warehouse) -> dict[str, int]:
    """Validate the catalog file and replace the warehouse's catalog tables with it."""
    return write_catalog(warehouse, load_catalog(settings.catalog))


def collect(settings: Settings, warehouse: Warehouse, progress: Progress | None = None) -> list[Landed]:
    """Land every file waiting in the upload inbox (other collectors: see collectors/)."""
    landed = []
    for item in collect_inbox(warehouse, settings.inbox, settings.landing):
        landed.append(item)
        if progress:
            progress(f"landed {item.original_name}{'' if item.is_new else ' (already received)'}")
    return landed


def normalize(settings: Settings, warehouse: Warehouse, progress: Progress | None = None) -> list[FileLoad]:
    """Normalize every landed file not loaded yet into events, quarantine and duplicates."""
    from collectors.sources import load_sources

    def report(result: FileLoad) -> None:
        if progress:
            progress(f"normalized {result.original_name}: {result.rows_loaded} events, "
                     f"{result.rows_quarantined} quarantined, {result.rows_duplicate} duplicates")

    return list(load_pending(warehouse, load_sources(settings.sources), on_file=report))


@dataclass
class RunSummary:
    period: Period
    landed: list[Landed] = field(default_factory=list)
    loads: list[FileLoad] = field(default_factory=list)


def rate(settings: Settings, period: Period) -> list[dict]:
    """Price the period with dbt (staging -> intermediate -> marts, with dbt's own tests)."""
    from .rating import run_dbt

    return run_dbt(settings, period)


def check(settings: Settings, warehouse: Warehouse, period: Period):
    """Run the quality checks on the rated period."""
    from quality.checks import run_checks

    return run_checks(warehouse, period, load_catalog(settings.catalog))
