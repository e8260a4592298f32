"""Sensors: notice new usage cheaply and request a run that collects and normalizes that one source.

One sensor per source: `upload_inbox_sensor` for the config's upload inbox (the `upload` source),
and `<source>_sensor` for each source in the sources file whose kind can see something there. A
sensor only *looks*, as the source's collector kind says (collectors/registry.py: an upload kind
lists its folder, sftp lists the remote directory, api reads the clock); the run it requests does
the collecting (`sources/<name>` -> `raw/landed_files` -> `raw/events`), through the
`collect_sources` job.

Each RunRequest carries a `run_key` derived from what the sensor saw (the kind's fingerprint, e.g.
a sha256 of the listing), so a restarted daemon, or a tick that sees the same files again, never
requests the same load twice; and landing is content-addressed anyway, so a repeated run lands
nothing new. Every look is bounded by a timeout: a hung disk or server makes the tick skip, never
hang the daemon.

Sensors start stopped (turn them on in the UI, Automation tab, or `dagster sensor start`): a
sensor that polls a customer's server should be switched on deliberately, once its credentials and
pinned host key are in place.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import dagster as dg

from collectors import registry
from collectors.registry import CollectorKind
from collectors.sources import SourceConfig
from core.config import Settings
from warehouse.schema import CATALOG_RECEIPTS, CATALOG_TABLES

from .ingest import DEFAULT_SOURCE, EVENT_TABLES, raw, source_key

COLLECT_JOB = "collect_sources"


def ingest_keys(source_name: str) -> list[dg.AssetKey]:
    """What a run for one source materializes: its collection (if it has an asset) and normalization."""
    own = [] if source_name == DEFAULT_SOURCE else [source_key(source_name)]
    return own + [raw("landed_files")] + [raw(table) for table in EVENT_TABLES]


def build_collect_job(source_names: Sequence[str]) -> dg.UnresolvedAssetJobDefinition:
    """The unpartitioned job sensors target: every source's collection, the manifest, normalization, and
    the catalog (a sensor's run selects only its source's collection and normalization)."""
    keys = ([source_key(name) for name in source_names] + ingest_keys(DEFAULT_SOURCE)
            + [raw(table) for table in (CATALOG_RECEIPTS, *CATALOG_TABLES)])
    return dg.define_asset_job(
        COLLECT_JOB, selection=dg.AssetSelection.assets(*keys),
        description="Collect new usage from every source (a sensor's run: the source it saw change), normalize "
                    "it into raw.events, and land the catalog file into raw.catalog_*. Not partitioned: the "
                    "billing_month job rates a month from what this job loaded.",
    )


def sensor_name(source_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", source_name) + "_sensor"


def _request(source_name: str, fingerprint: str, files: int | None = None) -> dg.RunRequest:
    tags = {"billing/source": source_name}
    if files is not None:
        tags["billing/files_seen"] = str(files)
    return dg.RunRequest(run_key=f"{source_name}:{fingerprint}", asset_selection=ingest_keys(source_name),
                         tags=tags)


def build_sensor(source: SourceConfig, kind: CollectorKind, job, settings: Settings) -> dg.SensorDefinition:
    """The sensor of one source: its kind's fingerprint is the run_key; nothing to see skips the tick.
    `settings` are the code location's (read once when it loads), never the environment of a tick."""
    name = "upload_inbox_sensor" if source.name == DEFAULT_SOURCE else sensor_name(source.name)

    @dg.sensor(name=name, job=job, minimum_interval_seconds=kind.sensor_interval_seconds,
               default_status=dg.DefaultSensorStatus.STOPPED,
               description=f"Looks at {kind.name} source '{source.name}' ({kind.where(source)}); when there is "
                           f"something new, requests its collection and normalization. {kind.fingerprint_doc}.")
    def _sensor(context: dg.SensorEvaluationContext):
        try:
            seen = kind.fingerprint(source, settings)
        except Exception as exc:  # unreachable or hung: skip this tick; the collector's run reports it fully
            return dg.SkipReason(f"source '{source.name}': cannot look for new usage: {exc}")
        if seen.key is None:
            return dg.SkipReason(f"source '{source.name}': {seen.seen}")
        return _request(source.name, seen.key, seen.files)

    return _sensor


def build_sensors(sources: dict[str, SourceConfig], job, settings: Settings) -> list[dg.SensorDefinition]:
    """One sensor per source its kind can watch (the `upload` source always: the config's inbox).

    `sources` is what `load_sources` returns (the `upload` source included: its own inbox, if the
    sources file gives it one, is watched with the config's inbox).
    """
    return [build_sensor(source, registry.kind_of(source), job, settings) for source in sources.values()
            if source.name == DEFAULT_SOURCE or registry.kind_of(source).watches(source)]
