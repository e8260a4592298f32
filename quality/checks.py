"""Checks on a rated period, as plain functions over the warehouse (no Dagster here).

Each returns a `CheckOutcome` that names the customers or lines at fault, not only a count.
Dagster wraps them as asset checks (pipelines/checks.py); `billing run` prints them.
"""

from __future__ import annotations

import functools
import re
import weakref
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import polars as pl

from catalog.model import Catalog
from catalog.read import catalog_receipt, catalog_sha256, read_from_warehouse
from core.config import Settings
from core.money import MONEY, round_money
from core.periods import Period, add_months, around_midnight, instant, month_window
from normalize.load import CONFLICT_MARK
from warehouse.store import Tx, Warehouse

from .findings import CheckOutcome, write_findings
from .rerate import AmountDoesNotFit, Rerated, rerate_warehouse

MARTS = "marts"


def _rows(tx: Tx, sql: str, params: list) -> list[dict]:
    frame = tx.frame(sql, params)
    return [{k: (str(v) if v is not None else None) for k, v in row.items()} for row in frame.iter_rows(named=True)]


def _money_text(value: str | None, currency: str | None) -> str | None:
    """A stored amount (4 places, for every currency) written with its currency's places: 16.5100 -> 16.51."""
    if value is None or currency is None:
        return value
    try:
        rounded = round_money(Decimal(value), currency)
    except ValueError:  # a currency the money rules do not know: as stored
        return value
    return str(rounded) if rounded == Decimal(value) else value  # never hide a difference


def unrated_usage(tx: Tx, period: Period, catalog: Catalog | None = None) -> CheckOutcome:
    """Usage with no price, for an unknown customer or an unknown product: blocks the invoices it touches."""
    rows = _rows(tx, f"SELECT reason, customer_id, billing_account_id, product_id, currency, quantity, detail "
                     f"FROM {MARTS}.fct_unrated_usage WHERE period = ? ORDER BY reason, customer_id, product_id",
                 [period.key])
    summary = "no unrated usage" if not rows else f"{len(rows)} unrated usage group(s): " + "; ".join(
        r["detail"] for r in rows[:5])
    return CheckOutcome("unrated_usage", not rows, True, summary, rows)


def missed_customers(tx: Tx, period: Period, catalog: Catalog | None = None) -> CheckOutcome:
    """Billing accounts active in the period (live contract, provisioned product or usage) with no invoice.

    Only days inside the customer's life (active_from / active_to) count, as in rating: a contract or a
    provisioning is live when it, the customer's life and the period share a day; usage outside the
    life is unrated usage, not activity."""
    in_life = ("(c.active_from IS NULL OR c.active_from < ?) AND (c.active_to IS NULL OR c.active_to > ?) "
               "AND (c.active_from IS NULL OR {x}.effective_to IS NULL OR c.active_from < {x}.effective_to) "
               "AND (c.active_to IS NULL OR c.active_to > {x}.effective_from)")
    rows = _rows(tx, f"""
        WITH active AS (
            SELECT c.billing_account_id, 'contract ' || ct.contract_id AS why
            FROM staging.stg_catalog__contracts ct
            JOIN staging.stg_catalog__customers c ON c.customer_id = ct.customer_id
            WHERE ct.effective_from < ? AND (ct.effective_to IS NULL OR ct.effective_to > ?)
              AND {in_life.format(x='ct')}
            UNION ALL
            SELECT c.billing_account_id, 'provisioned ' || ap.product_id
            FROM staging.stg_catalog__account_products ap
            JOIN staging.stg_catalog__customers c ON c.customer_id = ap.customer_id
            WHERE ap.effective_from < ? AND (ap.effective_to IS NULL OR ap.effective_to > ?)
              AND {in_life.format(x='ap')}
            UNION ALL
            SELECT billing_account_id, 'usage of ' || product_id
            FROM intermediate.int_usage_days_aggregated WHERE period = ?
        )
        SELECT a.billing_account_id, MIN(a.why) AS why
        FROM active a
        WHERE NOT EXISTS (SELECT 1 FROM {MARTS}.fct_invoices i
                          WHERE i.billing_account_id = a.billing_account_id AND i.period = ?)
        GROUP BY a.billing_account_id ORDER BY a.billing_account_id""",
                 [period.end, period.start, period.end, period.start, period.end, period.start, period.end,
                  period.start, period.key, period.key])
    for r in rows:
        r["detail"] = (f"{r['billing_account_id']} is active in {period.key} ({r['why']}) and has no invoice "
                       "for the period")
    summary = "every active customer has an invoice" if not rows else (
        f"{len(rows)} active customer(s) without an invoice: " + ", ".join(
            f"{r['billing_account_id']} ({r['why']})" for r in rows[:10]))
    return CheckOutcome("missed_customers", not rows, True, summary, rows)


def invoice_totals(tx: Tx, period: Period, catalog: Catalog | None = None) -> CheckOutcome:
    """Each invoice's total is the sum of its rounded lines."""
    rows = _rows(tx, f"""
        SELECT i.invoice_id, i.billing_account_id, i.currency, i.total, SUM(l.amount) AS sum_of_lines
        FROM {MARTS}.fct_invoices i LEFT JOIN {MARTS}.fct_invoice_lines l
          ON l.invoice_id = i.invoice_id AND l.period = i.period
        WHERE i.period = ?
        GROUP BY i.invoice_id, i.billing_account_id, i.currency, i.total
        HAVING SUM(l.amount) IS NULL OR SUM(l.amount) <> i.total""", [period.key])
    for r in rows:
        r["total"], r["sum_of_lines"] = _money_text(r["total"], r["currency"]), _money_text(r["sum_of_lines"],
                                                                                          r["currency"])
        r["detail"] = (f"invoice {r['invoice_id']} of {r['billing_account_id']}: total {r['total']}, its lines sum "
                       f"to {r['sum_of_lines'] if r['sum_of_lines'] is not None else 'nothing (no lines)'}")
    summary = "every total equals the sum of its lines" if not rows else (
        f"{len(rows)} invoice(s) whose total is not the sum of their lines: " + "; ".join(
            r["detail"] for r in rows[:5]))
    return CheckOutcome("invoice_totals", not rows, True, summary, rows)


LINE_KEY = ["billing_account_id", "currency", "line_type", "product_id", "rate_id", "segment_start"]
RATED_LINE_TYPES = ("usage", "recurring", "minimum_commitment")  # the catalog's lines; the others are the ledger's


@dataclass(frozen=True)
class Prerated:
    """A period's independent re-rating, made beside dbt's rating (`prerate`, started by `billing run`
    before dbt): `misrated_lines` uses it only while the warehouse still holds the catalog and the
    loaded files it was made from (`inputs`), else it re-rates again."""
    period: str
    inputs: tuple
    result: Rerated | AmountDoesNotFit


def _rerating_inputs(tx: Tx, period: Period) -> tuple:
    """What the re-rating of the period reads, in short: the warehouse's catalog, its loaded files, and
    the count, units and latest load of the events around the period (rows deleted or added by hand
    change those too)."""
    loaded = tx.fetchall("SELECT COUNT(*), COALESCE(SUM(rows_loaded), 0), MAX(loaded_at) FROM raw.landed_files "
                         "WHERE status = 'loaded'")[0]
    events = tx.fetchall("SELECT COUNT(*), SUM(quantity), MAX(loaded_at) FROM raw.events "
                         "WHERE occurred_at >= ? AND occurred_at < ?", [*period.padded_window()])[0]
    return (catalog_sha256(tx), *(str(value) for value in (*loaded, *events)))


def prerate(warehouse: Warehouse, period: Period) -> Prerated:
    """Re-rate the period from raw.events and the warehouse's catalog, as `misrated_lines` does. It reads
    nothing dbt writes, so it can run while dbt rates the period (in another thread: Polars and DuckDB
    release the GIL, dbt mostly holds it)."""
    with warehouse.transaction() as tx:
        inputs = _rerating_inputs(tx, period)
        try:
            result: Rerated | AmountDoesNotFit = rerate_warehouse(tx, read_from_warehouse(tx), period)
        except AmountDoesNotFit as exc:  # the check's finding, once the drafts are there to compare
            result = exc
    return Prerated(period.key, inputs, result)


def misrated_lines(tx: Tx, period: Period, catalog: Catalog | None = None, *,
                   prerated: Prerated | None = None) -> CheckOutcome:
    """An independent re-rating (quality/rerate.py, Polars) must confirm every invoice line to the cent.

    Lines are matched on (billing account, currency, line type, product, rate, segment start). A
    finding is a line whose amount differs from the re-rated one, a line the re-rater does not bill,
    or a line the re-rater bills that the warehouse lacks (line_id empty). Invoice totals are not
    compared here: with every line confirmed, `invoice_totals` (total = sum of lines) covers them.
    """
    result = None
    if catalog is None:  # the catalog dbt priced with, from the warehouse (never the file: it may have changed)
        if (changed := _catalog_changed_since_rating(tx, period)) is not None:
            return changed
        if prerated is not None and prerated.period == period.key and prerated.inputs == _rerating_inputs(tx, period):
            result = prerated.result
        else:
            catalog = read_from_warehouse(tx)
    # The re-rater reads raw.events itself, a batch of customers at a time (bounded memory).
    try:
        if result is None:
            result = rerate_warehouse(tx, catalog, period)
        if isinstance(result, AmountDoesNotFit):
            raise result
        expected = result.lines
    except AmountDoesNotFit as exc:  # a finding, not a crash that would stop the other checks
        return CheckOutcome("misrated_lines", False, True, str(exc), [
            {"billing_account_id": exc.billing_account_id, "product_id": exc.product_id, "rate_id": exc.rate_id,
             "detail": str(exc)}])
    # Lines the ledger made (manual charges, corrections, credit) and usage repriced by a per-invoice
    # override are not the catalog's to confirm: the re-rater skips them, and the true-ups of invoices
    # with an override (their subtotal is not the catalog's either).
    actual = tx.frame(f"SELECT line_id, invoice_id, {', '.join(LINE_KEY)}, amount, rate_level FROM "
                      f"{MARTS}.fct_invoice_lines WHERE period = ? AND line_type IN "
                      f"({', '.join(repr(t) for t in RATED_LINE_TYPES)})", [period.key])
    overridden = actual.filter(pl.col("rate_level") == "manual").select(
        "billing_account_id", "currency", "product_id", "segment_start")
    with_override = overridden.select("billing_account_id", "currency").unique()
    actual = actual.filter(pl.col("rate_level") != "manual").join(
        with_override.with_columns(pl.lit(True).alias("_override")), on=["billing_account_id", "currency"], how="left")
    actual = actual.filter(~(pl.col("_override").fill_null(False) & (pl.col("line_type") == "minimum_commitment")))
    actual = actual.drop("rate_level", "_override")
    expected = expected.join(overridden, on=["billing_account_id", "currency", "product_id", "segment_start"],
                             how="anti", nulls_equal=True)
    expected = expected.join(with_override.with_columns(pl.lit("minimum_commitment").alias("line_type")),
                             on=["billing_account_id", "currency", "line_type"], how="anti")
    expected = expected.select(*LINE_KEY, pl.col("amount").cast(pl.Decimal(38, MONEY.fraction)).alias("expected_amount"))
    actual = actual.with_columns(pl.col("amount").cast(pl.Decimal(38, MONEY.fraction)))
    joined = actual.join(expected, on=LINE_KEY, how="full", nulls_equal=True, coalesce=True)
    wrong = joined.filter(pl.col("amount").is_null() | pl.col("expected_amount").is_null()
                          | (pl.col("amount") != pl.col("expected_amount")))
    wrong = wrong.sort(["billing_account_id", "currency", "product_id", "segment_start", "rate_id"], nulls_last=True)
    rows = [{k: (str(v) if v is not None else None) for k, v in row.items()} for row in wrong.iter_rows(named=True)]
    for r in rows:
        r["amount"], r["expected_amount"] = (_money_text(r["amount"], r["currency"]),
                                             _money_text(r["expected_amount"], r["currency"]))
        what = f"{r['billing_account_id']} {r['product_id'] or r['line_type']} ({r['currency']}, rate {r['rate_id']}, " \
               f"from {r['segment_start']})"
        if r["line_id"] is None:
            r["detail"] = f"{what}: no such line in the warehouse; the re-rater bills {r['expected_amount']}"
        elif r["expected_amount"] is None:
            r["detail"] = (f"{what}: line {r['line_id']} on invoice {r['invoice_id']} bills {r['amount']}; "
                           "the re-rater bills no such line")
        else:
            r["detail"] = (f"{what}: line {r['line_id']} on invoice {r['invoice_id']} bills {r['amount']}; "
                           f"the re-rater bills {r['expected_amount']}")
    summary = (f"all {actual.height} lines confirmed by the re-rater" if not rows else
               f"{len(rows)} line(s) not confirmed: " + "; ".join(
                   f"{r['billing_account_id']} {r['product_id'] or r['line_type']}: "
                   f"{r['amount'] if r['amount'] is not None else 'no line'} vs re-rated "
                   f"{r['expected_amount'] if r['expected_amount'] is not None else 'no line'}" for r in rows[:5]))
    return CheckOutcome("misrated_lines", not rows, True, summary, rows)


def _catalog_changed_since_rating(tx: Tx, period: Period) -> CheckOutcome | None:
    """A failed outcome when the period's drafts were priced with another catalog than the one the
    warehouse holds now (one was loaded after the month was rated): re-rating by today's prices would
    judge them by prices they were not priced with. None when they agree."""
    now = catalog_sha256(tx)
    priced = [sha for (sha,) in tx.fetchall(f"SELECT DISTINCT catalog_sha256 FROM {MARTS}.fct_invoices "
                                            "WHERE period = ? ORDER BY 1", [period.key])]
    if not priced or priced == [now]:
        return None
    shown = ", ".join(sha or "none recorded" for sha in priced)
    receipt = catalog_receipt(tx)
    loaded = f" (loaded {receipt.loaded_at} from {receipt.source_path})" if receipt else ""
    summary = (f"{period.key} was priced with catalog {shown}, but the warehouse now holds catalog "
               f"{now or 'none'}{loaded}: rate the month again (`billing run --month {period.key}`) before its lines "
               "can be confirmed")
    return CheckOutcome("misrated_lines", False, True, summary,
                        [{"detail": summary, "catalog_sha256": now, "priced_with": shown}])


def _missing_rows(tx: Tx, file_id: str, rows_received: int) -> list[int]:
    """Data rows 1..rows_received of a file that are in none of events, quarantine, duplicates.

    Only called for a file whose counts do not add up, so reading its row numbers stays rare."""
    present = tx.fetchall("""
        SELECT row_number FROM raw.events WHERE file_id = ?
        UNION SELECT row_number FROM raw.quarantine WHERE file_id = ?
        UNION SELECT row_number FROM raw.duplicates WHERE file_id = ?""", [file_id, file_id, file_id])
    seen = {int(n) for (n,) in present}
    return [n for n in range(1, rows_received + 1) if n not in seen]


def _ranges(numbers: list[int]) -> str:
    """[2, 3, 4, 9] -> '2-4, 9'."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and runs[-1][1] == n - 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


LOCAL_DAY = "CAST(e.occurred_at AT TIME ZONE COALESCE(c.timezone, 'UTC') AS DATE)"  # e: raw.events, c: customers


def _on_local_days(period: Period) -> tuple[str, list]:
    """A condition on raw.events `e` LEFT JOIN customers `c`: the event's local day (in its customer's
    time zone, UTC if unknown; the day rating puts it on) is in the period. Only events within a day
    of the period's edges pay for the time-zone conversion (core/periods.py: padded and inner windows)."""
    return (f"e.occurred_at >= ? AND e.occurred_at < ? AND ((e.occurred_at >= ? AND e.occurred_at < ?) "
            f"OR ({LOCAL_DAY} >= ? AND {LOCAL_DAY} < ?))",
            [*period.padded_window(), *period.inner_window(), period.start, period.end])


def conservation(tx: Tx, period: Period, catalog: Catalog | None = None) -> CheckOutcome:
    """Nothing lost: per file, rows received = events + quarantined + duplicates; per billing account
    and product (sum meters), units in the period's valid events = units invoiced + units reported unrated.

    Rows are checked for the files of the period, not every file ever received (an old broken file
    would otherwise be a finding of every later month). A landed file belongs to the period when
    (a) it was received in the period's UTC window: `raw.landed_files.received_at` (its first
        delivery; a re-delivery of the same bytes loads nothing and does not count) in
        [period start 00:00 UTC, period end 00:00 UTC); or
    (b) it contributed events to the period: at least one of its rows in `raw.events` falls on a local
        day of the period in its customer's time zone (UTC for an unknown customer), the day rating
        puts it on (int_events_localized).
    So a file of October usage delivered on 1 November is checked with October (its events) and with
    November (its receipt), and with no month after that. Files not normalized yet (rows_received
    NULL) are not checked."""
    on_local_days, local_params = _on_local_days(period)
    in_period, in_period_params = _files_of_period(tx, period)
    files = _rows(tx, f"""
        WITH in_period AS (SELECT file_id FROM raw.landed_files WHERE file_id IN ({in_period})),
        counted AS (
            SELECT file_id, COUNT(*) AS n, 'events' AS kind FROM raw.events
            WHERE file_id IN (SELECT file_id FROM in_period) GROUP BY file_id
            UNION ALL
            SELECT file_id, COUNT(*), 'quarantined' FROM raw.quarantine
            WHERE file_id IN (SELECT file_id FROM in_period) GROUP BY file_id
            UNION ALL
            SELECT file_id, COUNT(*), 'duplicates' FROM raw.duplicates
            WHERE file_id IN (SELECT file_id FROM in_period) GROUP BY file_id
        ),
        per_file AS (
            SELECT f.file_id, f.source, f.original_name, f.landing_path, f.received_at, f.rows_received,
                   COALESCE(SUM(CASE WHEN c.kind = 'events' THEN c.n END), 0) AS events,
                   COALESCE(SUM(CASE WHEN c.kind = 'quarantined' THEN c.n END), 0) AS quarantined,
                   COALESCE(SUM(CASE WHEN c.kind = 'duplicates' THEN c.n END), 0) AS duplicates
            FROM raw.landed_files f LEFT JOIN counted c ON c.file_id = f.file_id
            WHERE f.rows_received IS NOT NULL AND f.file_id IN (SELECT file_id FROM in_period)
            GROUP BY f.file_id, f.source, f.original_name, f.landing_path, f.received_at, f.rows_received
        )
        SELECT * FROM per_file WHERE rows_received <> events + quarantined + duplicates
        ORDER BY source, original_name, file_id""",
                  in_period_params)
    for f in files:
        f["kind"] = "rows"
        f["missing_rows"] = _ranges(_missing_rows(tx, f["file_id"], int(f["rows_received"])))
        f["detail"] = (f"file {f['original_name']} ({f['file_id']}, source {f['source']}, received "
                       f"{f['received_at']}): {f['rows_received']} rows received, {f['events']} events + "
                       f"{f['quarantined']} quarantined + {f['duplicates']} duplicates in the warehouse"
                       + (f"; rows {f['missing_rows']} are in none of them (the landed file "
                          f"{f['landing_path']} still holds them)" if f["missing_rows"] else ""))
    # Units of sum-metered (or unknown) products: everything on a local day of the period must be
    # on an invoice line or in the unrated usage report.
    units = _rows(tx, f"""
        WITH sum_products AS (
            SELECT product_id FROM staging.stg_catalog__products WHERE aggregation = 'sum'
        ),
        known_products AS (SELECT product_id FROM staging.stg_catalog__products),
        flows AS (
            SELECT COALESCE(c.billing_account_id, e.customer_id) AS account_id, e.product_id,
                   e.quantity AS event_units, 0 AS invoiced_units, 0 AS unrated_units
            FROM raw.events e
            LEFT JOIN staging.stg_catalog__customers c ON c.customer_id = e.customer_id
            WHERE {on_local_days}
            UNION ALL
            SELECT billing_account_id, product_id, 0, quantity, 0
            FROM {MARTS}.fct_invoice_lines WHERE period = ? AND line_type = 'usage'
            UNION ALL
            SELECT COALESCE(billing_account_id, customer_id), product_id, 0, 0, quantity
            FROM {MARTS}.fct_unrated_usage WHERE period = ?
        )
        SELECT account_id, product_id, SUM(event_units) AS event_units, SUM(invoiced_units) AS invoiced_units,
               SUM(unrated_units) AS unrated_units
        FROM flows
        WHERE product_id IN (SELECT product_id FROM sum_products)
           OR product_id NOT IN (SELECT product_id FROM known_products)
        GROUP BY account_id, product_id
        HAVING SUM(event_units) <> SUM(invoiced_units) + SUM(unrated_units)
        ORDER BY account_id, product_id""", [*local_params, period.key, period.key])
    for u in units:
        u["kind"] = "units"
        u["customer_id"] = u["account_id"]
        u["detail"] = (f"{u['account_id']} {u['product_id']}: {u['event_units']} units in events, "
                       f"{u['invoiced_units']} invoiced + {u['unrated_units']} reported unrated")
    rows = files + units
    parts = []
    if files:
        parts.append(f"{len(files)} file(s) with rows unaccounted for: " + ", ".join(
            f"{f['original_name']} ({f['source']})" for f in files[:10]))
    if units:
        parts.append(f"{len(units)} account/product(s) with units unaccounted for: " + ", ".join(
            f"{u['account_id']} {u['product_id']}" for u in units[:10]))
    summary = "; ".join(parts) or "every row received and every unit of usage accounted for"
    return CheckOutcome("conservation", not rows, True, summary, rows)


ANOMALY_FACTOR = Settings.anomaly_factor  # the default; the setting anomaly_factor (docs/config.md)
TRAILING_MONTHS = 3


def _plain(value: Decimal) -> str:
    """1050.000000000 -> 1050, 12.50 -> 12.5."""
    return f"{value.normalize():f}"


def anomalies(tx: Tx, period: Period, catalog: Catalog | None = None, *,
              factor: Decimal = ANOMALY_FACTOR) -> CheckOutcome:
    """Warning: usage far from its own recent months. A billing account's units of a product more than
    `factor` (the setting anomaly_factor, default 10) times above or below its average over the 3 trailing
    months (when it had usage in each of them); an account whose usage of a product stopped (usage in
    each of the trailing months, none this month); a source that delivered events in a trailing month and none this one.
    Months are calendar months of each event's local day in its customer's time zone (UTC for an
    unknown customer), the day rating puts it on."""
    bounds = [month.start for month in period.trailing(TRAILING_MONTHS)] + [period.start, period.end]
    # Only events around a month boundary's midnight need the (costly) time-zone conversion, once each
    # (`local_day`, NULL elsewhere); the rest are bucketed by their instant.
    months = range(TRAILING_MONTHS + 1)
    by_local_day = " ".join(f"WHEN local_day >= ? AND local_day < ? THEN {TRAILING_MONTHS - i}" for i in months)
    by_instant = " ".join(f"WHEN occurred_at >= ? AND occurred_at < ? THEN {TRAILING_MONTHS - i}" for i in months)
    near_boundary = " OR ".join("(e.occurred_at >= ? AND e.occurred_at < ?)" for _ in bounds)
    usage = tx.fetchall(f"""
        SELECT account_id, product_id, source, months_back, SUM(quantity) AS units
        FROM (
            SELECT account_id, product_id, source, quantity,
                   CASE WHEN local_day IS NULL THEN CASE {by_instant} END ELSE CASE {by_local_day} END END AS months_back
            FROM (
                SELECT COALESCE(c.billing_account_id, e.customer_id) AS account_id, e.product_id, e.source,
                       e.quantity, e.occurred_at, CASE WHEN {near_boundary} THEN {LOCAL_DAY} END AS local_day
                FROM raw.events e
                LEFT JOIN staging.stg_catalog__customers c ON c.customer_id = e.customer_id
                WHERE e.occurred_at >= ? AND e.occurred_at < ?
            ) placed
        ) localized
        GROUP BY account_id, product_id, source, months_back""",  # months_back NULL (outside the months): skipped below
                        [*(instant(day) for i in months for day in (bounds[i], bounds[i + 1])),
                         *(day for i in months for day in (bounds[i], bounds[i + 1])),
                         *(t for day in bounds for t in around_midnight(day)),
                         *Period(bounds[0], period.end).padded_window()])
    per_account: dict[tuple[str, str], dict[int, Decimal]] = {}
    per_source: dict[str, set[int]] = {}
    for account, product, source, back, units in usage:
        if back is None:  # (a WHERE would make DuckDB convert every time zone twice)
            continue
        months = per_account.setdefault((account, product), {})
        months[back] = months.get(back, Decimal(0)) + units
        per_source.setdefault(source, set()).add(back)
    rows = []
    for (account, product), months in sorted(per_account.items()):
        current = months.get(0, Decimal(0))
        trailing = [months.get(back, Decimal(0)) for back in range(1, TRAILING_MONTHS + 1)]
        average = sum(trailing) / TRAILING_MONTHS
        base = {"customer_id": account, "product_id": product, "units": _plain(current),
                "trailing_average": _plain(round(average, 2))}
        if current == 0 and all(u > 0 for u in trailing):
            rows.append({**base, "kind": "stopped", "detail": f"{account} {product}: no usage this month, "
                         f"{_plain(trailing[0])} last month"})
        elif all(u > 0 for u in trailing) and current > 0 and (current > factor * average
                                                                or current * factor < average):
            rows.append({**base, "kind": "jump", "detail": f"{account} {product}: {_plain(current)} units this month, "
                         f"{current / average:.1f}x its {TRAILING_MONTHS}-month average of {average:.2f}"})
    for source, months in sorted(per_source.items()):
        if 0 not in months:
            rows.append({"kind": "silent_source", "source": source,
                         "detail": f"source {source} delivered no events for this month (it did in the "
                                   f"{TRAILING_MONTHS} months before)"})
    summary = f"no usage more than {factor}x off its recent months" if not rows else (
        f"{len(rows)} anomal{'y' if len(rows) == 1 else 'ies'}: " + "; ".join(r["detail"] for r in rows[:5]))
    return CheckOutcome("anomalies", not rows, False, summary, rows)


_PERIOD_FILES: weakref.WeakKeyDictionary[Tx, dict[str, list[str]]] = weakref.WeakKeyDictionary()


def _files_of_period(tx: Tx, period: Period) -> tuple[str, list]:
    """A list of the file_id's of the period's landed files (see `conservation`) for `IN (...)`, and its
    parameters. Found once per transaction: three checks ask, and finding them scans the month's events."""
    found = _PERIOD_FILES.setdefault(tx, {})
    if period.key not in found:
        lo, hi = period.utc_window()
        on_local_days, local_params = _on_local_days(period)
        found[period.key] = [file_id for (file_id,) in tx.fetchall(f"""
            SELECT file_id FROM raw.landed_files WHERE received_at >= ? AND received_at < ?
            UNION
            SELECT e.file_id
            FROM raw.events e
            LEFT JOIN staging.stg_catalog__customers c ON c.customer_id = e.customer_id
            WHERE {on_local_days}""", [lo, hi, *local_params])]
    files = found[period.key]
    return (", ".join("?" for _ in files) or "NULL"), files


SCANNED_BYTES = 1 << 20  # of a rejected file: the dates in its first MiB say which months it may hold
_DATE = re.compile(rb"(?<!\d)(\d{4})-(0[1-9]|1[0-2])-\d{2}(?!\d)")


def _months_named(path: str) -> set[str]:
    """The months (YYYY-MM) of the dates written in the first MiB of a file (expanded, if gzip), as text.

    A file can be unreadable as its source's format and still show its dates (a wrong delimiter, a bad
    byte further on); a binary, zip or missing file shows none."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(SCANNED_BYTES)
        if head[:2] == b"\x1f\x8b":
            head = zlib.decompressobj(wbits=47).decompress(head, SCANNED_BYTES)
    except (OSError, zlib.error):
        return set()
    return {f"{year.decode()}-{month.decode()}" for year, month in _DATE.findall(head)}


def rejected_files(tx: Tx, period: Period, catalog: Catalog | None = None) -> CheckOutcome:
    """Blocking: files rejected whole (unreadable as their source's format: wrong delimiter, missing
    columns, bad encoding, ...), so none of their usage is billed.

    A rejected file has no events to place it in a month; it is a finding of every month it may hold
    usage of, among those that began before it was received (usage is delivered after it happens):
    the month it was received in (UTC), the month before (usage is often delivered just after its
    month ends), and each month of a date written in its first MiB (a file with a wrong delimiter still
    shows its timestamps). It stops being a finding once a file with the same name from the same source
    loads after it (the corrected file, delivered again)."""
    files = _rows(tx, """
        SELECT f.file_id, f.source, f.original_name, f.landing_path, f.received_at, f.error
        FROM raw.landed_files f
        WHERE f.status = 'rejected' AND f.received_at >= ?
          AND NOT EXISTS (SELECT 1 FROM raw.landed_files g
                          WHERE g.source = f.source AND g.original_name = f.original_name
                            AND g.status = 'loaded' AND g.received_at > f.received_at)
        ORDER BY f.received_at, f.file_id""", [instant(period.start)])
    rows = []
    for f in files:
        received = datetime.fromisoformat(f["received_at"]).astimezone(UTC).date()
        months = {month_window(received).key, month_window(add_months(received, -1)).key}
        if period.key not in months and period.key not in _months_named(f["landing_path"]):
            continue
        f["detail"] = (f"file {f['original_name']} ({f['file_id']}, source {f['source']}, received "
                       f"{f['received_at']}) was rejected, none of its rows is billed: {f['error']}. "
                       "Deliver it again corrected, under the same name (or fix the source's settings and set "
                       "its raw.landed_files.status back to 'landed' so the next run loads it)")
        rows.append(f)
    summary = "no file rejected" if not rows else (
        f"{len(rows)} file(s) rejected, none of their rows billed: " + "; ".join(
            f"{f['original_name']} ({f['source']}): {f['error']}" for f in rows[:5]))
    return CheckOutcome("rejected_files", not rows, True, summary, rows)


def _quarantine_findings(tx: Tx, period: Period, conflicts: bool) -> list[dict]:
    """Per file of the period and column (conflicting duplicates apart): rows quarantined, and the first."""
    in_period, params = _files_of_period(tx, period)
    kind = "" if conflicts else "NOT "
    return _rows(tx, f"""
        WITH rows_of_period AS (
            SELECT q.file_id, q.column_name, q.row_number, q.reason,
                   COUNT(*) OVER (PARTITION BY q.file_id, q.column_name) AS rows_quarantined,
                   ROW_NUMBER() OVER (PARTITION BY q.file_id, q.column_name ORDER BY q.row_number) AS nth
            FROM raw.quarantine q
            WHERE q.file_id IN ({in_period}) AND {kind}(q.reason LIKE ?)
        )
        SELECT r.file_id, f.source, f.original_name, r.column_name, r.rows_quarantined,
               r.row_number AS first_row, r.reason AS first_reason
        FROM rows_of_period r JOIN raw.landed_files f ON f.file_id = r.file_id
        WHERE r.nth = 1
        ORDER BY f.source, f.original_name, r.file_id, r.column_name""", [*params, f"%{CONFLICT_MARK}%"])


def _cut(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit:,} more characters)"


def quarantined_rows(tx: Tx, period: Period, catalog: Catalog | None = None) -> CheckOutcome:
    """Warning: rows of the period's files (see `conservation`) set aside in raw.quarantine (not a number,
    no time zone, ...), per file and column: how many, and the first with its reason. Not billed; they
    do not block (the file's other rows are billed); fix and re-send them if they are usage."""
    rows = _quarantine_findings(tx, period, conflicts=False)
    for r in rows:
        r["detail"] = (f"file {r['original_name']} ({r['file_id']}, source {r['source']}): {r['rows_quarantined']} "
                       f"row(s) quarantined on column {r['column_name']}, not billed; first, row {r['first_row']}: "
                       f"{_cut(r['first_reason'])}")
    summary = "no row quarantined" if not rows else (
        f"{sum(int(r['rows_quarantined']) for r in rows)} row(s) quarantined in {len({r['file_id'] for r in rows})} "
        "file(s): " + "; ".join(f"{r['original_name']}: {r['rows_quarantined']} on {r['column_name']}"
                                for r in rows[:5]))
    return CheckOutcome("quarantined_rows", not rows, False, summary, rows)


def conflicting_duplicates(tx: Tx, period: Period, catalog: Catalog | None = None) -> CheckOutcome:
    """Warning: rows of the period's files repeating an event id already loaded (or earlier in the file)
    with a different customer, product, quantity or time, per file: how many, and the first. They are
    quarantined, not billed: the first payload loaded is the one billed."""
    rows = _quarantine_findings(tx, period, conflicts=True)
    for r in rows:
        r["detail"] = (f"file {r['original_name']} ({r['file_id']}, source {r['source']}): {r['rows_quarantined']} "
                       f"row(s) repeat an event id with a different payload, not billed; first, row "
                       f"{r['first_row']}: {_cut(r['first_reason'])}")
    summary = "no conflicting duplicate" if not rows else (
        f"{sum(int(r['rows_quarantined']) for r in rows)} conflicting duplicate(s) in {len(rows)} file(s): "
        + "; ".join(f"{r['original_name']}: {r['rows_quarantined']}" for r in rows[:5]))
    return CheckOutcome("conflicting_duplicates", not rows, False, summary, rows)


def corrections_outside_lookback(tx: Tx, period: Period, catalog: Catalog | None = None) -> CheckOutcome:
    """Warning: an issued period rated differently now, older than the look-back (`lookback_periods`):
    its difference is not billed as an adjustment, so finance decides (a credit note, a manual charge)."""
    rows = _rows(tx, "SELECT billing_account_id, currency, product_key, corrected_period, corrected_invoice_number, "
                     "amount, periods_back FROM intermediate.int_invoice_corrections WHERE period = ? "
                     "AND NOT within_lookback ORDER BY billing_account_id, corrected_period, product_key", [period.key])
    for r in rows:
        r["detail"] = (f"{r['corrected_invoice_number']} ({r['billing_account_id']}, {r['corrected_period']}) rates "
                       f"{r['amount']} {r['currency']} differently for {r['product_key']} now, {r['periods_back']} "
                       "periods back: beyond the look-back, not adjusted; credit or charge it by hand")
    summary = "no late change beyond the look-back" if not rows else (
        f"{len(rows)} correction(s) of issued periods beyond the look-back, not billed: "
        + "; ".join(r["detail"] for r in rows[:3]))
    return CheckOutcome("corrections_outside_lookback", not rows, False, summary, rows)


CHECKS = (unrated_usage, missed_customers, invoice_totals, misrated_lines, conservation, anomalies, rejected_files,
          quarantined_rows, conflicting_duplicates, corrections_outside_lookback)


def configured(check, anomaly_factor: Decimal = ANOMALY_FACTOR, prerated: Prerated | None = None):
    """The check with the settings it takes bound (anomalies: Settings.anomaly_factor; misrated_lines:
    a re-rating made beside dbt, if any)."""
    if check is anomalies:
        return functools.partial(check, factor=anomaly_factor)
    if check is misrated_lines and prerated is not None:
        return functools.partial(check, prerated=prerated)
    return check


def run_checks(warehouse: Warehouse, period: Period, catalog: Catalog | None = None,
               run_id: str | None = None, *, anomaly_factor: Decimal = ANOMALY_FACTOR,
               prerated: Prerated | None = None) -> list[CheckOutcome]:
    """Run every check, then record their findings in marts.quality_findings (quality/findings.py).

    `catalog`: None (what every run passes) judges by the catalog in the warehouse, the one dbt priced
    the month with (catalog/read.py); tests may pass another. `anomaly_factor`: Settings.anomaly_factor.
    `prerated`: the period's re-rating made while dbt rated it (`prerate`), used if still current."""
    with warehouse.transaction() as tx:
        outcomes = [configured(check, anomaly_factor, prerated)(tx, period, catalog) for check in CHECKS]
    write_findings(warehouse, outcomes, period.key, run_id)
    return outcomes
