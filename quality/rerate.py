"""An independent re-rating of one billing month, in Polars and plain Python.

The dbt models price the month in SQL; this module prices the same month again from the catalog
objects and the normalized events, sharing no SQL and no intermediate table with dbt, so that the
mis-rated-lines check can compare the two line by line. The per-event work (local days, month
membership, per-day rollups) is Polars; the per-line arithmetic is `quality.rerate_pricing`.

Semantics, in the order they are applied:

1. An event belongs to the period when its timestamp, read in its customer's time zone (UTC for
   unknown customers), falls on a local day inside the period.
2. Usage bills to `catalog.billing_account(customer)`; prices and currency are resolved on that
   account, day by day: currency of the contract in force that day, else the account's currency.
3. The rate is the first found of account override, contract rate, rate class, product default.
   No rate, unknown customer, unknown product, a day outside the customer's life
   ([active_from, active_to)): the usage goes to `unrated`, never to zero. Provisioned days and
   contracts count only inside the customer's life too.
4. The days of an (account, product) -- days with usage plus provisioned days -- are grouped by
   (currency, rate); each group is one line (a segment).
5. Each segment is aggregated by the product's meter, priced, and rounded once.
6. Contracts with a minimum commitment get a true-up line up to the minimum.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

import polars as pl

from catalog.model import Catalog, Contract, Rate
from core import events
from core.money import AMOUNT, MONEY, round_money
from core.periods import Period
from warehouse.store import RAW_SCHEMA, Tx

from .rerate_pricing import price_segment

# Sizes from core/money.py; 38 digits wide so that sums of a month never overflow here.
QUANTITY = events.QUANTITY  # as normalization types quantities
EXACT = pl.Decimal(38, AMOUNT.fraction)  # unrounded amounts: quantity (9 places) x price (12 places)
MONEY_TYPE = pl.Decimal(38, MONEY.fraction)  # rounded amounts: places for every ISO 4217 minor unit

EVENT_SCHEMA = events.polars_schema(events.RATED)  # the event columns rating reads (core/events.py)

_LINE_KEY = {
    "billing_account_id": pl.String,
    "currency": pl.String,
    "period": pl.String,
    "product_id": pl.String,
    "line_type": pl.String,
    "rate_id": pl.String,
    "segment_start": pl.Date,
    "segment_end": pl.Date,
}
LINE_SCHEMA = {
    **_LINE_KEY,
    "rate_level": pl.String,
    "quantity": QUANTITY,
    "billable_quantity": QUANTITY,
    "amount_unrounded": EXACT,
    "amount": MONEY_TYPE,
}
TIER_SCHEMA = {
    **_LINE_KEY,
    "tier_number": pl.Int32,
    "units": QUANTITY,
    "unit_price": EXACT,
    "flat_fee": EXACT,
    "amount": EXACT,
}
UNRATED_SCHEMA = {
    "customer_id": pl.String,
    "billing_account_id": pl.String,
    "product_id": pl.String,
    "quantity": QUANTITY,
    "reason": pl.String,
    "detail": pl.String,
}
INVOICE_SCHEMA = {
    "billing_account_id": pl.String,
    "currency": pl.String,
    "period": pl.String,
    "total": MONEY_TYPE,
    "line_count": pl.Int64,
    "is_finalizable": pl.Boolean,
}
BATCH_EVENTS = 1_000_000  # events read from the warehouse at a time by `rerate_warehouse`
_SORT = ["billing_account_id", "currency", "product_id", "segment_start", "rate_id"]  # true-ups (no product) last


@dataclass
class Rerated:
    lines: pl.DataFrame  # one row per priced segment, plus minimum-commitment true-ups
    tiers: pl.DataFrame  # the tier breakdown of each line (line key + tier)
    unrated: pl.DataFrame  # usage that found no price, with the reason and a sentence for people
    invoices: pl.DataFrame  # one row per (billing account, currency, period)


def rerate(catalog: Catalog, events: pl.DataFrame, period: Period) -> Rerated:
    """Price `period` for every account in `catalog` from deduplicated, normalized `events`."""
    return rerate_days(catalog, _in_period(catalog, _checked(events), period), period)


def rerate_warehouse(tx: Tx, catalog: Catalog, period: Period, *, batch_events: int = BATCH_EVENTS) -> Rerated:
    """`rerate` reading `raw.events` itself, a batch of customers at a time.

    Only the per-(customer, product, local day) rollups of all batches are held together, so memory
    is bounded by about `batch_events` events plus the number of such groups, not by the month's
    events. Reads only `raw.events` (never the dbt models): the re-rating stays independent.
    """
    lo, hi = period.padded_window()  # every event on a local day of the period, in any time zone
    counts = tx.fetchall(f"SELECT customer_id, COUNT(*) FROM {RAW_SCHEMA}.events WHERE occurred_at >= ? "
                         "AND occurred_at < ? GROUP BY customer_id ORDER BY customer_id", [lo, hi])
    parts = [_in_period(catalog, _checked(pl.DataFrame(schema=EVENT_SCHEMA)), period)]
    for customers in _customer_batches(counts, batch_events):
        tx.register("_rerate_customers", pl.DataFrame({"customer_id": customers}, schema={"customer_id": pl.String}))
        events = tx.frame(
            f"SELECT {', '.join(f'e.{c}' for c in EVENT_SCHEMA)} "
            f"FROM {RAW_SCHEMA}.events e JOIN _rerate_customers c ON c.customer_id = e.customer_id "
            "WHERE e.occurred_at >= ? AND e.occurred_at < ?", [lo, hi])
        tx.unregister("_rerate_customers")
        parts.append(_in_period(catalog, _checked(events), period))
        del events
    return rerate_days(catalog, pl.concat(parts), period)


def _customer_batches(counts: list[tuple[str, int]], batch_events: int) -> Iterable[list[str]]:
    """Customers grouped so that each group has at most `batch_events` events (a bigger customer alone)."""
    batch: list[str] = []
    held = 0
    for customer, n in counts:
        if batch and held + n > batch_events:
            yield batch
            batch, held = [], 0
        batch.append(customer)
        held += n
    if batch:
        yield batch


def rerate_days(catalog: Catalog, day_usage: pl.DataFrame, period: Period) -> Rerated:
    """Price `period` from the per-(customer, product, local day) rollups of `_in_period`."""
    known = day_usage.filter(pl.col("billing_account_id").is_not_null()
                             & pl.col("product_id").is_in(list(catalog.products)) & pl.col("in_life"))
    provisioned = _provisioned_days(catalog, period)
    days = _resolve_days(catalog, known, provisioned)

    usage = known.join(days, on=["billing_account_id", "product_id", "day"], how="left")
    lines, tiers = _price_segments(catalog, period, days, usage.filter(pl.col("rate_id").is_not_null()))
    lines = lines + _minimum_commitments(catalog, period, lines)

    unrated = _unrated(catalog, day_usage, usage, days, provisioned)
    line_frame = pl.DataFrame(lines, schema=LINE_SCHEMA, orient="row").sort(_SORT, nulls_last=True)
    tier_frame = pl.DataFrame(tiers, schema=TIER_SCHEMA, orient="row").sort([*_SORT, "tier_number"], nulls_last=True)
    return Rerated(line_frame, tier_frame, unrated, _invoices(line_frame, unrated))


def _checked(events: pl.DataFrame) -> pl.DataFrame:
    """Keep the event columns; refuse binary floats and zone-less timestamps instead of guessing."""
    missing = [c for c in EVENT_SCHEMA if c not in events.columns]
    if missing:
        raise ValueError(f"events frame lacks columns {missing}; expected {list(EVENT_SCHEMA)}")
    if not isinstance(events.schema["quantity"], pl.Decimal):
        raise TypeError(f"events.quantity must be a Decimal column, not {events.schema['quantity']} "
                        "(binary floats cannot carry exact quantities)")
    occurred = events.schema["occurred_at"]
    if not isinstance(occurred, pl.Datetime) or occurred.time_zone is None:
        raise TypeError(f"events.occurred_at must be a zoned Datetime (UTC), not {occurred}")
    nulls = {c: n for c, n in events.select(pl.col(list(EVENT_SCHEMA)).null_count()).row(0, named=True).items() if n}
    if nulls:  # a null would drop out of a filter or a sum: usage lost without a word
        raise ValueError(f"events have nulls in {nulls}; normalization should have quarantined those rows")
    quantity = events.schema["quantity"]
    if events.height and quantity != QUANTITY:
        # Polars rounds a narrowing decimal cast silently; refuse quantities with more than 9 places
        lossy = events.filter(pl.col("quantity").cast(QUANTITY).cast(quantity) != pl.col("quantity"))
        if lossy.height:
            raise ValueError(f"{lossy.height} event quantities have more than {QUANTITY.scale} decimal places, "
                             f"e.g. {lossy['quantity'][0]} (event {lossy['event_id'][0]})")
    return events.select(
        pl.col("source", "event_id", "customer_id", "product_id").cast(pl.String),
        pl.col("quantity").cast(QUANTITY),
        pl.col("occurred_at").dt.convert_time_zone("UTC"),
    )


def _in_period(catalog: Catalog, events: pl.DataFrame, period: Period) -> pl.DataFrame:
    """Events of the period rolled up per (customer, product, local day).

    Each day keeps what every meter needs to combine days later: sum, count, max, and the last
    reading with the (timestamp, source, event_id) that decides which reading is last. Each time
    zone converts only its own customers' events, and the query runs on Polars' streaming engine,
    so memory follows the groups more than the events.
    """
    accounts = pl.DataFrame(
        {
            "customer_id": list(catalog.customers),
            "billing_account_id": [catalog.billing_account(c) for c in catalog.customers],
            "timezone": [c.timezone for c in catalog.customers.values()],
            "active_from": [c.active_from for c in catalog.customers.values()],
            "active_to": [c.active_to for c in catalog.customers.values()],
        },
        schema={"customer_id": pl.String, "billing_account_id": pl.String, "timezone": pl.String,
                "active_from": pl.Date, "active_to": pl.Date},
    )
    placed = events.lazy().join(accounts.lazy(), on="customer_id", how="left").with_columns(
        pl.col("timezone").fill_null("UTC"))  # unknown customers: UTC
    zones = sorted({c.timezone for c in catalog.customers.values()} | {"UTC"})
    by_zone = [
        placed.filter(pl.col("timezone") == zone).with_columns(
            day=pl.col("occurred_at").dt.convert_time_zone(zone).dt.date())
        for zone in zones
    ]
    last_order = ["occurred_at", "source", "event_id"]
    return (
        pl.concat(by_zone)
        .filter((pl.col("day") >= period.start) & (pl.col("day") < period.end))
        .with_columns(in_life=pl.col("billing_account_id").is_not_null()  # a known customer, on a day of its life
                      & (pl.col("active_from").is_null() | (pl.col("day") >= pl.col("active_from")))
                      & (pl.col("active_to").is_null() | (pl.col("day") < pl.col("active_to"))))
        .group_by("customer_id", "billing_account_id", "product_id", "day", "in_life")
        .agg(
            q_sum=pl.col("quantity").sum(),
            q_count=pl.len().cast(pl.Int64),
            q_max=pl.col("quantity").max(),
            q_last=pl.col("quantity").sort_by(last_order).last(),
            last_at=pl.col("occurred_at").sort_by(last_order).last(),
            last_source=pl.col("source").sort_by(last_order).last(),
            last_event_id=pl.col("event_id").sort_by(last_order).last(),
        )
        .collect(engine="streaming")
    )


def _days(start: date, end: date) -> Iterable[date]:
    for n in range((end - start).days):
        yield start + timedelta(days=n)


def _provisioned_days(catalog: Catalog, period: Period) -> pl.DataFrame:
    """(provisioning customer, billing account, product, day) for each provisioned day of the period.

    A child's provisioned product bills to its billing account like its usage does. Only the days both
    the provisioning and its customer are active count.
    """
    rows = []
    for ap in catalog.account_products.values():
        customer = catalog.customers[ap.customer_id]
        start = max(ap.effective_from, period.start, customer.active_from or period.start)
        end = min(ap.effective_to or period.end, period.end, customer.active_to or period.end)
        account = catalog.billing_account(ap.customer_id)
        rows.extend((ap.customer_id, account, ap.product_id, day) for day in _days(start, end))
    return pl.DataFrame(
        rows,
        schema={"customer_id": pl.String, "billing_account_id": pl.String, "product_id": pl.String, "day": pl.Date},
        orient="row",
    ).unique()


class _Index:
    """Contracts by customer and rates by (product, currency) and by who they apply to, so the
    per-day walk looks at a handful of rates, not at every customer's overrides."""

    def __init__(self, catalog: Catalog):
        self.contracts: dict[str, list[Contract]] = {}
        for contract in catalog.contracts.values():
            self.contracts.setdefault(contract.customer_id, []).append(contract)
        self.rates: dict[tuple[str, str], list[Rate]] = {}
        # (level, product, currency, owner) -> rates in catalog order; owner: customer, contract,
        # rate class, or None for product defaults
        self.by_owner: dict[tuple[str, str, str, str | None], list[Rate]] = {}
        for rate in catalog.rates.values():
            self.rates.setdefault((rate.product_id, rate.currency), []).append(rate)
            key = (rate.product_id, rate.currency)
            if rate.level == "account_override":
                self.by_owner.setdefault(("account", *key, rate.customer_id), []).append(rate)
            if rate.contract_id is not None:
                self.by_owner.setdefault(("contract", *key, rate.contract_id), []).append(rate)
            if rate.rate_class_id is not None:
                self.by_owner.setdefault(("rate_class", *key, rate.rate_class_id), []).append(rate)
            if rate.level == "product_default":
                self.by_owner.setdefault(("default", *key, None), []).append(rate)


def _contract_on(index: _Index, account: str, day: date) -> Contract | None:
    for contract in index.contracts.get(account, ()):
        if contract.effective_from <= day and (contract.effective_to is None or day < contract.effective_to):
            return contract
    return None


def find_rate(catalog: Catalog, account: str, product_id: str, day: date,
              index: _Index | None = None) -> tuple[str, Rate | None]:
    """(currency, rate) for a billing account's product on one day; rate None when nothing applies.

    The first rate in force that day, in catalog order, of: the account's override, the contract
    in force, the rate class (the contract's, else the account's), the product default.
    """
    index = index or _Index(catalog)
    contract = _contract_on(index, account, day)
    currency = contract.currency if contract else catalog.customers[account].currency
    rate_class = (contract.rate_class_id if contract and contract.rate_class_id
                  else catalog.customers[account].rate_class_id)
    levels = (
        ("account", account),
        ("contract", contract.contract_id if contract is not None else None),
        ("rate_class", rate_class),
        ("default", None),
    )
    for level, owner in levels:
        if owner is None and level != "default":
            continue
        for rate in index.by_owner.get((level, product_id, currency, owner), ()):
            if rate.effective_on(day):
                return currency, rate
    return currency, None


def _resolve_days(catalog: Catalog, known: pl.DataFrame, provisioned: pl.DataFrame) -> pl.DataFrame:
    """Every (account, product, day) with usage or provisioning, with its currency and rate.

    Few rows (accounts x products x days), so the hierarchy walk is plain Python.
    """
    keys = ["billing_account_id", "product_id", "day"]
    provisioned_keys = provisioned.select(keys).unique().with_columns(provisioned=pl.lit(True))
    all_keys = (
        pl.concat([known.select(keys), provisioned.select(keys)]).unique()
        .join(provisioned_keys, on=keys, how="left")
        .with_columns(pl.col("provisioned").fill_null(False))
    )
    rows, index = [], _Index(catalog)
    for account, product, day, is_provisioned in all_keys.iter_rows():
        currency, rate = find_rate(catalog, account, product, day, index)
        rows.append((account, product, day, is_provisioned, currency,
                     rate.rate_id if rate else None, rate.level if rate else None))
    return pl.DataFrame(
        rows,
        schema={**{k: pl.String for k in keys[:2]}, "day": pl.Date, "provisioned": pl.Boolean,
                "currency": pl.String, "rate_id": pl.String, "rate_level": pl.String},
        orient="row",
    )


def _price_segments(catalog: Catalog, period: Period, days: pl.DataFrame, rated: pl.DataFrame):
    """One line per (account, product, currency, rate): its days, its meter reading, its price."""
    segment_key = ["billing_account_id", "product_id", "currency", "rate_id"]
    segments = (
        days.filter(pl.col("rate_id").is_not_null())
        .group_by(*segment_key, "rate_level")
        .agg(
            segment_start=pl.col("day").min(),
            segment_end=pl.col("day").max() + timedelta(days=1),
            active_days=pl.len().cast(pl.Int64),
            provisioned=pl.col("provisioned").any(),
        )
    )
    last_order = ["last_at", "last_source", "last_event_id"]
    readings = rated.group_by(segment_key).agg(
        q_sum=pl.col("q_sum").sum(),
        q_count=pl.col("q_count").sum(),
        q_max=pl.col("q_max").max(),
        q_last=pl.col("q_last").sort_by(last_order).last(),
    )
    lines, tiers = [], []
    for seg in segments.join(readings, on=segment_key, how="left").iter_rows(named=True):
        product = catalog.products[seg["product_id"]]
        rate = catalog.rates[seg["rate_id"]]
        aggregation = product.aggregation
        if aggregation == "count":
            quantity = Decimal(seg["q_count"] or 0)
        else:  # 'none' (recurring) products with events are counted like 'sum'
            quantity = {"max": seg["q_max"], "last": seg["q_last"]}.get(aggregation, seg["q_sum"])
        quantity = quantity if quantity is not None else Decimal(0)  # provisioned, no usage
        priced = price_segment(rate.price, quantity, provisioned=seg["provisioned"],
                               active_days=seg["active_days"], period_days=period.days)
        _fits(priced.amount, seg)
        key = (seg["billing_account_id"], seg["currency"], period.key, seg["product_id"],
               "recurring" if aggregation == "none" else "usage", seg["rate_id"],
               seg["segment_start"], seg["segment_end"])
        lines.append((*key, seg["rate_level"], quantity, priced.billable, priced.amount,
                      round_money(priced.amount, seg["currency"])))
        tiers.extend((*key, t.tier_number, t.units, t.unit_price, t.flat_fee, t.amount) for t in priced.tiers)
    return lines, tiers


class AmountDoesNotFit(ValueError):
    """A re-rated amount the warehouse's amount type (core/money.py AMOUNT) cannot keep exactly."""

    def __init__(self, amount: Decimal, seg: dict, problem: str):
        self.billing_account_id, self.product_id, self.rate_id = (
            seg["billing_account_id"], seg["product_id"], seg["rate_id"])
        super().__init__(f"the amount {amount:f} of {self.billing_account_id} {self.product_id} (rate {self.rate_id}) "
                         f"{problem}; no invoice can hold it exactly: check the price's digits and the usage")


def _fits(amount: Decimal, seg: dict) -> None:
    """Refuse an amount that EXACT would round or overflow: money stays exact or fails, with why.

    AMOUNT.problem compares in a context wide enough for 38 digits (the default 28 digits made
    quantize itself fail at the catalog's limits)."""
    problem = AMOUNT.problem(amount)
    if problem is not None:
        raise AmountDoesNotFit(amount, seg, problem)


def _minimum_commitments(catalog: Catalog, period: Period, lines: list[tuple]) -> list[tuple]:
    """True-up lines bringing each committed account's subtotal, in the contract's currency, up to the minimum,
    for contracts in force on a day of the period inside their customer's life."""
    out = []
    for contract in catalog.contracts.values():
        if contract.minimum_commitment is None:
            continue
        customer = catalog.customers[contract.customer_id]
        first = max(contract.effective_from, period.start, customer.active_from or period.start)
        end = min(contract.effective_to or period.end, period.end, customer.active_to or period.end)
        if first >= end:
            continue
        account = catalog.billing_account(contract.customer_id)
        subtotal = sum((line[-1] for line in lines if line[0] == account and line[1] == contract.currency),
                       Decimal(0))
        if subtotal < contract.minimum_commitment:
            shortfall = contract.minimum_commitment - subtotal
            out.append((account, contract.currency, period.key, None, "minimum_commitment", contract.contract_id,
                        period.start, period.end, "contract", None, None, shortfall,
                        round_money(shortfall, contract.currency)))
    return out


def _quantity_text(q: Decimal) -> str:
    return format(q.normalize(), ",f") if q else "0"


def _unrated(catalog: Catalog, day_usage: pl.DataFrame, usage: pl.DataFrame, days: pl.DataFrame,
             provisioned: pl.DataFrame) -> pl.DataFrame:
    """Everything of the period that found no price, summed in received units, with a reason a person can act on."""
    rows = []
    who = ["customer_id", "billing_account_id", "product_id"]
    span = (pl.col("q_sum").sum().alias("quantity"), pl.col("day").min().alias("first"),
            pl.col("day").max().alias("last"))

    unknown_customer = day_usage.filter(pl.col("billing_account_id").is_null())
    for r in unknown_customer.group_by(who).agg(*span).iter_rows(named=True):
        rows.append((r["customer_id"], None, r["product_id"], r["quantity"], "unknown_customer",
                     f"{_quantity_text(r['quantity'])} {r['product_id']} used {r['first']}..{r['last']} by customer "
                     f"'{r['customer_id']}', which is not in the catalog; add the customer (or fix the id at the "
                     "source) before this usage can be billed"))

    unknown_product = day_usage.filter(pl.col("billing_account_id").is_not_null()
                                       & ~pl.col("product_id").is_in(list(catalog.products)))
    for r in unknown_product.group_by(who).agg(*span).iter_rows(named=True):
        rows.append((r["customer_id"], r["billing_account_id"], r["product_id"], r["quantity"], "unknown_product",
                     f"{_quantity_text(r['quantity'])} units of product '{r['product_id']}' used "
                     f"{r['first']}..{r['last']} by {r['customer_id']} (billed to {r['billing_account_id']}): "
                     "the product is not in the catalog; add it or fix the product id at the source"))

    outside_life = day_usage.filter(pl.col("billing_account_id").is_not_null()
                                    & pl.col("product_id").is_in(list(catalog.products)) & ~pl.col("in_life"))
    for r in outside_life.group_by(who).agg(*span).iter_rows(named=True):
        customer = catalog.customers[r["customer_id"]]
        rows.append((r["customer_id"], r["billing_account_id"], r["product_id"], r["quantity"],
                     "outside_customer_life",
                     f"{_quantity_text(r['quantity'])} {r['product_id']} used {r['first']}..{r['last']} by "
                     f"{r['customer_id']} (billed to {r['billing_account_id']}), outside its life in the catalog "
                     f"(active from {customer.active_from or 'always'} to {customer.active_to or 'open'}); fix the "
                     "customer's active_from / active_to or the usage's dates"))

    no_price = usage.filter(pl.col("rate_id").is_null())
    # Provisioned days without usage and without a price are reported too, with quantity 0:
    # a provisioned product that cannot be priced is a fee silently not charged.
    keys = ["billing_account_id", "product_id", "day"]
    idle = (
        provisioned.join(usage.select(keys), on=keys, how="anti")
        .join(days.filter(pl.col("rate_id").is_null()).select(*keys, "currency"), on=keys, how="inner")
        .with_columns(q_sum=pl.lit(Decimal(0), dtype=QUANTITY))
    )
    for frame, what in ((no_price, "used"), (idle, "provisioned")):
        grouped = frame.group_by(who).agg(*span, currencies=pl.col("currency").unique().sort())
        for r in grouped.iter_rows(named=True):
            rows.append((r["customer_id"], r["billing_account_id"], r["product_id"], r["quantity"], "no_price",
                         f"{_quantity_text(r['quantity'])} {r['product_id']} {what} {r['first']}..{r['last']} by "
                         f"{r['customer_id']} (billed to {r['billing_account_id']}) has no "
                         f"{'/'.join(r['currencies'])} price at any level (account override, contract, rate class, "
                         "product default); add a price in that currency, there is no conversion"))
    return pl.DataFrame(rows, schema=UNRATED_SCHEMA, orient="row").sort(
        ["reason", "customer_id", "product_id"], nulls_last=True)


def _invoices(lines: pl.DataFrame, unrated: pl.DataFrame) -> pl.DataFrame:
    """One invoice per (account, currency, period); not finalizable while the account has unrated usage."""
    blocked = unrated["billing_account_id"].drop_nulls().unique().to_list()
    return (
        lines.group_by("billing_account_id", "currency", "period")
        .agg(total=pl.col("amount").sum(), line_count=pl.len().cast(pl.Int64))
        .with_columns(is_finalizable=~pl.col("billing_account_id").is_in(blocked))
        .select(list(INVOICE_SCHEMA))
        .cast(INVOICE_SCHEMA)
        .sort("billing_account_id", "currency", "period")
    )
