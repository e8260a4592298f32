"""A month's build recreates the views only when they are not this project's already: each view says which
dbt project built it (dbt_project/macros/views.sql); a view missing or built by other code is recreated."""

from __future__ import annotations

import contextlib

import pytest

from billing import rating, runner
from core.periods import month_window
from warehouse.store import open_warehouse

from support import postgres_database, reference_usage_loaded

OCTOBER = month_window("2026-10")


def _built(nodes: list[dict]) -> tuple[set[str], set[str]]:
    """(views recreated, data tests run) of a build's results."""
    views = {n["name"] for n in nodes if n["resource_type"] == "model" and n["materialized"] == "view"}
    tests = {n["name"] for n in nodes if n["resource_type"] == "test"}
    return views, tests


def _execute(settings, sql: str) -> None:
    with open_warehouse(settings).transaction() as tx:
        tx.execute(sql)


def _invoices(settings) -> list[tuple]:
    with open_warehouse(settings).transaction() as tx:
        return tx.fetchall("SELECT billing_account_id, currency, total FROM marts.fct_invoices "
                           "WHERE period = '2026-10' ORDER BY 1, 2")


@pytest.mark.parametrize("engine", ["duckdb", "postgres"])
def test_views_are_recreated_only_when_not_this_projects(billing_env, tmp_path, monkeypatch, engine):
    with contextlib.ExitStack() as stack:
        if engine == "postgres":
            monkeypatch.setenv("BILLING_ENGINE", "postgres")
            monkeypatch.setenv("BILLING_POSTGRES_DSN", stack.enter_context(postgres_database("views")))
        settings = reference_usage_loaded(billing_env, monkeypatch, tmp_path)

        first_views, first_tests = _built(runner.rate(settings, OCTOBER))
        assert {"stg_usage__events", "stg_catalog__rates", "dim_customers", "fct_issued_invoices"} <= first_views
        invoices = _invoices(settings)
        assert invoices

        views, tests = _built(runner.rate(settings, OCTOBER))  # the views are this project's: kept
        assert views == set()
        assert tests == first_tests  # the views' own tests still run
        assert any(name.startswith("unique_in_period_stg_usage__events") for name in tests)
        assert _invoices(settings) == invoices

        _execute(settings, "DROP VIEW staging.stg_catalog__rates")  # a view gone
        views, _ = _built(runner.rate(settings, OCTOBER))
        assert views == first_views
        assert _invoices(settings) == invoices

        # a view recreated by other code (dbt by hand, another version of the project): recreated again
        _execute(settings, "CREATE OR REPLACE VIEW staging.stg_catalog__currencies AS "
                           "SELECT * FROM raw.catalog_currencies WHERE false")
        views, _ = _built(runner.rate(settings, OCTOBER))
        assert views == first_views
        assert _invoices(settings) == invoices
        assert _built(runner.rate(settings, OCTOBER))[0] == set()


def test_a_build_that_selects_its_own_nodes_is_left_as_asked(billing_env, tmp_path, monkeypatch):
    """A build with arguments of the caller's own (here a selection): exactly that, no selector added."""
    settings = reference_usage_loaded(billing_env, monkeypatch, tmp_path)
    runner.rate(settings, OCTOBER)
    runner.rate(settings, OCTOBER)  # the kept parse and the marked views are there
    nodes = rating.run_dbt(settings, OCTOBER, "build", ["--select", "staging"])
    assert _built(nodes)[0] >= {"stg_usage__events", "stg_catalog__rates"}
