"""dbt's parse of the project is kept and reused for another month: the month is rated with its own period."""

from __future__ import annotations

from decimal import Decimal

from billing import rating, runner
from core.config import load_settings
from core.periods import month_window
from warehouse.store import open_warehouse

from support import drop_reference_usage


def test_a_kept_parse_rates_another_month_with_that_months_period(billing_env, tmp_path, monkeypatch):
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "target"))
    monkeypatch.setenv("DBT_LOG_PATH", str(tmp_path / "logs"))
    drop_reference_usage(billing_env / "inbox")
    settings = load_settings()
    warehouse = runner.prepare(settings)
    runner.load_catalog_stage(settings, warehouse)
    runner.collect(settings, warehouse)
    runner.normalize(settings, warehouse)

    used = []
    real = rating._parsed_manifest

    def spy(path):
        manifest = real(path)
        used.append(manifest is not None)
        return manifest

    monkeypatch.setattr(rating, "_parsed_manifest", spy)
    runner.rate(settings, month_window("2026-09"))  # parsed by dbt with September's vars, then kept
    assert used == [False]
    assert list((tmp_path / "target" / rating.PARSED).glob("*.msgpack"))
    runner.rate(settings, month_window("2026-10"))  # no parse: the kept one
    assert used == [False, True]
    with open_warehouse(settings).transaction() as tx:
        # October's invoices, as test_cli's run of the reference month finds them
        assert tx.fetchall("SELECT COUNT(*), SUM(total) FROM marts.fct_invoices "
                           "WHERE period = '2026-10' AND currency = 'USD'")[0] == (4, Decimal("5666.34"))


def test_the_kept_parse_follows_the_project(tmp_path, monkeypatch):
    project = tmp_path / "dbt_project"
    (project / "models").mkdir(parents=True)
    (project / "dbt_project.yml").write_text("name: x\n")
    (project / "models" / "a.sql").write_text("select 1\n")
    monkeypatch.setattr(rating, "DBT_PROJECT_DIR", project)
    before = rating._parse_key()
    (project / "models" / "a.sql").write_text("select 2\n")
    assert rating._parse_key() != before  # a model changed: dbt parses again
    monkeypatch.setenv("BILLING_SPARK_DIR", str(tmp_path / "elsewhere"))
    changed = rating._parse_key()
    monkeypatch.setenv("BILLING_SPARK_DIR", str(tmp_path / "spark"))
    assert rating._parse_key() != changed  # an env var read while parsing changed
