"""The review desk's web app: `create_app(settings)` (FastAPI, Jinja2 templates, plain forms).

Every page and action checks the signed-in person on the server; every action goes through the
lifecycle functions (ledger/lifecycle.py), whose refusals say why and who may, so the desk adds no
rule of its own. A warehouse connection is opened per request and closed after it (DuckDB allows one
writing process: the desk never holds the file between requests).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

import duckdb
import jinja2
from fastapi import FastAPI, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from core.config import Settings
from core.money import round_money
from core.periods import month_window
from ledger.lifecycle import REASON_CODES, Lifecycle, NotFound
from ledger.people import Person, load_people
from ledger.policy import Refused, require_role
from warehouse.store import open_warehouse

from . import auth, pages
from .downloads import lines_csv
from .rerate import rerate

HERE = Path(__file__).parent
SESSION_COOKIE = "desk_session"
SIGN_IN_COOKIE = "desk_sign_in"  # the sign-in form's CSRF token (double submit: no session yet)
LOG_READERS = ("finance", "auditor")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'none'; frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
DONE = {"approved": "Approved.", "rejected": "Rejected.", "charged": "Manual charge added; the draft was re-rated.",
        "overridden": "Price override added; the draft was re-rated.", "issued": "Issued.", "voided": "Voided.",
        "credited": "Credit note issued."}


class SignInRequired(Exception):
    pass


class Forbidden(Exception):
    def __init__(self, message: str, status: int = 403):
        super().__init__(message)
        self.status = status


@dataclass
class Visit:
    """One signed-in request: who, their session, and the lifecycle on this request's warehouse."""

    person: Person
    session: auth.Session
    lifecycle: Lifecycle

    @property
    def warehouse(self):
        return self.lifecycle.warehouse


def create_app(settings: Settings, *, failure_delay: float = 1.0, secure_cookies: bool = False) -> FastAPI:
    """The desk for one configuration. `failure_delay`: seconds a failed sign-in waits before answering;
    `secure_cookies`: mark cookies Secure (behind HTTPS)."""
    open_warehouse(settings).ensure_schema()  # the desk's tables (ledger.credentials, sessions, ...)
    app = FastAPI(title="Billing review desk", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["money"] = _money
    env.filters["num"] = _num
    templates = Jinja2Templates(env=env)

    @app.middleware("http")
    async def headers(request: Request, call_next):
        response = await call_next(request)
        # no script runs on these pages, none is allowed; no framing (clickjacking); no caching of ledger data
        response.headers.update(SECURITY_HEADERS)
        return response

    def cookie(response: Response, name: str, value: str, max_age: int | None = None) -> None:
        response.set_cookie(name, value, max_age=max_age, httponly=True, samesite="lax", secure=secure_cookies,
                            path="/")

    def render(request: Request, name: str, status: int = 200, visit: Visit | None = None, **context):
        context.update(person=visit.person if visit else None, csrf=visit.session.csrf_token if visit else "")
        return templates.TemplateResponse(request, name, context, status_code=status)

    @contextmanager
    def visit(request: Request, *, hold: bool = True, csrf: str | None = None) -> Iterator[Visit]:
        """The signed-in person of this request (else a redirect to sign-in); `hold`: one connection for
        the whole request (pages); actions open their own per step. `csrf`: the form's token, checked."""
        warehouse = open_warehouse(settings)
        people = load_people(settings.lifecycle.people)
        with warehouse.session() if hold else nullcontext():
            with warehouse.transaction() as tx:
                session = auth.current_session(tx, request.cookies.get(SESSION_COOKIE))
            if session is None:
                raise SignInRequired()
            person = people.get(session.person_id)
            if person is None:
                raise Forbidden(f"{session.person_id} is no longer in the people file: sign out")
            if csrf is not None and not auth.same_token(csrf, session.csrf_token):
                raise Forbidden("this form's security token is missing or out of date (CSRF check): "
                                "go back, reload the page and try again")
            yield Visit(person, session, Lifecycle(settings, channel="web", warehouse=warehouse, people=people))

    def require(v: Visit, roles: tuple[str, ...], what: str) -> None:
        try:
            require_role(v.person, roles, what, v.lifecycle.people)
        except Refused as exc:
            raise Forbidden(str(exc)) from None

    # -- errors ----------------------------------------------------------------------------------------
    @app.exception_handler(SignInRequired)
    def _sign_in(request: Request, exc: SignInRequired):
        target = request.url.path if request.method == "GET" else "/"
        return RedirectResponse("/sign-in?" + urlencode({"next": target}), status_code=303)

    @app.exception_handler(Forbidden)
    def _forbidden(request: Request, exc: Forbidden):
        return render(request, "error.html", exc.status, title="Not allowed", message=str(exc))

    @app.exception_handler(Refused)
    def _refused(request: Request, exc: Refused):
        return render(request, "error.html", 403, title="Refused", message=str(exc))

    @app.exception_handler(duckdb.IOException)
    def _busy(request: Request, exc: duckdb.IOException):
        # another process (a `billing run`, the Dagster UI) holds the DuckDB file for the moment
        return render(request, "error.html", 503, title="The warehouse is busy",
                      message=f"another process is using the warehouse ({exc}); try again in a moment")

    @app.exception_handler(NotFound)
    def _not_found(request: Request, exc: NotFound):
        return render(request, "error.html", 404, title="Not found", message=str(exc))

    # -- sign-in ---------------------------------------------------------------------------------------
    @app.get("/sign-in", response_class=HTMLResponse)
    def sign_in_page(request: Request, next: str = "/"):
        token = request.cookies.get(SIGN_IN_COOKIE) or auth.new_token()
        response = render(request, "sign_in.html", sign_in_csrf=token, next=_local(next), error=None, person_id="")
        cookie(response, SIGN_IN_COOKIE, token)
        return response

    @app.post("/sign-in")
    def sign_in(request: Request, person_id: str = Form(""), password: str = Form(""), csrf: str = Form(""),
                next: str = Form("/")):
        token = request.cookies.get(SIGN_IN_COOKIE)
        if not auth.same_token(csrf, token):
            raise Forbidden("the sign-in form's security token is missing or out of date (CSRF check): "
                            "reload the sign-in page and try again")
        people = load_people(settings.lifecycle.people)
        person_id = person_id.strip()
        client = request.client.host if request.client else None
        try:
            session_id, _ = auth.sign_in(open_warehouse(settings), person_id, password, client, person_id in people)
        except auth.SignInRefused as exc:
            time.sleep(failure_delay)  # bounded: each failure waits, many lock the person out for a while
            return render(request, "sign_in.html", 401, sign_in_csrf=token, next=_local(next), error=str(exc),
                          person_id=person_id)
        response = RedirectResponse(_local(next), status_code=303)
        cookie(response, SESSION_COOKIE, session_id, max_age=auth.SESSION_HOURS * 3600)
        response.delete_cookie(SIGN_IN_COOKIE, path="/")
        return response

    @app.post("/sign-out")
    def sign_out(request: Request, csrf: str = Form("")):
        with visit(request, hold=False, csrf=csrf) as v:
            auth.sign_out(v.warehouse, v.session)
        response = RedirectResponse("/sign-in", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # -- pages -----------------------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse)
    def home(request: Request):
        with visit(request) as v:
            with v.warehouse.transaction() as tx:
                open_periods = pages.open_periods(tx)
            waiting = pages.waiting_for(v.lifecycle, v.person, open_periods)
            return render(request, "waiting.html", visit=v, waiting=waiting, open_periods=open_periods)

    @app.get("/periods", response_class=HTMLResponse)
    def periods(request: Request):
        with visit(request) as v:
            with v.warehouse.transaction() as tx:
                found = pages.periods(tx)
            return render(request, "periods.html", visit=v, periods=found)

    @app.get("/periods/{period}", response_class=HTMLResponse)
    def period_page(request: Request, period: str):
        period = _period(period)
        with visit(request) as v:
            view = pages.period_view(v.lifecycle, period)
            return render(request, "period.html", visit=v, view=view)

    @app.get("/periods/{period}/invoices/{account}", response_class=HTMLResponse)
    def invoice_page(request: Request, period: str, account: str, currency: str | None = None,
                     done: str | None = None, number: str | None = None):
        period = _period(period)
        with visit(request) as v:
            view = pages.invoice_view(v.lifecycle, v.person, period, account, currency)
            return render(request, "invoice.html", visit=v, view=view, done=DONE.get(done or ""), number=number,
                          reason_codes=REASON_CODES)

    @app.get("/periods/{period}/invoices/{account}/lines.csv")
    def invoice_csv(request: Request, period: str, account: str, currency: str | None = None):
        period = _period(period)
        with visit(request) as v:
            status = pages.one_status(v.lifecycle, period, account, currency)
            with v.warehouse.transaction() as tx:
                text = lines_csv(tx, status)
            draft = status.draft
            name = f"{draft.invoice_number or 'draft-' + draft.billing_account_id + '-' + period}-lines.csv"
            return Response(text, media_type="text/csv; charset=utf-8",
                            headers={"Content-Disposition": f'attachment; filename="{_safe(name)}"'})

    @app.get("/documents/{number}.pdf")
    def document(request: Request, number: str):
        with visit(request) as v:
            with v.warehouse.transaction() as tx:
                path = pages.document_path(tx, number)
        if path is None or not Path(path).is_file():
            raise NotFound(f"no stored PDF of {number}")
        return FileResponse(path, media_type="application/pdf", filename=f"{_safe(number)}.pdf")

    @app.get("/log", response_class=HTMLResponse)
    def log(request: Request, action: str = "", person: str = "", document: str = ""):
        with visit(request) as v:
            require(v, LOG_READERS, "read the action log")
            with v.warehouse.transaction() as tx:
                entries = pages.action_log(tx, action.strip(), person.strip(), document.strip())
                actions = pages.log_actions(tx)
                checked = pages.verify_log(tx)
            return render(request, "log.html", visit=v, entries=entries, actions=actions, checked=checked,
                          filters={"action": action, "person": person, "document": document},
                          people=sorted(v.lifecycle.people))

    # -- actions ---------------------------------------------------------------------------------------
    def back(period: str, account: str, currency: str, done: str, number: str | None = None) -> RedirectResponse:
        query = {"currency": currency, "done": done} if currency else {"done": done}
        if number:
            query["number"] = number
        return RedirectResponse(f"/periods/{quote(period)}/invoices/{quote(account, safe='')}?{urlencode(query)}",
                                status_code=303)

    @app.post("/periods/{period}/invoices/{account}/{action}")
    def act(request: Request, period: str, account: str, action: str, csrf: str = Form(""),
            currency: str = Form(""), comment: str = Form(""), amount: str = Form(""), description: str = Form(""),
            reason: str = Form(""), product_id: str = Form(""), unit_price: str = Form("")):
        period = _period(period)
        currency = currency.strip() or None
        with visit(request, hold=False, csrf=csrf) as v:
            lc, who = v.lifecycle, v.person.person_id
            if action == "approve":
                lc.approve(who, period, account, currency, comment=comment.strip() or None)
                return back(period, account, currency, "approved")
            if action == "reject":
                lc.reject(who, period, account, comment, currency=currency)
                return back(period, account, currency, "rejected")
            if action in ("charge", "override"):
                if action == "charge":
                    lc.add_charge(who, period, account, amount.strip(), description.strip(), reason, currency)
                else:
                    lc.add_override(who, period, account, product_id.strip(), unit_price.strip(), reason, currency)
                rerate(settings, period)  # the draft shows the new line at once (approvals of the old one lapse)
                return back(period, account, currency, "charged" if action == "charge" else "overridden")
            if action == "issue":
                issued = lc.issue(who, period, account, currency)
                return back(period, account, currency, "issued", issued.invoice_number)
        raise NotFound(f"no action {action!r} (approve, reject, charge, override, issue)")

    @app.post("/invoices/{number}/{action}")
    def correct(request: Request, number: str, action: str, csrf: str = Form(""), reason: str = Form(""),
                line_number: str = Form(""), reason_code: str = Form(""), amount: str = Form(""),
                quantity: str = Form(""), comment: str = Form("")):
        with visit(request, hold=False, csrf=csrf) as v:
            lc, who = v.lifecycle, v.person.person_id
            with v.warehouse.transaction() as tx:
                invoice = pages.issued_invoice(tx, number)
            where = (invoice["period"], invoice["billing_account_id"], invoice["currency"])
            if action == "void":
                lc.void(who, number, reason)
                return back(*where, "voided")
            if action == "credit":
                if not line_number.strip().isdigit():
                    raise Refused("say which line of the invoice to credit (its line number)")
                credit = lc.credit_note(who, number, int(line_number), reason_code, amount=amount.strip() or None,
                                        quantity=quantity.strip() or None, comment=comment.strip() or None)
                return back(*where, "credited", credit)
        raise NotFound(f"no action {action!r} (void, credit)")

    return app


def _period(text: str) -> str:
    try:
        return month_window(text).key
    except ValueError as exc:
        raise NotFound(str(exc)) from None


def _local(target: str) -> str:
    """Only a path of this site to go to after signing in (never another host)."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _money(value, currency: str) -> str:
    if value is None:
        return ""
    try:
        return f"{round_money(value, currency):,}"
    except ValueError:
        return str(value)


def _num(value) -> str:
    if value is None:
        return ""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text
