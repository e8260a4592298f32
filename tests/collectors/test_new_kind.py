"""Adding a collector kind is one module: this one defines a local-folder kind, registers it, and
bills a month with it through `billing run`; the Dagster code location gets its asset and sensor.

Nothing outside this module knows the kind: the sources file, runner.collect, the source assets
and the sensors all go through collectors/registry.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml

from billing.cli import EXIT_BLOCKED, main
from collectors import registry
from collectors.landing import Landed, land_file
from collectors.registry import CollectContext, CollectorKind, Fingerprint, digest
from collectors.sources import SourceConfig, SourceConfigError, load_sources
from core.config import Settings
from formats import Section

from support import drop_reference_usage


@dataclass(frozen=True)
class LocalDirSettings:
    folder: Path
    pattern: str = "*"


class LocalDirKind(CollectorKind):
    name = "localdir"
    description = "every file of a local folder, landed once"
    settings_schema = LocalDirSettings
    sensor_interval_seconds = 60
    fingerprint_doc = "run_key: sha256 of the (name, size, mtime) of the matching files"

    def parse_settings(self, connection: Section, base_dir: Path) -> LocalDirSettings:
        return LocalDirSettings(folder=connection.path("folder", base_dir, required=True),
                                pattern=connection.get("pattern", str, "*"))

    def _files(self, source: SourceConfig) -> list[Path]:
        return sorted(source.connection.folder.glob(source.connection.pattern))

    def collect(self, context: CollectContext) -> list[Landed]:
        return [land_file(context.warehouse, context.landing, path, source=context.source.name, collector=self.name)
                for path in self._files(context.source)]

    def fingerprint(self, source: SourceConfig, settings: Settings) -> Fingerprint:
        listing = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in self._files(source)]
        if not listing:
            return Fingerprint(None, f"no files matching {source.connection.pattern}")
        return Fingerprint(digest(listing), f"{len(listing)} file(s)", len(listing))

    def where(self, source: SourceConfig) -> str:
        return f"the local folder {source.connection.folder}"


KIND = LocalDirKind()  # what a package's entry point names (below)


@pytest.fixture
def localdir_kind():
    kind = registry.register(LocalDirKind())
    yield kind
    registry.unregister(kind.name)


def write_sources(home: Path, monkeypatch, **connection) -> Path:
    path = home / "sources.yaml"
    path.write_text(yaml.safe_dump({"sources": [
        {"name": "partner-dir", "kind": "localdir", "connection": connection}]}))  # format: auto, by suffix
    monkeypatch.setenv("BILLING_SOURCES", str(path))
    return path


def test_a_month_is_billed_from_a_kind_defined_in_one_module(localdir_kind, billing_env: Path, monkeypatch, capsys):
    (billing_env / "drop").mkdir()
    drop_reference_usage(billing_env / "drop")  # not the inbox: only the new kind can find these files
    write_sources(billing_env, monkeypatch, folder="drop")

    # The code location: the source is an asset of its kind, with a stopped sensor keyed on its fingerprint.
    from core.config import load_settings
    from pipelines.definitions import build_defs

    defs = build_defs(load_settings())
    node = defs.resolve_asset_graph().get(dg.AssetKey(["sources", "partner-dir"]))
    assert "localdir" in node.kinds and "local folder" in node.description
    sensor = defs.resolve_sensor_def("partner_dir_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    [request] = sensor.evaluate_tick(dg.build_sensor_context()).run_requests
    assert request.run_key.startswith("partner-dir:")
    assert dg.AssetKey(["sources", "partner-dir"]) in request.asset_selection

    assert main(["run", "--month", "2026-10"]) == EXIT_BLOCKED  # billed; the reference month's unrated usage blocks
    out = capsys.readouterr().out
    assert "source partner-dir (localdir)" in out
    con = duckdb.connect(str(billing_env / "warehouse.duckdb"))
    assert con.execute("SELECT DISTINCT source, collector FROM raw.landed_files").fetchall() \
        == [("partner-dir", "localdir")]
    assert con.execute("SELECT count(*) FROM raw.events WHERE source <> 'partner-dir'").fetchone() == (0,)
    # the same invoices as the reference month delivered through the upload inbox (tests/test_cli.py)
    assert con.execute("SELECT count(*), sum(total) FROM marts.fct_invoices WHERE currency = 'USD'").fetchone() \
        == (4, Decimal("5666.34"))


def test_the_new_kinds_settings_are_checked_like_any_other(localdir_kind, billing_env: Path, monkeypatch):
    path = write_sources(billing_env, monkeypatch, pattern="*.csv")
    with pytest.raises(SourceConfigError, match=r"source 'partner-dir': connection\.folder: is required"):
        load_sources(path)
    path = write_sources(billing_env, monkeypatch, folder="drop", recursive=True)
    with pytest.raises(SourceConfigError, match=r"connection\.recursive: unknown setting; expected one of folder, "
                                                r"pattern"):
        load_sources(path)


def test_an_unregistered_kind_is_refused_naming_the_known_ones(billing_env: Path, monkeypatch):
    path = write_sources(billing_env, monkeypatch, folder="drop")
    with pytest.raises(SourceConfigError, match=r"source 'partner-dir': kind: must be one of upload, sftp, api, "
                                                r"got 'localdir'"):
        load_sources(path)


def test_a_kind_in_another_package_is_found_by_its_entry_point(billing_env: Path, monkeypatch):
    """An installed package declares `[project.entry-points."billing.collectors"] localdir = "its.module:KIND"`."""
    import importlib.metadata

    declared = importlib.metadata.EntryPoint("localdir", f"{__name__}:KIND", registry.ENTRY_POINTS)
    real = importlib.metadata.entry_points
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda **kw: [declared] if kw.get("group") == registry.ENTRY_POINTS else real(**kw))
    monkeypatch.setattr(registry, "_builtin_loaded", False)  # as in a new process
    (billing_env / "drop").mkdir()
    try:
        source = load_sources(write_sources(billing_env, monkeypatch, folder="drop"))["partner-dir"]
        assert registry.kind_of(source) is KIND
        assert source.connection == LocalDirSettings(folder=billing_env / "drop")
    finally:
        registry.unregister("localdir")
