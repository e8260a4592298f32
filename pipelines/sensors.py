"""Sensors: notice new usage cheaply and request a run that collects and normalizes that one source.

One sensor per source: `upload_inbox_sensor` for the config's upload inbox (the `upload` source),
and `<source>_sensor` for each source in the sources file. A sensor only *looks* (lists a folder,
lists a remote directory, or reads the clock); the run it requests does the collecting
(`sources/<name>` -> `raw/landed_files` -> `raw/events`), through the `collect_sources` job.

Each RunRequest carries a `run_key` derived from what the sensor saw (a sha256 of the listing), so
a restarted daemon, or a tick that sees the same files again, never requests the same load twice;
and landing is content-addressed anyway, so a repeated run lands nothing new. Every listing is
bounded by a timeout: a hung disk or server makes the tick skip, never hang the daemon.

Sensors start stopped (turn them on in the UI, Automation tab, or `dagster sensor start`): a
sensor that polls a customer's server should be switched on deliberately, once its credentials and
pinned host key are in place.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg

from collectors.sources import SftpSettings, SourceConfig, UploadSettings
from collectors.upload import pending_files
from core.config import load_settings

from .ingest import DEFAULT_SOURCE, EVENT_TABLES, raw, source_key

T = TypeVar("T")

INBOX_INTERVAL_SECONDS = 30
INBOX_LISTING_TIMEOUT_SECONDS = 10.0
SFTP_INTERVAL_SECONDS = 300
API_INTERVAL_SECONDS = 300
API_BUCKET_SECONDS = 3600  # an API source is fetched at most once per hour of the clock
COLLECT_JOB = "collect_sources"


def ingest_keys(source_name: str) -> list[dg.AssetKey]:
    """What a run for one source materializes: its collection (if it has an asset) and normalization."""
    own = [] if source_name == DEFAULT_SOURCE else [source_key(source_name)]
    return own + [raw("landed_files")] + [raw(table) for table in EVENT_TABLES]


def build_collect_job(source_names: Sequence[str]) -> dg.UnresolvedAssetJobDefinition:
    """The unpartitioned job sensors target: every source's collection, the manifest and normalization."""
    keys = [source_key(name) for name in source_names] + ingest_keys(DEFAULT_SOURCE)
    return dg.define_asset_job(
        COLLECT_JOB, selection=dg.AssetSelection.assets(*keys),
        description="Collect new usage from the sources a sensor saw change, and normalize it into raw.events.",
    )


def within(seconds: float, fn: Callable[..., T], *args: Any) -> T:
    """fn(*args) in a helper thread, given up after `seconds` (the thread is left to finish on its own)."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = fn(*args)
        except BaseException as exc:  # handed to the caller below
            result["error"] = exc

    thread = threading.Thread(target=target, name="sensor-listing", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise TimeoutError(f"no answer within {seconds:g}s")
    if "error" in result:
        raise result["error"]
    return result["value"]


def digest(listing: Any) -> str:
    return hashlib.sha256(json.dumps(listing, sort_keys=True, default=str).encode()).hexdigest()


def inbox_listing(inboxes: Sequence[Path]) -> list[tuple[str, str, int, int]]:
    """(inbox, name, size, mtime_ns) of every file waiting to be collected, sorted."""
    listing = []
    for inbox in inboxes:
        for path in pending_files(inbox):
            try:
                st = path.lstat()  # a link is listed as itself (collecting refuses it), never followed
            except FileNotFoundError:  # collected or removed between the listing and the stat
                continue
            listing.append((str(inbox), path.name, st.st_size, st.st_mtime_ns))
    return sorted(listing)


def sftp_listing(source: SourceConfig) -> list[tuple[str, int, int]]:
    """(name, size, mtime) of the files the SFTP collector would consider, one bounded connection."""
    from collectors.sftp import list_remote  # the same pinned host keys and credentials as the collector

    s = source.connection
    assert isinstance(s, SftpSettings)
    return within(s.connect_timeout_seconds + s.timeout_seconds + 5,
                  lambda: [(r.name, r.size, r.mtime) for r in list_remote(source)])


def sensor_name(source_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", source_name) + "_sensor"


def _request(source_name: str, fingerprint: str, files: int | None = None) -> dg.RunRequest:
    tags = {"billing/source": source_name}
    if files is not None:
        tags["billing/files_seen"] = str(files)
    return dg.RunRequest(run_key=f"{source_name}:{fingerprint}", asset_selection=ingest_keys(source_name),
                         tags=tags)


def build_upload_sensor(source_name: str, own_inbox: Path | None, job) -> dg.SensorDefinition:
    """Watches an upload folder; run_key = sha256 of the sorted (inbox, name, size, mtime) listing."""

    def inboxes() -> list[Path]:
        folders = [load_settings().inbox] if source_name == DEFAULT_SOURCE else []
        if own_inbox is not None and own_inbox not in folders:
            folders.append(own_inbox)
        return folders

    @dg.sensor(name="upload_inbox_sensor" if source_name == DEFAULT_SOURCE else sensor_name(source_name),
               job=job, minimum_interval_seconds=INBOX_INTERVAL_SECONDS,
               default_status=dg.DefaultSensorStatus.STOPPED,
               description=f"New files in the upload folder of source '{source_name}': requests its collection "
                           "and normalization. run_key: sha256 of the sorted (folder, name, size, mtime) listing.")
    def _sensor(context: dg.SensorEvaluationContext):
        folders = inboxes()
        try:
            listing = within(INBOX_LISTING_TIMEOUT_SECONDS, inbox_listing, folders)
        except (OSError, TimeoutError) as exc:
            return dg.SkipReason(f"cannot list {', '.join(map(str, folders))}: {exc}")
        if not listing:
            return dg.SkipReason(f"no files waiting in {', '.join(map(str, folders))}")
        return _request(source_name, digest(listing), len(listing))

    return _sensor


def build_sftp_sensor(source: SourceConfig, job) -> dg.SensorDefinition:
    """Lists the remote folder; run_key = sha256 of the sorted (name, size, mtime) of matching files."""

    @dg.sensor(name=sensor_name(source.name), job=job, minimum_interval_seconds=SFTP_INTERVAL_SECONDS,
               default_status=dg.DefaultSensorStatus.STOPPED,
               description=f"Lists SFTP source '{source.name}' (one connection, bounded by its connect and request "
                           "timeouts); when the matching files differ from the last run's, requests its "
                           "collection and normalization. run_key: sha256 of the remote (name, size, mtime) listing.")
    def _sensor(context: dg.SensorEvaluationContext):
        try:
            listing = sftp_listing(source)
        except Exception as exc:  # an unreachable server skips this tick; the collector's run reports it fully
            return dg.SkipReason(f"source '{source.name}': cannot list the remote folder: {exc}")
        if not listing:
            return dg.SkipReason(f"source '{source.name}': no matching files in the remote folder")
        return _request(source.name, digest(listing), len(listing))

    return _sensor


def build_api_sensor(source: SourceConfig, job) -> dg.SensorDefinition:
    """An API cannot be listed without fetching it, so this sensor uses a time bucket.

    run_key = the source and the current hour (UTC): at most one collection per hour, and a
    restarted daemon asks for the same hour's run again under the same key, which Dagster skips.
    What to fetch is the collector's checkpoint (raw.api_checkpoints), so nothing is fetched twice.
    """

    @dg.sensor(name=sensor_name(source.name), job=job, minimum_interval_seconds=API_INTERVAL_SECONDS,
               default_status=dg.DefaultSensorStatus.STOPPED,
               description=f"Requests a collection of API source '{source.name}' once per hour (an API cannot be "
                           "listed cheaply: run_key is the hour, UTC); the collector resumes from its checkpoint.")
    def _sensor(context: dg.SensorEvaluationContext):
        bucket = time.strftime("%Y-%m-%dT%H:00Z", time.gmtime(time.time() // API_BUCKET_SECONDS * API_BUCKET_SECONDS))
        return _request(source.name, bucket)

    return _sensor


def build_sensors(sources: dict[str, SourceConfig], job) -> list[dg.SensorDefinition]:
    """The upload inbox's sensor, plus one per other source (an upload source needs its own inbox).

    `sources` is what `load_sources` returns (the `upload` source included: its own inbox, if the
    sources file gives it one, is watched with the config's inbox).
    """
    default = sources.get(DEFAULT_SOURCE)
    default_inbox = default.connection.inbox if default and isinstance(default.connection, UploadSettings) else None
    sensors = [build_upload_sensor(DEFAULT_SOURCE, default_inbox, job)]
    for source in sources.values():
        if source.name == DEFAULT_SOURCE:
            continue
        if source.kind == "sftp":
            sensors.append(build_sftp_sensor(source, job))
        elif source.kind == "api":
            sensors.append(build_api_sensor(source, job))
        elif isinstance(source.connection, UploadSettings) and source.connection.inbox is not None:
            sensors.append(build_upload_sensor(source.name, source.connection.inbox, job))
    return sensors
