"""Sign-in for the review desk: argon2 password hashes, server-side sessions and failed-sign-in limits.

Everything lives in the warehouse's ledger schema (ledger/schema.py), append-only: a person's latest
`ledger.credentials` row is their password; a session is a `ledger.sessions` row (the cookie carries a
random id, the table only its sha256) until a `ledger.session_ends` row ends it or it expires.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from warehouse.store import Tx, Warehouse

SESSION_HOURS = 12
MIN_PASSWORD = 10
# Failed sign-ins: this many within the window lock the person (or the address, for guesses across
# many people) out until the oldest of them leaves the window.
MAX_FAILURES = 5
MAX_FAILURES_PER_CLIENT = 20
FAILURE_WINDOW = timedelta(minutes=15)

_hasher = PasswordHasher()
# Checked against when the person has no password, so an unknown id takes as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class SignInRefused(Exception):
    """A sign-in that did not succeed; the message is safe to show (it never says which part was wrong)."""


@dataclass(frozen=True)
class Session:
    person_id: str
    csrf_token: str
    session_hash: str


def _hash_id(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def set_password(warehouse: Warehouse, person_id: str, password: str, now: datetime | None = None) -> None:
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"a password needs at least {MIN_PASSWORD} characters")
    warehouse.ensure_schema()
    with warehouse.transaction() as tx:
        tx.execute("INSERT INTO ledger.credentials (person_id, password_hash, set_at) VALUES (?, ?, ?)",
                   [person_id, _hasher.hash(password), now or datetime.now(UTC)])


def give_passwords(warehouse: Warehouse, person_ids: list[str]) -> dict[str, str]:
    """A new random password for each person (the demo prints them once; only hashes are stored)."""
    passwords = {person_id: new_password() for person_id in person_ids}
    for person_id, password in passwords.items():
        set_password(warehouse, person_id, password)
    return passwords


def new_password() -> str:
    """A random password people can type: 4 groups of 4 letters and digits."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i
    return "-".join("".join(secrets.choice(alphabet) for _ in range(4)) for _ in range(4))


def lockout(tx: Tx, person_id: str, client: str | None, now: datetime) -> str | None:
    """Why this attempt must wait (None: it may proceed)."""
    since = now - FAILURE_WINDOW
    for who, column, limit, value in (("this person", "person_id", MAX_FAILURES, person_id),
                                      ("this address", "client", MAX_FAILURES_PER_CLIENT, client)):
        if value is None:
            continue
        rows = tx.fetchall(f"SELECT attempted_at FROM ledger.sign_ins WHERE {column} = ? AND NOT succeeded "
                           "AND attempted_at > ? ORDER BY attempted_at DESC LIMIT ?", [value, since, limit])
        if len(rows) >= limit:
            until = _utc(rows[-1][0]) + FAILURE_WINDOW
            return (f"too many failed sign-ins for {who} ({limit} in {int(FAILURE_WINDOW.total_seconds() // 60)} "
                    f"minutes): try again after {until:%H:%M} UTC")
    return None


def sign_in(warehouse: Warehouse, person_id: str, password: str, client: str | None,
            known: bool) -> tuple[str, Session]:
    """Check the password and open a session; returns (the cookie's session id, the session).
    `known`: the person is in the people file (a person removed from it cannot sign in)."""
    now = datetime.now(UTC)
    with warehouse.transaction() as tx:
        waiting = lockout(tx, person_id, client, now)
        if waiting:
            raise SignInRefused(waiting)
        rows = tx.fetchall("SELECT password_hash FROM ledger.credentials WHERE person_id = ? "
                           "ORDER BY set_at DESC LIMIT 1", [person_id])
        stored = rows[0][0] if rows and known else _DUMMY_HASH
        try:
            ok = _hasher.verify(stored, password) and stored is not _DUMMY_HASH
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            ok = False
        tx.execute("INSERT INTO ledger.sign_ins (person_id, client, succeeded, attempted_at) VALUES (?, ?, ?, ?)",
                   [person_id[:200], client, ok, now])
        if not ok:
            failure = SignInRefused("wrong person or password")
        else:
            return open_session(tx, person_id, client, now)
    raise failure  # after the transaction: the failed attempt is recorded


def open_session(tx: Tx, person_id: str, client: str | None, now: datetime | None = None) -> tuple[str, Session]:
    """A new session of a person who proved who they are; returns (the cookie's session id, the session)."""
    now = now or datetime.now(UTC)
    session_id = secrets.token_urlsafe(32)
    session = Session(person_id, secrets.token_urlsafe(32), _hash_id(session_id))
    tx.execute("INSERT INTO ledger.sessions (session_hash, person_id, csrf_token, client, created_at, "
               "expires_at) VALUES (?, ?, ?, ?, ?, ?)",
               [session.session_hash, person_id, session.csrf_token, client, now,
                now + timedelta(hours=SESSION_HOURS)])
    return session_id, session


def current_session(tx: Tx, session_id: str | None) -> Session | None:
    """The live session of a cookie: not ended, not expired."""
    if not session_id or len(session_id) > 200:
        return None
    session_hash = _hash_id(session_id)
    rows = tx.fetchall("SELECT s.person_id, s.csrf_token FROM ledger.sessions s WHERE s.session_hash = ? "
                       "AND s.expires_at > ? AND NOT EXISTS (SELECT 1 FROM ledger.session_ends e "
                       "WHERE e.session_hash = s.session_hash)", [session_hash, datetime.now(UTC)])
    return Session(rows[0][0], rows[0][1], session_hash) if rows else None


def sign_out(warehouse: Warehouse, session: Session) -> None:
    with warehouse.transaction() as tx:
        tx.execute("INSERT INTO ledger.session_ends (session_hash, ended_at) VALUES (?, ?)",
                   [session.session_hash, datetime.now(UTC)])


def same_token(given: str | None, expected: str | None) -> bool:
    return bool(given) and bool(expected) and secrets.compare_digest(str(given), str(expected))


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def new_token() -> str:
    return secrets.token_urlsafe(32)
