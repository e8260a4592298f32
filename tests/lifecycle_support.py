"""Helpers of the lifecycle tests: a billed reference month with its people and policy, and runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from billing.cli import main
from billing.config import load_settings
from ledger.lifecycle import Lifecycle

from support import REFERENCE, billing_env, drop_reference_usage

BLOCKED = 3  # `billing run`: billed, but a blocking check failed (the reference month has unrated usage)


def run_month(month: str) -> None:
    """`billing run --month M`, which must bill (0, or the blocked code for a month with findings)."""
    assert main(["run", "--month", month]) in (0, BLOCKED)


@contextmanager
def reference_lifecycle(home: Path) -> Iterator[Lifecycle]:
    """October 2026 billed into `home` with the reference people file and approval policy."""
    with billing_env(home) as mp:
        mp.setenv("BILLING_CONFIG", str(REFERENCE / "billing.yaml"))
        drop_reference_usage(home / "inbox")
        run_month("2026-10")
        yield Lifecycle(load_settings())


def late_event(inbox: Path, name: str, account: str, quantity: int, day: str, event_id: str) -> None:
    """A usage file with one API_CALLS event, dropped into the inbox as a late delivery would be."""
    row = {"event_id": event_id, "customer_id": account, "product_id": "API_CALLS", "quantity": str(quantity),
           "occurred_at": f"{day}T12:00:00Z"}
    (inbox / name).write_text(json.dumps(row) + "\n", encoding="utf-8")
