"""The sources file: every kind parses, mistakes are named by source and field, secrets stay out."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from collectors.api import ApiSettings
from collectors.sftp import SftpSettings
from collectors.sources import SourceConfigError, default_source, load_sources, parse_sources, secret_from_env

REPO = Path(__file__).resolve().parents[2]


def sftp_entry(**connection) -> dict:
    base = {"host": "sftp.example", "username": "u", "remote_dir": "/out", "password_env": "PW",
            "known_hosts": "known_hosts"}
    return {"name": "s", "kind": "sftp", "connection": {**base, **connection}}


def api_entry(**connection) -> dict:
    return {"name": "a", "kind": "api", "connection": {"url": "https://api.example/usage", "token_env": "TOK",
                                                       **connection}}


def parse(*entries: dict, base: Path = Path("/etc/billing")) -> dict:
    return parse_sources({"sources": list(entries)}, base_dir=base, origin="sources.yaml")


def test_example_file_parses_and_covers_every_kind():
    sources = load_sources(REPO / "examples" / "sources.yaml")
    kinds = {s.kind for s in sources.values()}
    assert kinds == {"sftp", "api", "upload"}
    styles = {s.connection.pagination.style for s in sources.values() if isinstance(s.connection, ApiSettings)}
    assert {"cursor", "page", "link"} <= styles


def test_no_file_means_only_the_upload_source():
    assert load_sources(None) == {"upload": default_source()}


def test_an_upload_source_waits_two_seconds_for_a_fresh_file_unless_told_otherwise():
    assert parse({"name": "u", "connection": {"inbox": "in"}})["u"].connection.settle_seconds == 2.0
    assert parse({"name": "u", "connection": {"settle_seconds": 0}})["u"].connection.settle_seconds == 0


def test_sftp_source_resolves_relative_paths_and_keeps_format_settings(tmp_path: Path):
    path = tmp_path / "sources.yaml"
    path.write_text(yaml.safe_dump({"sources": [{
        **sftp_entry(key_file="keys/id_ed25519", password_env=None, move_to="done", pattern="usage_*.csv"),
        "format": "csv", "delimiter": ";", "timezone": "Europe/Berlin", "columns": {"event_id": "id", "quantity": "qty"},
    }]}))
    source = load_sources(path)["s"]
    assert isinstance(source.connection, SftpSettings)
    assert source.connection.key_file == tmp_path / "keys" / "id_ed25519"
    assert source.connection.known_hosts == tmp_path / "known_hosts"
    fmt = source.file_format
    assert (fmt.name, fmt.format, fmt.delimiter, fmt.timezone) == ("s", "csv", ";", "Europe/Berlin")
    assert fmt.column("event_id") == "id" and fmt.column("customer_id") == "customer_id"
    assert "upload" in load_sources(path)


def test_api_source_with_each_pagination_style():
    cursor = parse(api_entry(pagination={"style": "cursor", "next_cursor_field": "meta.next"}))["a"]
    assert cursor.connection.pagination.next_cursor_field == "meta.next"
    page = parse(api_entry(pagination={"style": "page", "page_size": 50, "page_size_param": "limit"}))["a"]
    assert page.connection.pagination.page_size == 50
    link = parse(api_entry(pagination={"style": "link"}, api_key_env="KEY", token_env=None))["a"]
    assert link.connection.api_key_env == "KEY"


@pytest.mark.parametrize(("entry", "message"), [
    (sftp_entry(host=None), "source 's': connection.host: is required"),
    (sftp_entry(port="22"), "source 's': connection.port: must be a whole number"),
    (sftp_entry(password="hunter2"), "source 's': connection.password: secrets are never written"),
    (sftp_entry(password_env="not a var"), "connection.password_env: must name an environment variable"),
    (sftp_entry(password_env=None), "connection.password_env: give password_env"),
    (sftp_entry(known_hosts=None), "connection.known_hosts: give exactly one of known_hosts"),
    (sftp_entry(host_key="ssh-ed25519 AAAA"), "connection.known_hosts: give exactly one"),
    (sftp_entry(hostname="x"), "source 's': connection.hostname: unknown setting"),
    (sftp_entry(retry={"max_attempts": 0}), "connection.retry.max_attempts: must be at least 1"),
    ({"name": "s", "kind": "sftp"}, "source 's': connection: is required for a sftp source"),
    ({"name": "s", "kind": "ftp"}, "source 's': kind: must be one of"),
    ({"name": "s", "format": "xml"}, "source 's': format: must be one of"),
    ({"name": "s", "timezone": "Mars/Olympus"}, "source 's': timezone: 'Mars/Olympus' is not an IANA time zone"),
    ({"name": "s", "delimiter": ";;"}, "source 's': delimiter: must be a single character"),
    ({"name": "s", "columns": {"amount": "x"}}, "source 's': columns: 'amount' is not an event field"),
    ({"name": "bad name"}, "source #1: name: is required"),
    (api_entry(token="abc"), "source 'a': connection.token: secrets are never written"),
    (api_entry(url="ftp://x"), "source 'a': connection.url: must start with http"),
    (api_entry(api_key_env="K"), "source 'a': connection.token_env: give exactly one"),
    (api_entry(headers={"Authorization": "Bearer x"}), "connection.headers.Authorization: carries a secret"),
    (api_entry(pagination={"style": "offset"}), "connection.pagination.style: must be one of"),
    (api_entry(pagination={"style": "link", "page_param": "p"}),
     "connection.pagination.page_param: does not apply to pagination style 'link'"),
    (api_entry(pagination={"style": "page", "page_size": 10}), "connection.pagination.page_size: give page_size"),
    ({**api_entry(), "format": "csv"}, "source 'a': format: api sources land JSON lines"),
    ({"name": "u", "connection": {"settle_seconds": -1}}, "source 'u': connection.settle_seconds: must be between 0"),
    ({"name": "u", "connection": {"settle_seconds": 3600}}, "connection.settle_seconds: must be between 0 and 600"),
])
def test_mistakes_name_the_source_and_the_field(entry: dict, message: str):
    entry = {**entry, "connection": {k: v for k, v in entry["connection"].items() if v is not None}} \
        if "connection" in entry else entry
    with pytest.raises(SourceConfigError) as err:
        parse(entry)
    assert message in str(err.value)
    assert "hunter2" not in str(err.value) and "Bearer x" not in str(err.value)


def test_duplicate_names_and_bad_top_level_are_refused():
    with pytest.raises(SourceConfigError, match="source 's' is defined twice"):
        parse({"name": "s"}, {"name": "s"})
    with pytest.raises(SourceConfigError, match="unknown top-level key"):
        parse_sources({"sources": [], "sftp": {}}, base_dir=Path("."))


def test_secrets_are_read_from_the_environment_only_when_asked(monkeypatch: pytest.MonkeyPatch):
    source = parse(sftp_entry(password_env="ACME_SFTP_PASSWORD"))["s"]  # loading needs no secret
    monkeypatch.delenv("ACME_SFTP_PASSWORD", raising=False)
    with pytest.raises(SourceConfigError, match=r"ACME_SFTP_PASSWORD \(connection.password_env\) is not set"):
        secret_from_env(source, "password_env", "ACME_SFTP_PASSWORD")
    monkeypatch.setenv("ACME_SFTP_PASSWORD", "s3cret")
    assert secret_from_env(source, "password_env", "ACME_SFTP_PASSWORD") == "s3cret"
    assert "s3cret" not in repr(source)
