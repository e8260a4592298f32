"""core/ is the bottom of the house: it imports nothing of ours, and the rules it holds (the event
contract, the enums) are the ones every other place uses, Python and dbt alike."""

from __future__ import annotations

import ast
import re
import tomllib
from decimal import Decimal

import polars as pl
import yaml

from core import enums, events

from support import ROOT

DBT_MODELS = ROOT / "dbt_project" / "models"


def _our_packages() -> set[str]:
    """Every top-level package of this project: the packages pyproject.toml installs, and tests/bench."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    found = {p.rstrip("*") for p in config["tool"]["setuptools"]["packages"]["find"]["include"]}
    found |= {p.parent.name for p in ROOT.glob("*/__init__.py")}
    return found | {"tests", "bench", "support"}


def test_core_imports_nothing_of_ours():
    ours = _our_packages() - {"core"}
    assert {"billing", "quality", "warehouse", "normalize", "catalog", "ledger", "collectors"} <= ours
    wrong = []
    for path in sorted((ROOT / "core").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [] if node.level else [node.module or ""]  # relative: inside core
            else:
                continue
            wrong += [f"{path.name}:{node.lineno} imports {name}" for name in names if name.split(".")[0] in ours]
    assert not wrong, "core/ must import nothing of ours (move the rule down into core, or the import up): " + \
        "; ".join(wrong)


# --- the event contract (core/events.py) -----------------------------------------------------------

def _dbt_event_source() -> dict:
    """The dbt source table that reads raw.events, from the project's YAML."""
    for path in DBT_MODELS.rglob("*.yml"):
        for source in (yaml.safe_load(path.read_text()) or {}).get("sources") or []:
            for table in source.get("tables") or []:
                if (source.get("schema") or source["name"]) == "raw" and \
                        (table.get("identifier") or table["name"]) == "events":
                    return table
    raise AssertionError("no dbt source reads raw.events")


def test_dbt_declares_the_event_columns_of_the_contract():
    table = _dbt_event_source()
    declared = [(c["name"], c.get("data_type")) for c in table.get("columns") or []]
    assert declared == [(c.name, c.sql.lower()) for c in events.COLUMNS]


def test_dbt_staging_reads_only_contract_columns():
    sql = (DBT_MODELS / "staging" / "stg_usage__events.sql").read_text()
    select = sql[sql.index("select") + len("select"):sql.index("from {{ source(")]
    read = set(re.findall(r"\b([a-z_]+)\b", re.sub(r"\bas\b\s*\w*", " ", re.sub(r"\{\{.*?\}\}", " ", select)))) - {"cast"}
    assert set(events.RATED) <= read <= set(events.STORED), read


def test_the_warehouse_creates_raw_events_as_the_contract(tmp_path):
    from warehouse.store import Warehouse

    warehouse = Warehouse(duckdb_path=tmp_path / "w.duckdb")
    warehouse.ensure_schema()
    with warehouse.transaction() as tx:
        got = tx.fetchall("SELECT column_name, data_type, is_nullable FROM information_schema.columns "
                          "WHERE table_schema = 'raw' AND table_name = 'events' ORDER BY ordinal_position")
    duck = {"VARCHAR": "VARCHAR", "BIGINT": "BIGINT", "TIMESTAMPTZ": "TIMESTAMP WITH TIME ZONE"}
    assert got == [(c.name, duck.get(c.sql, c.sql.replace(" ", "")), "NO") for c in events.COLUMNS]


def test_python_readers_and_writers_use_the_contract():
    from demo.dataset import COLUMNS as DEMO_COLUMNS
    from formats import EVENT_FIELDS
    from normalize.load import PAYLOAD
    from normalize.rules import normalize_frame
    from quality.expectations import EVENT_COLUMNS
    from quality.rerate import EVENT_SCHEMA

    assert EVENT_FIELDS == DEMO_COLUMNS == events.RECEIVED == ("event_id", "customer_id", "product_id", "quantity",
                                                                "occurred_at")
    assert PAYLOAD == events.PAYLOAD and EVENT_COLUMNS == events.STORED
    assert EVENT_SCHEMA == events.polars_schema(events.RATED)
    from formats import SourceFormat

    frame = pl.DataFrame({"event_id": ["a"], "customer_id": ["C1"], "product_id": ["API"], "quantity": ["1.5"],
                          "occurred_at": ["2026-10-01T00:00:00Z"]}).with_row_index("row_number", offset=1)
    out = normalize_frame(frame.with_columns(pl.col("row_number").cast(pl.Int64)), SourceFormat("s"))
    assert out.events.schema == {"row_number": pl.Int64, **events.polars_schema(events.RECEIVED)}
    empty = normalize_frame(frame.clear().with_columns(pl.col("row_number").cast(pl.Int64)), SourceFormat("s"))
    assert empty.events.schema == out.events.schema


# --- the enums (core/enums.py) ---------------------------------------------------------------------

# Each column dbt tests with accepted_values, and the list of core/enums.py it must accept.
ACCEPTED = {
    ("stg_catalog__products", "aggregation"): enums.AGGREGATIONS,
    ("stg_catalog__rates", "rate_level"): enums.RATE_LEVELS,
    ("fct_invoices", "status"): enums.INVOICE_STATUSES,
    ("fct_invoice_lines", "line_type"): enums.LINE_TYPES,
    ("fct_invoice_lines", "rate_level"): enums.LINE_RATE_LEVELS,
    ("fct_invoice_lines", "pricing_model"): enums.LINE_PRICING_MODELS,
    ("fct_unrated_usage", "reason"): enums.UNRATED_REASONS,
}


def _accepted_values() -> dict[tuple[str, str], list[str]]:
    found = {}
    for path in DBT_MODELS.rglob("*.yml"):
        doc = yaml.safe_load(path.read_text()) or {}
        for model in doc.get("models") or []:
            for column in model.get("columns") or []:
                for test in column.get("data_tests") or column.get("tests") or []:
                    if isinstance(test, dict) and "accepted_values" in test:
                        spec = test["accepted_values"]
                        found[(model["name"], column["name"])] = (spec.get("arguments") or spec)["values"]
    return found


def test_dbt_accepts_the_values_of_core_enums():
    found = _accepted_values()
    assert {key: tuple(values) for key, values in found.items()} == ACCEPTED


def test_the_re_rater_prices_every_pricing_model_of_the_catalog():
    from catalog.model import Price, Tier
    from quality.rerate_pricing import price_segment

    one = (Tier(None, Decimal("0.5")),)
    prices = {"per_unit": Price("per_unit", one), "graduated": Price("graduated", one), "volume": Price("volume", one),
              "package": Price("package", package_size=10, package_price=Decimal(3)),
              "flat_fee": Price("flat_fee", flat_amount=Decimal(31))}
    assert tuple(prices) == enums.PRICING_MODELS
    amounts = {model: price_segment(price, Decimal(20), active_days=31, period_days=31).amount
               for model, price in prices.items()}
    assert amounts == {"per_unit": 10, "graduated": 10, "volume": 10, "package": 6, "flat_fee": 31}
