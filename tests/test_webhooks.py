"""Webhooks: every outbox event reaches every endpoint at least once, in order, signed so the Standard
Webhooks library verifies it, whatever the receiver does (down, 500, slow, dropped mid-request,
restarted) and however often the dispatcher itself is restarted or killed.

The receiver is a real HTTP server on 127.0.0.1; outbox rows are written directly, as the lifecycle's
actions write them."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from ledger.schema import ddl
from ledger.webhooks import WebhookConfigError, backoff, dispatch, endpoints_from_config, status
from warehouse.store import Warehouse

from support import postgres_database

REPO = Path(__file__).resolve().parents[1]
SECRET = "whsec_" + base64.b64encode(b"a test secret of 32 bytes, fixed").decode()
ENV = {"HOOK_SECRET": SECRET}
T0 = datetime.now(UTC).replace(microsecond=0)


class Receiver:
    """An HTTP server on 127.0.0.1 that records every request it reads, then answers as `mode` says:
    ok (204), 500, 302 (a redirect), slow (answers after `slow_seconds`), drop (closes the connection
    without an answer)."""

    def __init__(self, port: int = 0, mode: str = "ok", slow_seconds: float = 2.0):
        self.mode = mode
        self.slow_seconds = slow_seconds
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                if receiver.mode == "drop":
                    self.close_connection = True
                    return
                if receiver.mode == "slow":
                    time.sleep(receiver.slow_seconds)
                self.send_response({"500": 500, "302": 302}.get(receiver.mode, 204))
                if receiver.mode == "302":
                    self.send_header("location", "http://127.0.0.1:9/elsewhere")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def event_ids(self) -> list[str]:
        return [headers["webhook-id"] for headers, _ in self.requests]


@pytest.fixture
def receivers():
    started: list[Receiver] = []

    def start(**kwargs) -> Receiver:
        started.append(Receiver(**kwargs))
        return started[-1]

    yield start
    for receiver in started:
        receiver.stop()


def free_port() -> int:
    with socket.socket() as sock:  # nothing listens on it once closed: a receiver that is down
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def new_warehouse(tmp_path: Path) -> Warehouse:
    warehouse = Warehouse(duckdb_path=tmp_path / "w.duckdb")
    with warehouse.transaction() as tx:
        for statement in ddl():
            tx.execute(statement)
    return warehouse


@pytest.fixture(params=["duckdb", "postgres"])
def engine_warehouse(request, tmp_path):
    """The ledger on DuckDB, or in a PostgreSQL database of this test's own (created and dropped)."""
    if request.param == "duckdb":
        yield new_warehouse(tmp_path)
        return
    with postgres_database("webhooks") as dsn:
        warehouse = Warehouse(postgres_dsn=dsn)
        with warehouse.transaction() as tx:
            for statement in ddl():
                tx.execute(statement)
        yield warehouse


def add_events(warehouse: Warehouse, count: int, first_seq: int = 1) -> list[str]:
    """Outbox rows as an action writes them; returns their ids in seq order."""
    ids = []
    with warehouse.transaction() as tx:
        for seq in range(first_seq, first_seq + count):
            event_id = f"msg_{seq:04d}"
            payload = json.dumps({"type": "invoice.issued", "timestamp": T0.isoformat(),
                                  "data": {"number": f"INV-2026-{seq:06d}", "total": "12.30", "currency": "EUR"}})
            tx.execute("INSERT INTO ledger.outbox (event_id, seq, event_type, document_number, payload, created_at) "
                       "VALUES (?, ?, 'invoice.issued', ?, ?, ?)", [event_id, seq, f"INV-2026-{seq:06d}", payload, T0])
            ids.append(event_id)
    return ids


def endpoint(url: str, name: str = "erp", **extra) -> dict:
    return {"name": name, "url": url, "secret_env": "HOOK_SECRET", **extra}


def attempts(warehouse: Warehouse, endpoint_name: str = "erp") -> list[tuple]:
    with warehouse.transaction() as tx:
        return tx.fetchall("SELECT event_id, attempt, status_code, delivered FROM ledger.outbox_attempts "
                           "WHERE endpoint = ? ORDER BY attempted_at, event_id, attempt", [endpoint_name])


def assert_received_in_order_and_verified(receiver: Receiver, ids: list[str], warehouse: Warehouse) -> None:
    """Each event at least once, never one before an earlier one, each signature verified by the
    standardwebhooks library, each body the outbox payload byte for byte."""
    received = receiver.event_ids()
    assert set(received) == set(ids)
    assert received == sorted(received)  # repeats only of the event in flight, never out of order
    with warehouse.transaction() as tx:
        payloads = dict(tx.fetchall("SELECT event_id, payload FROM ledger.outbox"))
    for headers, body in receiver.requests:
        assert Webhook(SECRET).verify(body, headers)["type"] == "invoice.issued"
        assert body.decode() == payloads[headers["webhook-id"]]
        assert headers["content-type"] == "application/json"
    with warehouse.transaction() as tx:
        delivered = tx.fetchall("SELECT event_id FROM ledger.outbox_attempts WHERE delivered ORDER BY event_id")
    assert [e for (e,) in delivered] == ids  # each marked delivered exactly once, after its 2xx


def test_every_event_is_delivered_signed_and_in_order(engine_warehouse, receivers):
    warehouse = engine_warehouse
    ids = add_events(warehouse, 5)
    receiver = receivers()
    summary = dispatch(warehouse, [endpoint(receiver.url)], now=T0, env=ENV)
    assert [a.event_id for a in summary.delivered] == ids and not summary.failed
    assert_received_in_order_and_verified(receiver, ids, warehouse)
    assert receiver.requests[0][0]["webhook-signature"].startswith("v1,")
    again = dispatch(warehouse, [endpoint(receiver.url)], now=T0 + timedelta(hours=1), env=ENV)
    assert again.attempts == [] and len(receiver.requests) == 5  # delivered events are not sent again


def test_a_receiver_that_is_down_then_answers_500_then_is_slow_loses_nothing(engine_warehouse, receivers):
    warehouse = engine_warehouse
    ids = add_events(warehouse, 4)
    port = free_port()
    hooks = [endpoint(f"http://127.0.0.1:{port}/hooks", timeout_seconds=0.5)]
    now = T0
    down = dispatch(warehouse, hooks, now=now, env=ENV)  # nothing listens: refused
    assert [(a.event_id, a.delivered) for a in down.attempts] == [("msg_0001", False)]  # the round stops there
    assert "ConnectError" in down.attempts[0].error
    assert dispatch(warehouse, hooks, now=now + backoff(1) - timedelta(seconds=1), env=ENV).attempts == []  # not due

    receiver = receivers(port=port, mode="500")
    now += backoff(1)
    failed = dispatch(warehouse, hooks, now=now, env=ENV)
    assert [(a.event_id, a.attempt, a.status_code) for a in failed.attempts] == [("msg_0001", 2, 500)]
    receiver.mode = "slow"
    now += backoff(2)
    slow = dispatch(warehouse, hooks, now=now, env=ENV)
    assert [(a.event_id, a.attempt, a.status_code) for a in slow.attempts] == [("msg_0001", 3, None)]
    assert "timed out" in slow.attempts[0].error
    receiver.mode = "ok"
    now += backoff(3)
    done = dispatch(warehouse, hooks, now=now, env=ENV)
    assert [(a.event_id, a.attempt) for a in done.delivered] == [("msg_0001", 4), ("msg_0002", 1), ("msg_0003", 1),
                                                               ("msg_0004", 1)]
    assert_received_in_order_and_verified(receiver, ids, warehouse)
    assert receiver.event_ids().count("msg_0001") == 3  # the 500, the slow one (answered too late) and the 2xx
    assert [row[:3] for row in attempts(warehouse)][:4] == [("msg_0001", 1, None), ("msg_0001", 2, 500),
                                                           ("msg_0001", 3, None), ("msg_0001", 4, 204)]


def test_a_receiver_restarted_in_the_middle_gets_everything_once_it_is_back(tmp_path, receivers):
    """The receiver reads the third event and dies before answering; it comes back on the same port.
    The third event is sent again (at least once) and the rest follow in order."""
    warehouse = new_warehouse(tmp_path)
    ids = add_events(warehouse, 6)
    first = receivers()
    hooks = [endpoint(first.url)]
    assert len(dispatch(warehouse, hooks, now=T0, env=ENV, max_events=2).delivered) == 2
    first.mode = "drop"
    dropped = dispatch(warehouse, hooks, now=T0, env=ENV)
    assert [(a.event_id, a.delivered) for a in dropped.attempts] == [("msg_0003", False)]
    first.stop()
    assert not dispatch(warehouse, hooks, now=T0 + backoff(1), env=ENV).delivered  # down meanwhile
    second = receivers(port=first.port)
    later = T0 + backoff(1) + backoff(2)
    assert [a.event_id for a in dispatch(warehouse, hooks, now=later, env=ENV).delivered] == ids[2:]
    combined = Receiver.__new__(Receiver)
    combined.requests = first.requests + second.requests
    assert combined.event_ids() == ids[:3] + ids[2:]  # msg_0003 twice (dropped, then delivered), nothing lost
    assert_received_in_order_and_verified(combined, ids, warehouse)


def test_a_dispatcher_killed_mid_request_is_continued_by_the_next_one(tmp_path, receivers):
    """`billing webhooks deliver` is killed (SIGKILL) while a slow receiver holds an event; a new
    dispatcher process continues where it left off: the event in flight is sent again, none is lost,
    none is out of order."""
    warehouse = new_warehouse(tmp_path)
    ids = add_events(warehouse, 5)
    receiver = receivers(mode="slow", slow_seconds=30)
    config = tmp_path / "billing.yaml"
    config.write_text(f"home: {tmp_path / 'home'}\nwarehouse: {{path: {tmp_path / 'w.duckdb'}}}\n"
                      f"webhooks:\n  - {{name: erp, url: '{receiver.url}', secret_env: HOOK_SECRET, "
                      "timeout_seconds: 60}\n")
    env = {**os.environ, **ENV, "BILLING_CONFIG": str(config)}
    for var in ("BILLING_HOME", "BILLING_DUCKDB_PATH", "BILLING_ENGINE"):
        env.pop(var, None)
    command = [sys.executable, "-m", "billing.cli", "webhooks", "deliver", "--once"]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not receiver.requests and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        assert receiver.event_ids() == ["msg_0001"], process.stdout.read().decode() if process.poll() else ""
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    assert attempts(warehouse) == []  # killed before the answer: no attempt recorded, nothing marked delivered
    receiver.mode = "ok"
    restarted = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert restarted.stdout.count("delivered (HTTP 204)") == 5
    assert receiver.event_ids() == ["msg_0001", *ids]
    assert_received_in_order_and_verified(receiver, ids, warehouse)


def test_an_event_out_of_attempts_is_a_dead_letter_and_stays_visible(engine_warehouse, receivers):
    warehouse = engine_warehouse
    ids = add_events(warehouse, 3)
    receiver = receivers(mode="500")
    hooks = [endpoint(receiver.url, max_attempts=2)]
    first = dispatch(warehouse, hooks, now=T0, env=ENV)
    assert [a.event_id for a in first.attempts] == ["msg_0001"] and not first.dead
    second = dispatch(warehouse, hooks, now=T0 + backoff(1), env=ENV, max_events=1)
    assert [(d.event_id, d.attempts) for d in second.dead] == [("msg_0001", 2)]
    receiver.mode = "ok"
    third = dispatch(warehouse, hooks, now=T0 + backoff(1), env=ENV)  # a dead letter holds nothing back
    assert [a.event_id for a in third.delivered] == ids[1:]
    assert [(d.event_id, d.attempts, d.last_error) for d in third.dead] == [("msg_0001", 2, "HTTP 500")]
    [row] = status(warehouse, hooks)
    assert (row["delivered"], row["pending"], [d.event_id for d in row["dead"]]) == (2, 0, ["msg_0001"])
    assert len(attempts(warehouse)) == 4  # 2 failed + 2 delivered: every attempt kept, none rewritten
    # raising max_attempts gives a dead letter more tries
    again = dispatch(warehouse, [endpoint(receiver.url, max_attempts=3)], now=T0 + timedelta(days=1), env=ENV)
    assert [a.event_id for a in again.delivered] == ["msg_0001"]


def test_a_redirect_is_a_failed_attempt_not_followed(tmp_path, receivers):
    warehouse = new_warehouse(tmp_path)
    add_events(warehouse, 1)
    receiver = receivers(mode="302")
    [attempt] = dispatch(warehouse, [endpoint(receiver.url)], now=T0, env=ENV).attempts
    assert (attempt.delivered, attempt.status_code) == (False, 302)
    assert attempt.error == "HTTP 302 to http://127.0.0.1:9/elsewhere (redirects are not followed)"
    assert len(receiver.requests) == 1


def test_one_endpoint_down_does_not_hold_back_another(tmp_path, receivers):
    warehouse = new_warehouse(tmp_path)
    ids = add_events(warehouse, 3)
    healthy = receivers()
    hooks = [endpoint(f"http://127.0.0.1:{free_port()}/x", name="down"), endpoint(healthy.url, name="crm")]
    summary = dispatch(warehouse, hooks, now=T0, env=ENV)
    assert [(a.endpoint, a.event_id, a.delivered) for a in summary.attempts] == [
        ("down", "msg_0001", False), ("crm", "msg_0001", True), ("crm", "msg_0002", True), ("crm", "msg_0003", True)]
    assert healthy.event_ids() == ids


def test_a_second_dispatcher_at_the_same_time_does_nothing(engine_warehouse, receivers):
    warehouse = engine_warehouse
    add_events(warehouse, 2)
    receiver = receivers(mode="slow", slow_seconds=1.0)
    results = {}
    first = threading.Thread(target=lambda: results.setdefault("first", dispatch(
        warehouse, [endpoint(receiver.url)], now=T0, env=ENV)))
    first.start()
    deadline = time.monotonic() + 30
    while not receiver.requests and time.monotonic() < deadline:
        time.sleep(0.02)
    second = dispatch(warehouse, [endpoint(receiver.url)], now=T0, env=ENV)
    first.join(timeout=60)
    assert second.busy and second.attempts == []
    assert len(results["first"].delivered) == 2 and receiver.event_ids() == ["msg_0001", "msg_0002"]


@pytest.mark.parametrize(("entry", "message"), [
    ({"name": "erp", "url": "http://x", "secret_env": "HOOK_SECRET", "secret": "whsec_abc"},
     "secrets are never written in the config"),
    ({"name": "erp", "url": "http://x", "secret_env": "HOOK_SECRET", "retries": 3}, "unknown setting 'retries'"),
    ({"name": "erp", "url": "ftp://x", "secret_env": "HOOK_SECRET"}, "url must start with http"),
    ({"name": "erp", "url": "http://x", "secret_env": "HOOK_SECRET", "max_attempts": 0}, "max_attempts must be"),
    ({"name": "erp", "url": "http://x", "secret_env": "HOOK_SECRET", "timeout_seconds": "5"}, "timeout_seconds must"),
    ({"url": "http://x", "secret_env": "HOOK_SECRET"}, "name is required"),
])
def test_endpoint_mistakes_are_named(entry, message):
    with pytest.raises(WebhookConfigError, match=message):
        endpoints_from_config([entry])


def test_a_missing_or_malformed_secret_names_the_variable_and_never_the_value(tmp_path, receivers):
    warehouse = new_warehouse(tmp_path)
    add_events(warehouse, 1)
    receiver = receivers()
    hooks = [endpoint(receiver.url)]
    with pytest.raises(WebhookConfigError, match="environment variable HOOK_SECRET .* is not set"):
        dispatch(warehouse, hooks, env={})
    with pytest.raises(WebhookConfigError, match="HOOK_SECRET does not hold a Standard Webhooks secret") as err:
        dispatch(warehouse, hooks, env={"HOOK_SECRET": "whsec_not*base64!"})
    assert "not*base64" not in str(err.value)
    assert receiver.requests == [] and attempts(warehouse) == []


def test_backoff_grows_and_is_capped():
    waits = [backoff(n) for n in range(1, 9)]
    assert waits[0] == timedelta(seconds=30) and waits == sorted(waits)
    assert waits[-1] == timedelta(hours=6)


def test_the_cli_watches_for_a_while_and_reports_dead_letters(tmp_path, receivers, monkeypatch, capsys):
    from billing.cli import main

    warehouse = new_warehouse(tmp_path)
    add_events(warehouse, 2)
    receiver = receivers(mode="500")
    config = tmp_path / "billing.yaml"
    config.write_text(f"home: {tmp_path / 'home'}\nwarehouse: {{path: {tmp_path / 'w.duckdb'}}}\n"
                      f"webhooks:\n  - {{name: erp, url: '{receiver.url}', secret_env: HOOK_SECRET, max_attempts: 1}}\n")
    for var in ("BILLING_HOME", "BILLING_DUCKDB_PATH", "BILLING_ENGINE", "BILLING_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    assert main(["--config", str(config), "webhooks", "deliver", "--watch", "--interval", "0.1", "--for", "0.3"]) == 3
    out = capsys.readouterr().out
    assert "erp: invoice.issued msg_0001 (seq 1) attempt 1: failed: HTTP 500" in out
    assert out.count("DEAD invoice.issued msg_0001") == 1 and out.count("DEAD invoice.issued msg_0002") == 1
    assert SECRET not in out
    assert main(["--config", str(config), "webhooks", "status"]) == 3
    assert "erp (" in (out := capsys.readouterr().out) and "0 delivered, 0 pending, 2 dead" in out
    monkeypatch.delenv("HOOK_SECRET")
    assert main(["--config", str(config), "webhooks", "deliver"]) == 1
    assert "HOOK_SECRET (secret_env) is not set" in " ".join(capsys.readouterr().out.split())
