"""billing.yaml: a key the loader does not read is refused, naming the nearest key it does read."""

from __future__ import annotations

import textwrap
from decimal import Decimal

import pytest

from billing.cli import main
from core.config import load_settings

from support import ROOT

FULL = """
home: data
catalog: catalog.yaml
inbox: drop
landing: landing
sources: sources.yaml
warehouse:
  engine: duckdb
  path: warehouse.duckdb
  dsn_env: BILLING_POSTGRES_DSN
people: people.yaml
approval:
  finance_approvals: 1
  csm_when_required: true
  two_approvers_from: {USD: "10000", EUR: "9000"}
  no_approval_customers: [C1]
numbering:
  invoice: "INV-{year}-{number:06d}"
  credit_note: "CN-{year}-{number:06d}"
lookback_periods: 3
anomaly_factor: "12.5"
seller: {name: Example Ltd, tax_id: X-1, whatever_field: kept as given}
documents: documents
webhooks:
  - {name: erp, url: "http://127.0.0.1:9/hook", secret_env: HOOK_SECRET}
"""


def write(tmp_path, text: str):
    path = tmp_path / "billing.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_every_key_the_loader_reads_is_accepted(tmp_path):
    settings = load_settings(write(tmp_path, FULL), env={})
    assert settings.inbox == tmp_path / "drop" and settings.lifecycle.lookback_periods == 3
    assert settings.anomaly_factor == Decimal("12.5")


def test_every_key_of_the_file_is_documented(tmp_path):
    """docs/config.md (and docs/lifecycle.md, for the lifecycle's keys) names each key of a file that
    sets every setting."""
    import yaml

    documented = (ROOT / "docs" / "config.md").read_text() + (ROOT / "docs" / "lifecycle.md").read_text()

    def keys(doc: dict, where: str = ""):
        for key, value in doc.items():
            yield f"{where}{key}"
            if isinstance(value, dict) and key not in ("seller", "two_approvers_from"):
                yield from keys(value, f"{where}{key}.")

    for key in keys(yaml.safe_load(FULL)):
        assert f"{key.rsplit('.', 1)[-1]}:" in documented or f"`{key}`" in documented, key


@pytest.mark.parametrize("value", ["0.5", "ten", "NaN"])
def test_an_anomaly_factor_that_is_no_number_above_one_is_refused(tmp_path, value):
    with pytest.raises(ValueError, match="anomaly_factor .* must be a number above 1"):
        load_settings(env={"BILLING_HOME": str(tmp_path), "BILLING_ANOMALY_FACTOR": value})
    assert load_settings(env={"BILLING_HOME": str(tmp_path)}).anomaly_factor == Decimal("10")


def test_keys_overridden_by_the_environment_are_still_known(tmp_path):
    env = {"BILLING_HOME": str(tmp_path), "BILLING_ENGINE": "duckdb", "BILLING_SOURCES": "s.yaml",
           "BILLING_PEOPLE": "p.yaml"}
    assert load_settings(write(tmp_path, FULL), env=env).engine == "duckdb"


@pytest.mark.parametrize(("text", "key", "where", "nearest"), [
    ("catalgo: catalog.yaml\n", "catalgo", "at the top level", "catalog"),
    ("warehouse:\n  engine: duckdb\n  pth: w.duckdb\n", "pth", "in warehouse", "path"),
    ("approval:\n  finance_aprovals: 2\n", "finance_aprovals", "in approval", "finance_approvals"),
    ("lookback_period: 2\n", "lookback_period", "at the top level", "lookback_periods"),
])
def test_an_unknown_key_is_refused_with_the_nearest_known_key(tmp_path, text, key, where, nearest):
    path = write(tmp_path, text)
    with pytest.raises(ValueError) as err:
        load_settings(path, env={})
    message = str(err.value)
    assert message.startswith(f"{path}: unknown key '{key}' {where}; the nearest known key is '{nearest}'")


def test_the_cli_stops_on_an_unknown_key(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("BILLING_DEBUG", raising=False)
    path = write(tmp_path, "home: data\nwarehouse: {engin: duckdb}\n")
    assert main(["--config", str(path), "run", "--month", "2026-10"]) != 0
    out = capsys.readouterr()
    assert "unknown key 'engin' in warehouse; the nearest known key is 'engine'" in " ".join((out.out + out.err).split())
