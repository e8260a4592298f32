"""The catalog the warehouse holds: what dbt priced with, read back from the raw.catalog_* tables.

The checks and the independent re-rater judge a month by these prices, never by the catalog file,
which may have been edited since the month was rated. `read_from_warehouse` gives the same
`Catalog` that `load_catalog` gave for the file loaded (catalog/land.py); `catalog_sha256` says
which file that was, and `catalog_receipt` when and from where it was loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from warehouse.schema import CATALOG_RECEIPTS, CATALOG_TABLES
from warehouse.store import RAW_SCHEMA, Tx

from .model import AccountProduct, Catalog, Contract, Customer, Price, Product, Rate, RateClass, Tier


class NoCatalog(LookupError):
    """The warehouse holds no catalog yet."""


@dataclass(frozen=True)
class CatalogReceipt:
    """One load of a catalog file into the warehouse (a row of raw.catalog_receipts)."""

    catalog_sha256: str
    source_path: str  # the file it was read from
    landing_path: str  # its bytes, kept in the landing zone under their sha256
    size_bytes: int
    loaded_at: datetime


def catalog_sha256(tx: Tx) -> str | None:
    """sha256 of the catalog file the raw.catalog_* tables hold (the one dbt prices with); None when
    no catalog was loaded yet, or only by a version from before the stamp (load it again).

    Cheap (one small table): what a month's input fingerprint should read for "the catalog"."""
    rows = tx.fetchall(f"SELECT DISTINCT catalog_sha256 FROM {RAW_SCHEMA}.catalog_currencies")
    stamps = {sha for (sha,) in rows}
    if len(stamps) != 1:  # empty, or rows of more than one load: never the case after land_catalog
        return None
    return stamps.pop()


def catalog_receipt(tx: Tx, sha256: str | None = None) -> CatalogReceipt | None:
    """The load that made `sha256` the warehouse's catalog (its latest such load); by default the
    load of the catalog the warehouse holds now. None when there is no such load."""
    sha256 = sha256 or catalog_sha256(tx)
    if sha256 is None:
        return None
    rows = tx.fetchall(f"SELECT catalog_sha256, source_path, landing_path, size_bytes, loaded_at "
                       f"FROM {RAW_SCHEMA}.{CATALOG_RECEIPTS} WHERE catalog_sha256 = ? "
                       "ORDER BY loaded_at DESC LIMIT 1", [sha256])
    return CatalogReceipt(*rows[0]) if rows else None


def is_stamped(tx: Tx, sha256: str) -> bool:
    """True when every raw.catalog_* table holds rows of the catalog `sha256` only (and the
    currencies, which every load writes, are there)."""
    stray = " UNION ALL ".join(
        f"SELECT COUNT(*) FROM {RAW_SCHEMA}.{name} WHERE catalog_sha256 IS NULL OR catalog_sha256 <> ?"
        for name in CATALOG_TABLES)
    if any(n for (n,) in tx.fetchall(stray, [sha256] * len(CATALOG_TABLES))):
        return False
    return bool(tx.fetchall(f"SELECT COUNT(*) FROM {RAW_SCHEMA}.catalog_currencies")[0][0])


def read_from_warehouse(tx: Tx) -> Catalog:
    """The catalog in the warehouse's raw.catalog_* tables, as the same `Catalog` objects the loader
    made of the file; raises NoCatalog when there is none."""
    raw = RAW_SCHEMA
    cat = Catalog()
    for (pid, name, unit, aggregation) in tx.fetchall(
            f"SELECT product_id, product_name, unit, aggregation FROM {raw}.catalog_products ORDER BY product_id"):
        cat.products[pid] = Product(pid, name, unit, aggregation)
    for (rcid, name, currency) in tx.fetchall(
            f"SELECT rate_class_id, rate_class_name, currency FROM {raw}.catalog_rate_classes ORDER BY rate_class_id"):
        cat.rate_classes[rcid] = RateClass(rcid, name, currency)
    for row in tx.fetchall(
            f"SELECT customer_id, customer_name, currency, timezone, bill_to_customer_id, rate_class_id, active_from, "
            f"active_to, csm, require_csm_approval FROM {raw}.catalog_customers ORDER BY customer_id"):
        cat.customers[row[0]] = Customer(*row[:9], bool(row[9]))
    for row in tx.fetchall(
            f"SELECT contract_id, customer_id, currency, rate_class_id, effective_from, effective_to, "
            f"minimum_commitment FROM {raw}.catalog_contracts ORDER BY contract_id"):
        cat.contracts[row[0]] = Contract(*row)
    for row in tx.fetchall(
            f"SELECT account_product_id, customer_id, product_id, effective_from, effective_to, override_rate_id "
            f"FROM {raw}.catalog_account_products ORDER BY account_product_id"):
        cat.account_products[row[0]] = AccountProduct(*row)
    tiers: dict[str, list[Tier]] = {}
    for (rate_id, up_to, unit_price, flat_fee) in tx.fetchall(
            f"SELECT rate_id, up_to, unit_price, flat_fee FROM {raw}.catalog_rate_tiers ORDER BY rate_id, tier_number"):
        tiers.setdefault(rate_id, []).append(Tier(up_to, unit_price, flat_fee))
    for (rate_id, level, product_id, currency, customer_id, contract_id, rate_class_id, effective_from, effective_to,
         model, included_units, package_size, package_price, flat_amount) in tx.fetchall(
            f"SELECT rate_id, level, product_id, currency, customer_id, contract_id, rate_class_id, effective_from, "
            f"effective_to, model, included_units, package_size, package_price, flat_amount "
            f"FROM {raw}.catalog_rates ORDER BY rate_id"):
        price = Price(model, tiers=tuple(tiers.get(rate_id, ())),
                      package_size=int(package_size) if package_size is not None else None,
                      package_price=package_price, flat_amount=flat_amount,
                      included_units=included_units if included_units is not None else Decimal(0))
        cat.rates[rate_id] = Rate(rate_id, level, product_id, currency, price, effective_from, effective_to,
                                  customer_id=customer_id, contract_id=contract_id, rate_class_id=rate_class_id)
    if not cat.customers and not cat.products and catalog_sha256(tx) is None:
        raise NoCatalog("the warehouse holds no catalog: load one first (`billing run`, or the catalog asset)")
    return cat
