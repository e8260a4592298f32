"""The upload inbox: a folder where a person drops usage files.

Each visible file is landed (see `landing.py`) and then moved to `<inbox>/processed/`, so the
next poll does not see it again. Files whose names start with '.' or end in '.part'/'.tmp' are
still being written and are left alone. A file larger than the source's `max_bytes` is not
landed: it is moved to `<inbox>/refused/` beside a `.reason.txt` saying why, so nothing is lost.

`deliver` is what `billing upload FILE --source NAME` does: it copies a file into an inbox under a
sanitized name (never a path outside the inbox), as `.part` first so a poll never sees half a file.
"""

from __future__ import annotations

import re
import shutil
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path

from warehouse.store import Warehouse

from .landing import Landed, land_file
from .sources import DEFAULT_MAX_UPLOAD_BYTES

PROCESSED = "processed"
REFUSED = "refused"
IN_PROGRESS_SUFFIXES = (".part", ".tmp", ".partial")
_UNSAFE = re.compile(r"[^A-Za-z0-9._+@=() -]")


class UploadRefused(ValueError):
    """The file cannot go into the inbox; the message says why and what to do."""


def safe_name(name: str) -> str:
    """The last component of `name`, reduced to characters safe in any file system.

    '../../x.csv' and 'C:\\evil\\x.csv' become 'x.csv'; leading dots and spaces go (no hidden files),
    other unsafe characters become '_'. Raises UploadRefused if nothing usable is left.
    """
    base = re.split(r"[/\\]", unicodedata.normalize("NFC", name))[-1]
    cleaned = _UNSAFE.sub("_", "".join(ch for ch in base if unicodedata.category(ch)[0] != "C"))
    cleaned = cleaned.lstrip(". ").rstrip(" ")[:200]
    if not cleaned or cleaned.endswith(IN_PROGRESS_SUFFIXES):
        raise UploadRefused(f"'{name}' is not a usable file name; rename it (e.g. usage-2026-10.csv)")
    return cleaned


def too_large(size: int, max_bytes: int) -> str | None:
    if size <= max_bytes:
        return None
    return (f"{size:,} bytes is more than this source's limit of {max_bytes:,} bytes; split the file, "
            "compress it, or raise connection.max_bytes for the source (docs/sources.md)")


def deliver(file: Path, inbox: Path, *, max_bytes: int = DEFAULT_MAX_UPLOAD_BYTES) -> Path:
    """Copy `file` into `inbox` under a safe, unused name; return where it went."""
    if not file.is_file():
        raise UploadRefused(f"{file} is not a file")
    reason = too_large(file.stat().st_size, max_bytes)
    if reason:
        raise UploadRefused(f"{file} is refused: {reason}")
    inbox.mkdir(parents=True, exist_ok=True)
    target = _free_name(inbox / safe_name(file.name))
    partial = target.with_name(f".{target.name}.part")  # invisible to the collector until complete
    try:
        shutil.copyfile(file, partial)
        partial.replace(target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return target


def pending_files(inbox: Path) -> list[Path]:
    if not inbox.is_dir():
        return []
    return sorted(
        p for p in inbox.iterdir()
        if p.is_file() and not p.name.startswith(".") and not p.name.endswith(IN_PROGRESS_SUFFIXES)
    )


def collect_inbox(warehouse: Warehouse, inbox: Path, landing_dir: Path, *, source: str = "upload",
                  max_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
                  on_refused: Callable[[Path, str], None] | None = None) -> Iterator[Landed]:
    """Land every file waiting in the inbox, yielding each as it is stored."""
    for path in pending_files(inbox):
        reason = too_large(path.stat().st_size, max_bytes)
        if reason:
            kept = _free_name(inbox / REFUSED / path.name)
            kept.parent.mkdir(parents=True, exist_ok=True)
            path.replace(kept)
            kept.with_name(kept.name + ".reason.txt").write_text(f"{path.name}: {reason}\n")
            if on_refused:
                on_refused(kept, reason)
            continue
        landed = land_file(warehouse, landing_dir, path, source=source, collector="upload")
        done = inbox / PROCESSED
        done.mkdir(parents=True, exist_ok=True)
        path.replace(_free_name(done / path.name))
        yield landed


def _free_name(target: Path) -> Path:
    """`target`, or `name (2).csv` ... if a file of that name is already there."""
    n = 2
    candidate = target
    while candidate.exists():
        stem, suffix = _split_suffix(target.name)
        candidate = target.with_name(f"{stem} ({n}){suffix}")
        n += 1
    return candidate


def _split_suffix(name: str) -> tuple[str, str]:
    """'usage.csv.gz' -> ('usage', '.csv.gz'), so a renamed copy keeps the suffixes its format needs."""
    stem, dot, rest = name.partition(".")
    return (stem, dot + rest) if stem else (name, "")
