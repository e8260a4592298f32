"""`billing run` of a month whose inputs did not change says so and does not rate again; a change of any
input (usage, catalog, dbt code, ledger, look-back setting, the marts themselves) rates it again."""

from __future__ import annotations

import shutil

import duckdb
import pytest

from billing import month_inputs, runner
from billing.cli import EXIT_BLOCKED, main

from lifecycle_support import late_event
from support import REFERENCE, ROOT, billing_env, drop_reference_usage, new_home


@pytest.fixture
def billed(tmp_path_factory, tmp_path, monkeypatch):
    """The reference month billed once for real; later `rate` calls are counted (and not run: what is
    tested is whether the month is rated again, not what dbt makes of it)."""
    home = new_home(tmp_path_factory, "inputs")
    config = tmp_path / "billing.yaml"
    shutil.copy(REFERENCE / "billing.yaml", config)
    shutil.copy(REFERENCE / "people.yaml", tmp_path / "people.yaml")
    shutil.copy(REFERENCE / "catalog.yaml", tmp_path / "catalog.yaml")
    dbt_copy = tmp_path / "dbt_project"
    shutil.copytree(ROOT / "dbt_project", dbt_copy, ignore=shutil.ignore_patterns("target", "logs"))
    monkeypatch.setattr(month_inputs, "DBT_PROJECT_DIR", dbt_copy)  # the code part reads the copy
    with billing_env(home) as mp:
        mp.setenv("BILLING_CONFIG", str(config))
        drop_reference_usage(home / "inbox")
        real_rate, rated = runner.rate, []

        def rate(settings, period):
            rated.append(period.key)
            if len(rated) == 1:
                return real_rate(settings, period)
            return []

        monkeypatch.setattr(runner, "rate", rate)
        assert main(["run", "--month", "2026-10"]) == EXIT_BLOCKED  # C4's SMS and C999 are unrated
        assert rated == ["2026-10"]
        yield home, tmp_path, rated


def run(capsys) -> tuple[int, str]:
    code = main(["run", "--month", "2026-10"])
    return code, " ".join(capsys.readouterr().out.split())


def test_rerun_with_nothing_new_is_not_rated_and_keeps_its_findings(billed, capsys):
    home, _, rated = billed
    capsys.readouterr()
    code, out = run(capsys)
    assert rated == ["2026-10"]  # not rated again
    assert "nothing changed since rating run" in out and "not rated or checked again" in out
    # the previous run's blocking findings still decide the exit status, and are shown
    assert code == EXIT_BLOCKED
    assert "check unrated_usage: FAILED" in out and "C999" in out
    assert "exit status 3: billed, but blocking check(s) failed: unrated_usage" in out
    assert "checks: 9 passed, 1 failed" in out
    # --force rates anyway
    assert main(["run", "--month", "2026-10", "--force"]) == EXIT_BLOCKED
    assert rated == ["2026-10", "2026-10"]


def changed_then_unchanged(capsys, rated, part: str) -> None:
    before = len(rated)
    code, out = run(capsys)
    assert len(rated) == before + 1, f"not rated again after a change of {part}: {out[:600]}"
    assert f"changed since the last rating run: {part}" in out
    assert code == EXIT_BLOCKED
    code, out = run(capsys)
    assert len(rated) == before + 1, f"rated again with nothing changed after {part}"
    assert "nothing changed since rating run" in out and code == EXIT_BLOCKED


def test_each_input_changed_in_turn_rates_the_month_again(billed, capsys):
    home, folder, rated = billed
    capsys.readouterr()

    # a new usage file (here, one event of another month: any new file counts)
    late_event(home / "inbox", "november.jsonl", "C1", 5, "2026-11-03", "c1-nov-1")
    changed_then_unchanged(capsys, rated, "ingest")

    # a price edited in the catalog file
    catalog = folder / "catalog.yaml"
    text = catalog.read_text()
    assert 'unit_price: "0.002"' in text
    catalog.write_text(text.replace('unit_price: "0.002"', 'unit_price: "0.003"', 1))
    changed_then_unchanged(capsys, rated, "catalog")

    # a dbt model file changed
    model = folder / "dbt_project" / "models" / "marts" / "fct_invoices.sql"
    model.write_text(model.read_text() + "\n-- a change\n")
    changed_then_unchanged(capsys, rated, "code")

    # a manual charge in the ledger (added without re-rating, as another process could)
    from core.config import load_settings
    from ledger.lifecycle import Lifecycle

    Lifecycle(load_settings()).add_charge("fiona", "2026-10", "C1", "10.00", "setup fee", "agreed on the call")
    changed_then_unchanged(capsys, rated, "ledger")

    # the late-usage look-back setting (reaches dbt as a var)
    config = folder / "billing.yaml"
    config.write_text(config.read_text().replace("lookback_periods: 3", "lookback_periods: 2"))
    changed_then_unchanged(capsys, rated, "settings")

    # the marts emptied behind its back (a full refresh, say): rated again
    con = duckdb.connect(str(home / "warehouse.duckdb"))
    con.execute("DELETE FROM marts.fct_invoices WHERE period = '2026-10' AND billing_account_id = 'C1'")
    con.close()
    before = len(rated)
    code, out = run(capsys)
    assert len(rated) == before + 1 and "marts (emptied or rebuilt since)" in out
