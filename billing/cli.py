"""`billing`: run a billing month from the command line, for people who schedule from elsewhere.

    billing run --month 2026-10        collect, normalize, load the catalog, rate, check
                [--expectations]       ... and run the Great Expectations suites (about 8 s more)
                [--force]              ... rate and check even when nothing changed since the last run
    billing upload FILE [--source S]   drop a file into the upload inbox (landed on the next run)
    billing demo [--events N] [--expectations]  generate the demo dataset and bill its last month
    billing explain LINE_ID [--events] why a line's amount is what it is: rate, tiers, usage, files
    billing webhooks deliver|status    deliver the ledger's events to the webhook endpoints
    billing serve [--host H --port P]  the review desk in the browser (README: Review desk)
    billing people set-password PERSON a person's desk password (argon2 hash in the warehouse)

Where the catalog, the inbox and the warehouse are: billing.yaml or the environment (docs/config.md).

Exit status: 0 done (`run`: billed, and every blocking check passed); 1 an error stopped it;
2 wrong use (bad arguments, an unknown upload source, a demo home the demo did not make);
3 billed, but a blocking check failed (the checks marked FAILED; their findings are in
marts.quality_findings): the month's invoices are in the marts, and the findings must be
resolved before they are issued.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from core.config import Settings, load_settings
from core.money import round_money
from core.periods import month_window
from desk import cli as desk_cli
from warehouse.store import open_warehouse

from . import lifecycle_cli, month_inputs, runner, webhooks_cli

# Markup only in the CLI's own words: user data (ids, names, paths, error texts) is printed as rich Text,
# never parsed as markup; no highlighting (its regexes take minutes on a long value) and no emoji codes
# (`account:X:FEE:1` would print as `account❌FEE:1`).
console = Console(highlight=False, emoji=False)

EXIT_ERROR = 1  # an error stopped the command
EXIT_REFUSED = 2  # wrong use: an unknown upload source, a demo home the demo did not make (argparse: 2 too)
EXIT_BLOCKED = 3  # billed, but a blocking check failed: the month cannot be issued as it is

# What is printed is cut, the full text stays in the tables (marts.quality_findings, raw.landed_files, ...):
WORD_CHARS = 200  # a run of characters without a space (an id, a value) longer than this
SHOWN_CHARS = 2_000  # a summary or message longer than this
ERROR_CHARS = 4_000  # an error message longer than this
_LONG_WORD = re.compile(rf"\S{{{WORD_CHARS + 1},}}")


def _cut(text: str, limit: int) -> str:
    return f"{text[:limit]}... ({len(text) - limit:,} more characters)"


def clip(text: object, limit: int = SHOWN_CHARS) -> str:
    """`text` as a string with each very long word and the whole cut, saying how much was cut."""
    text = _LONG_WORD.sub(lambda word: _cut(word.group(), WORD_CHARS), str(text))
    return text if len(text) <= limit else _cut(text, limit)


def _print(*parts: str | tuple[str, str], limit: int = SHOWN_CHARS, **options) -> None:
    """One line from plain strings (printed as they are, cut past `limit` characters) and (words, style) pairs."""
    console.print(Text.assemble(*(part if isinstance(part, tuple) else clip(part, limit) for part in parts)),
                  **options)


def _say(message: str) -> None:
    _print("  ", message)


def _stage(name: str):
    """Show a spinner while a stage runs; print its duration when done."""

    class _Stage:
        def __enter__(self):
            self.start = time.perf_counter()
            self.status = console.status(Text.assemble((clip(name), "bold"), " ..."))
            self.status.__enter__()
            return self

        def __exit__(self, *exc):
            self.status.__exit__(*exc)
            mark = ("✓", "green") if exc[0] is None else ("✗", "red")
            _print(mark, " ", name, f" ({time.perf_counter() - self.start:.1f}s)")
            return False

    return _Stage()


def blocking_failures(outcomes) -> list:
    """The checks that failed and block finalization (quality.checks.CheckOutcome's)."""
    return [o for o in outcomes if o.blocking and not o.passed]


def run_month(settings: Settings, month: str, expectations: bool = False, force: bool = False) -> int:
    """Bill one month end to end; returns the exit status: 0, or EXIT_BLOCKED when a blocking check failed
    (the latest rating run's checks, when nothing changed since: see `bill_month`).

    With `expectations`, the Great Expectations suites run after the checks, under the same run id."""
    blocked = blocking_failures(bill_month(settings, month, expectations, force))
    if blocked:
        _print(("exit status 3", "red"), ": billed, but blocking check(s) failed: ",
               ", ".join(o.name for o in blocked), "; resolve their findings before issuing the month's invoices")
        return EXIT_BLOCKED
    return 0


def bill_month(settings: Settings, month: str, expectations: bool = False, force: bool = False) -> list:
    """Bill one month end to end and print the summary; returns every check's outcome (and the suites').

    The stages are billing/runner.py's, the ones the Dagster jobs run: collect_sources (catalog, collect,
    normalize), then billing_month (compare inputs, rate, check and record the rating run). After
    collecting and normalizing, the month's inputs (billing/month_inputs.py) are compared with those of
    its latest rating run: when none changed, rating and checking are skipped (unless `force`) and that
    run's outcomes are returned. With DAGSTER_HOME set, the month is then reported to that Dagster
    instance (pipelines/report.py)."""
    import uuid

    period = month_window(month)
    run_id = uuid.uuid4().hex  # of the findings and of the kept validation results
    _print("Billing ", (period.key, "bold"), " into ", open_warehouse(settings).describe())
    with _stage("prepare warehouse"):
        warehouse = runner.prepare(settings)
    with _stage(f"load catalog {settings.catalog}"):
        catalog = runner.load_catalog_stage(settings, warehouse)
    _say(f"catalog sha256 {catalog.sha256}" + (f" loaded (was {catalog.previous_sha256 or 'none'})" if catalog.changed
                                               else " (unchanged: the warehouse already holds it)"))
    with _stage("collect sources"):
        landed = runner.collect(settings, warehouse, _say)
    with _stage("normalize"):
        loads = runner.normalize(settings, warehouse, _say)
    with _stage("compare inputs"):
        inputs = runner.inputs_unchanged(settings, warehouse, period)
    if inputs.unchanged and not force:
        _print((inputs.describe(), "green"), "; not rated or checked again, the findings "
               "and exit status are that run's (--force rates and checks again)")
        outcomes = month_inputs.stored_outcomes(warehouse, inputs.previous)
    else:
        if inputs.previous is not None:
            _say(inputs.describe())
        with _stage("rate (dbt build)"):
            rerating = runner.start_rerating(warehouse, period)  # the checks' re-rating, beside dbt
            runner.rate(settings, period)
        with _stage("check"):
            outcomes = runner.check_month(settings, warehouse, period, run_id, inputs=inputs.inputs,
                                          prerated=runner.rerating_made(rerating))
    suites = None
    if expectations:
        with _stage("expectations (Great Expectations suites)"):
            suites = runner.expectations(settings, warehouse, period, run_id)
    summarize(settings, warehouse, period, landed, loads, outcomes, suites, run_id)
    checked = [*outcomes, *(done.outcome for done in suites or [])]
    report_to_dagster(settings, period, run_id, checked)
    return checked


def report_to_dagster(settings: Settings, period, run_id: str, outcomes: list) -> None:
    """With DAGSTER_HOME set, report the billed month to that Dagster instance, so its UI shows it."""
    import os

    if not os.environ.get("DAGSTER_HOME"):
        return
    import dagster as dg

    from collectors.sources import load_sources
    from pipelines.report import report_month

    with dg.DagsterInstance.get() as instance:
        count = report_month(instance, settings, period, run_id, list(load_sources(settings.sources)), outcomes)
    _print(f"reported to Dagster ({os.environ['DAGSTER_HOME']}): {count} asset materialization(s) and "
           f"{len(outcomes)} check evaluation(s) of {period.key}, tagged billing/run_id={run_id}")


def summarize(settings, warehouse, period, landed, loads, outcomes, suites=None, run_id=None) -> None:
    """Print the month's invoices, each check's outcome and where its findings are. `suites` holds the
    Great Expectations checks (quality.expectations.ExpectationCheck) when they ran, else None."""
    with warehouse.transaction() as tx:
        per_currency = tx.fetchall(
            "SELECT currency, COUNT(*), SUM(total), SUM(CASE WHEN is_finalizable THEN 0 ELSE 1 END) "
            "FROM marts.fct_invoices WHERE period = ? GROUP BY currency ORDER BY currency", [period.key])
        quarantined = tx.fetchall("SELECT COUNT(*) FROM raw.quarantine")[0][0]
    table = Table(title=f"Invoices for {period.key}")
    for column in ("currency", "invoices", "total", "not finalizable"):
        table.add_column(column, justify="right" if column != "currency" else "left")
    for currency, count, total, blocked in per_currency:
        table.add_row(*(Text(clip(cell)) for cell in (currency, str(count), f"{round_money(total, currency):,}",
                                                       str(blocked))))
    console.print(table)
    customers = sum(row[1] for row in per_currency)
    _print(f"customers invoiced: {customers}; files received this run: {len(landed)} "
           f"({sum(1 for item in landed if item.is_new)} new); events loaded this run: "
           f"{sum(item.rows_loaded for item in loads)}; rows in quarantine: {quarantined}")
    for rejected in (load for load in loads if load.status == "rejected"):
        _print(("file rejected", "red"), ": ", rejected.original_name, f" (source {rejected.source}): ",
               rejected.error or "")
    outcomes = [*outcomes, *(done.outcome for done in suites or [])]
    for outcome in outcomes:
        mark = (("passed", "green") if outcome.passed else ("FAILED", "red") if outcome.blocking
                else ("WARNING", "yellow"))
        _print("check ", outcome.name, ": ", mark, " - ", outcome.summary)
    passed = sum(1 for o in outcomes if o.passed)
    warned = sum(1 for o in outcomes if not o.passed and not o.blocking)
    _print(f"checks: {passed} passed, {len(outcomes) - passed - warned} failed"
           + (f", {warned} with warnings" if warned else ""))
    if suites is None:
        _print("expectations: not run (add --expectations to run the Great Expectations suites)")
    else:
        from quality.expectations import validations_dir

        for result in (r for done in suites for r in done.results):
            mark = ("passed", "green") if result.success else ("FAILED", "red")
            failed = f", {len(result.failures)} failed" if result.failures else ""
            _print("suite ", result.suite, ": ", mark, f" - {result.evaluated} expectations{failed} on "
                   f"{result.rows} row(s) of {result.table}")
        _print("validation results (<suite>.json, <suite>.html): ",
               (str(validations_dir(settings.home, period.key, run_id)), ""), soft_wrap=True)  # whole
    with warehouse.transaction() as tx:
        findings = tx.fetchall("SELECT COUNT(*) FROM marts.quality_findings WHERE period = ?", [period.key])[0][0]
    _print(f"findings: {findings} row(s) in marts.quality_findings for {period.key}")
    _print("warehouse: ", warehouse.describe())
    # soft_wrap: the queries stay on one line, ready to copy
    _print("try: ", ("SELECT i.billing_account_id, c.customer_name, i.currency, i.total, i.is_finalizable "
                     "FROM marts.fct_invoices i JOIN marts.dim_customers c ON c.customer_id = i.billing_account_id "
                     f"WHERE i.period = '{period.key}' ORDER BY i.total DESC;", "cyan"),
           soft_wrap=True)
    _print("and: ", ("SELECT check_name, severity, customer_id, line_id, file_id, detail "
                     f"FROM marts.quality_findings WHERE period = '{period.key}' ORDER BY check_name, customer_id;",
                     "cyan"), soft_wrap=True)


def upload(settings: Settings, file: Path, source_name: str) -> int:
    """Copy a file into the inbox of an upload source; the next run (or the inbox sensor) lands it."""
    from collectors.sources import load_sources
    from collectors.upload import deliver, inboxes_of

    sources = load_sources(settings.sources)
    source = sources.get(source_name)
    uploads = ", ".join(name for name, s in sources.items() if s.kind == "upload")
    if source is None or source.kind != "upload":
        why = "is not defined" if source is None else f"is a {source.kind} source"
        _print((f"source '{clip(source_name)}' {why}", "red"), "; upload sources: ", uploads)
        return EXIT_REFUSED
    inboxes = inboxes_of(settings, source)
    if not inboxes:
        _print((f"source '{clip(source_name)}' has no inbox", "red"), ": give it connection.inbox in ",
               str(settings.sources), " (docs/sources.md)")
        return EXIT_REFUSED
    target = deliver(file, inboxes[0], max_bytes=source.connection.max_bytes)
    _print(str(file), " -> ", str(target), " (source '", source_name, "'); it is landed by the next run")
    return 0


def demo(settings: Settings, events: int, customers: int, expectations: bool = False) -> int:
    from demo.dataset import DemoHomeRefused, generate_demo, prepare_home

    home = settings.home
    try:
        prepare_home(home)  # a home the demo did not make is refused, never cleared
    except DemoHomeRefused as exc:
        console.print(Text.assemble(("demo refused: ", "red"), str(exc)))
        return EXIT_REFUSED
    summary = generate_demo(home, customers=customers, events=events)
    console.print(summary.describe(), markup=False, highlight=False)
    month = summary.months[-1]
    blocked = blocking_failures(bill_month(settings, month, expectations))
    found, unplanted, missed = planted_or_not(blocked, summary.planted_blocking_findings())
    if unplanted:
        _print(("exit status 3", "red"), ": blocking finding(s) the demo did not plant: ",
               "; ".join(f"{check} {who or '(no customer)'}" for check, who in unplanted))
        return EXIT_BLOCKED
    if missed:
        _print(("error", "red"), ": the checks missed finding(s) the demo planted: ",
               "; ".join(f"{check} {who}" for check, who in missed))
        return EXIT_ERROR
    if found:
        _print(f"the only blocking findings of {month} are the demo's planted ones (",
               ", ".join(f"{check} {who}" for check, who in found),
               "): `billing run` exits 3 on this month, the demo 0. The other planted rows are in "
               "raw.quarantine / raw.duplicates / raw.file_receipts")
    _print(f"next, the invoice lifecycle (docs/lifecycle.md; people in {home / 'people.yaml'}): "
           f"billing invoices list --month {month}; billing invoices approve --month {month} --account ACCOUNT "
           f"--as fiona; billing invoices issue --month {month} --as fiona; billing export --month {month}")
    from desk.auth import give_passwords
    from ledger.people import load_people

    passwords = give_passwords(open_warehouse(settings), list(load_people(home / "people.yaml")))
    _print("the review desk (`make serve`, then http://127.0.0.1:8000): sign in with these passwords, shown only "
           "this once (`billing people set-password PERSON` sets a new one):")
    for person_id, password in passwords.items():
        _print(f"  {person_id:<8} {password}")
    return 0


def planted_or_not(blocked, planted: frozenset[tuple[str, str]]) -> tuple[list, list, list]:
    """The demo knows the blocking findings it planted, as (check, customer): of the failed blocking checks'
    findings, returns (every one found, those not planted, planted ones not found), each sorted."""
    found = {(o.name, f.get("customer_id") or f.get("billing_account_id")) for o in blocked
             for f in (o.findings or [{}])}

    def ordered(pairs):
        return sorted(pairs, key=lambda pair: (pair[0], pair[1] or ""))

    return ordered(found), ordered(found - planted), ordered(planted - found)


def explain(settings: Settings, line_id: str, events: bool, limit: int) -> int:
    from .explain import explain_line, render

    with open_warehouse(settings).transaction() as tx:
        found = explain_line(tx, line_id, events=limit if events else None)
    if found is None:
        _print(("no invoice line ", "red"), (clip(line_id), "red"), " (line ids: marts.fct_invoice_lines.line_id)")
        return EXIT_ERROR
    for text in render(found):
        console.print(text, markup=False, highlight=False, soft_wrap=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="billing", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n")[-1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="billing.yaml to use (default: $BILLING_CONFIG or ./billing.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="bill one month end to end; exit status 3 when a blocking check failed",
                           epilog=__doc__.split("\n\n")[-1], formatter_class=argparse.RawDescriptionHelpFormatter)
    run_p.add_argument("--month", required=True, help="YYYY-MM, e.g. 2026-10")
    gx_help = ("also run the Great Expectations suites (docs/quality.md) and keep their results under "
               "$BILLING_HOME/quality/validations/; about 8 s more")
    run_p.add_argument("--expectations", action="store_true", help=gx_help)
    run_p.add_argument("--force", action="store_true",
                       help="rate and check even when nothing changed since the month's last rating run "
                            "(its events, catalog, code, ledger, settings: billing/month_inputs.py)")
    up_p = sub.add_parser("upload", help="put a usage file into the upload inbox")
    up_p.add_argument("file", type=Path)
    up_p.add_argument("--source", default="upload")
    demo_p = sub.add_parser("demo", help="generate the demo dataset under $BILLING_HOME and bill its last month; "
                                         "the home must be new, empty or made by an earlier demo (.billing-demo): "
                                         "the demo clears it, and refuses any other folder (exit status 2)")
    demo_p.add_argument("--events", type=int, default=60_000)
    demo_p.add_argument("--customers", type=int, default=240)
    demo_p.add_argument("--expectations", action="store_true", help=gx_help)
    ex_p = sub.add_parser("explain", help="trace one invoice line to its rate, tiers, usage and source files")
    ex_p.add_argument("line_id", help="marts.fct_invoice_lines.line_id")
    ex_p.add_argument("--events", action="store_true", help="also list the line's event ids")
    ex_p.add_argument("--limit", type=int, default=20, help="at most this many event ids (default 20)")
    webhooks_cli.add_arguments(sub.add_parser("webhooks", help="deliver the ledger's events to the webhook "
                                                               "endpoints (docs/webhooks.md)"))
    lifecycle_cli.add_parsers(sub)
    desk_cli.add_parsers(sub)
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
        handled = lifecycle_cli.dispatch(settings, args)
        if handled is None:
            handled = desk_cli.dispatch(settings, args)
        if handled is not None:
            return handled
        if args.command == "run":
            return run_month(settings, args.month, args.expectations, args.force)
        if args.command == "upload":
            return upload(settings, args.file, args.source)
        if args.command == "explain":
            return explain(settings, args.line_id, args.events, args.limit)
        if args.command == "webhooks":
            return webhooks_cli.main(settings, args)
        return demo(settings, args.events, args.customers, args.expectations)
    except Exception as exc:  # a clear one-line error for people; tracebacks with BILLING_DEBUG=1
        import os

        if os.environ.get("BILLING_DEBUG"):
            raise
        _print(("error:", "red"), " ", str(exc), limit=ERROR_CHARS)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
