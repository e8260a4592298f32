"""Prices keep 12 decimal places, quantities and prices have stated limits, and every ISO 4217
currency (CLF and UYW have 4 decimals) is rounded and stored, through the real pipeline."""

from __future__ import annotations

import contextlib
import re
from decimal import Context, Decimal, localcontext

import polars as pl
import pytest
import yaml
from scenario import bill, own_postgres_database, rows

from catalog.land import land_catalog
from catalog.load import CatalogError, load_catalog
from core.money import AMOUNT, FEE, LEDGER, LEDGER_EXACT, MINOR_UNITS, MONEY, PRICE, QUANTITY, round_money
from formats import SourceFormat
from ledger import schema as ledger_schema
from normalize.rules import normalize_frame
from warehouse import schema
from warehouse.store import Warehouse

from support import ROOT

D = Decimal
MONEY_SQL = (ROOT / "dbt_project" / "macros" / "money.sql").read_text()

PRECISE = """
products:
  - code: API
    prices:
      - {currency: USD, model: per_unit, unit_price: "0.000123456789"}
customers:
  - {id: P1, currency: USD}
"""
PRECISE_USAGE = "event_id,customer_id,product_id,quantity,occurred_at\ne1,P1,API,100000000,2026-10-05T12:00:00Z\n"

CLF = """
products:
  - code: API
    prices:
      - {currency: CLF, model: per_unit, unit_price: "0.00012345"}
  - code: SEAT
    aggregation: none
    prices:
      - {currency: CLF, model: flat_fee, amount: "1.23456"}
customers:
  - {id: CL1, currency: CLF}
account_products:
  - {customer: CL1, product: SEAT, effective_from: 2026-10-01}
"""
CLF_USAGE = "event_id,customer_id,product_id,quantity,occurred_at\nc1,CL1,API,1000,2026-10-05T12:00:00Z\n"


def macro(name: str) -> str:
    return re.search(r"macro " + name + r"\(\) %\}(.*?)\{% endmacro", MONEY_SQL).group(1).strip()


def test_sql_types_are_the_python_sizes_and_stay_exact_within_38_digits():
    assert macro("quantity_type") == QUANTITY.sql.lower() == "decimal(19, 9)"
    assert macro("price_type") == PRICE.sql.lower() == "decimal(18, 12)"
    assert macro("fee_type") == FEE.sql.lower() == "decimal(27, 12)"
    assert macro("amount_type") == AMOUNT.sql.lower() == "decimal(37, 21)"
    assert macro("money_type") == f"decimal(38, {MONEY.fraction})" == "decimal(38, 4)"
    assert (schema.QUANTITY, schema.UNIT_PRICE, schema.FEE_AMOUNT) == (QUANTITY.sql, PRICE.sql, FEE.sql)
    assert PRICE.fraction >= 12
    # Spark: p1 + p2 + 1 for a product, one digit more than the wider operand for a sum
    assert QUANTITY.precision + PRICE.precision + 1 <= 38
    assert AMOUNT.precision + 1 <= 38 and FEE.precision + 10 + 1 <= 38
    assert QUANTITY.largest * PRICE.largest < D(10) ** AMOUNT.integer
    # the marts declare the same types (dbt contracts)
    marts = (ROOT / "dbt_project" / "models" / "marts" / "_marts.yml").read_text()
    declared = {t for t in re.findall(r'data_type: "(decimal\([^)]*\))"', marts)}
    assert declared <= {macro(m) for m in ("quantity_type", "fee_type", "amount_type", "money_type",
                                           "quantity_total_type")}


def test_the_ledger_type_holds_every_value_it_keeps_and_is_the_one_sql_declares():
    assert (ledger_schema.MONEY, ledger_schema.EXACT) == (LEDGER.sql, LEDGER_EXACT.sql) \
        == ("DECIMAL(38, 12)", "DECIMAL(38, 21)")
    assert LEDGER.fraction >= max(MONEY.fraction, QUANTITY.fraction, PRICE.fraction, FEE.fraction)
    assert LEDGER.integer >= max(AMOUNT.integer, QUANTITY.integer, PRICE.integer, FEE.integer)
    assert LEDGER_EXACT.fraction >= AMOUNT.fraction and LEDGER_EXACT.integer >= AMOUNT.integer
    ledger_sql = (ROOT / "dbt_project" / "macros" / "ledger.sql").read_text()
    assert re.search(r"macro ledger_money_type\(\) %\}(.*?)\{% endmacro", ledger_sql).group(1) == LEDGER.sql.lower()
    marts = (ROOT / "dbt_project" / "models" / "marts" / "ledger" / "_ledger_marts.yml").read_text()
    assert set(re.findall(r'data_type: "(decimal\([^)]*\))"', marts)) <= {LEDGER.sql.lower(), LEDGER_EXACT.sql.lower()}


def test_round_money_has_a_branch_for_every_minor_unit():
    for digits in set(MINOR_UNITS.values()):
        assert f"when {digits} then cast(round({{{{ amount }}}}, {digits})" in MONEY_SQL
    assert MONEY.fraction == max(MINOR_UNITS.values()) == 4
    assert round_money(D("0.123456"), "CLF") == D("0.1235")


@pytest.mark.parametrize(("field", "value", "problem"), [
    ("unit_price", '"0.000123456789123"', "'unit_price: 0.000123456789123' has more than 12 decimal places"),
    ("unit_price", '"1000000"', "'unit_price: 1000000' is too large"),
    ("included_units", '"0.0000000001"', "'included_units: 0.0000000001' has more than 9 decimal places"),
    ("included_units", "10000000000", "'included_units: 10000000000' is too large"),
])
def test_catalog_refuses_a_value_it_cannot_keep_naming_the_entry_and_the_limit(tmp_path, field, value, problem):
    price = {"currency": "USD", "model": "per_unit", "unit_price": '"0.002"', field: value}
    text = "products:\n  - code: API\n    prices:\n      - {" + ", ".join(f"{k}: {v}" for k, v in price.items()) + "}\n"
    path = tmp_path / "catalog.yaml"
    path.write_text(text)
    with pytest.raises(CatalogError) as caught:
        load_catalog(path)
    assert caught.value.where == "products[0].prices[0]"
    assert problem in caught.value.problem
    assert "digits before the decimal point" in caught.value.problem  # the limit is stated


def test_catalog_keeps_twelve_places_and_the_largest_values(tmp_path):
    path = tmp_path / "catalog.yaml"
    doc = yaml.safe_load(PRECISE)
    doc["products"][0]["prices"][0].update(unit_price=f"{PRICE.largest:f}", included_units=f"{QUANTITY.largest:f}")
    path.write_text(yaml.safe_dump(doc))
    price = next(iter(load_catalog(path).rates.values())).price
    assert price.tiers[0].unit_price == D("999999.999999999999")
    assert price.included_units == D("9999999999.999999999")


def test_a_quantity_beyond_the_limit_is_quarantined_with_a_reason():
    frame = pl.DataFrame({"event_id": ["a", "b", "c"], "customer_id": ["C1"] * 3, "product_id": ["API"] * 3,
                          "quantity": ["9999999999.999999999", "10000000000", "1000000"],
                          "occurred_at": ["2026-10-01T00:00:00Z"] * 3})
    frame = frame.with_row_index("row_number", offset=1).with_columns(pl.col("row_number").cast(pl.Int64))
    out = normalize_frame(frame, SourceFormat("s"))
    assert out.events["quantity"].to_list() == [D("9999999999.999999999"), D("1000000")]
    assert out.quarantine.rows() == [(2, "quantity", "quantity '10000000000' is above the largest quantity kept, "
                                      "9999999999.999999999 (at most 10 digits before the decimal point and 9 "
                                      "after; docs/catalog.md)",
                                      out.quarantine["raw_row"][0])]
    # the limit holds after a source's quantity_scale too
    scaled = normalize_frame(frame, SourceFormat("s", quantity_scale=D("1000")))
    assert scaled.events["event_id"].to_list() == ["c"]
    assert set(scaled.quarantine["row_number"]) == {1, 2}


def _line(settings, postgres_dsn=None):
    return rows(settings, "SELECT quantity, amount_unrounded, amount FROM marts.fct_invoice_lines",
                postgres_dsn=postgres_dsn)


def test_a_twelve_place_price_bills_exactly_on_duckdb(tmp_path):
    settings, outcomes = bill(tmp_path / "home", PRECISE, PRECISE_USAGE, ["2026-10"])
    # 100,000,000 x 0.000123456789 = 12,345.6789 (9 places kept it would be 0.000123457: 12,345.70)
    assert _line(settings) == [(D("100000000"), D("12345.6789"), D("12345.68"))]
    assert outcomes["misrated_lines"].passed, outcomes["misrated_lines"].summary
    assert rows(settings, "SELECT unit_price FROM marts.fct_invoice_line_tiers") == [(D("0.000123456789"),)]


def test_a_clf_price_is_rounded_to_four_places_end_to_end_on_duckdb(tmp_path):
    settings, outcomes = bill(tmp_path / "home", CLF, CLF_USAGE, ["2026-10"])
    lines = rows(settings, "SELECT product_id, amount_unrounded, amount FROM marts.fct_invoice_lines "
                           "ORDER BY product_id")
    # 1000 x 0.00012345 = 0.12345 -> 0.1235; the fee 1.23456 for all 31 days -> 1.2346
    assert lines == [("API", D("0.12345"), D("0.1235")), ("SEAT", D("1.23456"), D("1.2346"))]
    assert rows(settings, "SELECT currency, total, is_finalizable FROM marts.fct_invoices") == [
        ("CLF", D("1.3581"), True)]
    assert all(o.passed for o in outcomes.values()), {n: o.summary for n, o in outcomes.items() if not o.passed}


def test_twelve_places_and_clf_on_postgres(tmp_path):
    with own_postgres_database("precision") as dsn:
        settings, outcomes = bill(tmp_path / "precise", PRECISE, PRECISE_USAGE, ["2026-10"], postgres_dsn=dsn)
        assert _line(settings, dsn) == [(D("100000000"), D("12345.6789"), D("12345.68"))]
        assert outcomes["misrated_lines"].passed, outcomes["misrated_lines"].summary
    with own_postgres_database("clf") as dsn:
        settings, outcomes = bill(tmp_path / "clf", CLF, CLF_USAGE, ["2026-10"], postgres_dsn=dsn)
        assert rows(settings, "SELECT currency, total FROM marts.fct_invoices", postgres_dsn=dsn) == [
            ("CLF", D("1.3581"))]
        assert outcomes["misrated_lines"].passed, outcomes["misrated_lines"].summary


def limits_scenario() -> tuple[str, str, dict[str, Decimal]]:
    """A catalog and usage at the widest values the catalog accepts, and each line's exact amount
    (Python decimals, 80 digits). tests/test_spark.py bills it on Spark too."""
    quantity, price, fee = QUANTITY.largest, PRICE.largest, FEE.largest
    longest = D(1).scaleb(-PRICE.fraction) * 123456789  # 0.000123456789: every place of the price used
    catalog = f"""
products:
  - code: WIDE
    prices: [{{currency: USD, model: per_unit, unit_price: "{price}"}}]
  - code: LONG
    prices: [{{currency: USD, model: per_unit, unit_price: "{longest}"}}]
  - code: BLOCKS
    prices: [{{currency: USD, model: package, package_size: 1, package_price: "{price}"}}]
  - code: FEE
    aggregation: none
    prices: [{{currency: USD, model: flat_fee, amount: "{fee}"}}]
customers:
  - {{id: BIG, currency: USD}}
contracts:  # the lines' subtotal, above 2 x 10^16, is compared with the largest commitment: no true-up
  - {{id: CT-BIG, customer: BIG, currency: USD, effective_from: 2025-01-01, minimum_commitment: "{fee}"}}
account_products:
  - {{id: AP-FEE, customer: BIG, product: FEE, effective_from: 2025-03-11}}
"""
    usage = ("event_id,customer_id,product_id,quantity,occurred_at\n"
             f"w,BIG,WIDE,{quantity},2025-03-05T00:00:00Z\n"
             f"l,BIG,LONG,{quantity},2025-03-05T00:00:00Z\n"
             f"b,BIG,BLOCKS,{quantity},2025-03-05T00:00:00Z\n")
    with localcontext(Context(prec=80)):
        exact = {
            "WIDE": quantity * price,  # 37 digits: 9999999999999999.989000000000000000001
            "LONG": quantity * longest,
            # ceil(quantity) = 10^10 packages of 1: one whole digit more than a quantity has
            "BLOCKS": (quantity // 1 + 1) * price,
            "FEE": (fee * 21 * 10 ** 12 // 31) / D(10 ** 12),  # 21 of March's 31 days, truncated to 12 places
        }
    assert exact["BLOCKS"] == D(10) ** QUANTITY.integer * price and exact["FEE"] <= fee * 21 / 31
    return catalog, usage, exact


LIMITS_MONTH = "2025-03"


def _limits_lines(settings, postgres_dsn=None) -> dict[str, tuple[Decimal, Decimal]]:
    return {product: (unrounded, amount) for product, unrounded, amount in rows(
        settings, "SELECT product_id, amount_unrounded, amount FROM marts.fct_invoice_lines", postgres_dsn=postgres_dsn)}


def _assert_exact_at_the_limits(settings, outcomes, exact, postgres_dsn=None):
    lines = _limits_lines(settings, postgres_dsn)
    assert {product: unrounded for product, (unrounded, _) in lines.items()} == exact
    assert {product: amount for product, (_, amount) in lines.items()} == {
        product: round_money(value, "USD") for product, value in exact.items()}
    # the independent re-rater (Python decimals) confirms every line: nothing failed, nothing crashed
    assert [(name, o.summary) for name, o in outcomes.items() if not o.passed] == []
    assert outcomes["misrated_lines"].summary == "all 4 lines confirmed by the re-rater"


def test_amounts_at_the_catalogs_limits_are_exact_on_duckdb_and_the_rerater_agrees(tmp_path):
    catalog, usage, exact = limits_scenario()
    settings, outcomes = bill(tmp_path / "home", catalog, usage, [LIMITS_MONTH])
    _assert_exact_at_the_limits(settings, outcomes, exact)


def test_amounts_at_the_catalogs_limits_are_exact_on_postgres(tmp_path):
    catalog, usage, exact = limits_scenario()
    with own_postgres_database("limits") as dsn:
        settings, outcomes = bill(tmp_path / "home", catalog, usage, [LIMITS_MONTH], postgres_dsn=dsn)
        _assert_exact_at_the_limits(settings, outcomes, exact, dsn)


def _old_warehouse(warehouse: Warehouse) -> None:
    """The raw catalog tables as a version before this one made them: DECIMAL(38, 9), no csm columns,
    and a dbt staging view reading the unit prices."""
    with warehouse.transaction() as tx:
        tx.execute("CREATE SCHEMA raw")
        tx.execute("CREATE SCHEMA staging")
        for name in schema.CATALOG_TABLES:
            columns = re.sub(r"DECIMAL\(\d+, \d+\)", "DECIMAL(38, 9)", schema.TABLES[name])
            columns = re.sub(r",\s*csm VARCHAR.*require_csm_approval BOOLEAN[^\n]*", "", columns, flags=re.S)
            tx.execute(f"CREATE TABLE raw.{name} ({columns})")
        tx.execute("CREATE VIEW staging.stg_catalog__rate_tiers AS SELECT rate_id, unit_price FROM raw.catalog_rate_tiers")


@pytest.mark.parametrize("engine", ["duckdb", "postgres"])
def test_a_warehouse_made_before_keeps_twelve_places_once_upgraded(tmp_path, engine):
    path = tmp_path / "catalog.yaml"
    path.write_text(PRECISE.replace("{id: P1, currency: USD}", "{id: P1, currency: USD, csm: p-1}"))
    with contextlib.ExitStack() as stack:
        if engine == "postgres":
            warehouse = Warehouse(postgres_dsn=stack.enter_context(own_postgres_database("upgrade")))
        else:
            warehouse = Warehouse(duckdb_path=tmp_path / "old.duckdb")
        _old_warehouse(warehouse)
        warehouse.ensure_schema()
        loaded = land_catalog(warehouse, tmp_path / "landing", path)
        with warehouse.transaction() as tx:
            assert tx.fetchall("SELECT unit_price FROM raw.catalog_rate_tiers") == [(D("0.000123456789"),)]
            assert tx.fetchall("SELECT csm, require_csm_approval, catalog_sha256 FROM raw.catalog_customers") == [
                ("p-1", False, loaded.sha256)]
