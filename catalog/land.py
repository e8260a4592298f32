"""Load a catalog file into the warehouse the way usage files arrive: by content, with a receipt.

`land_catalog` validates the file's bytes as a whole (catalog/load.py), keeps them in the landing
zone under their sha256 (collectors/landing.py's `store_stream`, the usage files' store), then in
one transaction records a receipt in `raw.catalog_receipts` (which sha256, from which path, when)
and replaces the raw.catalog_* tables, every row stamped with that sha256. Loading the catalog the
warehouse already holds again changes nothing. Nothing stored is deleted: every catalog ever loaded
stays in the landing zone, so the one an invoice cites (fct_invoices.catalog_sha256) can be read.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from collectors.landing import store_stream
from warehouse.schema import CATALOG_RECEIPTS
from warehouse.store import RAW_SCHEMA, Warehouse

from .load import CatalogError, load_catalog
from .read import catalog_sha256, is_stamped
from .write import write_catalog

LANDING_FOLDER = "catalog"  # <landing>/catalog/<sha[:2]>/<sha>.yaml, beside the usage files' folders


@dataclass(frozen=True)
class CatalogLoad:
    sha256: str  # of the file's bytes: what fct_invoices.catalog_sha256 and the ledger cite
    source_path: Path
    landing_path: Path
    size_bytes: int
    changed: bool  # False: the warehouse already held this catalog, nothing was written
    previous_sha256: str | None = None  # the catalog the warehouse held before
    counts: dict[str, int] = field(default_factory=dict)  # rows written per table (none when unchanged)


def catalog_landing(landing: Path) -> Path:
    """Where catalog files are kept in the landing zone `landing`."""
    return landing / LANDING_FOLDER


def land_catalog(warehouse: Warehouse, landing: Path, path: Path | str) -> CatalogLoad:
    """Validate the catalog file at `path`, keep its bytes in the landing zone `landing` and make it the
    warehouse's catalog (receipt + tables in one transaction); a no-op when it already is.

    Raises CatalogError (nothing stored, nothing written) when the file is missing or invalid."""
    path = Path(path)
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        raise CatalogError(path, "file", "not found (set BILLING_CATALOG or 'catalog' in billing.yaml)") from None
    except IsADirectoryError:
        raise CatalogError(path, "file", "is a folder; give the catalog YAML file") from None
    catalog = load_catalog(path, content)  # the very bytes hashed below
    stored = store_stream(catalog_landing(landing), io.BytesIO(content), original_name=path.name)
    with warehouse.transaction() as tx:
        if tx.dialect == "postgres":  # two loads at once: one after the other, never interleaved
            tx.execute(f"LOCK TABLE {RAW_SCHEMA}.{CATALOG_RECEIPTS} IN EXCLUSIVE MODE")
        previous = catalog_sha256(tx)
        if previous == stored.sha256 and is_stamped(tx, stored.sha256):
            return CatalogLoad(stored.sha256, path, stored.path, stored.size_bytes, changed=False,
                               previous_sha256=previous)
        tx.execute(f"INSERT INTO {RAW_SCHEMA}.{CATALOG_RECEIPTS} (catalog_sha256, source_path, landing_path, "
                   "size_bytes, loaded_at) VALUES (?, ?, ?, ?, ?)",
                   [stored.sha256, str(path.resolve()), str(stored.path), stored.size_bytes, datetime.now(UTC)])
        counts = write_catalog(tx, catalog, stored.sha256)
    return CatalogLoad(stored.sha256, path, stored.path, stored.size_bytes, changed=True, previous_sha256=previous,
                       counts=counts)
