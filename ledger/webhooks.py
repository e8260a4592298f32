"""Webhooks: the ledger's outbox delivered to the configured endpoints, signed the Standard Webhooks way.

Every lifecycle action writes its event to `ledger.outbox` in the action's own transaction. `dispatch`
sends each event to each endpoint at least once, in `seq` order per endpoint, and appends every
attempt to `ledger.outbox_attempts` (never updated): an event counts as delivered to an endpoint
only once an attempt got a 2xx. A failed attempt ends that endpoint's round, so a later event is
never delivered before an earlier one; the next try waits `backoff(attempt)`; after `max_attempts`
the event is a dead letter, reported and kept visible, and no longer holds back the ones after it.
The format, the headers and how to verify them: docs/webhooks.md.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import hmac
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx

from warehouse.store import Warehouse

from .schema import SCHEMA, ddl

DEFAULT_TIMEOUT_SECONDS = 10.0  # connect, and each read or write, per attempt
DEFAULT_MAX_ATTEMPTS = 8  # with the backoff below, an endpoint down for about 15 hours loses nothing
FIRST_BACKOFF = timedelta(seconds=30)
BACKOFF_FACTOR = 4
MAX_BACKOFF = timedelta(hours=6)
PAGE_ROWS = 200  # outbox rows read at a time
MAX_ANSWER_BYTES = 1024  # of a failed answer's body, kept as the attempt's error
PG_LOCK_KEY = 0x77656268  # pg_try_advisory_lock: one dispatcher at a time per PostgreSQL database
SECRET_PREFIX = "whsec_"
_ENDPOINT_KEYS = {"name", "url", "secret_env", "timeout_seconds", "max_attempts"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class WebhookConfigError(ValueError):
    """A webhook endpoint is configured wrongly, or its secret is missing; the message says which."""


@dataclass(frozen=True)
class Endpoint:
    name: str  # recorded with every attempt (ledger.outbox_attempts.endpoint)
    url: str
    secret_env: str  # the environment variable holding the secret, whsec_<base64>
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    max_attempts: int = DEFAULT_MAX_ATTEMPTS


def endpoints_from_config(entries: Sequence[Mapping] | Sequence[Endpoint]) -> tuple[Endpoint, ...]:
    """The `webhooks:` list of billing.yaml (Settings.lifecycle.webhooks), checked entry by entry."""
    endpoints: list[Endpoint] = []
    for index, entry in enumerate(entries):
        if isinstance(entry, Endpoint):
            endpoints.append(entry)
            continue
        where = f"webhooks[{index}]"
        if not isinstance(entry, Mapping):
            raise WebhookConfigError(f"{where}: must be a mapping with name, url and secret_env")
        if "secret" in entry:
            raise WebhookConfigError(f"{where}: secret: secrets are never written in the config; put it in an "
                                     "environment variable and name that variable with secret_env")
        unknown = sorted(str(k) for k in entry if k not in _ENDPOINT_KEYS)
        if unknown:
            raise WebhookConfigError(f"{where}: unknown setting {unknown[0]!r}; expected "
                                     f"{', '.join(sorted(_ENDPOINT_KEYS))}")
        name, url, secret_env = entry.get("name"), entry.get("url"), entry.get("secret_env")
        if not isinstance(name, str) or not _NAME.match(name):
            raise WebhookConfigError(f"{where}: name is required: letters, digits, '.', '_' or '-' (got {name!r})")
        where = f"webhooks '{name}'"
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise WebhookConfigError(f"{where}: url must start with http:// or https:// (got {url!r})")
        if not isinstance(secret_env, str) or not _ENV_NAME.match(secret_env):
            raise WebhookConfigError(f"{where}: secret_env must name an environment variable (got {secret_env!r})")
        timeout = entry.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 300:
            raise WebhookConfigError(f"{where}: timeout_seconds must be a number of seconds from 0 to 300 "
                                     f"(got {timeout!r})")
        attempts = entry.get("max_attempts", DEFAULT_MAX_ATTEMPTS)
        if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= 100:
            raise WebhookConfigError(f"{where}: max_attempts must be a whole number from 1 to 100 (got {attempts!r})")
        if any(e.name == name for e in endpoints):
            raise WebhookConfigError(f"{where}: defined twice; endpoint names must be unique")
        endpoints.append(Endpoint(name, url, secret_env, float(timeout), attempts))
    return tuple(endpoints)


def signing_key(endpoint: Endpoint, env: Mapping[str, str] | None = None) -> bytes:
    """The endpoint's secret, from the variable it names: `whsec_` + base64 (the prefix is optional).

    Messages name the variable, never its value.
    """
    value = (os.environ if env is None else env).get(endpoint.secret_env)
    if not value:
        raise WebhookConfigError(f"webhook endpoint '{endpoint.name}': environment variable {endpoint.secret_env} "
                                 "(secret_env) is not set; export the endpoint's secret (whsec_...) in it")
    encoded = value.strip().removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not key:
        raise WebhookConfigError(f"webhook endpoint '{endpoint.name}': {endpoint.secret_env} does not hold a "
                                 "Standard Webhooks secret (whsec_ followed by base64)")
    return key


def sign(key: bytes, event_id: str, timestamp: int, body: str) -> str:
    """The `webhook-signature` header: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">."""
    digest = hmac.new(key, f"{event_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def backoff(attempt: int) -> timedelta:
    """How long after failed attempt number `attempt` (1, 2, ...) the next one is due:
    30 s, 2 min, 8 min, 32 min, about 2 h, then 6 h."""
    return min(FIRST_BACKOFF * BACKOFF_FACTOR ** min(max(attempt - 1, 0), 16), MAX_BACKOFF)


@dataclass(frozen=True)
class Attempt:
    """One POST of one event to one endpoint, as recorded in ledger.outbox_attempts."""

    endpoint: str
    event_id: str
    seq: int
    event_type: str
    attempt: int
    status_code: int | None
    error: str | None
    delivered: bool
    attempted_at: datetime


@dataclass(frozen=True)
class Undelivered:
    """An event not delivered to an endpoint: waiting for its next try, or dead (out of attempts)."""

    endpoint: str
    event_id: str
    seq: int
    event_type: str
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None  # None: dead, no attempt left


@dataclass
class Summary:
    attempts: list[Attempt] = field(default_factory=list)
    waiting: list[Undelivered] = field(default_factory=list)  # the event each endpoint's round stopped at
    dead: list[Undelivered] = field(default_factory=list)
    busy: bool = False  # another dispatcher held the lock: nothing was done

    @property
    def delivered(self) -> list[Attempt]:
        return [a for a in self.attempts if a.delivered]

    @property
    def failed(self) -> list[Attempt]:
        return [a for a in self.attempts if not a.delivered]


def dispatch(warehouse: Warehouse, endpoints: Sequence[Mapping] | Sequence[Endpoint], *,
             now: datetime | None = None, max_events: int | None = None,
             env: Mapping[str, str] | None = None) -> Summary:
    """One round: for each endpoint, POST the outbox events it has not received, in seq order.

    An endpoint's round stops at its first failed attempt, at an event whose next try is not due yet,
    or after `max_events` attempts. `now` is the dispatcher's clock for due times and `attempted_at`
    (default: the real clock); the `webhook-timestamp` header is always the real time of sending,
    since receivers compare it with their own clock. One dispatcher runs at a time per warehouse: a
    second one returns at once with `busy` set.
    """
    endpoints = endpoints_from_config(endpoints)
    keys = {e.name: signing_key(e, env) for e in endpoints}  # every secret checked before anything is sent
    summary = Summary()
    with _exclusive(warehouse) as acquired:
        if not acquired:
            summary.busy = True
            return summary
        with warehouse.transaction() as tx:
            for statement in ddl():
                tx.execute(statement)
        for endpoint in endpoints:
            _round(warehouse, endpoint, keys[endpoint.name], summary, now, max_events)
    return summary


def _round(warehouse: Warehouse, endpoint: Endpoint, key: bytes, summary: Summary, now: datetime | None,
           max_events: int | None) -> None:
    sent = 0
    timeout = httpx.Timeout(endpoint.timeout_seconds)
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        for row in _undelivered(warehouse, endpoint.name):
            seq, event_id, event_type, payload, attempts, last_at, last_error = row
            if attempts >= endpoint.max_attempts:
                summary.dead.append(Undelivered(endpoint.name, event_id, seq, event_type, attempts, last_error, None))
                continue
            clock = now or datetime.now(UTC)
            due = last_at + backoff(attempts) if attempts else clock
            if due > clock or (max_events is not None and sent >= max_events):
                summary.waiting.append(Undelivered(endpoint.name, event_id, seq, event_type, attempts, last_error, due))
                return
            status, error = _post(client, endpoint, key, event_id, payload)
            attempt = Attempt(endpoint.name, event_id, seq, event_type, attempts + 1, status, error,
                              error is None, now or datetime.now(UTC))
            with warehouse.transaction() as tx:
                tx.execute(f"INSERT INTO {SCHEMA}.outbox_attempts (event_id, endpoint, attempt, status_code, error,"
                           " delivered, attempted_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           [event_id, endpoint.name, attempt.attempt, status, error, attempt.delivered,
                            attempt.attempted_at])
            summary.attempts.append(attempt)
            sent += 1
            if not attempt.delivered:  # later events wait, so the endpoint receives them in order
                final = attempt.attempt >= endpoint.max_attempts
                (summary.dead if final else summary.waiting).append(Undelivered(
                    endpoint.name, event_id, seq, event_type, attempt.attempt, error,
                    None if final else attempt.attempted_at + backoff(attempt.attempt)))
                if not final:
                    return


def _post(client: httpx.Client, endpoint: Endpoint, key: bytes, event_id: str, body: str) -> tuple[int | None, str | None]:
    """Send one event; (status code, None) after a 2xx, else (status code or None, what went wrong)."""
    timestamp = int(time.time())
    headers = {"content-type": "application/json", "user-agent": "billing-warehouse-webhooks",
               "webhook-id": event_id, "webhook-timestamp": str(timestamp),
               "webhook-signature": sign(key, event_id, timestamp, body)}
    try:
        with client.stream("POST", endpoint.url, content=body.encode("utf-8"), headers=headers) as response:
            if 200 <= response.status_code < 300:
                return response.status_code, None
            answer = b""
            for chunk in response.iter_bytes():  # only the start of the body: the error says what it was
                answer += chunk
                if len(answer) >= MAX_ANSWER_BYTES:
                    break
            text = answer[:MAX_ANSWER_BYTES].decode("utf-8", "replace").strip()
            where = f" to {response.headers.get('location')} (redirects are not followed)" if response.is_redirect else ""
            return response.status_code, _printable(f"HTTP {response.status_code}{where}" + (f": {text}" if text else ""))
    except httpx.TimeoutException as exc:
        return None, f"timed out after {endpoint.timeout_seconds:g} s ({type(exc).__name__})"
    except httpx.HTTPError as exc:
        return None, _printable(f"{type(exc).__name__}: {exc}") or type(exc).__name__


def _printable(text: str, limit: int = 200) -> str:
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _undelivered(warehouse: Warehouse, endpoint: str) -> Iterator[tuple]:
    """Outbox events not delivered to `endpoint`, in seq order, with their attempts so far, the time
    and error of the last one; read a page at a time, each in its own short transaction (so no
    connection is held while an endpoint answers)."""
    after = -(2**63)
    while True:
        with warehouse.transaction() as tx:
            page = tx.fetchall(
                f"""WITH tried AS (
                        SELECT event_id, count(*) AS attempts, max(attempt) AS last_attempt,
                               max(CASE WHEN delivered THEN 1 ELSE 0 END) AS delivered
                        FROM {SCHEMA}.outbox_attempts WHERE endpoint = ? GROUP BY event_id)
                    SELECT o.seq, o.event_id, o.event_type, o.payload, coalesce(t.attempts, 0),
                           l.attempted_at, coalesce(l.error, CAST(l.status_code AS VARCHAR))
                    FROM {SCHEMA}.outbox o
                    LEFT JOIN tried t ON t.event_id = o.event_id
                    LEFT JOIN {SCHEMA}.outbox_attempts l
                      ON l.event_id = o.event_id AND l.endpoint = ? AND l.attempt = t.last_attempt
                    WHERE coalesce(t.delivered, 0) = 0 AND o.seq > ?
                    ORDER BY o.seq LIMIT ?""",
                [endpoint, endpoint, after, PAGE_ROWS])
        if not page:
            return
        for row in page:
            if row[0] > after:  # a repeated attempt number (never written by one dispatcher) counts once
                after = row[0]
                yield row


def status(warehouse: Warehouse, endpoints: Sequence[Mapping] | Sequence[Endpoint]) -> list[dict]:
    """Per endpoint: events delivered, pending (attempts left) and dead (none left), and the dead ones."""
    endpoints = endpoints_from_config(endpoints)
    with warehouse.transaction() as tx:
        for statement in ddl():
            tx.execute(statement)
    out = []
    for endpoint in endpoints:
        with warehouse.transaction() as tx:
            delivered = tx.fetchall(f"SELECT count(DISTINCT event_id) FROM {SCHEMA}.outbox_attempts "
                                    "WHERE endpoint = ? AND delivered", [endpoint.name])[0][0]
        pending, dead = 0, []
        for seq, event_id, event_type, _, attempts, _, last_error in _undelivered(warehouse, endpoint.name):
            if attempts >= endpoint.max_attempts:
                dead.append(Undelivered(endpoint.name, event_id, seq, event_type, attempts, last_error, None))
            else:
                pending += 1
        out.append({"endpoint": endpoint.name, "url": endpoint.url, "delivered": delivered, "pending": pending,
                    "dead": dead})
    return out


@contextlib.contextmanager
def _exclusive(warehouse: Warehouse) -> Iterator[bool]:
    """One dispatcher per warehouse at a time (two would interleave an endpoint's events): a lock file
    beside the DuckDB file, or a PostgreSQL advisory lock held by this session. Never waits."""
    if warehouse.dialect == "postgres":
        with warehouse.session():
            with warehouse.transaction() as tx:
                acquired = bool(tx.fetchall("SELECT pg_try_advisory_lock(?)", [PG_LOCK_KEY])[0][0])
            try:
                yield acquired
            finally:
                if acquired:
                    with warehouse.transaction() as tx:
                        tx.fetchall("SELECT pg_advisory_unlock(?)", [PG_LOCK_KEY])
        return
    path = warehouse.duckdb_path.with_name(warehouse.duckdb_path.name + ".webhooks.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
