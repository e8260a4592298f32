"""The ledger's guarantees below the lifecycle: gapless numbers under failures and concurrent
issuers (real PostgreSQL transactions), and an action log whose verification finds an edited,
a removed and a reordered entry."""

from __future__ import annotations

import threading
import time
from datetime import date
from pathlib import Path

import pytest

from ledger import audit
from ledger.lifecycle import take_number
from warehouse.store import Warehouse

from lifecycle_support import postgres_database

ISSUED = date(2026, 11, 2)


def fresh(tmp_path: Path) -> Warehouse:
    warehouse = Warehouse(duckdb_path=tmp_path / "warehouse.duckdb")
    warehouse.ensure_schema()
    return warehouse


def issue_numbers(warehouse: Warehouse, fail: bool, pause: float = 0.0) -> str:
    """What `Lifecycle.issue` does with numbers: lock, take the next one, store it; or fail after taking it."""
    with warehouse.transaction() as tx:
        audit.lock_log(tx)
        _, _, number = take_number(tx, "INV-{year}-{number:06d}", "INV", ISSUED)
        time.sleep(pause)  # hold the number while the other issuers wait
        if fail:
            raise RuntimeError(f"rendering the PDF of {number} failed")
        audit.append(tx, action="invoice.issued", actor_id="fiona", actor_role="finance", channel="cli",
                     document_type="invoice", document_id=number)
        return number


def committed_numbers(warehouse: Warehouse) -> list[str]:
    with warehouse.transaction() as tx:
        return [r[0] for r in tx.fetchall("SELECT document_id FROM ledger.actions ORDER BY document_id")]


def test_a_failed_issue_leaves_no_gap(tmp_path):
    warehouse = fresh(tmp_path)
    assert issue_numbers(warehouse, fail=False) == "INV-2026-000001"
    with pytest.raises(RuntimeError):
        issue_numbers(warehouse, fail=True)
    assert issue_numbers(warehouse, fail=False) == "INV-2026-000002"


def test_concurrent_issuers_on_postgres_get_distinct_consecutive_numbers():
    with postgres_database("numbers") as dsn:
        warehouse = Warehouse(postgres_dsn=dsn)
        warehouse.ensure_schema()
        outcomes: list[str] = []
        failures: list[BaseException] = []

        def issuer(i: int) -> None:
            try:
                outcomes.append(issue_numbers(warehouse, fail=i % 3 == 0, pause=0.05))
            except RuntimeError as exc:
                failures.append(exc)

        threads = [threading.Thread(target=issuer, args=(i,)) for i in range(9)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(t.is_alive() for t in threads)
        assert len(failures) == 3  # issuers 0, 3, 6 failed after taking a number
        expected = [f"INV-2026-{n:06d}" for n in range(1, 7)]
        assert sorted(outcomes) == expected == committed_numbers(warehouse)
        with warehouse.transaction() as tx:
            assert audit.verify(tx).ok


@pytest.fixture
def log(tmp_path):
    warehouse = fresh(tmp_path)
    with warehouse.transaction() as tx:
        for i in range(1, 6):
            audit.append(tx, action="invoice.approved", actor_id="fiona", actor_role="finance", channel="cli",
                         document_type="draft_invoice", document_id=f"draft-{i}", reason=f"ok {i}")
    return warehouse


def problems(warehouse: Warehouse, head: str | None = None) -> list[str]:
    with warehouse.transaction() as tx:
        return audit.verify(tx, head).problems


def test_an_intact_log_verifies(log):
    assert problems(log) == []


def test_an_edited_entry_is_found(log):
    with log.transaction() as tx:
        tx.execute("UPDATE ledger.actions SET actor_id = 'mallory' WHERE seq = 3")
    found = problems(log)
    assert found and "entry 3" in found[0] and "edited" in found[0]


def test_a_removed_entry_is_found(log):
    with log.transaction() as tx:
        tx.execute("DELETE FROM ledger.actions WHERE seq = 2")
    assert any("entry 3" in p and "removed" in p for p in problems(log))


def test_reordered_entries_are_found(log):
    with log.transaction() as tx:  # swap the positions of entries 2 and 4
        tx.execute("UPDATE ledger.actions SET seq = -2 WHERE seq = 2")
        tx.execute("UPDATE ledger.actions SET seq = 2 WHERE seq = 4")
        tx.execute("UPDATE ledger.actions SET seq = 4 WHERE seq = -2")
    found = problems(log)
    assert any("entry 2" in p for p in found) and any("entry 4" in p for p in found)


def test_removed_newest_entries_are_found_against_a_noted_head(log):
    with log.transaction() as tx:
        head = audit.verify(tx).head
        tx.execute("DELETE FROM ledger.actions WHERE seq = 5")
    assert problems(log) == []  # a shorter chain is still a chain ...
    assert any("head" in p for p in problems(log, head))  # ... which the noted head exposes
