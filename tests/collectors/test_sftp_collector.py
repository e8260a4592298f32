"""The SFTP collector against a real asyncssh SFTP server on 127.0.0.1 (no mocked client)."""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest
from collector_servers import SFTP_USER, SftpTestServer, count, new_warehouse

from collectors.sftp import HostKeyRefused, LoginRefused, SftpError, collect_sftp
from collectors.sources import SourceConfig, parse_sources
from normalize.load import load_pending
from warehouse.store import Warehouse

PASSWORD_ENV = "TEST_SFTP_PASSWORD"
HEADER = "id,customer_id,product_id,quantity,occurred_at\n"


def csv_rows(prefix: str, n: int) -> str:
    return HEADER + "".join(f"{prefix}-{i},cust-1,storage-gb,{i}.5,2024-05-0{1 + i % 9}T08:00:00Z\n"
                            for i in range(n))


def make_source(server: SftpTestServer, tmp_path: Path, *, known_hosts: str | None = None, **connection) -> SourceConfig:
    kh = tmp_path / "known_hosts"
    kh.write_text(known_hosts if known_hosts is not None else server.known_hosts_line())
    pinned = {"host_key": connection.pop("host_key")} if "host_key" in connection else {"known_hosts": str(kh)}
    entry = {
        "name": "acme-sftp", "kind": "sftp", "format": "csv", "columns": {"event_id": "id"},
        "connection": {"host": "127.0.0.1", "port": server.port, "username": SFTP_USER,
                       "password_env": PASSWORD_ENV, **pinned, "remote_dir": "/outgoing",
                       "pattern": "*.csv", "settle_seconds": 0.2, "connect_timeout_seconds": 5,
                       "timeout_seconds": 5, "retry": {"max_attempts": 3, "initial_seconds": 0.05,
                                                       "max_seconds": 0.2},
                       **connection},
    }
    entry["connection"] = {k: v for k, v in entry["connection"].items() if v is not None}
    return parse_sources({"sources": [entry]}, base_dir=tmp_path)["acme-sftp"]


@pytest.fixture
def warehouse(tmp_path: Path) -> Warehouse:
    return new_warehouse(tmp_path / "w.duckdb")


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    return tmp_path / "landing"


@pytest.fixture
def sftp_server(tmp_path: Path) -> Iterator[SftpTestServer]:
    root = tmp_path / "sftp-root"
    (root / "outgoing").mkdir(parents=True)
    server = SftpTestServer(root, password="pw-" + os.urandom(8).hex()).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def sftp_password(sftp_server: SftpTestServer, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(PASSWORD_ENV, sftp_server.password)
    return sftp_server.password


def put(server: SftpTestServer, name: str, text: str) -> Path:
    path = server.root / "outgoing" / name
    path.write_text(text)
    return path


def landed_names(warehouse: Warehouse) -> list[str]:
    with warehouse.transaction() as tx:
        return sorted(r[0] for r in tx.fetchall("SELECT original_name FROM raw.landed_files"))


def events(warehouse: Warehouse, source: SourceConfig) -> int:
    list(load_pending(warehouse, {source.name: source.file_format}))
    return count(warehouse, "SELECT count(*) FROM raw.events")


def test_picks_up_matching_files_then_only_new_or_changed_ones(sftp_server, warehouse, landing, tmp_path):
    source = make_source(sftp_server, tmp_path)
    put(sftp_server, "usage_1.csv", csv_rows("a", 3))
    put(sftp_server, "usage_2.csv", csv_rows("b", 2))
    put(sftp_server, "notes.txt", "not usage")
    put(sftp_server, "usage_3.csv.part", csv_rows("c", 1))  # still being uploaded
    put(sftp_server, ".hidden.csv", csv_rows("d", 1))

    first = collect_sftp(warehouse, landing, source)
    assert sorted(x.original_name for x in first) == ["usage_1.csv", "usage_2.csv"]
    assert all(x.is_new for x in first)
    assert events(warehouse, source) == 5

    assert collect_sftp(warehouse, landing, source) == []  # nothing new: nothing downloaded
    assert sftp_server.opens["usage_1.csv"] == 1

    (sftp_server.root / "outgoing" / "usage_3.csv.part").rename(sftp_server.root / "outgoing" / "usage_3.csv")
    put(sftp_server, "usage_2.csv", csv_rows("b", 4))  # changed: two more rows appended
    again = collect_sftp(warehouse, landing, source)
    assert sorted(x.original_name for x in again) == ["usage_2.csv", "usage_3.csv"]
    assert events(warehouse, source) == 3 + 4 + 1  # the repeated b-0, b-1 are duplicates, not new events
    assert count(warehouse, "SELECT count(*) FROM raw.duplicates") == 2
    assert count(warehouse, "SELECT count(*) FROM raw.file_receipts WHERE collector = 'sftp'") == 4


def test_a_file_still_growing_is_left_for_the_next_poll(sftp_server, warehouse, landing, tmp_path):
    source = make_source(sftp_server, tmp_path)
    put(sftp_server, "done.csv", csv_rows("done", 2))
    growing = put(sftp_server, "growing.csv", HEADER)
    writes = iter(range(1000))

    def writer() -> None:  # the customer's upload appends between our two listings
        with growing.open("a") as out:
            out.write(f"g-{next(writes)},cust-2,storage-gb,1,2024-05-02T08:00:00Z\n")

    sftp_server.on_list.append(writer)
    assert [x.original_name for x in collect_sftp(warehouse, landing, source)] == ["done.csv"]
    assert sftp_server.opens["growing.csv"] == 0

    sftp_server.on_list.clear()  # the upload finished
    assert [x.original_name for x in collect_sftp(warehouse, landing, source)] == ["growing.csv"]
    assert events(warehouse, source) == 2 + 2  # both rows the writer appended, none missing


def test_move_after_pickup(sftp_server, warehouse, landing, tmp_path):
    source = make_source(sftp_server, tmp_path, move_to="done")
    put(sftp_server, "usage_1.csv", csv_rows("a", 1))
    (sftp_server.root / "outgoing" / "done").mkdir()
    (sftp_server.root / "outgoing" / "done" / "usage_1.csv").write_text("an older delivery")

    assert [x.original_name for x in collect_sftp(warehouse, landing, source)] == ["usage_1.csv"]
    outgoing = sftp_server.root / "outgoing"
    assert not (outgoing / "usage_1.csv").exists()
    moved = sorted(p.name for p in (outgoing / "done").iterdir())
    assert len(moved) == 2 and "usage_1.csv" in moved  # the older one was not overwritten
    assert collect_sftp(warehouse, landing, source) == []


def test_key_file_authentication(sftp_server, warehouse, landing, tmp_path, monkeypatch):
    monkeypatch.delenv(PASSWORD_ENV)
    key = asyncssh.generate_private_key("ssh-ed25519")
    sftp_server.client_key = key.convert_to_public()
    key_file = tmp_path / "id_ed25519"
    key_file.write_bytes(key.export_private_key())
    source = make_source(sftp_server, tmp_path, password_env=None, key_file=str(key_file))
    put(sftp_server, "usage_1.csv", csv_rows("a", 1))
    assert len(collect_sftp(warehouse, landing, source)) == 1


def test_inline_pinned_host_key(sftp_server, warehouse, landing, tmp_path):
    host_key = sftp_server.host_key.export_public_key().decode().strip()
    source = make_source(sftp_server, tmp_path, known_hosts="", host_key=host_key)
    put(sftp_server, "usage_1.csv", csv_rows("a", 1))
    assert len(collect_sftp(warehouse, landing, source)) == 1


@pytest.mark.parametrize("case", ["changed", "unknown"])
def test_unverified_host_key_is_refused(sftp_server, warehouse, landing, tmp_path, case):
    if case == "changed":
        other = asyncssh.generate_private_key("ssh-ed25519")
        pinned = sftp_server.known_hosts_line(other)
        expected = "does not match the key pinned"
    else:
        pinned = sftp_server.known_hosts_line().replace("127.0.0.1", "10.9.8.7")
        expected = f"no host key is pinned for [127.0.0.1]:{sftp_server.port}"
    source = make_source(sftp_server, tmp_path, known_hosts=pinned)
    put(sftp_server, "usage_1.csv", csv_rows("a", 1))
    with pytest.raises(HostKeyRefused) as err:
        collect_sftp(warehouse, landing, source)
    assert expected in str(err.value) and "refusing to connect" in str(err.value)
    assert "acme-sftp" in str(err.value)
    assert sftp_server.logins == 0  # never authenticated, let alone downloaded
    assert landed_names(warehouse) == []


def test_connection_dropped_mid_file_is_retried_and_lands_once(sftp_server, warehouse, landing, tmp_path):
    source = make_source(sftp_server, tmp_path)
    big = csv_rows("big", 20_000)  # ~0.9 MB: several reads
    put(sftp_server, "big.csv", big)
    sftp_server.drop_after["big.csv"] = 300_000

    landed = collect_sftp(warehouse, landing, source)
    assert [x.original_name for x in landed] == ["big.csv"]
    assert sftp_server.opens["big.csv"] == 2  # the broken attempt, then the retry
    assert landed[0].landing_path.read_text() == big
    assert count(warehouse, "SELECT count(*) FROM raw.landed_files") == 1
    assert events(warehouse, source) == 20_000


def test_a_poll_that_gives_up_leaves_nothing_and_the_next_poll_finishes(sftp_server, warehouse, landing, tmp_path):
    source = make_source(sftp_server, tmp_path, retry={"max_attempts": 1})
    big = csv_rows("big", 20_000)
    put(sftp_server, "big.csv", big)
    sftp_server.drop_after["big.csv"] = 300_000

    with pytest.raises(SftpError, match="next poll") as err:
        collect_sftp(warehouse, landing, source)
    assert "acme-sftp" in str(err.value)
    assert landed_names(warehouse) == []
    assert not landing.exists() or not any(p.is_file() for p in landing.rglob("*"))  # no half file kept

    landed = collect_sftp(warehouse, landing, source)
    assert [x.original_name for x in landed] == ["big.csv"] and landed[0].is_new
    assert landed[0].landing_path.read_text() == big
    assert events(warehouse, source) == 20_000


def test_password_never_appears_in_logs_or_errors(sftp_server, sftp_password, warehouse, landing, tmp_path,
                                                  monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    source = make_source(sftp_server, tmp_path)
    put(sftp_server, "usage_1.csv", csv_rows("a", 1))
    assert len(collect_sftp(warehouse, landing, source)) == 1

    wrong = "wrong-" + os.urandom(6).hex()
    monkeypatch.setenv(PASSWORD_ENV, wrong)
    put(sftp_server, "usage_2.csv", csv_rows("b", 1))
    with pytest.raises(LoginRefused) as err:
        collect_sftp(warehouse, landing, source)
    assert f"${PASSWORD_ENV}" in str(err.value)
    text = "".join(traceback.format_exception(err.value)) + repr(err.value) + caplog.text + repr(source)
    assert sftp_password not in text and wrong not in text


def test_missing_password_variable_is_a_clear_error(sftp_server, warehouse, landing, tmp_path, monkeypatch):
    monkeypatch.delenv(PASSWORD_ENV)
    source = make_source(sftp_server, tmp_path)
    with pytest.raises(ValueError, match=f"source 'acme-sftp': environment variable {PASSWORD_ENV}"):
        collect_sftp(warehouse, landing, source)


def test_missing_remote_dir_is_a_clear_error(sftp_server, warehouse, landing, tmp_path):
    source = make_source(sftp_server, tmp_path, remote_dir="/nope")
    with pytest.raises(SftpError, match="connection.remote_dir /nope does not exist"):
        collect_sftp(warehouse, landing, source)


def test_never_reads_past_the_listed_size(sftp_server, warehouse, landing, tmp_path):
    # A server that lists a file as 60-odd bytes and then keeps sending data: only the listed bytes are read.
    source = make_source(sftp_server, tmp_path)
    text = csv_rows("a", 1)
    put(sftp_server, "usage_1.csv", text)
    sftp_server.endless.add("usage_1.csv")
    [landed] = collect_sftp(warehouse, landing, source)
    assert sftp_server.served["usage_1.csv"] == len(text)
    assert landed.size_bytes == len(text) and landed.landing_path.read_text() == text
    assert events(warehouse, source) == 1
