"""Write a validated catalog into the warehouse's raw catalog tables, replacing them whole (catalog/land.py
holds the transaction and the receipt)."""

from __future__ import annotations

from decimal import Decimal

import polars as pl

from core.enums import RATE_LEVELS
from core.money import FEE, MINOR_UNITS, PRICE, QUANTITY, Digits
from warehouse.schema import CATALOG_TABLES
from warehouse.store import RAW_SCHEMA, Tx

from .model import Catalog


def _decimal(digits: Digits) -> pl.Decimal:
    return pl.Decimal(digits.precision, digits.fraction)


# The decimal columns of the catalog tables, at the sizes of warehouse/schema.py (core/money.py).
DECIMALS = {
    **dict.fromkeys(["included_units", "lower_bound", "up_to"], _decimal(QUANTITY)),
    **dict.fromkeys(["unit_price", "package_price"], _decimal(PRICE)),
    **dict.fromkeys(["flat_amount", "flat_fee", "minimum_commitment"], _decimal(FEE)),
}


def catalog_frames(cat: Catalog) -> dict[str, pl.DataFrame]:
    """The catalog as one frame per raw table (column names as in warehouse/schema.py)."""
    rates, tiers = [], []
    for rate in cat.rates.values():
        p = rate.price
        rates.append({
            "rate_id": rate.rate_id, "level": rate.level, "level_rank": RATE_LEVELS.index(rate.level) + 1,
            "product_id": rate.product_id, "currency": rate.currency, "customer_id": rate.customer_id,
            "contract_id": rate.contract_id, "rate_class_id": rate.rate_class_id,
            "effective_from": rate.effective_from, "effective_to": rate.effective_to, "model": p.model,
            "included_units": p.included_units, "package_size": p.package_size,
            "package_price": p.package_price, "flat_amount": p.flat_amount,
        })
        lower = Decimal(0)
        for n, tier in enumerate(p.tiers, start=1):
            tiers.append({"rate_id": rate.rate_id, "tier_number": n, "lower_bound": lower, "up_to": tier.up_to,
                          "unit_price": tier.unit_price, "flat_fee": tier.flat_fee})
            lower = tier.up_to if tier.up_to is not None else lower

    def frame(rows: list[dict], columns: list[str]) -> pl.DataFrame:
        schema = {c: DECIMALS.get(c, pl.Date if c.startswith(("effective", "active")) else pl.String) for c in columns}
        schema.update({c: pl.Int64 for c in ("level_rank", "package_size", "tier_number", "minor_units") if c in schema})
        schema.update({c: pl.Boolean for c in ("require_csm_approval",) if c in schema})
        return pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)

    return {
        "catalog_currencies": frame([{"currency": c, "minor_units": n} for c, n in sorted(MINOR_UNITS.items())],
                                    ["currency", "minor_units"]),
        "catalog_customers": frame([{
            "customer_id": c.customer_id, "customer_name": c.name, "currency": c.currency, "timezone": c.timezone,
            "bill_to_customer_id": c.bill_to, "billing_account_id": cat.billing_account(c.customer_id),
            "rate_class_id": c.rate_class_id, "active_from": c.active_from, "active_to": c.active_to,
            "csm": c.csm, "require_csm_approval": c.require_csm_approval,
        } for c in cat.customers.values()], ["customer_id", "customer_name", "currency", "timezone",
                                             "bill_to_customer_id", "billing_account_id", "rate_class_id",
                                             "active_from", "active_to", "csm", "require_csm_approval"]),
        "catalog_products": frame([{"product_id": p.product_id, "product_name": p.name, "unit": p.unit,
                                    "aggregation": p.aggregation} for p in cat.products.values()],
                                  ["product_id", "product_name", "unit", "aggregation"]),
        "catalog_rate_classes": frame([{"rate_class_id": r.rate_class_id, "rate_class_name": r.name,
                                        "currency": r.currency} for r in cat.rate_classes.values()],
                                      ["rate_class_id", "rate_class_name", "currency"]),
        "catalog_contracts": frame([{
            "contract_id": c.contract_id, "customer_id": c.customer_id, "currency": c.currency,
            "rate_class_id": c.rate_class_id, "effective_from": c.effective_from, "effective_to": c.effective_to,
            "minimum_commitment": c.minimum_commitment,
        } for c in cat.contracts.values()], ["contract_id", "customer_id", "currency", "rate_class_id",
                                             "effective_from", "effective_to", "minimum_commitment"]),
        "catalog_account_products": frame([{
            "account_product_id": a.account_product_id, "customer_id": a.customer_id, "product_id": a.product_id,
            "effective_from": a.effective_from, "effective_to": a.effective_to, "override_rate_id": a.rate_id,
        } for a in cat.account_products.values()], ["account_product_id", "customer_id", "product_id",
                                                    "effective_from", "effective_to", "override_rate_id"]),
        "catalog_rates": frame(rates, ["rate_id", "level", "level_rank", "product_id", "currency", "customer_id",
                                       "contract_id", "rate_class_id", "effective_from", "effective_to", "model",
                                       "included_units", "package_size", "package_price", "flat_amount"]),
        "catalog_rate_tiers": frame(tiers, ["rate_id", "tier_number", "lower_bound", "up_to", "unit_price",
                                            "flat_fee"]),
    }


def write_catalog(tx: Tx, cat: Catalog, catalog_sha256: str) -> dict[str, int]:
    """Replace every catalog table inside `tx`, each row stamped with `catalog_sha256` (the file it
    came from); returns rows written per table. catalog/land.py calls it with the load's receipt."""
    frames = catalog_frames(cat)
    assert set(frames) == set(CATALOG_TABLES)
    counts = {}
    for name in frames:
        tx.execute(f"DELETE FROM {RAW_SCHEMA}.{name}")
    _widen_old_columns(tx)
    for name, frame in frames.items():
        counts[name] = tx.insert_frame(f"{RAW_SCHEMA}.{name}", frame, constants={"catalog_sha256": catalog_sha256})
    return counts


def _widen_old_columns(tx: Tx) -> None:
    """Give the (emptied) catalog tables of a warehouse made by an older version this version's decimal
    types: a DECIMAL(38, 9) unit price column would round a 12-place price silently on insert."""
    columns = tx.fetchall(
        "SELECT table_name, column_name, numeric_precision, numeric_scale FROM information_schema.columns "
        f"WHERE table_schema = ? AND table_name IN ({', '.join('?' for _ in CATALOG_TABLES)})",
        [RAW_SCHEMA, *CATALOG_TABLES])
    for table, column, precision, scale in columns:
        want = DECIMALS.get(column)
        if want is None or (precision, scale) == (want.precision, want.scale):
            continue
        if tx.dialect == "postgres":  # PostgreSQL will not retype a column a view reads: drop dbt's staging
            for schema, view in tx.fetchall(  # views on it; the next dbt build makes them again
                    "SELECT DISTINCT view_schema, view_name FROM information_schema.view_table_usage "
                    "WHERE table_schema = ? AND table_name = ?", [RAW_SCHEMA, table]):
                tx.execute(f'DROP VIEW IF EXISTS "{schema}"."{view}"')
        tx.execute(f"ALTER TABLE {RAW_SCHEMA}.{table} ALTER COLUMN {column} "
                   f"TYPE DECIMAL({want.precision}, {want.scale})")
