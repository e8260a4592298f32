"""The SFTP collector: pick up new or changed usage files from a remote folder, each landed once.

A poll connects (host key checked against the pinned known_hosts, never auto-accepted), lists
`remote_dir`, waits `settle_seconds` and lists again: only files whose size and mtime held still
are picked up, so a file still being written waits for the next poll. Each file is downloaded to
a local temp file, never past its listed size (a server that keeps sending is cut there), checked
against the listing (size, and a re-stat), and only then landed with
`land_file(..., collector="sftp")`. A download that breaks leaves nothing landed; the poll is
retried with backoff, and whatever is still missing is finished by the next poll.

What was picked up is remembered in `raw.sftp_seen` (source, remote_path, size, mtime): a file is
picked up again only when its size or mtime changes. Re-landing the same bytes is harmless
(content-addressed landing: `is_new` is False), so a crash between landing and remembering costs
one extra download, never a double count.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import posixpath
import stat
import tempfile
import threading
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import asyncssh
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from formats import Section, SourceConfigError
from warehouse.schema import Table, create
from warehouse.schema import register as register_tables
from warehouse.store import RAW_SCHEMA, Warehouse

from .landing import Landed, land_file
from .registry import CollectContext, CollectorKind, Fingerprint, digest, register, within
from .retry import RetryPolicy, read_retry
from .sources import SourceConfig, secret_from_env

if TYPE_CHECKING:
    from core.config import Settings

log = logging.getLogger(__name__)

# This kind's state, one of the warehouse's tables (warehouse/schema.py creates it).
SEEN = register_tables(Table(RAW_SCHEMA, "sftp_seen", """
        source VARCHAR NOT NULL,
        remote_path VARCHAR NOT NULL,
        size BIGINT NOT NULL,
        mtime BIGINT NOT NULL,               -- seconds since the epoch, as the server reports it
        file_id VARCHAR NOT NULL,            -- sha256 of what was landed
        picked_at TIMESTAMPTZ NOT NULL
"""))
SEEN_TABLE = SEEN[0].qualified
_CHUNK = 256 * 1024
T = TypeVar("T")
IN_PROGRESS_SUFFIXES = (".part", ".tmp", ".partial", ".filepart")


@dataclass(frozen=True)
class SftpSettings:
    """`connection:` of an sftp source (docs/sources.md, kind: sftp)."""

    host: str
    username: str
    remote_dir: str
    port: int = 22
    password_env: str | None = None  # env var holding the password
    key_file: Path | None = None  # private key file (OpenSSH/PEM)
    key_passphrase_env: str | None = None  # env var holding the key's passphrase, if encrypted
    known_hosts: Path | None = None  # pinned host keys, OpenSSH known_hosts format
    host_key: str | None = None  # or one pinned public key inline: "ssh-ed25519 AAAA..."
    pattern: str = "*"  # glob on file names in remote_dir
    move_to: str | None = None  # remote folder to move picked-up files into
    settle_seconds: float = 5.0  # a file must keep its size and mtime this long to be picked up
    ignore_suffixes: tuple[str, ...] = IN_PROGRESS_SUFFIXES
    connect_timeout_seconds: float = 30.0
    timeout_seconds: float = 60.0  # any single SFTP request
    retry: RetryPolicy = field(default_factory=RetryPolicy)


def read_settings(conn: Section, base_dir: Path) -> SftpSettings:
    port = conn.count("port", 22)
    if port > 65535:
        raise conn.fail("port", f"must be a TCP port (1-65535), got {port}")
    settings = SftpSettings(
        host=conn.get("host", str, required=True),
        username=conn.get("username", str, required=True),
        remote_dir=conn.get("remote_dir", str, required=True),
        port=port,
        password_env=conn.env("password_env"),
        key_file=conn.path("key_file", base_dir),
        key_passphrase_env=conn.env("key_passphrase_env"),
        known_hosts=conn.path("known_hosts", base_dir),
        host_key=conn.get("host_key", str),
        pattern=conn.get("pattern", str, "*"),
        move_to=conn.get("move_to", str),
        settle_seconds=conn.get("settle_seconds", float, 5.0),
        ignore_suffixes=tuple(conn.get("ignore_suffixes", list, list(IN_PROGRESS_SUFFIXES))),
        connect_timeout_seconds=conn.positive("connect_timeout_seconds", 30.0),
        timeout_seconds=conn.positive("timeout_seconds", 60.0),
        retry=read_retry(conn),
    )
    if settings.password_env is None and settings.key_file is None:
        raise conn.fail("password_env", "give password_env (an environment variable) or key_file (a key path)")
    if settings.key_passphrase_env and settings.key_file is None:
        raise conn.fail("key_passphrase_env", "only makes sense with key_file")
    if (settings.known_hosts is None) == (settings.host_key is None):
        raise conn.fail("known_hosts", "give exactly one of known_hosts (a file of pinned host keys) or "
                                       "host_key (one pinned key, 'ssh-ed25519 AAAA...'); host keys are never "
                                       "accepted unverified")
    if settings.host_key is not None and len(settings.host_key.split()) < 2:
        raise conn.fail("host_key", "must be '<key type> <base64 key>', as in a .pub file or ssh-keyscan output")
    if settings.settle_seconds < 0:
        raise conn.fail("settle_seconds", "must be 0 or more")
    if not all(isinstance(s, str) and s for s in settings.ignore_suffixes):
        raise conn.fail("ignore_suffixes", "must be a list of suffixes such as .part")
    return settings


class SftpError(RuntimeError):
    """Collecting from an SFTP source failed; the message says which source and why."""


class HostKeyRefused(SftpError):
    """The server's host key is not the pinned one (unknown or changed): we do not connect."""


class LoginRefused(SftpError):
    """The server refused the username/password or key."""


class _Transient(Exception):
    """A failure a retry can fix (dropped connection, timeout)."""


@dataclass(frozen=True)
class RemoteFile:
    path: str
    name: str
    size: int
    mtime: int


def ensure_tables(warehouse: Warehouse) -> None:
    with warehouse.transaction() as tx:
        create(tx, SEEN)


def collect_sftp(warehouse: Warehouse, landing_dir: Path, source: SourceConfig) -> list[Landed]:
    """Land every new or changed, settled file of an SFTP source; returns what was landed this call."""
    settings = source.connection
    if source.kind != "sftp" or not isinstance(settings, SftpSettings):
        raise SourceConfigError(f"source '{source.name}' is not an sftp source (kind: {source.kind})")
    ensure_tables(warehouse)
    options = _connect_options(source, settings)
    return _run_sync(_Poller(warehouse, Path(landing_dir), source, settings, options).run())


def list_remote(source: SourceConfig) -> list[RemoteFile]:
    """The files a poll would consider (pattern, no in-progress names), from one bounded connection.

    Same credentials and pinned host keys as `collect_sftp`; nothing is downloaded or remembered.
    Sensors use it to notice new files cheaply.
    """
    settings = source.connection
    if source.kind != "sftp" or not isinstance(settings, SftpSettings):
        raise SourceConfigError(f"source '{source.name}' is not an sftp source (kind: {source.kind})")
    options = _connect_options(source, settings)

    async def listing() -> list[RemoteFile]:
        async with asyncssh.connect(**options) as conn, conn.start_sftp_client() as sftp:
            return sorted(_matching(await sftp.readdir(settings.remote_dir), settings), key=lambda r: r.name)

    bound = settings.connect_timeout_seconds + settings.timeout_seconds
    return _run_sync(asyncio.wait_for(listing(), bound))


def _matching(entries, s: SftpSettings) -> list[RemoteFile]:
    """Regular files matching the pattern, not hidden and not still being written (ignore_suffixes)."""
    files = []
    for entry in entries:
        name = entry.filename if isinstance(entry.filename, str) else entry.filename.decode()
        attrs = entry.attrs
        if (name.startswith(".") or name.endswith(tuple(s.ignore_suffixes))
                or not fnmatch.fnmatchcase(name, s.pattern)
                or attrs.permissions is None or not stat.S_ISREG(attrs.permissions)
                or attrs.size is None or attrs.mtime is None):
            continue
        files.append(RemoteFile(posixpath.join(s.remote_dir, name), name, attrs.size, int(attrs.mtime)))
    return files


def _connect_options(source: SourceConfig, s: SftpSettings) -> dict[str, Any]:
    password = secret_from_env(source, "password_env", s.password_env) if s.password_env else None
    client_keys = None
    if s.key_file is not None:
        passphrase = (secret_from_env(source, "key_passphrase_env", s.key_passphrase_env)
                      if s.key_passphrase_env else None)
        try:
            client_keys = [asyncssh.read_private_key(str(s.key_file), passphrase)]
        except OSError as exc:
            raise SftpError(f"source '{source.name}': cannot read connection.key_file {s.key_file}: "
                            f"{exc.strerror or exc}") from None
        except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as exc:
            hint = f" (is ${s.key_passphrase_env} right?)" if s.key_passphrase_env else \
                " (if it is encrypted, name its passphrase with key_passphrase_env)"
            raise SftpError(f"source '{source.name}': connection.key_file {s.key_file} cannot be loaded: "
                            f"{exc}{hint}") from None
    return dict(
        host=s.host, port=s.port, username=s.username, password=password, client_keys=client_keys,
        known_hosts=_pinned_host_keys(source, s),
        # Nothing from the environment: no ~/.ssh/config, default keys, agent, GSS or X.509 trust.
        config=[], agent_path=None, gss_host=None, x509_trusted_certs=None,
        password_auth=password is not None, kbdint_auth=False, public_key_auth=client_keys is not None,
        connect_timeout=s.connect_timeout_seconds, keepalive_interval=max(1.0, s.timeout_seconds / 3),
        keepalive_count_max=3,
    )


def _pinned_host_keys(source: SourceConfig, s: SftpSettings) -> asyncssh.SSHKnownHosts:
    if s.host_key is not None:
        host = s.host if s.port == 22 else f"[{s.host}]:{s.port}"
        text, where = f"{host} {s.host_key}\n", "connection.host_key"
    else:
        where = f"known_hosts file {s.known_hosts}"
        try:
            text = Path(s.known_hosts).read_text(encoding="utf-8")
        except OSError as exc:
            raise SftpError(f"source '{source.name}': cannot read {where}: {exc.strerror or exc}") from None
    if not text.strip():
        raise SftpError(f"source '{source.name}': {where} is empty; pin the server's host key there")
    try:
        return asyncssh.import_known_hosts(text)
    except (ValueError, asyncssh.KeyImportError) as exc:
        raise SftpError(f"source '{source.name}': {where} is not in known_hosts format: {exc}") from None


class _Poller:
    def __init__(self, warehouse: Warehouse, landing_dir: Path, source: SourceConfig, settings: SftpSettings,
                 options: dict[str, Any]):
        self.warehouse = warehouse
        self.landing_dir = landing_dir
        self.source = source
        self.s = settings
        self.options = options
        self.landed: list[Landed] = []
        self.where = f"{settings.username}@{settings.host}:{settings.port}"

    async def run(self) -> list[Landed]:
        policy = self.s.retry
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(policy.max_attempts), wait=policy.wait(),
                retry=retry_if_exception(lambda e: isinstance(e, _Transient)), before_sleep=self._log_retry,
                reraise=True,
            ):
                with attempt:
                    await self._poll()
        except _Transient as exc:
            raise SftpError(f"source '{self.source.name}': SFTP {self.where} failed {policy.max_attempts} "
                            f"time(s), last: {exc}; files not landed yet will be picked up by the next poll"
                            ) from exc.__cause__
        return self.landed

    def _log_retry(self, state: RetryCallState) -> None:
        log.warning("source %s: SFTP attempt %d failed (%s); retrying in %.1fs", self.source.name,
                    state.attempt_number, state.outcome.exception() if state.outcome else "?",
                    state.next_action.sleep if state.next_action else 0)

    async def _timed(self, awaitable: Awaitable[T], what: str) -> T:
        """Every remote wait is bounded; a timeout or a dropped connection is worth a retry."""
        try:
            return await asyncio.wait_for(awaitable, self.s.timeout_seconds)
        except TimeoutError as exc:
            raise _Transient(f"{what}: no answer within {self.s.timeout_seconds}s") from exc
        except (asyncssh.DisconnectError, asyncssh.SFTPConnectionLost, asyncssh.SFTPNoConnection,
                ConnectionError, EOFError) as exc:
            raise _Transient(f"{what}: connection lost ({exc or type(exc).__name__})") from exc

    async def _connect(self) -> asyncssh.SSHClientConnection:
        try:
            return await asyncio.wait_for(asyncssh.connect(**self.options), self.s.connect_timeout_seconds + 5)
        except asyncssh.HostKeyNotVerifiable:
            raise HostKeyRefused(self._host_key_message()) from None
        except asyncssh.PermissionDenied:
            how = " and ".join(x for x in (
                f"the password in ${self.s.password_env}" if self.s.password_env else "",
                f"the key {self.s.key_file}" if self.s.key_file else "") if x)
            raise LoginRefused(f"source '{self.source.name}': {self.where} refused the login; check {how}") from None
        except TimeoutError as exc:
            raise _Transient(f"connecting to {self.where}: no answer within "
                             f"{self.s.connect_timeout_seconds}s") from exc
        except (OSError, asyncssh.DisconnectError) as exc:
            raise _Transient(f"connecting to {self.where}: {exc}") from exc

    def _host_key_message(self) -> str:
        pinned = self.options["known_hosts"]
        port = self.s.port if self.s.port != 22 else None
        trusted = asyncssh.match_known_hosts(pinned, self.s.host, self.s.host, port)[0]
        where = "connection.host_key" if self.s.host_key else f"known_hosts file {self.s.known_hosts}"
        name = self.s.host if port is None else f"[{self.s.host}]:{port}"
        if not trusted:
            return (f"source '{self.source.name}': no host key is pinned for {name} in {where}; refusing to "
                    f"connect to an unknown host. Add its key after checking the fingerprint with the server's "
                    f"operator (e.g. ssh-keyscan -p {self.s.port} {self.s.host})")
        return (f"source '{self.source.name}': the host key presented by {name} does not match the key pinned in "
                f"{where} (the host key changed, or this is not the right server); refusing to connect. If the "
                f"key was rotated on purpose, confirm the new fingerprint with the server's operator and update "
                f"{where}")

    async def _poll(self) -> None:
        conn = await self._connect()
        try:
            sftp = await self._timed(conn.start_sftp_client(), "starting SFTP")
            try:
                await self._collect(sftp)
            finally:
                sftp.exit()
        finally:
            conn.close()
            try:
                await asyncio.wait_for(conn.wait_closed(), self.s.timeout_seconds)
            except (TimeoutError, OSError, asyncssh.Error):
                pass  # closing is best effort; the files that matter are already landed

    async def _collect(self, sftp: asyncssh.SFTPClient) -> None:
        first = await self._list(sftp)
        if self.s.settle_seconds and first:
            await asyncio.sleep(self.s.settle_seconds)
            second = await self._list(sftp)
        else:
            second = first
        for name in sorted(second, key=lambda n: (second[n].mtime, n)):
            now = second[name]
            before = first.get(name)
            if before is None or (before.size, before.mtime) != (now.size, now.mtime):
                log.info("source %s: %s is still being written (size or mtime changed); next poll",
                         self.source.name, now.path)
                continue
            if self._already_picked(now):
                if self.s.move_to:  # landed before, but the move did not happen: finish it
                    await self._move(sftp, now)
                continue
            await self._pick_up(sftp, now)

    async def _list(self, sftp: asyncssh.SFTPClient) -> dict[str, RemoteFile]:
        try:
            entries = await self._timed(sftp.readdir(self.s.remote_dir), f"listing {self.s.remote_dir}")
        except asyncssh.SFTPNoSuchFile:
            raise SftpError(f"source '{self.source.name}': connection.remote_dir {self.s.remote_dir} does not "
                            f"exist on {self.where}") from None
        except asyncssh.SFTPPermissionDenied:
            raise SftpError(f"source '{self.source.name}': {self.where} does not let {self.s.username} list "
                            f"connection.remote_dir {self.s.remote_dir}") from None
        return {remote.name: remote for remote in _matching(entries, self.s)}

    async def _pick_up(self, sftp: asyncssh.SFTPClient, remote: RemoteFile) -> None:
        with tempfile.TemporaryDirectory(prefix="sftp-") as tmp:
            local = Path(tmp) / "download"
            await self._download(sftp, remote, local)
            got = local.stat().st_size
            again = await self._timed(sftp.stat(remote.path), f"stat {remote.path}")
            if got != remote.size or (again.size, again.mtime) != (remote.size, remote.mtime):
                log.info("source %s: %s changed while it was downloaded; next poll", self.source.name, remote.path)
                return
            landed = land_file(self.warehouse, self.landing_dir, local, source=self.source.name,
                               collector="sftp", original_name=remote.name)
        self._remember(remote, landed.file_id)
        self.landed.append(landed)
        log.info("source %s: landed %s (%d bytes, %s)", self.source.name, remote.path, remote.size,
                 "new" if landed.is_new else "already received")
        if self.s.move_to:
            await self._move(sftp, remote)

    async def _download(self, sftp: asyncssh.SFTPClient, remote: RemoteFile, local: Path) -> None:
        """Copy the listed size of the remote file to `local`; on any failure `local` is removed.

        Never more than the listed size is read: a server that keeps sending data (an endless file, or
        one still growing) is cut there, and the checks in `_pick_up` leave a grown file to the next poll.
        """
        try:
            handle = await self._timed(sftp.open(remote.path, "rb"), f"opening {remote.path}")
            try:
                with local.open("wb") as out:
                    left = remote.size
                    while left > 0:
                        chunk = await self._timed(handle.read(min(_CHUNK, left)), f"reading {remote.path}")
                        if not chunk:
                            break  # shorter than listed: `_pick_up` sees the size differ
                        out.write(chunk[:left])  # a server answering more than asked is cut too
                        left -= len(chunk)
            finally:
                try:
                    await asyncio.wait_for(handle.close(), self.s.timeout_seconds)
                except (TimeoutError, OSError, asyncssh.Error):
                    pass  # the connection is gone; the read above already failed or finished
        except BaseException:
            local.unlink(missing_ok=True)
            raise

    async def _move(self, sftp: asyncssh.SFTPClient, remote: RemoteFile) -> None:
        folder = posixpath.join(self.s.remote_dir, self.s.move_to)
        await self._timed(sftp.makedirs(folder, exist_ok=True), f"creating {folder}")
        target = posixpath.join(folder, remote.name)
        if await self._timed(sftp.exists(target), f"checking {target}"):
            stem, dot, ext = remote.name.rpartition(".")
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
            target = posixpath.join(folder, f"{stem}.{stamp}.{ext}" if dot else f"{remote.name}.{stamp}")
        await self._timed(sftp.rename(remote.path, target), f"moving {remote.path} to {target}")
        log.info("source %s: moved %s to %s", self.source.name, remote.path, target)

    def _already_picked(self, remote: RemoteFile) -> bool:
        with self.warehouse.transaction() as tx:
            return bool(tx.fetchall(
                f"SELECT 1 FROM {SEEN_TABLE} WHERE source = ? AND remote_path = ? AND size = ? AND mtime = ?",
                [self.source.name, remote.path, remote.size, remote.mtime]))

    def _remember(self, remote: RemoteFile, file_id: str) -> None:
        with self.warehouse.transaction() as tx:
            tx.execute(f"INSERT INTO {SEEN_TABLE} (source, remote_path, size, mtime, file_id, picked_at)"
                       " VALUES (?, ?, ?, ?, ?, ?)",
                       [self.source.name, remote.path, remote.size, remote.mtime, file_id, datetime.now(UTC)])


def _run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, also from a thread that already runs an event loop (e.g. a notebook)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = asyncio.run(coro)
        except BaseException as exc:  # handed to the caller's thread below
            result["error"] = exc

    thread = threading.Thread(target=target, name="sftp-collector", daemon=True)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


# -- the collector kind ---------------------------------------------------------------------------

class SftpKind(CollectorKind):
    name = "sftp"
    description = "an SFTP folder: new or changed files that have stopped growing, host key pinned"
    settings_schema = SftpSettings
    sensor_interval_seconds = 300
    fingerprint_doc = "run_key: sha256 of the remote (name, size, mtime) listing of the matching files"

    def parse_settings(self, connection: Section, base_dir: Path) -> SftpSettings:
        return read_settings(connection, base_dir)

    def collect(self, context: CollectContext) -> list[Landed]:
        return collect_sftp(context.warehouse, context.landing, context.source)

    def fingerprint(self, source: SourceConfig, settings: Settings) -> Fingerprint:
        """One bounded connection, with the collector's pinned host keys and credentials; nothing downloaded."""
        s: SftpSettings = source.connection
        listing = within(s.connect_timeout_seconds + s.timeout_seconds + 5,
                         lambda: [(r.name, r.size, r.mtime) for r in list_remote(source)])
        if not listing:
            return Fingerprint(None, "no matching files in the remote folder")
        return Fingerprint(digest(listing), f"{len(listing)} matching file(s) in the remote folder", len(listing))

    def where(self, source: SourceConfig) -> str:
        s: SftpSettings = source.connection
        return f"SFTP {s.username}@{s.host}:{s.port}, folder {s.remote_dir}, files matching {s.pattern}"


register(SftpKind())

__all__ = ["HostKeyRefused", "LoginRefused", "RemoteFile", "SEEN_TABLE", "SftpError", "SftpKind", "SftpSettings",
           "collect_sftp", "ensure_tables", "list_remote"]
