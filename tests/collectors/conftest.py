"""Fixtures for the collector tests: a warehouse file, a landing zone, and real servers on 127.0.0.1."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from collector_servers import SftpTestServer, UsageApi, make_events

from warehouse.store import Warehouse


@pytest.fixture
def warehouse(tmp_path: Path) -> Warehouse:
    wh = Warehouse(duckdb_path=tmp_path / "w.duckdb")
    wh.ensure_schema()
    return wh


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


@pytest.fixture
def usage_api() -> Iterator[UsageApi]:
    api = UsageApi(token="tok-" + os.urandom(8).hex(), events=make_events(25)).start()
    try:
        yield api
    finally:
        api.stop()
