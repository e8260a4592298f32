"""The action log: append-only, each entry chained to the one before by sha256.

An entry's hash covers the previous entry's hash and its own content, so editing an entry,
removing one or changing their order breaks the chain at that entry; `verify` walks it and says
where. Truncating the newest entries leaves a valid shorter chain: compare the head hash that
`billing audit verify` prints with one noted earlier (or pass it with --head) to detect that.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from warehouse.store import Tx

TABLE = "ledger.actions"
FIELDS = ("seq", "action_id", "action", "document_type", "document_id", "period", "billing_account_id",
          "actor_id", "actor_role", "channel", "reason", "before_state", "after_state", "acted_at")


def canonical(value: Any) -> str:
    """JSON with sorted keys and decimals/dates as text: the same content always gives the same bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)


def entry_hash(prev_hash: str, content: dict[str, Any]) -> str:
    return hashlib.sha256((prev_hash + "\n" + canonical(content)).encode()).hexdigest()


def lock_log(tx: Tx) -> None:
    """Serialize writers of the log (and of the outbox's order) on PostgreSQL; DuckDB has one writer."""
    if tx.dialect == "postgres":
        tx.execute(f"LOCK TABLE {TABLE} IN EXCLUSIVE MODE")


def _utc_text(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def append(tx: Tx, *, action: str, actor_id: str, actor_role: str, channel: str,
           document_type: str | None = None, document_id: str | None = None, period: str | None = None,
           billing_account_id: str | None = None, reason: str | None = None,
           before: Any = None, after: Any = None, now: datetime | None = None) -> str:
    """Write one entry at the end of the chain; returns its hash."""
    lock_log(tx)
    last = tx.fetchall(f"SELECT seq, entry_hash FROM {TABLE} ORDER BY seq DESC LIMIT 1")
    seq, prev = (last[0][0] + 1, last[0][1]) if last else (1, "")
    content = {
        "seq": seq, "action_id": uuid.uuid4().hex, "action": action, "document_type": document_type,
        "document_id": document_id, "period": period, "billing_account_id": billing_account_id,
        "actor_id": actor_id, "actor_role": actor_role, "channel": channel, "reason": reason,
        "before_state": None if before is None else canonical(before),
        "after_state": None if after is None else canonical(after),
        "acted_at": _utc_text(now or datetime.now(UTC)),
    }
    digest = entry_hash(prev, content)
    values = [content[f] for f in FIELDS]
    values[FIELDS.index("acted_at")] = datetime.fromisoformat(content["acted_at"])
    tx.execute(f"INSERT INTO {TABLE} ({', '.join(FIELDS)}, prev_hash, entry_hash) "
               f"VALUES ({', '.join('?' for _ in FIELDS)}, ?, ?)", [*values, prev, digest])
    return digest


@dataclass
class Verification:
    entries: int
    head: str
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(tx: Tx, expected_head: str | None = None) -> Verification:
    """Recompute the chain in log order; every broken link is a problem naming the entry."""
    rows = tx.fetchall(f"SELECT {', '.join(FIELDS)}, prev_hash, entry_hash FROM {TABLE} ORDER BY seq")
    problems: list[str] = []
    prev = ""
    for position, row in enumerate(rows, 1):
        content = dict(zip(FIELDS, row[:len(FIELDS)], strict=True))
        content["acted_at"] = _utc_text(content["acted_at"])
        stored_prev, stored_hash = row[-2], row[-1]
        where = f"entry {content['seq']} ({content['action']} {content['document_id'] or ''})".rstrip()
        if content["seq"] != position:
            problems.append(f"{where}: expected entry {position} here: an entry before it was removed or "
                            "the order was changed")
        if stored_prev != prev:
            problems.append(f"{where}: does not follow the entry before it (removed or reordered entries)")
        if entry_hash(stored_prev, content) != stored_hash:
            problems.append(f"{where}: its content does not match its hash (the entry was edited)")
        prev = stored_hash
    if expected_head is not None and prev != expected_head:
        problems.append(f"the log's head is {prev or '(empty)'}, not the expected {expected_head}: entries "
                        "were added after it or the newest ones were removed")
    return Verification(len(rows), prev, problems)
