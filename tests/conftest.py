"""Shared fixtures: every test gets its own warehouse file, inbox and landing zone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from support import REFERENCE, ROOT

os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


def pytest_sessionstart(session):
    """The Dagster definitions read the dbt manifest; build it once if `make setup` has not."""
    manifest = ROOT / "dbt_project" / "target" / "manifest.json"
    if not manifest.exists():
        env = {**os.environ, "DBT_PROFILES_DIR": str(ROOT / "dbt_project"),
               "BILLING_DUCKDB_PATH": str(ROOT / "dbt_project" / "target" / "parse.duckdb")}
        subprocess.run([str(Path(sys.executable).parent / "dbt"), "parse", "--quiet"],
                       cwd=ROOT / "dbt_project", env=env, check=True)


@pytest.fixture
def billing_env(tmp_path, monkeypatch):
    """A fresh BILLING_HOME with the reference catalog; returns the home folder."""
    home = tmp_path / "billing"
    (home / "inbox").mkdir(parents=True)
    monkeypatch.setenv("BILLING_HOME", str(home))
    monkeypatch.setenv("BILLING_CATALOG", str(REFERENCE / "catalog.yaml"))
    for var in ("BILLING_CONFIG", "BILLING_ENGINE", "BILLING_DUCKDB_PATH", "BILLING_INBOX", "BILLING_LANDING",
                "BILLING_SOURCES"):
        monkeypatch.delenv(var, raising=False)
    return home

