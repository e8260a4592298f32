"""The outbox: each lifecycle action writes its event here in its own transaction; the webhook
dispatcher (ledger/webhooks.py) delivers them, so no event is lost when an endpoint is down and
none is sent for an action that rolled back."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from warehouse.store import Tx

EVENT_TYPES = ("invoice.approved", "invoice.issued", "invoice.voided", "credit_note.issued")


def emit(tx: Tx, event_type: str, document_number: str | None, data: dict[str, Any],
         now: datetime | None = None) -> str:
    """Append one event (the caller holds the ledger's lock, so `seq` is the delivery order)."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    now = now or datetime.now(UTC)
    event_id = f"msg_{uuid.uuid4().hex}"
    seq = tx.fetchall("SELECT COALESCE(MAX(seq), 0) + 1 FROM ledger.outbox")[0][0]
    payload = json.dumps({"type": event_type, "timestamp": now.isoformat(), "data": data}, sort_keys=True,
                         default=str)
    tx.execute("INSERT INTO ledger.outbox (event_id, seq, event_type, document_number, payload, created_at) "
               "VALUES (?, ?, ?, ?, ?, ?)", [event_id, seq, event_type, document_number, payload, now])
    return event_id
