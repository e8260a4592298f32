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


@pytest.mark.parametrize(
    ("extra", "where", "key", "nearest"),
    [
        # bills 15.00 instead of 5.00 for 15 units at 1.00 if ignored
        ("rate_classes:\n  - id: R\n    currency: USD\n    prices:\n"
         "      - {product: API, model: per_unit, unit_price: \"1.00\", included: 10}\n",
         "rate_classes[0].prices[0]", "included", "included_units"),
        ("rate_classes:\n  - id: R\n    currency: USD\n    prices:\n      - product: API\n        model: graduated\n"
         "        tiers: [{up_to: 10, unit_price: \"1\", flat: 5}, {unit_price: \"0.5\"}]\n",
         "rate_classes[0].prices[0].tiers[0]", "flat", "flat_fee"),
        ("contracts:\n  - {id: K, customer: C1, effective_from: 2026-01-01, minimum_commitmnet: \"100\"}\n",
         "contracts[0]", "minimum_commitmnet", "minimum_commitment"),
        ("contracts:\n  - id: K\n    customer: C1\n    effective_from: 2026-01-01\n    rates:\n"
         "      - {product: API, model: per_unit, unit_price: \"1\", efective_to: 2026-06-01}\n",
         "contracts[0].rates[0]", "efective_to", "effective_to"),
        ("account_products:\n  - {customer: C1, product: API, effective_from: 2026-01-01, efective_to: 2026-02-01}\n",
         "account_products[0]", "efective_to", "effective_to"),
        ("customer:\n  - {id: C2, currency: USD}\n", "file", "customer", "customers"),
    ],
)
def test_an_unknown_key_is_refused_naming_the_entry_and_the_nearest_known_key(tmp_path, extra, where, key, nearest):
    with pytest.raises(CatalogError) as err:
        load(tmp_path, extra)
    assert err.value.where == where
    assert f"unknown key '{key}'" in err.value.problem
    assert f"the nearest known key is '{nearest}'" in err.value.problem


def test_keys_of_the_base_catalog_entries_are_refused_too(tmp_path):
    path = tmp_path / "catalog.yaml"
    path.write_text(BASE.replace("{id: C1, currency: USD}", "{id: C1, currency: USD, timezon: UTC}")
                    .replace('unit_price: "0.002"', 'unit_price: "0.002", included: 10'))
    with pytest.raises(CatalogError, match=r"products\[0\]\.prices\[0\]: unknown key 'included'"):
        load_catalog(path)
    path.write_text(BASE.replace("{id: C1, currency: USD}", "{id: C1, currency: USD, timezon: UTC}"))
    with pytest.raises(CatalogError, match=r"customers\[0\]: unknown key 'timezon'.*nearest known key is 'timezone'"):
        load_catalog(path)


@pytest.mark.parametrize(
    ("price", "problem"),
    [
        ('{model: per_unit, unit_price: "1", tiers: [{unit_price: "1"}]}', "'tiers' is not a field of a per_unit price"),
        ('{model: graduated, unit_price: "1", tiers: [{unit_price: "1"}]}',
         "'unit_price' is not a field of a graduated price"),
        ('{model: flat_fee, amount: "5", included_units: 10}', "'included_units' is not a field of a flat_fee price"),
    ],
)
def test_a_field_of_another_pricing_model_is_refused(tmp_path, price, problem):
    extra = f"rate_classes:\n  - id: R\n    currency: USD\n    prices:\n      - {{product: API, {price[1:]}\n"
    with pytest.raises(CatalogError) as err:
        load(tmp_path, extra)
    assert err.value.where == "rate_classes[0].prices[0]" and problem in err.value.problem


def test_a_price_field_on_provisioning_without_a_model_is_refused(tmp_path):
    with pytest.raises(CatalogError, match=r"account_products\[0\]: 'unit_price' is a field of a price: add 'model'"):
        load(tmp_path, "account_products:\n  - {customer: C1, product: API, effective_from: 2026-01-01, "
                       "unit_price: \"1\"}\n")


def test_customer_csm_keys_are_known_and_typed(tmp_path):
    cat = load(tmp_path, "")
    assert (cat.customers["C1"].csm, cat.customers["C1"].require_csm_approval) == (None, False)
    path = tmp_path / "catalog.yaml"
    path.write_text(BASE.replace("{id: C1, currency: USD}", "{id: C1, currency: USD, csm: p-7, require_csm_approval: true}"))
    customer = load_catalog(path).customers["C1"]
    assert (customer.csm, customer.require_csm_approval) == ("p-7", True)
    path.write_text(BASE.replace("{id: C1, currency: USD}", "{id: C1, currency: USD, require_csm_approval: \"yes\"}"))
    with pytest.raises(CatalogError, match="must be true or false"):
        load_catalog(path)
