"""Catalog validation: a bad catalog stops with the file, the entry and what to fix."""

import textwrap
from decimal import Decimal

import pytest

from catalog.load import CatalogError, load_catalog

from support import REFERENCE

BASE = """
products:
  - code: API
    prices: [{currency: USD, model: per_unit, unit_price: "0.002"}]
customers:
  - {id: C1, currency: USD}
"""


def load(tmp_path, extra: str):
    path = tmp_path / "catalog.yaml"
    path.write_text(textwrap.dedent(BASE) + textwrap.dedent(extra))
    return load_catalog(path)


def test_reference_catalog_loads_every_level():
    cat = load_catalog(REFERENCE / "catalog.yaml")
    levels = {r.level for r in cat.rates.values()}
    assert levels == {"account_override", "contract_rate", "rate_class", "product_default"}
    assert cat.billing_account("C6") == "C1"
    storage = cat.rates["default:STORAGE_GB:USD:1"].price
    assert [t.up_to for t in storage.tiers] == [Decimal(100), Decimal(1000), None]
    assert cat.rates["contract:CT-2:API_CALLS:1"].price.included_units == Decimal(1_000_000)


@pytest.mark.parametrize(
    ("extra", "where", "what"),
    [
        ("contracts:\n  - {id: K, customer: C9, effective_from: 2026-01-01}\n", "contracts[0]", "unknown customer 'C9'"),
        ("account_products:\n  - {customer: C1, product: NOPE, effective_from: 2026-01-01}\n",
         "account_products[0]", "unknown product 'NOPE'"),
        ("rate_classes:\n  - id: R\n    currency: USD\n    prices:\n"
         "      - {product: API, model: per_unit, unit_price: \"1\", effective_from: 2026-01-01}\n"
         "      - {product: API, model: per_unit, unit_price: \"2\", effective_from: 2026-06-01}\n",
         "rate_class R API USD", "both effective"),
        ("rate_classes:\n  - id: R\n    currency: USD\n    prices:\n      - product: API\n        model: graduated\n"
         "        tiers: [{up_to: 100, unit_price: \"1\"}, {up_to: 50, unit_price: \"2\"}, {unit_price: \"3\"}]\n",
         "tiers[1]", "must be above the previous tier's bound"),
        ("rate_classes:\n  - id: R\n    currency: USD\n    prices:\n      - product: API\n        model: volume\n"
         "        tiers: [{up_to: 100, unit_price: \"1\"}]\n", "tiers[0]", "last tier must be unbounded"),
        ("rate_classes:\n  - {id: R, currency: XXX}\n", "rate_classes[0]", "not an ISO 4217 currency"),
        ("rate_classes:\n  - id: R\n    currency: USD\n    prices: [{product: API, model: per_unit, unit_price: \"-1\"}]\n",
         "prices[0]", "must not be negative"),
        ("rate_classes:\n  - id: R\n    currency: USD\n    prices: [{product: API, model: per_unit, unit_price: 0.5}]\n",
         "prices[0]", "binary float"),
        ("rate_classes:\n  - id: R\n    currency: USD\n    prices: [{product: API, model: package, package_size: \"2.5\","
         " package_price: \"1\"}]\n", "prices[0]", "whole number"),
        ("contracts:\n  - {id: A, customer: C1, effective_from: 2026-01-01}\n"
         "  - {id: B, customer: C1, effective_from: 2026-03-01}\n", "contracts A, B", "two contracts in force"),
    ],
)
def test_bad_catalog_names_the_entry_and_the_fix(tmp_path, extra, where, what):
    with pytest.raises(CatalogError) as err:
        load(tmp_path, extra)
    message = str(err.value)
    assert "catalog.yaml" in message and where in message and what in message


def test_customer_zone_must_be_iana(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(BASE.replace("{id: C1, currency: USD}", "{id: C1, currency: USD, timezone: Mars/Olympus}"))
    with pytest.raises(CatalogError, match="customers\\[0\\].*IANA"):
        load_catalog(path)
