"""The upload inbox: a folder where a person drops usage files.

Each regular file is landed (see `landing.py`) once it has stopped changing, then moved to
`<inbox>/processed/`, so the next poll does not see it again. Files whose names start with '.' or
end in '.part'/'.tmp' are still being written and are left alone. A file modified less than
`settle_seconds` ago is watched until it is that old (one bounded wait per poll): if it changed
meanwhile, or while it was copied, it stays in the inbox for the next poll, and the caller is told.

Nothing in an inbox is followed or opened unless it is a regular file: a symbolic link, a FIFO, a
device or a socket is moved (the entry itself, never what it points to) to `<inbox>/refused/`
beside a `.reason.txt` saying why, and so is a file larger than the source's `max_bytes`; nothing
is lost and the caller is told (`on_refused`).

`deliver` is what `billing upload FILE --source NAME` does: it copies a file into an inbox under a
sanitized name (never a path outside the inbox), as `.part` first so a poll never sees half a file.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import time
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from formats import Section
from warehouse.store import Warehouse

from .landing import FileChanged, Landed, Stored, register_stored, store_stream
from .registry import CollectContext, CollectorKind, Fingerprint, digest, register, within
from .sources import DEFAULT_SOURCE, SourceConfig

if TYPE_CHECKING:
    from core.config import Settings

log = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD_BYTES = 2 << 30  # a dropped file larger than this is refused (moved to <inbox>/refused/)
DEFAULT_SETTLE_SECONDS = 2.0  # an inbox file modified more recently is watched this long before it is taken
INBOX_LISTING_TIMEOUT_SECONDS = 10.0  # a sensor's listing of the inbox folders
STORE_THREADS = 2  # files copied into the landing zone at once (collect_inbox)


@dataclass(frozen=True)
class UploadSettings:
    """`connection:` of an upload source (docs/sources.md, kind: upload); every key is optional."""

    inbox: Path | None = None  # this source's own inbox folder (default: the configured inbox)
    max_bytes: int = DEFAULT_MAX_UPLOAD_BYTES  # largest file accepted, as delivered (compressed or not)
    settle_seconds: float = DEFAULT_SETTLE_SECONDS  # a file must not change this long to be collected

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
    """What waits in the inbox: visible entries, not in progress, not folders.

    Links and special files are included (by their own type, never followed), so that collecting
    refuses and reports them rather than leaving them unexplained.
    """
    if not inbox.is_dir():
        return []
    waiting = []
    for path in inbox.iterdir():
        if path.name.startswith(".") or path.name.endswith(IN_PROGRESS_SUFFIXES) or path.name in (PROCESSED, REFUSED):
            continue
        try:
            if stat.S_ISDIR(path.lstat().st_mode):
                continue
        except FileNotFoundError:  # taken away between the listing and the lstat
            continue
        waiting.append(path)
    return sorted(waiting)


Notice = Callable[[Path, str], None]


def collect_inbox(warehouse: Warehouse, inbox: Path, landing_dir: Path, *, source: str = "upload",
                  max_bytes: int = DEFAULT_MAX_UPLOAD_BYTES, settle_seconds: float = DEFAULT_SETTLE_SECONDS,
                  on_refused: Notice | None = None, on_waiting: Notice | None = None,
                  sleep: Callable[[float], None] = time.sleep) -> Iterator[Landed]:
    """Land every settled regular file waiting in the inbox, yielding each as it is stored.

    `on_refused(kept, why)`: an entry was set aside in `refused/`. `on_waiting(path, why)`: a file is
    still changing and stays in the inbox for the next poll.
    """
    candidates = []
    for path in pending_files(inbox):
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue
        reason = not_a_file(st) or too_large(st.st_size, max_bytes)
        if reason:
            kept = _set_aside(inbox, path, reason)
            if on_refused:
                on_refused(kept, reason)
            continue
        candidates.append((path, st))
    settled = _settled(candidates, settle_seconds, on_waiting, sleep)
    # The files are copied, hashed and fsynced by STORE_THREADS threads (hashlib and the disk release
    # the GIL: one file's fsync waits while the next is copied), and registered here one by one, in
    # order, as before. What a stopped collection stored and did not register is registered by the next.
    pool = ThreadPoolExecutor(max_workers=STORE_THREADS, thread_name_prefix="collect-store")
    try:
        stores = [(path, pool.submit(_store, landing_dir, path, st)) for path, st in settled]
        for path, store in stores:
            try:
                stored = store.result()
            except FileChanged as exc:
                log.info("source %s: %s: %s; next collection", source, path, exc)
                if on_waiting:
                    on_waiting(path, "changed while it was being collected; left in the inbox for the next collection")
                continue
            landed = register_stored(warehouse, stored, source=source, collector="upload", original_name=path.name)
            path.replace(_free_name(_subfolder(inbox, PROCESSED) / path.name))
            yield landed
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def not_a_file(st: os.stat_result) -> str | None:
    """Why an inbox entry (its lstat) is not collected, or None for a regular file."""
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return ("is a symbolic link; links in an inbox are never followed (they can point at any file on this "
                "machine): put the file itself there, e.g. with billing upload FILE")
    kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
    return f"is {kind}, not a file; only regular files are read from an inbox"


def _identity(st: os.stat_result) -> tuple[int, ...]:
    return st.st_mode, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _settled(candidates: list[tuple[Path, os.stat_result]], settle_seconds: float, on_waiting: Notice | None,
             sleep: Callable[[float], None]) -> list[tuple[Path, os.stat_result]]:
    """The candidates not modified for `settle_seconds`, waiting at most that long, once, for recent ones."""
    now = time.time()
    young = [(path, st) for path, st in candidates if now - st.st_mtime < settle_seconds]
    if not young:
        return candidates
    youngest = min(now - st.st_mtime for _, st in young)
    sleep(min(settle_seconds, settle_seconds - youngest))  # a future mtime (clock skew) waits the whole interval
    settled = [(path, st) for path, st in candidates if now - st.st_mtime >= settle_seconds]
    for path, st in young:
        try:
            again = path.lstat()
        except FileNotFoundError:
            continue
        if _identity(again) == _identity(st):
            settled.append((path, st))
        else:
            log.info("%s is still being written (size or mtime changed); next collection", path)
            if on_waiting:
                on_waiting(path, f"is still being written (it changed in the last {settle_seconds:g} s); left in "
                                 "the inbox for the next collection")
    return sorted(settled, key=lambda item: item[0])


def _store(landing_dir: Path, path: Path, st: os.stat_result) -> Stored:
    """Store the file if it is still the regular file `st` describes, before, during and after the copy."""
    try:  # O_NOFOLLOW: a link put in its place since the listing is not opened; O_NONBLOCK: nor waited on (FIFO)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise FileChanged(f"cannot be opened as a regular file: {exc.strerror}") from None

    def unchanged() -> bool:
        try:
            return _identity(os.fstat(fd)) == _identity(path.lstat()) == _identity(st)
        except FileNotFoundError:
            return False

    with os.fdopen(fd, "rb") as src:
        if not unchanged():
            raise FileChanged("changed since it was listed")
        return store_stream(landing_dir, src, original_name=path.name, unchanged=unchanged)


def _set_aside(inbox: Path, path: Path, reason: str) -> Path:
    """Move the entry itself (a link stays a link) to refused/, with why beside it."""
    kept = _free_name(_subfolder(inbox, REFUSED) / path.name)
    path.replace(kept)
    note = kept.with_name(kept.name + ".reason.txt")
    n = 2
    while True:
        try:  # O_EXCL: never write through something already there (a planted link, say)
            fd = os.open(note, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            break
        except FileExistsError:
            note = kept.with_name(f"{kept.name}.reason ({n}).txt")
            n += 1
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(f"{path.name}: {reason}\n")
    return kept


def _subfolder(inbox: Path, name: str) -> Path:
    """processed/ or refused/, refused if it is a link: moving files through it could put them anywhere."""
    folder = inbox / name
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise UploadRefused(f"{folder} is not a folder (a link?); the inbox needs a real folder there, "
                            "remove or rename what is there")
    folder.mkdir(exist_ok=True)
    return folder


def _free_name(target: Path) -> Path:
    """`target`, or `name (2).csv` ... if a file of that name is already there."""
    n = 2
    candidate = target
    while candidate.exists() or candidate.is_symlink():  # a dangling link is there too
        stem, suffix = _split_suffix(target.name)
        candidate = target.with_name(f"{stem} ({n}){suffix}")
        n += 1
    return candidate


def _split_suffix(name: str) -> tuple[str, str]:
    """'usage.csv.gz' -> ('usage', '.csv.gz'), so a renamed copy keeps the suffixes its format needs."""
    stem, dot, rest = name.partition(".")
    return (stem, dot + rest) if stem else (name, "")


# -- the collector kind ---------------------------------------------------------------------------

def inboxes_of(settings: Settings, source: SourceConfig) -> list[Path]:
    """The folders an upload source collects: the config's inbox for `upload`, plus its own `connection.inbox`."""
    inboxes = [settings.inbox] if source.name == DEFAULT_SOURCE else []
    own = source.connection.inbox
    if own is not None and own not in inboxes:
        inboxes.append(own)
    return inboxes


def inbox_listing(inboxes: Sequence[Path]) -> list[tuple[str, str, int, int]]:
    """(inbox, name, size, mtime_ns) of every file waiting to be collected, sorted."""
    listing = []
    for inbox in inboxes:
        for path in pending_files(inbox):
            try:
                st = path.lstat()  # a link is listed as itself (collecting refuses it), never followed
            except FileNotFoundError:  # collected or removed between the listing and the stat
                continue
            listing.append((str(inbox), path.name, st.st_size, st.st_mtime_ns))
    return sorted(listing)


class UploadKind(CollectorKind):
    name = "upload"
    description = "a folder people drop usage files into (or billing upload FILE --source NAME)"
    settings_schema = UploadSettings
    needs_connection = False
    sensor_interval_seconds = 30
    fingerprint_doc = "run_key: sha256 of the sorted (folder, name, size, mtime) listing"

    def parse_settings(self, connection: Section, base_dir: Path) -> UploadSettings:
        settle_seconds = connection.get("settle_seconds", float, DEFAULT_SETTLE_SECONDS)
        if not 0 <= settle_seconds <= 600:
            raise connection.fail("settle_seconds", f"must be between 0 and 600 (seconds a file must not change), "
                                                    f"got {settle_seconds}")
        return UploadSettings(inbox=connection.path("inbox", base_dir),
                              max_bytes=connection.count("max_bytes", DEFAULT_MAX_UPLOAD_BYTES),
                              settle_seconds=settle_seconds)

    def collect(self, context: CollectContext) -> list[Landed]:
        source, say = context.source, context.say
        inboxes = inboxes_of(context.settings, source)
        if not inboxes:
            say(f"source {source.name}: no connection.inbox of its own; nothing to collect")
        settings: UploadSettings = source.connection
        # One warehouse connection for every file's transaction: opening the DuckDB file and closing
        # it (which checkpoints) per file cost more than registering the file. Local files only, so
        # the connection is not held while waiting on a network (unlike sftp and api).
        with context.warehouse.session():
            return [item for inbox in inboxes
                    for item in collect_inbox(context.warehouse, inbox, context.landing, source=source.name,
                                              max_bytes=settings.max_bytes, settle_seconds=settings.settle_seconds,
                                              on_refused=lambda path, why: say(f"refused {path}: {why}"),
                                              on_waiting=lambda path, why: say(f"waiting: {path} {why}"))]

    def fingerprint(self, source: SourceConfig, settings: Settings) -> Fingerprint:
        folders = inboxes_of(settings, source)
        where = ", ".join(map(str, folders))
        listing = within(INBOX_LISTING_TIMEOUT_SECONDS, inbox_listing, folders)
        if not listing:
            return Fingerprint(None, f"no files waiting in {where}")
        return Fingerprint(digest(listing), f"{len(listing)} file(s) waiting in {where}", len(listing))

    def watches(self, source: SourceConfig) -> bool:
        return source.name == DEFAULT_SOURCE or source.connection.inbox is not None

    def where(self, source: SourceConfig) -> str:
        inbox = source.connection.inbox
        if source.name == DEFAULT_SOURCE:
            return "the config's inbox" + (f" and the upload folder {inbox}" if inbox else "")
        return f"the upload folder {inbox}" if inbox else "no folder of its own (connection.inbox not set)"


register(UploadKind())
