"""The review desk over HTTP, on the billed reference month: every action and every refusal (not
signed in, wrong role, missing or wrong CSRF token, the maker of a manual charge approving), and
hostile input (a <script> in a customer name and a comment, SQL in a filter, a cookie from before
sign-out)."""

from __future__ import annotations

import html
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from billing.cli import main
from desk.app import SESSION_COOKIE, create_app
from warehouse.store import open_warehouse

from desk_support import HOSTILE_NAME, csrf_of, desk_month, sign_in
from support import new_home, query

OCT = "/periods/2026-10"


@pytest.fixture(scope="module")
def desk(tmp_path_factory):
    home = new_home(tmp_path_factory, "desk")
    with desk_month(home) as settings:
        yield home, create_app(settings, failure_delay=0)


def client_of(desk, person: str | None = None) -> TestClient:
    client = TestClient(desk[1], follow_redirects=False)
    if person:
        assert sign_in(client, person).status_code == 303
    return client


def act(client: TestClient, path: str, **form):
    """POST a form of `path` with the CSRF token of the page it is on."""
    page = client.get(path.rsplit("/", 1)[0] if "/invoices/" in path and not path.startswith("/invoices/")
                      else "/")
    return client.post(path, data={"csrf": csrf_of(page.text), **form})


def shown_as_text(text: str, page: str) -> bool:
    """The page shows `text` (once its entities are decoded) and holds no <script> element at all."""
    return "<script" not in page and text in html.unescape(page) and "&lt;script&gt;" in page


def test_not_signed_in_is_sent_to_sign_in(desk):
    client = client_of(desk)
    for path in ("/", f"{OCT}", f"{OCT}/invoices/C5", "/log", "/documents/INV-2026-000001.pdf"):
        answer = client.get(path)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/sign-in?next=")
    answer = client.post(f"{OCT}/invoices/C5/approve", data={"csrf": "x"})
    assert answer.status_code == 303 and answer.headers["location"].startswith("/sign-in")
    assert "Sign in" in client.get("/sign-in").text


def test_sign_in_failures_are_refused_then_locked_out(desk):
    client = client_of(desk)
    answer = sign_in(client, "fiona", "not-her-password")
    assert answer.status_code == 401 and "wrong person or password" in answer.text
    for _ in range(5):
        answer = sign_in(client, "mallory", "guess-guess-guess")
    assert "wrong person or password" in answer.text
    answer = sign_in(client, "mallory", "guess-guess-guess")
    assert answer.status_code == 401 and "too many failed sign-ins for this person" in answer.text
    assert SESSION_COOKIE not in client.cookies
    ok = sign_in(client, "fiona")  # her one failure does not lock her out
    assert ok.status_code == 303 and client.cookies.get(SESSION_COOKIE)
    cookie = ok.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")
    page = client.get("/")
    assert "script-src 'none'" in page.headers["content-security-policy"] and page.headers["x-frame-options"] == "DENY"


def test_forms_without_the_right_csrf_token_are_refused(desk):
    fiona = client_of(desk, "fiona")
    for form in ({}, {"csrf": "forged"}):
        answer = fiona.post(f"{OCT}/invoices/C5/approve", data=form)
        assert answer.status_code == 403 and "CSRF" in answer.text
    assert query(desk[0], "SELECT count(*) FROM ledger.approvals")[0][0] == 0
    stranger = client_of(desk)
    stranger.get("/sign-in")
    answer = stranger.post("/sign-in", data={"person_id": "fiona", "password": "fiona-secret-password"})
    assert answer.status_code == 403 and "CSRF" in answer.text
    answer = fiona.post("/sign-out", data={"csrf": "forged"})
    assert answer.status_code == 403 and fiona.get("/").status_code == 200


def test_wrong_role_gets_403_naming_who_may(desk):
    sam, ada, carl = client_of(desk, "sam"), client_of(desk, "ada"), client_of(desk, "carl")
    answer = sam.get("/log")
    assert answer.status_code == 403
    assert "only finance or auditor may" in answer.text and "fiona (finance)" in answer.text
    answer = act(sam, f"{OCT}/invoices/C5/issue", currency="USD")
    assert answer.status_code == 403 and "fiona (finance), fay (finance)" in answer.text
    answer = act(ada, f"{OCT}/invoices/C5/approve", currency="USD")
    assert answer.status_code == 403 and "may not approve" in answer.text and "fiona (finance)" in answer.text
    answer = act(carl, f"{OCT}/invoices/C1/approve", currency="USD")
    assert answer.status_code == 403 and "not the CSM of C1" in answer.text
    answer = act(ada, f"{OCT}/invoices/C5/charge", currency="USD", amount="5.00", description="x", reason="y")
    assert answer.status_code == 403 and "may not add charges" in answer.text
    assert query(desk[0], "SELECT count(*) FROM ledger.approvals")[0][0] == 0
    assert query(desk[0], "SELECT count(*) FROM ledger.manual_lines")[0][0] == 0


def test_buttons_follow_the_role(desk):
    sam = client_of(desk, "sam").get(f"{OCT}/invoices/C1").text
    assert 'id="issue"' not in sam and 'id="approve"' not in sam and "Add a manual charge" in sam
    ada = client_of(desk, "ada").get(f"{OCT}/invoices/C1").text
    assert "<form method=\"post\" action=\"/periods" not in ada and "Lineage of" in ada
    fiona = client_of(desk, "fiona").get(f"{OCT}/invoices/C1").text
    assert 'id="issue"' in fiona and 'id="approve"' in fiona
    carl = client_of(desk, "carl")
    assert 'id="approve"' in carl.get(f"{OCT}/invoices/C2").text
    assert 'id="approve"' not in carl.get(f"{OCT}/invoices/C1").text


def test_waiting_for_me(desk):
    carl = client_of(desk, "carl").get("/").text
    assert "Globex" in carl and "Northwind" not in carl  # a CSM sees their customers
    fiona = client_of(desk, "fiona").get("/").text
    assert all(name in fiona for name in ("Northwind", "Globex", "Hooli", "Umbrella"))
    assert "<strong>approve</strong>" in fiona and "unrated usage" in fiona  # C4: approvable, not issuable
    assert "Nothing waits for you" in client_of(desk, "sam").get("/").text


def test_period_page_shows_states_totals_checks_and_what_blocks(desk):
    page = client_of(desk, "fiona").get(OCT)
    assert page.status_code == 200
    text = page.text
    assert "2,527.63" in text and "unrated usage" in text and "unrated_usage" in text
    assert "Totals per currency" in text and "EUR" in text
    assert client_of(desk, "fiona").get("/periods/2026-13").status_code == 404


def test_invoice_page_shows_each_line_as_billing_explain_does(desk):
    from billing.explain import explain_line, render
    from core.config import load_settings

    page = html.unescape(client_of(desk, "ada").get(f"{OCT}/invoices/C1").text)
    with open_warehouse(load_settings()).transaction() as tx:
        ids = [r[0] for r in tx.fetchall("SELECT line_id FROM marts.fct_invoice_lines WHERE period = '2026-10' "
                                         "AND billing_account_id = 'C1'")]
        assert ids
        for line_id in ids:
            assert "\n".join(render(explain_line(tx, line_id))) in page
    assert "source files:" in page and "sha256 " in page  # down to the files received


def test_approve_issue_download_credit_and_void(desk):
    fiona = client_of(desk, "fiona")
    answer = act(fiona, f"{OCT}/invoices/C5/approve", currency="USD", comment="checked the API volume")
    assert answer.status_code == 303
    page = fiona.get(answer.headers["location"]).text
    assert "Approved." in page and "checked the API volume" in page and "ready to issue" in page.lower()
    assert "You approved this draft" in page and 'id="approve"' not in page
    answer = act(fiona, f"{OCT}/invoices/C5/issue", currency="USD")
    assert answer.status_code == 303
    page = fiona.get(answer.headers["location"]).text
    assert 'id="invoice-number">INV-2026-000001<' in page and "invoice.issued" in page
    pdf = fiona.get("/documents/INV-2026-000001.pdf")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf" and pdf.content[:5] == b"%PDF-"
    lines = fiona.get(f"{OCT}/invoices/C5/lines.csv?currency=USD")
    assert lines.status_code == 200 and lines.text.startswith("invoice_number,line_number,")
    assert "INV-2026-000001,1," in lines.text
    answer = act(fiona, "/invoices/INV-2026-000001/credit", line_number="1", amount="10.00",
                 reason_code="product_unsatisfactory", comment="slow week")
    assert answer.status_code == 303 and "number=CN-2026-000001" in answer.headers["location"]
    answer = act(fiona, "/invoices/INV-2026-000001/credit", line_number="1", amount="100000.00",
                 reason_code="other")
    assert answer.status_code == 403 and "left to credit" in answer.text
    sam = client_of(desk, "sam")
    answer = act(sam, "/invoices/INV-2026-000001/void", reason="order_change")
    assert answer.status_code == 403 and "only finance may" in answer.text
    answer = act(fiona, "/invoices/INV-2026-000001/void", reason="order_change")
    assert answer.status_code == 303
    page = fiona.get(answer.headers["location"]).text
    assert "Voided." in page and "void by fiona: order_change" in page
    [(channel,)] = query(desk[0], "SELECT DISTINCT channel FROM ledger.actions WHERE action = 'invoice.voided'")
    assert channel == "web"


def test_reject_shows_a_script_comment_and_a_script_name_as_text(desk):
    fiona = client_of(desk, "fiona")
    comment = "<script>alert('comment')</script> fix the SMS volume"
    answer = act(fiona, f"{OCT}/invoices/C3/reject", currency="USD", comment=comment)
    assert answer.status_code == 303
    page = fiona.get(answer.headers["location"]).text
    assert shown_as_text(comment, page) and shown_as_text(HOSTILE_NAME, page)
    assert shown_as_text(HOSTILE_NAME, fiona.get(OCT).text)
    answer = act(fiona, f"{OCT}/invoices/C3/reject", currency="USD", comment="  ")
    assert answer.status_code == 403 and "needs a comment" in answer.text


def test_a_charge_re_rates_and_its_maker_cannot_approve(desk):
    fiona = client_of(desk, "fiona")
    answer = act(fiona, f"{OCT}/invoices/C3/charge", currency="USD", amount="300.00",
                 description="Onboarding workshop", reason="agreed in the kickoff call")
    assert answer.status_code == 303
    page = fiona.get(answer.headers["location"]).text
    assert "Onboarding workshop" in page and "2,238.71" in page and "manual" in page
    answer = act(fiona, f"{OCT}/invoices/C3/approve", currency="USD")
    assert answer.status_code == 403
    assert "fiona (finance) added a manual charge" in answer.text and "fay (finance)" in answer.text
    assert another_process_can_open(desk[0])  # the re-rating let go of the DuckDB file


def test_an_override_by_sales_reprices_the_product(desk):
    sam = client_of(desk, "sam")
    before = query(desk[0], "SELECT total FROM marts.fct_invoices WHERE period = '2026-10' AND billing_account_id = 'C1'")
    answer = act(sam, f"{OCT}/invoices/C1/override", currency="USD", product_id="API_CALLS", unit_price="0.0001",
                 reason="pilot discount")
    assert answer.status_code == 303
    page = sam.get(answer.headers["location"]).text
    assert "Price override added" in page and '<td class="id">manual:' in page  # the line names its override
    after = query(desk[0], "SELECT total FROM marts.fct_invoices WHERE period = '2026-10' AND billing_account_id = 'C1'")
    assert after[0][0] < before[0][0]
    assert "pilot discount" in page  # the reason, in the invoice's action log


def test_log_filters_take_sql_as_text_and_show_the_verification(desk):
    ada = client_of(desk, "ada")
    page = ada.get("/log").text
    assert "Audit chain verified" in page and "invoice.issued" in page
    total = query(desk[0], "SELECT count(*) FROM ledger.actions")[0][0]
    assert ada.get("/log", params={"action": "invoice.voided"}).text.count("<td>invoice.voided</td>") == 1
    assert "INV-2026-000001" in ada.get("/log", params={"document": "INV-2026"}).text
    for hostile in ("' OR '1'='1", "x'); DROP TABLE ledger.actions; --", "fiona' --"):
        answer = ada.get("/log", params={"person": hostile, "document": hostile})
        assert answer.status_code == 200 and "No entries match" in answer.text
    assert query(desk[0], "SELECT count(*) FROM ledger.actions")[0][0] == total
    assert "Audit chain verified" in ada.get("/log").text


def test_a_cookie_from_before_sign_out_is_refused(desk):
    fiona = client_of(desk, "fiona")
    old = fiona.cookies.get(SESSION_COOKIE)
    page = fiona.get("/")
    answer = fiona.post("/sign-out", data={"csrf": csrf_of(page.text)})
    assert answer.status_code == 303 and answer.headers["location"] == "/sign-in"
    replay = client_of(desk)
    replay.cookies.set(SESSION_COOKIE, old)
    answer = replay.get("/")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/sign-in")


def test_set_password_command(desk, monkeypatch, capsys):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("a-new-long-password\n"))
    assert main(["people", "set-password", "fay", "--password-stdin"]) == 0
    assert client_of(desk).post  # the new password signs in, the old one no longer
    client = client_of(desk)
    assert sign_in(client, "fay", "a-new-long-password").status_code == 303
    assert sign_in(client_of(desk), "fay", "fay-secret-password").status_code == 401
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["people", "set-password", "fay", "--password-stdin"]) == 1
    assert main(["people", "set-password", "nobody", "--password-stdin"]) == 1
    assert "not in the people file" in capsys.readouterr().err
    [(hashed,)] = query(desk[0], "SELECT password_hash FROM ledger.credentials WHERE person_id = 'fay' "
                                 "ORDER BY set_at DESC LIMIT 1")
    assert hashed.startswith("$argon2") and "a-new-long-password" not in hashed


def another_process_can_open(home) -> bool:
    probe = subprocess.run([sys.executable, "-c", "import duckdb, sys; duckdb.connect(sys.argv[1]).close()",
                            str(home / "warehouse.duckdb")], capture_output=True, text=True, timeout=120)
    return probe.returncode == 0


def test_a_busy_warehouse_is_a_clear_503(desk):
    fiona = client_of(desk, "fiona")
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
                               "print('holding', flush=True); time.sleep(60)", str(desk[0] / "warehouse.duckdb")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"  # another process holds the DuckDB file
        answer = fiona.get(OCT)
        assert answer.status_code == 503 and "The warehouse is busy" in answer.text
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert fiona.get(OCT).status_code == 200
