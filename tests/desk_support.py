"""Helpers of the review desk's tests: the reference month billed with a hostile customer name, people
with passwords, and signing in through the desk's own forms."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.config import load_settings
from desk.auth import set_password
from desk.rerate import release_dbt_duckdb
from warehouse.store import open_warehouse

from lifecycle_support import run_month
from support import REFERENCE, billing_env, drop_reference_usage

HOSTILE_NAME = '<script>alert("name")</script> Initech'
PASSWORDS = {p: f"{p}-secret-password" for p in ("fiona", "fay", "carl", "sam", "ada")}
_CSRF = re.compile(r'name="csrf" value="([^"]*)"')


@contextmanager
def desk_month(home: Path, postgres_dsn: str | None = None) -> Iterator:
    """October 2026 of the reference month billed into `home` (or the PostgreSQL database `postgres_dsn`),
    C3 named with a <script>, the reference people with passwords; yields the settings (pinned while the
    context is open)."""
    catalog = home.parent / "catalog.yaml"
    text = (REFERENCE / "catalog.yaml").read_text(encoding="utf-8")
    catalog.write_text(text.replace("name: Initech", f"name: '{HOSTILE_NAME}'"), encoding="utf-8")
    with billing_env(home, catalog) as mp:
        mp.setenv("BILLING_CONFIG", str(REFERENCE / "billing.yaml"))
        if postgres_dsn:
            mp.setenv("BILLING_ENGINE", "postgres")
            mp.setenv("BILLING_POSTGRES_DSN", postgres_dsn)
        drop_reference_usage(home / "inbox")
        run_month("2026-10")
        release_dbt_duckdb()  # the billing ran dbt in this process: let go of the file, as the desk does
        settings = load_settings()
        for person, password in PASSWORDS.items():
            set_password(open_warehouse(settings), person, password)
        yield settings


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no form with a CSRF token on the page"
    return found.group(1)


def sign_in(client, person: str, password: str | None = None):
    """Sign in through the form (its CSRF token and cookie included); returns the response."""
    page = client.get("/sign-in")
    return client.post("/sign-in", data={"person_id": person, "password": password or PASSWORDS[person],
                                         "csrf": csrf_of(page.text), "next": "/"})
