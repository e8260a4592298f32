"""The landing zone: every received file kept as received, addressed by its sha256.

`land_file` copies bytes into `<landing>/<sha[:2]>/<sha><suffix>` (hashed while written to a
temp name, then an atomic rename) and records the delivery in the manifest (`raw.landed_files`,
`raw.file_receipts`) in one transaction. The same bytes delivered again, by any collector, add a receipt and nothing
else: they are loaded once.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from warehouse.store import RAW_SCHEMA, Warehouse

_CHUNK = 1 << 20
_PUBLISHING = threading.Lock()  # a stored file's check-then-rename, for collectors storing in threads


@dataclass(frozen=True)
class Landed:
    file_id: str  # sha256 of the content
    landing_path: Path
    original_name: str
    source: str
    size_bytes: int
    is_new: bool  # False: these bytes were already received (this delivery loads nothing)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class FileChanged(RuntimeError):
    """The file changed while it was being copied; nothing was landed (the next poll takes it)."""


def land_file(warehouse: Warehouse, landing_dir: Path, path: Path, *, source: str, collector: str,
              original_name: str | None = None) -> Landed:
    """Keep `path` in the landing zone and register its delivery; idempotent per content."""
    with path.open("rb") as src:
        return land_stream(warehouse, landing_dir, src, source=source, collector=collector,
                           original_name=original_name or path.name)


def land_stream(warehouse: Warehouse, landing_dir: Path, src: BinaryIO, *, source: str, collector: str,
                original_name: str, unchanged: Callable[[], bool] | None = None) -> Landed:
    """Land what `src` holds: copied once, hashed on the way, so the name always matches the bytes.

    `unchanged`, if given, is asked after the copy: False means the file changed meanwhile, and
    FileChanged is raised with nothing landed or registered.
    """
    stored = store_stream(landing_dir, src, original_name=original_name, unchanged=unchanged)
    return register_stored(warehouse, stored, source=source, collector=collector, original_name=original_name)


def register_stored(warehouse: Warehouse, stored: Stored, *, source: str, collector: str,
                    original_name: str) -> Landed:
    """Record the delivery of what `store_stream` kept (the manifest), in one transaction."""
    file_id, target, size = stored.sha256, stored.path, stored.size_bytes
    now = datetime.now(UTC)
    with warehouse.transaction() as tx:
        known = tx.fetchall(f"SELECT 1 FROM {RAW_SCHEMA}.landed_files WHERE file_id = ?", [file_id])
        if not known:
            tx.execute(
                f"INSERT INTO {RAW_SCHEMA}.landed_files (file_id, source, collector, original_name, landing_path,"
                " size_bytes, received_at, status) VALUES (?, ?, ?, ?, ?, ?, ?, 'landed')",
                [file_id, source, collector, original_name, str(target), size, now],
            )
        tx.execute(
            f"INSERT INTO {RAW_SCHEMA}.file_receipts (file_id, source, collector, original_name, received_at,"
            " is_first_delivery) VALUES (?, ?, ?, ?, ?, ?)",
            [file_id, source, collector, original_name, now, not known],
        )
    return Landed(file_id, target, original_name, source, size, not known)


@dataclass(frozen=True)
class Stored:
    sha256: str  # of the content
    path: Path  # <landing_dir>/<sha[:2]>/<sha><suffix>
    size_bytes: int


def store_stream(landing_dir: Path, src: BinaryIO, *, original_name: str,
                 unchanged: Callable[[], bool] | None = None) -> Stored:
    """Keep what `src` holds under its sha256 in `landing_dir`, registering nothing: the same bytes
    stored again find their file there and leave it as it is (nothing stored is ever replaced).

    The usage files' `land_stream` and the catalog loader (catalog/land.py) both store through here.
    """
    landing_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=landing_dir, prefix=".incoming-")
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
            if unchanged is not None and not unchanged():
                raise FileChanged(f"{original_name} changed while it was copied")
            file_id = digest.hexdigest()
            suffix = "".join(Path(original_name).suffixes[-2:]).lower()
            target = landing_dir / file_id[:2] / f"{file_id}{suffix}"
            if not target.exists():
                out.flush()
                os.fsync(out.fileno())
        with _PUBLISHING:  # two threads storing the same bytes: the second finds the first's file
            if target.exists():
                Path(tmp).unlink()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Stored(file_id, target, target.stat().st_size)
