"""Source definitions: where usage comes from and how its files map onto the event contract.

The event contract every source is mapped onto: event_id, customer_id, product_id, quantity,
occurred_at. A source names, for each, the column in its files that holds it (`columns`).

One YAML file lists the sources (docs/sources.md, examples/sources.yaml). Each has a name, a kind
(sftp | upload | api), format settings, and for sftp/api a `connection` block. Secrets are never
in the file: it names the environment variable that holds them (`password_env`, `token_env`, ...),
which is read only when a collector connects, so loading the file never needs the secrets.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .retry import RetryPolicy

EVENT_FIELDS = ("event_id", "customer_id", "product_id", "quantity", "occurred_at")
KINDS = ("upload", "sftp", "api")
FORMATS = ("auto", "csv", "jsonl", "parquet")
PAGINATION_STYLES = ("cursor", "page", "link", "none")
IN_PROGRESS_SUFFIXES = (".part", ".tmp", ".partial", ".filepart")
# Plausible event times (docs/sources.md): at most this long after the file was received ...
DEFAULT_FUTURE_MARGIN = timedelta(days=1)
# ... and not before this day (UTC). Usage billed today is not from the last century: an earlier
# date is a default value (1970-01-01, 1900-01-01, 0001-01-01) or a broken clock.
DEFAULT_EARLIEST_DATE = date(2000, 1, 1)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Keys that would put a secret in the file; each maps to the setting to use instead.
_SECRET_KEYS = {"password": "password_env", "token": "token_env", "api_key": "api_key_env",
                "key_passphrase": "key_passphrase_env", "passphrase": "key_passphrase_env",
                "secret": "token_env or api_key_env", "private_key": "key_file"}


class SourceConfigError(ValueError):
    """The sources file is wrong; the message names the source and the field."""


@dataclass(frozen=True)
class SftpSettings:
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


@dataclass(frozen=True)
class Pagination:
    style: str = "none"  # cursor | page | link | none
    cursor_param: str = "cursor"  # cursor: query parameter carrying the cursor
    next_cursor_field: str = "next_cursor"  # cursor: dotted path of the next cursor in the body
    initial_cursor: str | None = None  # cursor: where a source with no checkpoint starts
    page_param: str = "page"  # page: query parameter carrying the page number
    first_page: int = 1
    page_size_param: str | None = None
    page_size: int | None = None


DEFAULT_MAX_RESPONSE_BYTES = 32 << 20  # an API answer's body, as decoded; pages are usually far smaller


@dataclass(frozen=True)
class ApiSettings:
    url: str
    token_env: str | None = None  # sent as "Authorization: Bearer <token>"
    api_key_env: str | None = None  # or sent in api_key_header
    api_key_header: str = "X-API-Key"
    headers: dict[str, str] = field(default_factory=dict)  # extra, non-secret headers
    params: dict[str, str] = field(default_factory=dict)  # fixed query parameters
    records_field: str = "data"  # dotted path of the list of events in the body; "" = the body is the list
    pagination: Pagination = field(default_factory=Pagination)
    timeout_seconds: float = 30.0  # connect/read/write/pool, per request
    max_retry_after_seconds: float = 120.0  # a longer Retry-After is capped to this
    max_pages: int = 10_000  # per run, so a misbehaving API cannot loop forever
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES  # a larger answer fails the source (memory stays bounded)
    retry: RetryPolicy = field(default_factory=RetryPolicy)


DEFAULT_MAX_UPLOAD_BYTES = 2 << 30  # a dropped file larger than this is refused (moved to <inbox>/refused/)
DEFAULT_SETTLE_SECONDS = 2.0  # an inbox file modified more recently is watched this long before it is taken


@dataclass(frozen=True)
class UploadSettings:
    inbox: Path | None = None  # this source's own inbox folder (default: the configured inbox)
    max_bytes: int = DEFAULT_MAX_UPLOAD_BYTES  # largest file accepted, as delivered (compressed or not)
    settle_seconds: float = DEFAULT_SETTLE_SECONDS  # a file must not change this long to be collected


Connection = SftpSettings | ApiSettings | UploadSettings


@dataclass(frozen=True)
class SourceConfig:
    name: str
    kind: str = "upload"  # upload | sftp | api
    format: str = "auto"  # auto (by file suffix) | csv | jsonl | parquet; .gz and .zip are expanded first
    delimiter: str = ","
    timezone: str | None = None  # zone of naive timestamps; None = naive timestamps are refused
    columns: dict[str, str] = field(default_factory=lambda: {f: f for f in EVENT_FIELDS})
    connection: Connection | None = None
    header: bool = True  # CSV: first line names the columns (else columns are column_1, column_2, ...)
    skip_rows: int = 0  # CSV: lines to skip before the header (banners, report titles)
    quote_char: str | None = '"'  # CSV: None = no quoting
    encoding: str = "utf-8"  # text files are read in this encoding
    quantity_scale: Decimal = Decimal(1)  # quantities are multiplied by this (bytes -> GB: "0.000000001")
    derive_event_id: bool = False  # the source has no event ids: derive one from the row (docs/sources.md)
    future_margin: timedelta = DEFAULT_FUTURE_MARGIN  # events dated later after their file's receipt: quarantined
    earliest_date: date = DEFAULT_EARLIEST_DATE  # events dated before this day (00:00 UTC): quarantined

    def column(self, event_field: str) -> str:
        return self.columns.get(event_field, event_field)


DEFAULT_UPLOAD_SOURCE = SourceConfig(name="upload", kind="upload")


def load_sources(path) -> dict[str, SourceConfig]:
    """Sources by name from the sources file (docs/sources.md); the upload source is always there.

    Relative paths in the file (key_file, known_hosts, inbox) are read from the file's folder.
    Raises SourceConfigError naming the source and the field when the file is wrong.
    """
    if path is None:
        return {DEFAULT_UPLOAD_SOURCE.name: DEFAULT_UPLOAD_SOURCE}
    import yaml

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SourceConfigError(f"sources file {path} not found") from None
    except yaml.YAMLError as exc:
        raise SourceConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_sources(doc, base_dir=path.resolve().parent, origin=str(path))


def parse_sources(doc: Any, *, base_dir: Path, origin: str = "sources") -> dict[str, SourceConfig]:
    """Validate a parsed sources document (a mapping with a `sources` list)."""
    sources = {DEFAULT_UPLOAD_SOURCE.name: DEFAULT_UPLOAD_SOURCE}
    if doc is None:
        return sources
    if not isinstance(doc, dict):
        raise SourceConfigError(f"{origin}: must be a mapping with a 'sources' list")
    unknown = set(doc) - {"sources"}
    if unknown:
        raise SourceConfigError(f"{origin}: unknown top-level key(s) {', '.join(sorted(map(str, unknown)))};"
                                " only 'sources' is allowed")
    entries = doc.get("sources") or []
    if not isinstance(entries, list):
        raise SourceConfigError(f"{origin}: 'sources' must be a list of sources")
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        config = _parse_source(entry, index, base_dir, origin)
        if config.name in seen:
            raise SourceConfigError(f"{origin}: source '{config.name}' is defined twice; names must be unique")
        seen.add(config.name)
        sources[config.name] = config
    return sources


def secret_from_env(source: SourceConfig, setting: str, env_name: str) -> str:
    """The secret held by the environment variable a source names; never part of any message."""
    value = os.environ.get(env_name)
    if not value:
        raise SourceConfigError(f"source '{source.name}': environment variable {env_name} "
                                f"(connection.{setting}) is not set; export it before collecting")
    return value


class _Section:
    """Reads one mapping of the file, type-checking each key and refusing unknown ones."""

    def __init__(self, data: Any, where: str, prefix: str = ""):
        if not isinstance(data, dict):
            raise SourceConfigError(f"{where}: {prefix.rstrip('.') or 'entry'} must be a mapping")
        self.data = dict(data)
        self.where = where
        self.prefix = prefix
        self.used: set[str] = set()

    def fail(self, key: str, message: str) -> SourceConfigError:
        return SourceConfigError(f"{self.where}: {self.prefix}{key}: {message}")

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None, *, required: bool = False) -> Any:
        self.used.add(key)
        value = self.data.get(key)
        if value is None:
            if required:
                raise self.fail(key, "is required")
            return default
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if int in kinds and isinstance(value, bool) or not isinstance(value, kinds):
            names = " or ".join(_type_name(k) for k in kinds)
            raise self.fail(key, f"must be {names}, got {value!r}")
        if isinstance(value, str) and not value.strip():
            raise self.fail(key, "must not be empty")
        return value

    def positive(self, key: str, default: float) -> float:
        value = self.get(key, float, default)
        if value <= 0:
            raise self.fail(key, f"must be greater than 0, got {value}")
        return value

    def count(self, key: str, default: int | None, minimum: int = 1) -> int | None:
        value = self.get(key, int, default)
        if value is not None and value < minimum:
            raise self.fail(key, f"must be at least {minimum}, got {value}")
        return value

    def env(self, key: str) -> str | None:
        value = self.get(key, str)
        if value is not None and not _ENV_NAME.match(value):
            raise self.fail(key, f"must name an environment variable (letters, digits, _), got {value!r}")
        return value

    def path(self, key: str, base_dir: Path) -> Path | None:
        value = self.get(key, str)
        if value is None:
            return None
        path = Path(value).expanduser()
        return path if path.is_absolute() else base_dir / path

    def str_map(self, key: str) -> dict[str, str]:
        value = self.get(key, dict, {})
        out = {}
        for k, v in value.items():
            if not isinstance(k, str) or isinstance(v, (dict, list)) or v is None:
                raise self.fail(key, f"must map names to plain values; {k!r}: {v!r} is not")
            out[k] = str(v).lower() if isinstance(v, bool) else str(v)
        return out

    def section(self, key: str) -> _Section:
        self.used.add(key)
        return _Section(self.data.get(key) or {}, self.where, f"{self.prefix}{key}.")

    def done(self) -> None:
        for key in self.data:
            if key in _SECRET_KEYS and key not in self.used:
                raise self.fail(key, f"secrets are never written in the sources file; put it in an environment "
                                     f"variable and name that variable with '{_SECRET_KEYS[key]}'")
        unknown = [str(k) for k in self.data if k not in self.used]
        if unknown:
            raise self.fail(unknown[0], f"unknown setting; expected one of {', '.join(sorted(self.used))}")


def _type_name(kind: type) -> str:
    return {str: "text", int: "a whole number", float: "a number", bool: "true or false",
            dict: "a mapping", list: "a list", date: "a date"}.get(kind, kind.__name__)


def _parse_source(entry: Any, index: int, base_dir: Path, origin: str) -> SourceConfig:
    name = entry.get("name") if isinstance(entry, dict) else None
    if not isinstance(name, str) or not _NAME.match(name):
        label = f"{origin}: source #{index + 1}"
        if not isinstance(entry, dict):
            raise SourceConfigError(f"{label}: must be a mapping with name, kind, ...")
        raise SourceConfigError(f"{label}: name: is required and must be letters, digits, '.', '_' or '-'"
                                f" (got {name!r})")
    top = _Section(entry, f"{origin}: source '{name}'")
    top.get("name", str)
    kind = top.get("kind", str, "upload")
    if kind not in KINDS:
        raise top.fail("kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")
    fmt = top.get("format", str, "auto")
    if fmt not in FORMATS:
        raise top.fail("format", f"must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if kind == "api" and fmt == "csv":
        raise top.fail("format", "api sources land JSON lines; use 'jsonl' or 'auto'")
    delimiter = top.get("delimiter", str, ",")
    if len(delimiter) != 1:
        raise top.fail("delimiter", f"must be a single character, got {delimiter!r}")
    timezone = top.get("timezone", str)
    if timezone is not None:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise top.fail("timezone", f"{timezone!r} is not an IANA time zone (e.g. UTC, Europe/Berlin)") from None
    header = top.get("header", bool, True)
    skip_rows = top.count("skip_rows", 0, minimum=0)
    top.used.add("quote_char")
    quote_char = top.data.get("quote_char", '"')
    quote_char = None if quote_char is False else quote_char
    if quote_char is not None and (not isinstance(quote_char, str) or len(quote_char) != 1):
        raise top.fail("quote_char", f"must be a single character (or false for none), got {quote_char!r}")
    encoding = top.get("encoding", str, "utf-8")
    try:
        "".encode(encoding)
    except LookupError:
        raise top.fail("encoding", f"{encoding!r} is not a text encoding Python knows (e.g. utf-8, latin-1)") from None
    scale_text = top.get("quantity_scale", (str, int), 1)
    try:
        quantity_scale = Decimal(str(scale_text))
    except InvalidOperation:
        raise top.fail("quantity_scale", f"must be a decimal number such as \"0.000000001\", got {scale_text!r}") from None
    if not quantity_scale.is_finite() or quantity_scale <= 0:
        raise top.fail("quantity_scale", f"must be above 0, got {scale_text!r}")
    derive_event_id = top.get("derive_event_id", bool, False)
    margin_hours = top.get("future_margin_hours", float, DEFAULT_FUTURE_MARGIN / timedelta(hours=1))
    if margin_hours < 0:
        raise top.fail("future_margin_hours", f"must be 0 or more, got {margin_hours}")
    earliest_date = _date(top, "earliest_date", DEFAULT_EARLIEST_DATE)
    columns = {f: f for f in EVENT_FIELDS}
    for event_field, column in top.str_map("columns").items():
        if event_field not in EVENT_FIELDS:
            raise top.fail("columns", f"{event_field!r} is not an event field; map {', '.join(EVENT_FIELDS)}")
        if not column.strip():
            raise top.fail(f"columns.{event_field}", "must name a column")
        columns[event_field] = column
    if kind in ("sftp", "api") and not top.has("connection"):
        raise top.fail("connection", f"is required for a {kind} source")
    conn = top.section("connection")
    connection: Connection = {"sftp": _sftp, "api": _api, "upload": _upload}[kind](conn, base_dir)
    conn.done()
    top.done()
    return SourceConfig(name=name, kind=kind, format=fmt, delimiter=delimiter, timezone=timezone,
                        columns=columns, connection=connection, header=header, skip_rows=skip_rows,
                        quote_char=quote_char, encoding=encoding, quantity_scale=quantity_scale,
                        derive_event_id=derive_event_id, future_margin=timedelta(hours=margin_hours),
                        earliest_date=earliest_date)


def _date(section: _Section, key: str, default: date) -> date:
    value = section.get(key, (date, str), default)  # YAML reads 2000-01-01 as a date, "2000-01-01" as text
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value.strip())
        except ValueError:
            raise section.fail(key, f"must be a date such as 2000-01-01, got {value!r}") from None
    elif type(value) is not date:  # a timestamp is not a day
        raise section.fail(key, f"must be a date such as 2000-01-01, got {value!r}")
    return value


def _retry(conn: _Section) -> RetryPolicy:
    section = conn.section("retry")
    policy = RetryPolicy(max_attempts=section.count("max_attempts", 5),
                         initial_seconds=section.positive("initial_seconds", 1.0),
                         max_seconds=section.positive("max_seconds", 30.0))
    section.done()
    return policy


def _sftp(conn: _Section, base_dir: Path) -> SftpSettings:
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
        retry=_retry(conn),
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


def _api(conn: _Section, base_dir: Path) -> ApiSettings:
    url = conn.get("url", str, required=True)
    if not url.startswith(("http://", "https://")):
        raise conn.fail("url", f"must start with http:// or https://, got {url!r}")
    headers = conn.str_map("headers")
    for header in headers:
        if header.lower() in ("authorization", "x-api-key", "cookie"):
            raise conn.fail(f"headers.{header}", "carries a secret; use token_env or api_key_env instead")
    pagination = _pagination(conn.section("pagination"))
    settings = ApiSettings(
        url=url,
        token_env=conn.env("token_env"),
        api_key_env=conn.env("api_key_env"),
        api_key_header=conn.get("api_key_header", str, "X-API-Key"),
        headers=headers,
        params=conn.str_map("params"),
        records_field=_records_field(conn),
        pagination=pagination,
        timeout_seconds=conn.positive("timeout_seconds", 30.0),
        max_retry_after_seconds=conn.positive("max_retry_after_seconds", 120.0),
        max_pages=conn.count("max_pages", 10_000),
        max_response_bytes=conn.count("max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES),
        retry=_retry(conn),
    )
    if (settings.token_env is None) == (settings.api_key_env is None):
        raise conn.fail("token_env", "give exactly one of token_env (bearer token) or api_key_env (API key header)")
    return settings


def _records_field(conn: _Section) -> str:
    if conn.data.get("records_field") == "":  # the body itself is the list of events
        conn.used.add("records_field")
        return ""
    return conn.get("records_field", str, "data")


def _pagination(section: _Section) -> Pagination:
    style = section.get("style", str, "none")
    if style not in PAGINATION_STYLES:
        raise section.fail("style", f"must be one of {', '.join(PAGINATION_STYLES)}, got {style!r}")
    allowed = {"cursor": ("cursor_param", "next_cursor_field", "initial_cursor"),
               "page": ("page_param", "first_page", "page_size_param", "page_size"),
               "link": (), "none": ()}[style]
    for key in section.data:
        if key != "style" and key not in allowed:
            raise section.fail(key, f"does not apply to pagination style '{style}'"
                                    + (f"; it takes {', '.join(allowed)}" if allowed else ""))
    pagination = Pagination(
        style=style,
        cursor_param=section.get("cursor_param", str, "cursor"),
        next_cursor_field=section.get("next_cursor_field", str, "next_cursor"),
        initial_cursor=section.get("initial_cursor", (str, int)),
        page_param=section.get("page_param", str, "page"),
        first_page=section.count("first_page", 1, minimum=0),
        page_size_param=section.get("page_size_param", str),
        page_size=section.count("page_size", None),
    )
    if pagination.initial_cursor is not None:
        pagination = Pagination(**{**pagination.__dict__, "initial_cursor": str(pagination.initial_cursor)})
    if (pagination.page_size is None) != (pagination.page_size_param is None):
        raise section.fail("page_size", "give page_size and page_size_param together")
    section.done()
    return pagination


def _upload(conn: _Section, base_dir: Path) -> UploadSettings | None:
    if not conn.data:
        return None
    settle_seconds = conn.get("settle_seconds", float, DEFAULT_SETTLE_SECONDS)
    if not 0 <= settle_seconds <= 600:
        raise conn.fail("settle_seconds", f"must be between 0 and 600 (seconds a file must not change), "
                                          f"got {settle_seconds}")
    return UploadSettings(inbox=conn.path("inbox", base_dir),
                          max_bytes=conn.count("max_bytes", DEFAULT_MAX_UPLOAD_BYTES), settle_seconds=settle_seconds)
