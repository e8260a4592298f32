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


# --- the catalog in the warehouse: landed by sha256 with a receipt, read back as loaded -------------------

EVERY_FIELD = """
products:
  - code: API
    aggregation: sum
    prices:
      - {currency: USD, model: per_unit, unit_price: "0.000123456789", included_units: "1000", effective_to: 2026-06-01}
      - {currency: USD, model: per_unit, unit_price: "0.002", effective_from: 2026-06-01}
  - code: GB
    name: Storage
    unit: GB
    aggregation: max
    prices:
      - currency: USD
        model: graduated
        tiers: [{up_to: "100.5", unit_price: "1", flat_fee: "10"}, {unit_price: "0.5"}]
  - code: SEAT
    aggregation: none
    prices: [{currency: EUR, model: flat_fee, amount: "99999999999999.99"}]
  - code: SMS
    aggregation: count
    prices: [{currency: USD, model: package, package_size: 100, package_price: "2.5", included_units: "50"}]
rate_classes:
  - id: GOLD
    name: Gold
    currency: EUR
    prices:
      - product: GB
        model: volume
        tiers: [{up_to: 10, unit_price: "3"}, {up_to: 1000, unit_price: "2", flat_fee: "1"}, {unit_price: "1"}]
customers:
  - {id: P, name: Parent, currency: EUR, timezone: Europe/Budapest, rate_class: GOLD, csm: p-7, require_csm_approval: true}
  - {id: K, currency: USD, bill_to: P, active_from: 2026-02-01, active_to: 2026-09-15}
contracts:
  - id: CT
    customer: P
    effective_from: 2026-01-01
    effective_to: 2027-01-01
    minimum_commitment: "500"
    rates: [{product: SEAT, model: flat_fee, amount: "10"}]
account_products:
  - {customer: K, product: SEAT, effective_from: 2026-03-01}
  - {id: K-API, customer: K, product: API, effective_from: 2026-01-01, model: per_unit, unit_price: "0.001"}
"""


def new_warehouse(tmp_path):
    from warehouse.store import Warehouse

    warehouse = Warehouse(duckdb_path=tmp_path / "warehouse.duckdb")
    warehouse.ensure_schema()
    return warehouse


@pytest.mark.parametrize("source", ["reference", "every field"])
def test_the_catalog_read_from_the_warehouse_is_the_catalog_loaded(tmp_path, source):
    from catalog.land import land_catalog
    from catalog.read import read_from_warehouse

    path = REFERENCE / "catalog.yaml"
    if source == "every field":
        path = tmp_path / "catalog.yaml"
        path.write_text(EVERY_FIELD)
    warehouse = new_warehouse(tmp_path)
    land_catalog(warehouse, tmp_path / "landing", path)
    with warehouse.transaction() as tx:
        stored = read_from_warehouse(tx)
    loaded = load_catalog(path)
    for part in ("customers", "products", "rate_classes", "contracts", "account_products", "rates"):
        assert getattr(stored, part) == getattr(loaded, part), part
    assert len(loaded.rates) > 3 and stored.billing_account("C6" if source == "reference" else "K") in ("C1", "P")


def test_a_catalog_lands_by_sha256_with_a_receipt_and_the_same_content_twice_changes_nothing(tmp_path):
    import hashlib

    from catalog.land import land_catalog
    from catalog.read import catalog_receipt, catalog_sha256, read_from_warehouse

    warehouse = new_warehouse(tmp_path)
    landing = tmp_path / "landing"
    path = tmp_path / "catalog.yaml"
    path.write_text(BASE)
    first_sha = hashlib.sha256(path.read_bytes()).hexdigest()

    def state():
        with warehouse.transaction() as tx:
            return (catalog_sha256(tx), catalog_receipt(tx),
                    tx.fetchall("SELECT catalog_sha256, source_path FROM raw.catalog_receipts ORDER BY loaded_at"),
                    read_from_warehouse(tx).rates["default:API:USD:1"].price.tiers[0].unit_price,
                    tx.fetchall("SELECT DISTINCT catalog_sha256 FROM raw.catalog_rates"))

    first = land_catalog(warehouse, landing, path)
    assert (first.sha256, first.changed, first.previous_sha256) == (first_sha, True, None)
    assert first.landing_path == landing / "catalog" / first_sha[:2] / f"{first_sha}.yaml"
    assert first.landing_path.read_bytes() == path.read_bytes()
    sha, receipt, receipts, price, stamps = state()
    assert (sha, receipts, price, stamps) == (first_sha, [(first_sha, str(path))], Decimal("0.002"), [(first_sha,)])
    assert (receipt.landing_path, receipt.size_bytes) == (str(first.landing_path), len(BASE.encode()))

    again = land_catalog(warehouse, landing, path)  # the same bytes: no receipt, no rewrite
    assert (again.changed, again.counts, again.sha256) == (False, {}, first_sha)
    assert state() == (sha, receipt, receipts, price, stamps)

    path.write_text(BASE.replace('"0.002"', '"0.003"'))  # an edit: a new catalog, the old one kept
    second = land_catalog(warehouse, landing, path)
    assert second.changed and second.previous_sha256 == first_sha and second.sha256 != first_sha
    sha, _, receipts, price, stamps = state()
    assert (sha, price, stamps) == (second.sha256, Decimal("0.003"), [(second.sha256,)])
    assert [r[0] for r in receipts] == [first_sha, second.sha256]
    assert first.landing_path.read_bytes() == BASE.encode()  # nothing stored is deleted

    path.write_text(BASE)  # back to the first content: current again, stored once
    third = land_catalog(warehouse, landing, path)
    assert third.changed and third.sha256 == first_sha and third.landing_path == first.landing_path
    sha, receipt, receipts, price, _ = state()
    assert (sha, price, [r[0] for r in receipts]) == (first_sha, Decimal("0.002"), [first_sha, second.sha256, first_sha])
    assert sorted(p.name for p in (landing / "catalog").rglob("*.yaml")) == sorted(
        [f"{first_sha}.yaml", f"{second.sha256}.yaml"])


def test_an_invalid_catalog_stores_nothing_and_leaves_the_warehouse_catalog_as_it_was(tmp_path):
    from catalog.land import land_catalog
    from catalog.read import catalog_sha256

    warehouse = new_warehouse(tmp_path)
    path = tmp_path / "catalog.yaml"
    path.write_text(BASE)
    good = land_catalog(warehouse, tmp_path / "landing", path)
    path.write_text(BASE.replace('"0.002"', "0.002"))  # a binary float: refused
    with pytest.raises(CatalogError, match="binary float"):
        land_catalog(warehouse, tmp_path / "landing", path)
    with pytest.raises(CatalogError, match="not found"):
        land_catalog(warehouse, tmp_path / "landing", tmp_path / "missing.yaml")
    with warehouse.transaction() as tx:
        assert catalog_sha256(tx) == good.sha256
        assert tx.fetchall("SELECT COUNT(*) FROM raw.catalog_receipts") == [(1,)]
    assert [p.name for p in (tmp_path / "landing" / "catalog").rglob("*.yaml")] == [good.landing_path.name]
