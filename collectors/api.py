"""The HTTP API collector: page through a usage endpoint, land each page as a JSON-lines file.

Each page's events are written as canonical JSON lines (keys sorted, numbers kept as their exact
decimal text, nested values as JSON text) and landed with `land_file(..., collector="api")`, so
fetching the same page again gives the same bytes, the same sha256, and loads once.

Where to resume is kept in `raw.api_checkpoints` (source, cursor, updated_at); `cursor` is JSON
text: {"cursor": ...}, {"page": n} or {"url": ...}. It is written in the same transaction that
registers the landed page, so a crash leaves either both or neither: no gap, and a page fetched
again after a crash is a repeat of known bytes. When a page may still grow (the last page, or a
page-number page not known to be full), the checkpoint stays on that page, so the next run reads
it again and picks up what was appended; repeated events are caught by the (source, event_id)
dedup downstream.

429 waits for Retry-After (capped by max_retry_after_seconds); 5xx, timeouts and dropped
connections back off exponentially, up to retry.max_attempts per request. Other 4xx fail at once.
So do a body larger than max_response_bytes (read as it arrives, so memory stays bounded) and a
next cursor or link that leads back to a page already read in the run (a cycle).
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import json
import logging
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from formats import Section, SourceConfigError, SourceFormat
from warehouse.schema import Table, create
from warehouse.schema import register as register_tables
from warehouse.store import RAW_SCHEMA, Tx, Warehouse

from .landing import Landed, land_file
from .registry import CollectContext, CollectorKind, Fingerprint, register
from .retry import RetryPolicy, read_retry
from .sources import SourceConfig, secret_from_env

if TYPE_CHECKING:
    from core.config import Settings

log = logging.getLogger(__name__)

# This kind's state, one of the warehouse's tables (warehouse/schema.py creates it).
CHECKPOINTS = register_tables(Table(RAW_SCHEMA, "api_checkpoints", """
        source VARCHAR PRIMARY KEY,
        cursor VARCHAR NOT NULL,             -- JSON: where the next run starts
        updated_at TIMESTAMPTZ NOT NULL
"""))
CHECKPOINT_TABLE = CHECKPOINTS[0].qualified

PAGINATION_STYLES = ("cursor", "page", "link", "none")
DEFAULT_MAX_RESPONSE_BYTES = 32 << 20  # an API answer's body, as decoded; pages are usually far smaller
BUCKET_SECONDS = 3600  # the sensor requests a collection at most once per hour of the clock


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


@dataclass(frozen=True)
class ApiSettings:
    """`connection:` of an api source (docs/sources.md, kind: api)."""

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


def read_settings(conn: Section, base_dir: Path) -> ApiSettings:
    url = conn.get("url", str, required=True)
    if not url.startswith(("http://", "https://")):
        raise conn.fail("url", f"must start with http:// or https://, got {url!r}")
    headers = conn.str_map("headers")
    for header in headers:
        if header.lower() in ("authorization", "x-api-key", "cookie"):
            raise conn.fail(f"headers.{header}", "carries a secret; use token_env or api_key_env instead")
    pagination = _read_pagination(conn.section("pagination"))
    settings = ApiSettings(
        url=url,
        token_env=conn.env("token_env"),
        api_key_env=conn.env("api_key_env"),
        api_key_header=conn.get("api_key_header", str, "X-API-Key"),
        headers=headers,
        params=conn.str_map("params"),
        records_field=_read_records_field(conn),
        pagination=pagination,
        timeout_seconds=conn.positive("timeout_seconds", 30.0),
        max_retry_after_seconds=conn.positive("max_retry_after_seconds", 120.0),
        max_pages=conn.count("max_pages", 10_000),
        max_response_bytes=conn.count("max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES),
        retry=read_retry(conn),
    )
    if (settings.token_env is None) == (settings.api_key_env is None):
        raise conn.fail("token_env", "give exactly one of token_env (bearer token) or api_key_env (API key header)")
    return settings


def _read_records_field(conn: Section) -> str:
    if conn.data.get("records_field") == "":  # the body itself is the list of events
        conn.used.add("records_field")
        return ""
    return conn.get("records_field", str, "data")


def _read_pagination(section: Section) -> Pagination:
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
    initial_cursor = section.get("initial_cursor", (str, int))
    pagination = Pagination(
        style=style,
        cursor_param=section.get("cursor_param", str, "cursor"),
        next_cursor_field=section.get("next_cursor_field", str, "next_cursor"),
        initial_cursor=None if initial_cursor is None else str(initial_cursor),
        page_param=section.get("page_param", str, "page"),
        first_page=section.count("first_page", 1, minimum=0),
        page_size_param=section.get("page_size_param", str),
        page_size=section.count("page_size", None),
    )
    if (pagination.page_size is None) != (pagination.page_size_param is None):
        raise section.fail("page_size", "give page_size and page_size_param together")
    section.done()
    return pagination


class ApiError(RuntimeError):
    """Collecting from an API source failed; the message says which source, which request and why."""


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class _Page:
    records: list[dict[str, Any]]
    next_position: dict[str, Any] | None
    complete: bool  # True: this page will not grow, so the checkpoint may move past it


def ensure_tables(warehouse: Warehouse) -> None:
    with warehouse.transaction() as tx:
        create(tx, CHECKPOINTS)


def read_checkpoint(warehouse: Warehouse, source: str) -> dict[str, Any] | None:
    with warehouse.transaction() as tx:
        rows = tx.fetchall(f"SELECT cursor FROM {CHECKPOINT_TABLE} WHERE source = ?", [source])
    return json.loads(rows[0][0]) if rows else None


def collect_api(warehouse: Warehouse, landing_dir: Path, source: SourceConfig) -> list[Landed]:
    """Fetch pages from the checkpoint on, landing each; returns every page landed this call."""
    settings = source.connection
    if source.kind != "api" or not isinstance(settings, ApiSettings):
        raise SourceConfigError(f"source '{source.name}' is not an api source (kind: {source.kind})")
    ensure_tables(warehouse)
    if settings.token_env:
        secret = secret_from_env(source, "token_env", settings.token_env)
        auth = {"Authorization": f"Bearer {secret}"}
    else:
        secret = secret_from_env(source, "api_key_env", settings.api_key_env)
        auth = {settings.api_key_header: secret}
    collector = _Collector(warehouse, Path(landing_dir), source, settings, secret)
    with httpx.Client(headers={**settings.headers, **auth, "Accept": "application/json"},
                      timeout=httpx.Timeout(settings.timeout_seconds), follow_redirects=False) as client:
        return collector.run(client)


class _Collector:
    def __init__(self, warehouse: Warehouse, landing_dir: Path, source: SourceConfig, settings: ApiSettings,
                 secret: str):
        self.warehouse = warehouse
        self.landing_dir = landing_dir
        self.source = source
        self.s = settings
        self.p = settings.pagination
        self._secret = secret  # only to redact it from any error text we pass on

    def run(self, client: httpx.Client) -> list[Landed]:
        position = self._start()
        landed: list[Landed] = []
        read = [position]  # positions read this run, in order: a next position among them is a cycle
        for _ in range(self.s.max_pages):
            page = self._parse(*self._get(client, position), position)
            if page.records:
                resume = page.next_position if page.next_position and page.complete else position
                landed.append(self._land(page.records, position, resume))
            elif page.next_position and self.p.style != "none":
                self._save(page.next_position)  # an empty page: nothing to land, safe to move on
            if not page.next_position or page.next_position == position:
                return landed
            if page.next_position in read:
                raise ApiError(self._cycle(read, page.next_position, len(landed)))
            position = page.next_position
            read.append(position)
        log.warning("source %s: stopped after max_pages=%d; the next run continues from the checkpoint",
                    self.source.name, self.s.max_pages)
        return landed

    def _cycle(self, read: list[dict[str, Any]], again: dict[str, Any], landed: int) -> str:
        kind, value = next(iter(again.items()))
        back = len(read) - read.index(again)
        return (f"source '{self.source.name}': the API's next {kind} {value!r} leads back to a page already "
                f"read in this run ({back} page(s) ago): its pagination cycles, so collection stops here "
                f"instead of reading the same pages until max_pages. The {landed} page(s) landed are kept; "
                f"ask the API's operator to fix its {kind}s")

    # -- positions -------------------------------------------------------------------------------

    def _start(self) -> dict[str, Any]:
        initial = {"cursor": {"cursor": self.p.initial_cursor}, "page": {"page": self.p.first_page},
                   "link": {"url": None}, "none": {}}[self.p.style]
        if self.p.style == "none":
            return initial
        saved = read_checkpoint(self.warehouse, self.source.name)
        if saved is None:
            return initial
        if set(saved) != set(initial):
            raise ApiError(f"source '{self.source.name}': the saved checkpoint {saved} does not fit pagination "
                           f"style '{self.p.style}'; delete its row from {CHECKPOINT_TABLE} to start over")
        log.info("source %s: resuming from checkpoint %s", self.source.name, saved)
        return saved

    def _request(self, position: dict[str, Any]) -> tuple[str, dict[str, str]]:
        params = dict(self.s.params)
        if self.p.style == "cursor" and position["cursor"] is not None:
            params[self.p.cursor_param] = position["cursor"]
        elif self.p.style == "page":
            params[self.p.page_param] = str(position["page"])
            if self.p.page_size_param:
                params[self.p.page_size_param] = str(self.p.page_size)
        elif self.p.style == "link" and position["url"]:
            return position["url"], {}  # the link carries its own query
        return self.s.url, params

    def _parse(self, response: httpx.Response, content: bytearray, position: dict[str, Any]) -> _Page:
        try:
            body = json.loads(content, parse_float=Decimal, parse_int=Decimal)
        except ValueError:
            raise ApiError(f"source '{self.source.name}': {_describe(response)} is not JSON "
                           f"({response.headers.get('content-type', 'no content type')})") from None
        records = _dig(body, self.s.records_field)
        field = self.s.records_field or "the body"
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise ApiError(f"source '{self.source.name}': {_describe(response)} has no list of event objects at "
                           f"'{field}' (connection.records_field)")
        style = self.p.style
        if style == "cursor":
            cursor = _dig(body, self.p.next_cursor_field)
            nxt = {"cursor": str(cursor)} if cursor not in (None, "") else None
            return _Page(records, nxt, complete=True)
        if style == "page":
            full = self.p.page_size is not None and len(records) >= self.p.page_size
            nxt = {"page": position["page"] + 1} if records and (self.p.page_size is None or full) else None
            return _Page(records, nxt, complete=full)
        if style == "link":
            link = response.links.get("next", {}).get("url")
            nxt = {"url": str(response.url.join(link))} if link else None
            if nxt and httpx.URL(nxt["url"]).netloc != httpx.URL(self.s.url).netloc:
                raise ApiError(f"source '{self.source.name}': the next-page link {nxt['url']} leaves "
                               f"{httpx.URL(self.s.url).host}; refusing to send the credentials there")
            # The first page's position stays {"url": None}: resuming there re-reads it with the base params.
            return _Page(records, nxt, complete=True)
        return _Page(records, None, complete=False)

    # -- HTTP --------------------------------------------------------------------------------------

    def _get(self, client: httpx.Client, position: dict[str, Any]) -> tuple[httpx.Response, bytearray]:
        url, params = self._request(position)
        policy = self.s.retry
        try:
            for attempt in Retrying(stop=stop_after_attempt(policy.max_attempts), wait=self._wait,
                                    retry=retry_if_exception_type(_Retryable), before_sleep=self._log_retry,
                                    sleep=time.sleep, reraise=True):
                with attempt:
                    return self._get_once(client, url, params)
        except _Retryable as exc:
            raise ApiError(f"source '{self.source.name}': GET {url} {params or ''} failed {policy.max_attempts} "
                           f"time(s), last: {exc}; the checkpoint is kept, the next run resumes there") from None
        raise AssertionError("unreachable")

    def _get_once(self, client: httpx.Client, url: str, params: dict[str, str]) -> tuple[httpx.Response, bytearray]:
        try:
            # params=None, not {}: httpx would replace a next-link's own query with an empty one
            with client.stream("GET", url, params=params or None) as response:
                self._check_status(response)
                return response, self._read_capped(response)
        except httpx.TimeoutException as exc:
            raise _Retryable(f"no answer within {self.s.timeout_seconds}s ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise _Retryable(f"{type(exc).__name__}: {self._redact(str(exc))}") from None

    def _check_status(self, response: httpx.Response) -> None:
        status = response.status_code
        if status == 429 or status >= 500:
            raise _Retryable(_describe(response), retry_after=_retry_after(response.headers.get("Retry-After")))
        if 300 <= status < 400:  # not followed: the credentials could travel to another host
            raise ApiError(f"source '{self.source.name}': {_describe(response)} to "
                           f"{response.headers.get('location', '?')}; set connection.url to where it points")
        if status >= 400:
            hint = {401: f"the credentials in ${self.s.token_env or self.s.api_key_env} were refused",
                    403: f"the credentials in ${self.s.token_env or self.s.api_key_env} lack permission",
                    404: "check connection.url"}.get(status, "")
            head = b""
            for chunk in response.iter_bytes():  # only the start: an error page can be as large as any
                head += chunk
                if len(head) >= 200:
                    break
            snippet = self._redact(head[:200].decode("utf-8", "replace").strip())
            raise ApiError(f"source '{self.source.name}': {_describe(response)}"
                           f"{'; ' + hint if hint else ''}{': ' + snippet if snippet else ''}")

    def _read_capped(self, response: httpx.Response) -> bytearray:
        """The body, read as it arrives and given up past `max_response_bytes` (memory stays bounded)."""
        limit = self.s.max_response_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise ApiError(self._too_large(response, f"declaring a body of {int(declared):,} bytes"))
        body = bytearray()
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > limit:
                raise ApiError(self._too_large(response, f"with a body that goes on past {len(body):,} bytes"))
        return body

    def _too_large(self, response: httpx.Response, what: str) -> str:
        return (f"source '{self.source.name}': {_describe(response)}, {what}: over this source's limit of "
                f"{self.s.max_response_bytes:,} bytes (connection.max_response_bytes). Ask for smaller pages "
                f"(pagination.page_size) or raise the limit; the checkpoint is kept, the next run resumes there")

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            return min(exc.retry_after, self.s.max_retry_after_seconds)
        return self.s.retry.backoff(state.attempt_number)

    def _log_retry(self, state: RetryCallState) -> None:
        log.warning("source %s: attempt %d failed (%s); retrying in %.2fs", self.source.name, state.attempt_number,
                    state.outcome.exception() if state.outcome else "?",
                    state.next_action.sleep if state.next_action else 0)

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    # -- landing ----------------------------------------------------------------------------------

    def _land(self, records: list[dict[str, Any]], position: dict[str, Any], resume: dict[str, Any]) -> Landed:
        body = "".join(json.dumps({k: _flat(v) for k, v in r.items()}, sort_keys=True, separators=(",", ":"),
                                  ensure_ascii=False) + "\n" for r in records).encode("utf-8")
        name = f"{re.sub(r'[^A-Za-z0-9_-]', '_', self.source.name)}-{_position_tag(position)}.jsonl"
        with tempfile.TemporaryDirectory(prefix="api-page-") as tmp:
            page_file = Path(tmp) / name
            page_file.write_bytes(body)
            # The checkpoint commits in the transaction that registers the page (see _CheckpointOnCommit).
            target = self.warehouse if self.p.style == "none" else \
                _CheckpointOnCommit(self.warehouse, self._upsert(resume))
            landed = land_file(target, self.landing_dir, page_file, source=self.source.name, collector="api",
                               original_name=name)
        log.info("source %s: landed %s (%d events, %s); next run starts at %s", self.source.name, name,
                 len(records), "new" if landed.is_new else "already received", resume)
        return landed

    def _upsert(self, position: dict[str, Any]) -> tuple[str, list[Any]]:
        return (f"INSERT INTO {CHECKPOINT_TABLE} (source, cursor, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (source) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
                [self.source.name, json.dumps(position, sort_keys=True), datetime.now(UTC)])

    def _save(self, position: dict[str, Any]) -> None:
        with self.warehouse.transaction() as tx:
            tx.execute(*self._upsert(position))


class _CheckpointOnCommit:
    """A Warehouse whose transactions also write the checkpoint, just before they commit.

    `land_file` registers a page in one transaction; handing it this wrapper puts the checkpoint
    in that same transaction, so the manifest row and the checkpoint commit together or not at all.
    The upsert is idempotent, so it is harmless in any other transaction land_file might open.
    """

    def __init__(self, warehouse: Warehouse, statement: tuple[str, list[Any]]):
        self._warehouse = warehouse
        self._statement = statement

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Tx]:
        with self._warehouse.transaction() as tx:
            yield tx
            tx.execute(*self._statement)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._warehouse, name)


def _dig(body: Any, dotted: str) -> Any:
    value = body
    for part in filter(None, dotted.split(".")):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _flat(value: Any) -> Any:
    """Exact decimal text for numbers (never a binary float), JSON text for nested values."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return value


def _position_tag(position: dict[str, Any]) -> str:
    if "page" in position:
        return f"page-{position['page']:06d}"
    value = position.get("cursor") or position.get("url")
    if value is None:
        return "first"
    return f"{next(iter(position))}-{hashlib.sha256(str(value).encode()).hexdigest()[:12]}"


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: delay-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _describe(response: httpx.Response) -> str:
    return f"GET {response.request.url} answered {response.status_code} {response.reason_phrase}"


# -- the collector kind ---------------------------------------------------------------------------

class ApiKind(CollectorKind):
    name = "api"
    description = "an HTTP API, paged from its checkpoint (cursor, page or link pagination)"
    settings_schema = ApiSettings
    sensor_interval_seconds = 300
    fingerprint_doc = ("run_key: the hour, UTC (an API cannot be listed without fetching it); the collector "
                       "resumes from its checkpoint")

    def parse_settings(self, connection: Section, base_dir: Path) -> ApiSettings:
        return read_settings(connection, base_dir)

    def check_format(self, file_format: SourceFormat) -> str | None:
        if file_format.format not in ("auto", "jsonl"):
            return "api sources land JSON lines; use 'jsonl' or 'auto'"
        return None

    def collect(self, context: CollectContext) -> list[Landed]:
        return collect_api(context.warehouse, context.landing, context.source)

    def fingerprint(self, source: SourceConfig, settings: Settings) -> Fingerprint:
        """A time bucket: at most one collection per hour, and a restarted daemon asks for the same
        hour's run again under the same key, which Dagster skips. What to fetch is the checkpoint."""
        bucket = time.strftime("%Y-%m-%dT%H:00Z", time.gmtime(time.time() // BUCKET_SECONDS * BUCKET_SECONDS))
        return Fingerprint(bucket, f"the hour {bucket}")

    def where(self, source: SourceConfig) -> str:
        s: ApiSettings = source.connection
        return f"HTTP API {s.url} (pagination: {s.pagination.style}), from its checkpoint"


register(ApiKind())

__all__ = ["ApiError", "ApiKind", "ApiSettings", "CHECKPOINT_TABLE", "Pagination", "collect_api", "ensure_tables",
           "read_checkpoint"]
