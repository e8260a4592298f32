"""The review desk on PostgreSQL (a database of its own): sign in, approve, issue, download the PDF,
the action log with its verification and a filter, sign out."""

from __future__ import annotations

from fastapi.testclient import TestClient
from scenario import own_postgres_database

from desk.app import SESSION_COOKIE, create_app

from desk_support import csrf_of, desk_month, sign_in
from support import new_home


def test_the_desk_on_postgres(tmp_path_factory):
    with own_postgres_database("desk") as dsn, desk_month(new_home(tmp_path_factory, "desk-pg"), dsn) as settings:
        assert settings.engine == "postgres"
        fiona = TestClient(create_app(settings, failure_delay=0), follow_redirects=False)
        assert sign_in(fiona, "fiona", "wrong-password").status_code == 401
        assert sign_in(fiona, "fiona").status_code == 303
        invoice = "/periods/2026-10/invoices/C5"
        page = fiona.get(invoice)
        assert page.status_code == 200 and "Hooli" in page.text
        assert fiona.post(f"{invoice}/approve", data={"csrf": csrf_of(page.text), "currency": "USD"}).status_code == 303
        answer = fiona.post(f"{invoice}/issue", data={"csrf": csrf_of(page.text), "currency": "USD"})
        assert answer.status_code == 303 and "number=INV-2026-000001" in answer.headers["location"]
        assert 'id="invoice-number">INV-2026-000001<' in fiona.get(answer.headers["location"]).text
        assert fiona.get("/documents/INV-2026-000001.pdf").content[:5] == b"%PDF-"
        assert "2,527.63" in fiona.get("/periods/2026-10").text
        log = fiona.get("/log", params={"document": "INV-2026", "person": "fiona"}).text
        assert "Audit chain verified" in log and "invoice.issued" in log
        assert "No entries match" in fiona.get("/log", params={"person": "' OR 1=1 --"}).text
        old = fiona.cookies.get(SESSION_COOKIE)
        assert fiona.post("/sign-out", data={"csrf": csrf_of(page.text)}).status_code == 303
        replay = TestClient(fiona.app, follow_redirects=False)
        replay.cookies.set(SESSION_COOKIE, old)
        assert replay.get("/").headers["location"].startswith("/sign-in")
