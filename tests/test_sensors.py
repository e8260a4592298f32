"""Sensors request content-keyed runs; `collect` runs every configured source and names the ones that fail."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import dagster as dg
import pytest
import yaml

from billing import runner
from collectors.sources import load_sources
from core.config import load_settings
from pipelines.ingest import build_source_asset
from pipelines.resources import BillingResource
from pipelines.sensors import build_collect_job, build_sensors

CSV = "event_id,customer_id,product_id,quantity,occurred_at\n{id},cust-1,storage-gb,1.5,2026-10-03T08:00:00Z\n"
# Any well-formed key: nothing ever answers on the port, so it is never compared.
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEZokQ+lvgfZvpsLT0r6zZEuoz2OKgiZCE+EjDH0rhXU"


def inbox_sensor() -> dg.SensorDefinition:
    sensors = {s.name: s for s in build_sensors(load_sources(None), build_collect_job([]), load_settings())}
    return sensors["upload_inbox_sensor"]


def run_requests(sensor: dg.SensorDefinition) -> list[dg.RunRequest]:
    return list(sensor.evaluate_tick(dg.build_sensor_context()).run_requests or [])


def test_inbox_sensor_keys_runs_by_content(billing_env: Path):
    sensor = inbox_sensor()
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    assert run_requests(sensor) == []  # empty inbox: nothing to do, and the tick says where it looked
    assert sensor.evaluate_tick(dg.build_sensor_context()).skip_message \
        == f"source 'upload': no files waiting in {billing_env / 'inbox'}"

    (billing_env / "inbox" / "usage.csv").write_text(CSV.format(id="e-1"))
    (billing_env / "inbox" / "half.csv.part").write_text("still being written")  # ignored, like the collector
    first = run_requests(sensor)
    assert len(first) == 1
    source, _, fingerprint = first[0].run_key.partition(":")
    assert source == "upload" and len(fingerprint) == 64  # sha256 of the listing
    assert {key.to_user_string() for key in first[0].asset_selection} >= {"raw/landed_files", "raw/events"}

    again = run_requests(sensor)
    assert [r.run_key for r in again] == [first[0].run_key]  # same files, same key: Dagster skips it

    (billing_env / "inbox" / "more.csv").write_text(CSV.format(id="e-2"))
    changed = run_requests(sensor)
    assert changed[0].run_key != first[0].run_key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def two_sources(billing_env: Path, monkeypatch) -> Path:
    """A sources file: an upload source with its own inbox, and an SFTP source nobody answers for."""
    (billing_env / "partners").mkdir()
    doc = {"sources": [
        {"name": "partners", "kind": "upload", "format": "csv", "connection": {"inbox": "partners"}},
        {"name": "acme-sftp", "kind": "sftp", "format": "csv", "connection": {
            "host": "127.0.0.1", "port": free_port(), "username": "billing", "password_env": "TEST_ACME_PASSWORD",
            "host_key": HOST_KEY, "remote_dir": "/outgoing", "settle_seconds": 0, "connect_timeout_seconds": 1,
            "timeout_seconds": 1, "retry": {"max_attempts": 2, "initial_seconds": 0.01, "max_seconds": 0.02}}},
    ]}
    path = billing_env / "sources.yaml"
    path.write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("BILLING_SOURCES", str(path))
    monkeypatch.setenv("TEST_ACME_PASSWORD", "not-a-real-password")
    return billing_env


def test_collect_lands_what_it_can_and_names_the_failed_source(two_sources: Path):
    (two_sources / "inbox" / "default.csv").write_text(CSV.format(id="d-1"))
    (two_sources / "partners" / "p.csv").write_text(CSV.format(id="p-1"))
    settings = load_settings()
    warehouse = runner.prepare(settings)
    said: list[str] = []

    with pytest.raises(RuntimeError) as failure:
        runner.collect(settings, warehouse, said.append)

    message = str(failure.value)
    assert "acme-sftp" in message and "1 of 3 source(s)" in message
    assert "partners" not in message.split("\n", 1)[1]  # only the failed source is listed
    assert "not-a-real-password" not in message
    assert any("acme-sftp" in line and "FAILED" in line for line in said)
    with warehouse.transaction() as tx:
        landed = tx.fetchall("SELECT source, original_name FROM raw.landed_files ORDER BY source")
    assert landed == [("partners", "p.csv"), ("upload", "default.csv")]
    assert (two_sources / "partners" / "processed" / "p.csv").exists()


def test_source_asset_collects_only_its_source(two_sources: Path):
    (two_sources / "inbox" / "default.csv").write_text(CSV.format(id="d-1"))
    (two_sources / "partners" / "p.csv").write_text(CSV.format(id="p-1"))
    sources = load_sources(os.environ["BILLING_SOURCES"])
    resources = {"billing": BillingResource.from_settings(load_settings())}

    result = dg.materialize([build_source_asset(sources["partners"])], resources=resources)

    assert result.success
    [materialization] = result.asset_materializations_for_node("sources__partners")
    assert materialization.metadata["new_files"].value == 1
    assert (two_sources / "inbox" / "default.csv").exists()  # the default inbox is raw/landed_files' job

    failed = dg.materialize([build_source_asset(sources["acme-sftp"])], resources=resources, raise_on_error=False)
    assert not failed.success


def test_every_source_gets_a_stopped_sensor(two_sources: Path):
    sources = load_sources(os.environ["BILLING_SOURCES"])
    sensors = {s.name: s for s in build_sensors(sources, build_collect_job(["partners", "acme-sftp"]),
                                                load_settings())}
    assert set(sensors) == {"upload_inbox_sensor", "partners_sensor", "acme_sftp_sensor"}
    assert all(s.default_status == dg.DefaultSensorStatus.STOPPED for s in sensors.values())

    (two_sources / "partners" / "p.csv").write_text(CSV.format(id="p-1"))
    [request] = run_requests(sensors["partners_sensor"])
    assert request.run_key.startswith("partners:")
    assert dg.AssetKey(["sources", "partners"]) in request.asset_selection

    # An unreachable server: the tick is skipped (bounded by the source's timeouts), never a run.
    tick = sensors["acme_sftp_sensor"].evaluate_tick(dg.build_sensor_context())
    assert not tick.run_requests
    assert tick.skip_message.startswith("source 'acme-sftp': cannot look for new usage: ")
    assert "not-a-real-password" not in tick.skip_message


def test_sftp_sensor_keys_runs_by_the_remote_listing(tmp_path: Path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent / "collectors"))  # as pytest does for its tests
    from collector_servers import SFTP_USER, SftpTestServer

    root = tmp_path / "sftp-root"
    (root / "outgoing").mkdir(parents=True)
    server = SftpTestServer(root, password="pw-" + os.urandom(8).hex()).start()
    try:
        monkeypatch.setenv("TEST_SENSOR_SFTP_PASSWORD", server.password)
        (tmp_path / "known_hosts").write_text(server.known_hosts_line())
        doc = {"sources": [{"name": "acme-sftp", "kind": "sftp", "format": "csv", "connection": {
            "host": "127.0.0.1", "port": server.port, "username": SFTP_USER,
            "password_env": "TEST_SENSOR_SFTP_PASSWORD", "known_hosts": "known_hosts", "remote_dir": "/outgoing",
            "pattern": "*.csv", "connect_timeout_seconds": 5, "timeout_seconds": 5}}]}
        (tmp_path / "sources.yaml").write_text(yaml.safe_dump(doc))
        sources = load_sources(tmp_path / "sources.yaml")
        sensors = build_sensors(sources, build_collect_job(["acme-sftp"]), load_settings(env={"BILLING_HOME": str(tmp_path)}))
        sensor = {s.name: s for s in sensors}["acme_sftp_sensor"]

        assert run_requests(sensor) == []  # nothing matching on the server
        (root / "outgoing" / "usage_1.csv").write_text(CSV.format(id="s-1"))
        (root / "outgoing" / "notes.txt").write_text("not usage")  # does not match the pattern
        [first] = run_requests(sensor)
        assert first.run_key.startswith("acme-sftp:")
        assert [r.run_key for r in run_requests(sensor)] == [first.run_key]  # same listing, same key
        (root / "outgoing" / "notes.txt").write_text("still not usage, now longer")
        assert [r.run_key for r in run_requests(sensor)] == [first.run_key]
        (root / "outgoing" / "usage_2.csv").write_text(CSV.format(id="s-2"))
        [second] = run_requests(sensor)
        assert second.run_key != first.run_key
    finally:
        server.stop()


def test_the_inbox_sensor_watches_the_inbox_of_the_settings_it_was_built_with(billing_env: Path, monkeypatch):
    """The settings are read once, when the code location loads: a variable changed later moves nothing."""
    from pipelines.definitions import build_defs

    sensor = build_defs(load_settings()).resolve_sensor_def("upload_inbox_sensor")
    elsewhere = billing_env.parent / "elsewhere"
    (elsewhere / "inbox").mkdir(parents=True)
    (elsewhere / "inbox" / "other.csv").write_text(CSV.format(id="o-1"))
    monkeypatch.setenv("BILLING_HOME", str(elsewhere))
    assert run_requests(sensor) == []  # the built inbox is empty
    (billing_env / "inbox" / "usage.csv").write_text(CSV.format(id="e-1"))
    assert len(run_requests(sensor)) == 1
