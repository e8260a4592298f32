"""The warehouse named in the CLI's first line never shows a PostgreSQL password, or any part of it."""

from __future__ import annotations

import pytest

from billing import cli
from warehouse.store import Warehouse

CASES = [
    # (DSN, what is shown); the passwords hold ':', a percent-encoded '@', '/', '?' and quotes
    ("postgresql://postgres:pa:ss@host/db", "postgresql://postgres:***@host/db"),
    ("postgresql://billing:p%40ss:w0rd@db.internal:5432/warehouse?sslmode=require",
     "postgresql://billing:***@db.internal:5432/warehouse?sslmode=require"),
    ("postgresql://billing:se/cr/et@host/db", "postgresql://billing:***@host/db"),
    ("postgres://billing:un@encoded@host/db", "postgres://billing:***@host/db"),
    ("postgresql://billing:what?ever@host/db", "postgresql://billing:***@host/db"),
    ("postgresql://billing@host/db?password=se:cr%40et&application_name=billing",
     "postgresql://billing@host/db?password=***&application_name=billing"),
    ("postgresql://postgres@127.0.0.1:5432/test", "postgresql://postgres@127.0.0.1:5432/test"),
    ("host=db.internal user=billing password=pa:ss@w/rd dbname=warehouse",
     "host=db.internal user=billing password=*** dbname=warehouse"),
    ("host=db.internal password = 'two words \\' and: more' dbname=warehouse",
     "host=db.internal password = *** dbname=warehouse"),
]


@pytest.mark.parametrize(("dsn", "shown"), CASES)
def test_describe_masks_the_whole_password(dsn, shown):
    assert Warehouse(postgres_dsn=dsn).describe() == shown


def test_the_first_line_of_billing_run_masks_the_password(billing_env, monkeypatch, capsys):
    # Port 1 on 127.0.0.1 refuses at once: the run stops with an error after its first line.
    monkeypatch.setenv("BILLING_ENGINE", "postgres")
    monkeypatch.setenv("BILLING_POSTGRES_DSN", "postgresql://postgres:pa:ss@127.0.0.1:1/test?connect_timeout=5")
    assert cli.main(["run", "--month", "2026-10"]) == 1
    out = "".join(capsys.readouterr().out.split())  # the console may wrap the line anywhere
    assert "intopostgresql://postgres:***@127.0.0.1:1/test" in out
    assert ":pa" not in out and "ss@" not in out  # before: postgres:pa:***@127.0.0.1
