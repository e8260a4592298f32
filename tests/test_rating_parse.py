"""dbt's parse of the project is kept and reused for another month: the month is rated with its own period,
and nothing dbt renders while parsing depends on the period."""

from __future__ import annotations

from decimal import Decimal

from billing import rating, runner
from core.config import load_settings
from core.periods import month_window
from warehouse.store import open_warehouse

from support import reference_usage_loaded


def test_a_kept_parse_rates_another_month_with_that_months_period(billing_env, tmp_path, monkeypatch):
    settings = reference_usage_loaded(billing_env, monkeypatch, tmp_path)

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


def test_the_parse_does_not_depend_on_the_period(tmp_path, monkeypatch):
    """What dbt renders while parsing (configs, a test's `where`) must not use the period's vars: the kept
    parse serves every month. Use them in SQL (compiled at run time) instead, as tests/generic/unique_in_period
    does."""
    from dbt.cli.main import dbtRunner

    monkeypatch.setenv("DBT_LOG_PATH", str(tmp_path / "logs"))
    (tmp_path / "billing.yaml").write_text("# defaults\n")
    settings = load_settings(env={"BILLING_HOME": str(tmp_path), "BILLING_CONFIG": str(tmp_path / "billing.yaml")})
    configs = []
    for month in ("2026-09", "2026-10"):
        monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / month))  # no partial parse from the other month
        with rating.environment(rating.dbt_env(settings)):
            parsed = dbtRunner().invoke(rating.dbt_args("parse", month_window(month), ["--quiet"], 2))
        assert parsed.success, parsed.exception
        manifest = parsed.result
        configs.append({uid: node.config.to_dict() for uid, node in
                        [*manifest.nodes.items(), *manifest.unit_tests.items(), *manifest.sources.items()]})
    september, october = configs
    assert september.keys() == october.keys()
    differ = {uid: {k: (september[uid].get(k), october[uid].get(k)) for k in september[uid].keys() | october[uid].keys()
                    if september[uid].get(k) != october[uid].get(k)}
              for uid in september if september[uid] != october[uid]}
    assert not differ, f"parsed differently for another month (configs rendered with the period's vars): {differ}"

