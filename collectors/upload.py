"""The upload inbox: a folder where a person drops usage files.

Each visible file is landed (see `landing.py`) and then moved to `<inbox>/processed/`, so the
next poll does not see it again. Files whose names start with '.' or end in '.part'/'.tmp' are
still being written and are left alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from warehouse.store import Warehouse

from .landing import Landed, land_file

PROCESSED = "processed"
IN_PROGRESS_SUFFIXES = (".part", ".tmp", ".partial")


def pending_files(inbox: Path) -> list[Path]:
    if not inbox.is_dir():
        return []
    return sorted(
        p for p in inbox.iterdir()
        if p.is_file() and not p.name.startswith(".") and not p.name.endswith(IN_PROGRESS_SUFFIXES)
    )


def collect_inbox(warehouse: Warehouse, inbox: Path, landing_dir: Path, *, source: str = "upload") -> Iterator[Landed]:
    """Land every file waiting in the inbox, yielding each as it is stored."""
    done = inbox / PROCESSED
    for path in pending_files(inbox):
        landed = land_file(warehouse, landing_dir, path, source=source, collector="upload")
        done.mkdir(parents=True, exist_ok=True)
        path.replace(_free_name(done / path.name))
        yield landed


def _free_name(target: Path) -> Path:
    """`target`, or `name (2).csv` ... if a file of that name was processed before."""
    n = 2
    candidate = target
    while candidate.exists():
        candidate = target.with_name(f"{target.stem} ({n}){target.suffix}")
        n += 1
    return candidate
