"""The review desk in a real browser: Playwright driving Debian's Chromium against the desk served by
uvicorn on 127.0.0.1, on the billed reference month. fiona (finance) approves C1, fay (the second
approver its total needs) approves and issues it, downloads the PDF and sees the number; sam (sales)
finds no issue button; ada (auditor) reads the verified action log. A screenshot of each page is saved under the test's tmp folder."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")


def _need_chromium() -> None:
    if CHROMIUM.is_file():
        return
    reason = f"{CHROMIUM} is missing: `apt-get install -y chromium` (.ci/run installs it in CI)"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    _need_chromium()
    import uvicorn

    from desk.app import create_app

    from desk_support import desk_month
    from support import new_home

    home = new_home(tmp_path_factory, "desk-browser")
    with desk_month(home) as settings:
        with socket.socket() as probe:  # a free port
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(create_app(settings, failure_delay=0), host="127.0.0.1", port=port,
                                               log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the desk did not start within 30 s"
            time.sleep(0.05)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(timeout=15)


def test_draft_to_issued_in_the_browser(served, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from desk_support import PASSWORDS

    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900}).new_page()
            page.set_default_timeout(60_000)  # a loaded machine; the issue renders a PDF

            def shot(name: str) -> None:
                page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

            def sign_in(person: str) -> None:
                page.goto(served + "/")
                expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
                page.fill("input[name=person_id]", person)
                page.fill("input[name=password]", PASSWORDS[person])
                page.click("button[type=submit]")
                expect(page.get_by_role("heading", name="Waiting for")).to_be_visible()

            def open_c1() -> None:
                page.click("text=Periods")
                page.click("text=2026-10")
                expect(page.get_by_role("heading", name="Period 2026-10")).to_be_visible()
                page.click("a:text-is('C1')")
                expect(page.get_by_role("heading", name="Northwind")).to_be_visible()

            page.goto(served + "/")
            shot("01-sign-in")
            sign_in("fiona")
            shot("02-waiting-fiona")
            page.click("text=Periods")
            page.click("text=2026-10")
            shot("03-period")
            page.click("a:text-is('C1')")
            shot("04-invoice-draft")
            page.fill("form[action$='/approve'] input[name=comment]", "usage checked against the contract")
            page.click("#approve")
            expect(page.locator(".notice")).to_contain_text("Approved.")
            expect(page.locator("body")).to_contain_text("two distinct approvers")  # fay still needed
            shot("05-approved-by-fiona")
            page.click("text=Sign out")
            expect(page.get_by_role("heading", name="Sign in")).to_be_visible()

            sign_in("fay")
            open_c1()
            page.click("#approve")
            expect(page.locator(".notice")).to_contain_text("Approved.")
            expect(page.locator("body")).to_contain_text("ready to issue")
            page.click("#issue")
            expect(page.locator("#invoice-number")).to_have_text("INV-2026-000001")
            shot("06-issued")
            with page.expect_download() as download:
                page.click("#pdf")
            pdf = tmp_path / "INV-2026-000001.pdf"
            download.value.save_as(pdf)
            assert pdf.read_bytes()[:5] == b"%PDF-"
            page.click("text=Sign out")

            sign_in("sam")
            shot("07-waiting-sam")
            open_c1()
            expect(page.locator("#invoice-number")).to_have_text("INV-2026-000001")
            page.goto(served + "/periods/2026-10/invoices/C5?currency=USD")  # a draft: still no issue button
            expect(page.get_by_text("Add a manual charge")).to_be_visible()
            assert page.locator("#issue").count() == 0 and page.locator("#approve").count() == 0
            shot("08-sales-no-issue-button")
            page.click("text=Sign out")

            sign_in("ada")  # the auditor reads the log, with its verification
            page.click("text=Action log")
            expect(page.locator("body")).to_contain_text("Audit chain verified")
            expect(page.locator("body")).to_contain_text("invoice.issued")
            shot("09-action-log-auditor")
        finally:
            browser.close()
    kept = os.environ.get("DESK_SCREENSHOTS")  # to look at them after the run
    if kept:
        shutil.copytree(shots, kept, dirs_exist_ok=True)
    assert len(list(shots.glob("*.png"))) == 9
