"""`billing explain LINE_ID`: why an invoice line's amount is what it is, from the warehouse alone.

For one line of `marts.fct_invoice_lines`: its invoice and customer, the rate applied and where in
the hierarchy it came from, the tier breakdown, the usage rollup it prices, and the files (sha256,
collector, original name, received time, rows) its events came from; on request the event ids.
The same questions in plain SQL, for auditors: docs/lineage.md. No Dagster, no dbt here: queries
over the marts, portable to DuckDB and PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.money import round_money
from warehouse.store import Tx

LINE_SELECT = """
SELECT l.period, l.line_id, l.invoice_id, l.billing_account_id, c.customer_name, l.currency, l.line_type,
       l.product_id, l.usage_rollup_id, l.rate_id, l.rate_level, l.contract_id, l.pricing_model, l.segment_start, l.segment_end,
       l.segment_days, l.event_count, l.quantity, l.included_units, l.billable_quantity, l.amount_unrounded,
       l.amount, i.total AS invoice_total, i.status AS invoice_status, i.is_finalizable, i.catalog_sha256
FROM marts.fct_invoice_lines l
JOIN marts.fct_invoices i ON i.invoice_id = l.invoice_id AND i.period = l.period
LEFT JOIN marts.dim_customers c ON c.customer_id = l.billing_account_id"""
LINE_SQL = LINE_SELECT + "\nWHERE l.line_id = ?"

TIERS_COLUMNS = "tier_number, units, unit_price, flat_fee, amount_unrounded"
TIERS_SQL = f"""
SELECT {TIERS_COLUMNS}
FROM marts.fct_invoice_line_tiers WHERE line_id = ? AND period = ? ORDER BY tier_number"""

ROLLUP_SELECT = """
SELECT s.usage_rollup_id, s.aggregation, p.unit, s.segment_start, s.segment_end, s.segment_days,
       s.event_count, s.quantity, s.is_provisioned
FROM intermediate.int_usage_segments_aggregated s
LEFT JOIN staging.stg_catalog__products p ON p.product_id = s.product_id"""
ROLLUP_SQL = ROLLUP_SELECT + "\nWHERE s.usage_rollup_id = ? AND s.period = ?"

SOURCES_COLUMNS = """file_id, source, collector, original_name, received_at, event_count, quantity, first_row_number,
       last_row_number"""
SOURCES_SQL = f"""
SELECT {SOURCES_COLUMNS}
FROM marts.fct_invoice_line_sources WHERE line_id = ? AND period = ?
ORDER BY received_at, original_name"""

# The load of the catalog an invoice was priced with (its latest load, if it was loaded more than once).
CATALOG_SQL = """
SELECT catalog_sha256, source_path, landing_path, loaded_at
FROM staging.stg_catalog__receipts WHERE catalog_sha256 = ?
ORDER BY loaded_at DESC LIMIT 1"""

# The line's events: those of its billing account and product whose local day (in the customer's
# zone, as dbt places them) was priced at the line's rate.
EVENTS_SQL = """
SELECT e.event_id, e.customer_id, e.quantity, e.occurred_at, e.file_id, e.row_number
FROM raw.events e
JOIN staging.stg_catalog__customers c ON c.customer_id = e.customer_id
JOIN intermediate.int_billable_days_rated d
  ON d.billing_account_id = c.billing_account_id AND d.product_id = e.product_id
 AND d.usage_date = CAST(e.occurred_at AT TIME ZONE COALESCE(c.timezone, 'UTC') AS DATE)
WHERE d.period = ? AND d.billing_account_id = ? AND d.product_id = ? AND d.currency = ? AND d.rate_id = ?
ORDER BY e.occurred_at, e.file_id, e.row_number"""


@dataclass
class Explanation:
    line: dict
    tiers: list[dict] = field(default_factory=list)
    rollup: dict | None = None
    sources: list[dict] = field(default_factory=list)
    catalog: dict | None = None  # the load of the catalog the invoice was priced with
    events: list[dict] = field(default_factory=list)
    more_events: int = 0


def _rows(tx: Tx, sql: str, params: list) -> list[dict]:
    return list(tx.frame(sql, params).iter_rows(named=True))


def explain_line(tx: Tx, line_id: str, *, events: int | None = None) -> Explanation | None:
    """Everything the warehouse knows about one invoice line; None if there is no such line.

    `events`: list up to this many of the line's event ids (None: do not list them)."""
    found = _rows(tx, LINE_SQL, [line_id])
    if not found:
        return None
    line = found[0]
    period = line["period"]
    result = Explanation(line=line, tiers=_rows(tx, TIERS_SQL, [line_id, period]))
    if line["catalog_sha256"]:
        loads = _rows(tx, CATALOG_SQL, [line["catalog_sha256"]])
        result.catalog = loads[0] if loads else None
    if line["usage_rollup_id"]:
        rollup = _rows(tx, ROLLUP_SQL, [line["usage_rollup_id"], period])
        result.rollup = rollup[0] if rollup else None
        result.sources = _rows(tx, SOURCES_SQL, [line_id, period])
        if events is not None and line["product_id"] is not None:
            all_events = _rows(tx, EVENTS_SQL, [period, line["billing_account_id"], line["product_id"],
                                                line["currency"], line["rate_id"]])
            result.events = all_events[:events]
            result.more_events = max(0, len(all_events) - events)
    return result


def explain_lines(tx: Tx, period: str, line_ids: list[str]) -> dict[str, Explanation]:
    """`explain_line` (without events) for many lines of one period, in a few queries instead of five
    per line: what the review desk shows under each line of an invoice."""
    if not line_ids:
        return {}
    marks = ", ".join("?" for _ in line_ids)
    found = {row["line_id"]: Explanation(line=row) for row in _rows(
        tx, f"{LINE_SELECT}\nWHERE l.period = ? AND l.line_id IN ({marks})", [period, *line_ids])}
    for row in _rows(tx, f"SELECT line_id, {TIERS_COLUMNS} FROM marts.fct_invoice_line_tiers WHERE period = ? "
                         f"AND line_id IN ({marks}) ORDER BY line_id, tier_number", [period, *line_ids]):
        found[row.pop("line_id")].tiers.append(row)
    catalogs = {sha: (loads[0] if (loads := _rows(tx, CATALOG_SQL, [sha])) else None)
                for sha in {ex.line["catalog_sha256"] for ex in found.values() if ex.line["catalog_sha256"]}}
    for ex in found.values():
        ex.catalog = catalogs.get(ex.line["catalog_sha256"])
    rollups = sorted({ex.line["usage_rollup_id"] for ex in found.values() if ex.line["usage_rollup_id"]})
    if rollups:
        by_id = {row["usage_rollup_id"]: row for row in _rows(
            tx, f"{ROLLUP_SELECT}\nWHERE s.period = ? AND s.usage_rollup_id IN ({', '.join('?' for _ in rollups)})",
            [period, *rollups])}
        for ex in found.values():
            ex.rollup = by_id.get(ex.line["usage_rollup_id"]) if ex.line["usage_rollup_id"] else None
        for row in _rows(tx, f"SELECT line_id, {SOURCES_COLUMNS} FROM marts.fct_invoice_line_sources "
                             f"WHERE period = ? AND line_id IN ({marks}) ORDER BY line_id, received_at, original_name",
                         [period, *line_ids]):
            line_id = row.pop("line_id")
            if found[line_id].line["usage_rollup_id"]:
                found[line_id].sources.append(row)
    return found


def _num(value) -> str:
    """A decimal without trailing zeros (1244567.000000000 -> 1244567), None as '-'."""
    if value is None:
        return "-"
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _money(value, currency: str) -> str:
    """An amount at the currency's minor unit (22.000 USD -> 22.00)."""
    try:
        return str(round_money(value, currency))
    except ValueError:  # a currency the money rules do not know: show the stored value
        return _num(value)


LEVELS = {
    "account_override": "account override (the customer's provisioned product)",
    "contract_rate": "contract rate",
    "rate_class": "rate class (price list)",
    "product_default": "product default list price",
    "contract": "contract minimum commitment",
}


def _catalog_text(sha256: str | None, load: dict | None) -> str:
    if not sha256:
        return "catalog: not recorded (rated before catalogs were kept by sha256)"
    text = f"catalog: sha256 {sha256}"
    if load:
        text += f", loaded {load['loaded_at']} from {load['source_path']} (kept as {load['landing_path']})"
    return text


def render(ex: Explanation) -> list[str]:
    """The explanation as lines of plain text, for a person."""
    ln = ex.line
    out = [
        f"line {ln['line_id']} ({ln['line_type']}), period {ln['period']}",
        f"invoice {ln['invoice_id']}: {ln['billing_account_id']} {ln['customer_name'] or ''}, {ln['currency']}, "
        f"total {_money(ln['invoice_total'], ln['currency'])}, {ln['invoice_status']}"
        f"{'' if ln['is_finalizable'] else ' (not finalizable: unrated usage)'}",
        f"product: {ln['product_id'] or '-'}; amount {_money(ln['amount'], ln['currency'])} {ln['currency']} "
        f"(unrounded {_num(ln['amount_unrounded'])})",
        f"rate: {ln['rate_id']}, source level {ln['rate_level']} - {LEVELS.get(ln['rate_level'], '?')}; "
        f"model {ln['pricing_model']}" + (f"; contract {ln['contract_id']}" if ln["contract_id"] else ""),
        f"priced: quantity {_num(ln['quantity'])}, included units {_num(ln['included_units'])}, "
        f"billable {_num(ln['billable_quantity'])}; days {ln['segment_start']} to {ln['segment_end']} (excluded)",
        _catalog_text(ln["catalog_sha256"], ex.catalog),
        "tiers:",
    ]
    for t in ex.tiers:
        out.append(f"  tier {t['tier_number']}: {_num(t['units'])} units x {_num(t['unit_price'])}"
                   f" + flat fee {_num(t['flat_fee'])} = {_num(t['amount_unrounded'])}")
    if not ex.tiers:
        out.append("  (none: the amount is the contract's minimum less the invoice's other lines)")
    if ex.rollup:
        r = ex.rollup
        out.append(f"usage rollup {r['usage_rollup_id']}: quantity {_num(r['quantity'])} {r['unit'] or ''} "
                   f"(meter: {r['aggregation']}), {r['event_count']} event(s), days {r['segment_start']} to "
                   f"{r['segment_end']} (excluded), {r['segment_days']} day(s)"
                   + (", provisioned" if r["is_provisioned"] else ""))
    out.append("source files:")
    for s in ex.sources:
        rows = (f"row {s['first_row_number']}" if s["first_row_number"] == s["last_row_number"]
                else f"rows {s['first_row_number']}-{s['last_row_number']}")
        out.append(f"  {s['original_name']} via {s['collector']} (source {s['source']}), "
                   f"received {s['received_at']}")
        out.append(f"    sha256 {s['file_id']}")
        out.append(f"    {s['event_count']} row(s) contributing ({rows}), quantity {_num(s['quantity'])}")
    if not ex.sources:
        out.append("  (none: no usage events behind this line)")
    if ex.events or ex.more_events:
        out.append("events:")
        for e in ex.events:
            out.append(f"  {e['event_id']} ({e['customer_id']}) {_num(e['quantity'])} at {e['occurred_at']}, "
                       f"file {e['file_id'][:12]}... row {e['row_number']}")
        if ex.more_events:
            out.append(f"  ... and {ex.more_events} more")
    return out
