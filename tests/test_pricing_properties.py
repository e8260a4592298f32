"""Property tests of the re-rater's pricing rules: Decimal inputs only, no floats anywhere."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from catalog.load import load_catalog
from catalog.model import Price, Product, Rate, Tier
from core.periods import month_window
from quality.rerate import EVENT_SCHEMA, rerate
from quality.rerate_pricing import price_segment

REFERENCE_CATALOG = Path(__file__).resolve().parents[1] / "examples" / "reference-month" / "catalog.yaml"
FAST = settings(max_examples=100, deadline=None)


def decimals(low: str, high: str, places: int) -> st.SearchStrategy[Decimal]:
    return st.decimals(min_value=Decimal(low), max_value=Decimal(high), places=places,
                       allow_nan=False, allow_infinity=False)


quantities = decimals("0", "1000000", 3)
unit_prices = decimals("0", "10", 4)
fees = decimals("0", "100", 2)


@st.composite
def tier_lists(draw) -> tuple[Tier, ...]:
    """1-5 tiers with strictly increasing inclusive bounds, the last unbounded."""
    bounds = sorted(draw(st.sets(decimals("0.01", "500000", 2), min_size=0, max_size=4)))
    uppers: list[Decimal | None] = [*bounds, None]
    return tuple(Tier(up, draw(unit_prices), draw(fees)) for up in uppers)


@given(tiers=tier_lists(), quantity=quantities, included=decimals("0", "1000", 0))
@FAST
def test_graduated_is_the_sum_of_its_tiers_priced_separately(tiers, quantity, included):
    whole = price_segment(Price("graduated", tiers=tiers, included_units=included), quantity)
    billable = max(quantity - included, Decimal(0))
    expected, lower = Decimal(0), Decimal(0)
    for tier in tiers:
        # the units that fall in this tier, priced on their own at the tier's unit price
        in_tier = max((billable if tier.up_to is None else min(billable, tier.up_to)) - lower, Decimal(0))
        if in_tier > 0:
            expected += price_segment(Price("per_unit", tiers=(Tier(None, tier.unit_price),)), in_tier).amount
            expected += tier.flat_fee
        lower = tier.up_to if tier.up_to is not None else lower
    assert whole.billable == billable
    assert whole.amount == expected
    assert whole.amount == sum((t.amount for t in whole.tiers), Decimal(0))


@given(tiers=tier_lists(), quantity=quantities)
@FAST
def test_volume_prices_every_unit_at_the_tier_the_total_falls_in(tiers, quantity):
    priced = price_segment(Price("volume", tiers=tiers), quantity)
    if quantity == 0:
        assert priced.amount == 0 and priced.tiers == ()
        return
    # the tier is one past the number of bounds the quantity exceeds ("up to" is inclusive)
    n = sum(1 for t in tiers if t.up_to is not None and t.up_to < quantity)
    tier = tiers[n]
    assert priced.amount == quantity * tier.unit_price + tier.flat_fee
    assert [t.tier_number for t in priced.tiers] == [n + 1]


@given(tiers=tier_lists(), quantity=quantities)
@FAST
def test_graduated_never_decreases_with_more_usage(tiers, quantity):
    price = Price("graduated", tiers=tiers)
    step = Decimal("0.001")
    assert price_segment(price, quantity + step).amount >= price_segment(price, quantity).amount


@given(tiers=tier_lists(), quantity=quantities, included=decimals("0", "2000000", 3),
       model=st.sampled_from(["graduated", "volume"]))
@FAST
def test_included_units_are_the_same_as_less_usage(tiers, quantity, included, model):
    with_allowance = price_segment(Price(model, tiers=tiers, included_units=included), quantity)
    without = price_segment(Price(model, tiers=tiers), max(quantity - included, Decimal(0)))
    assert with_allowance.amount == without.amount


@given(quantity=quantities, size=st.integers(1, 1000), price=decimals("0", "50", 2))
@FAST
def test_package_buys_the_fewest_whole_packages_that_cover_usage(quantity, size, price):
    priced = price_segment(Price("package", package_size=size, package_price=price), quantity)
    packages = priced.tiers[0].units if priced.tiers else Decimal(0)
    assert packages == packages.to_integral_value()
    assert (packages - 1) * size < quantity <= packages * size or (quantity == 0 and packages == 0)
    assert priced.amount == packages * price


# --- the invoice does not depend on the order events arrive in --------------------------------


def _catalog():
    """The reference catalog plus a 'last'-aggregated gauge, so ordering ties matter."""
    cat = load_catalog(REFERENCE_CATALOG)
    cat.products["GAUGE"] = Product("GAUGE", "Gauge", "unit", "last")
    cat.rates["default:GAUGE"] = Rate("default:GAUGE", "product_default", "GAUGE", "USD",
                                      Price("per_unit", tiers=(Tier(None, Decimal("0.25")),)))
    return cat


CATALOG = _catalog()
OCTOBER = month_window("2026-10")
event_rows = st.lists(
    st.tuples(
        st.sampled_from(["C1", "C6", "C2", "C3", "C4", "C999"]),  # C6 bills to C1: two customers, one meter
        st.sampled_from(["GAUGE", "GAUGE", "API_CALLS", "STORAGE_GB", "SMS", "BANDWIDTH_GB", "NOPE"]),
        decimals("0", "100000", 3),
        # few distinct instants, some just outside the month, so ties and edges are common
        st.sampled_from([-1, 0, 15 * 24, 15 * 24, 31 * 24 - 1, 31 * 24]),
        st.sampled_from(["api", "sftp", "upload"]),
    ),
    max_size=40,
)
# Readings of one meter at the same instant from two customers of one account: only the
# (source, event_id) tie-break, never the arrival order, may decide which one is last.
tied_rows = st.lists(
    st.tuples(st.sampled_from(["C1", "C6"]), st.just("GAUGE"), decimals("0", "1000", 0),
              st.sampled_from([15 * 24, 20 * 24]), st.sampled_from(["api", "sftp", "upload"])),
    min_size=2, max_size=10,
)


@given(rows=st.one_of(event_rows, tied_rows), data=st.data())
@FAST
def test_invoice_total_does_not_depend_on_event_order(rows, data):
    start = datetime(2026, 10, 1, tzinfo=UTC)
    events = pl.DataFrame(
        [(src, f"e{n}", c, p, q, start + timedelta(hours=h)) for n, (c, p, q, h, src) in enumerate(rows)],
        schema=EVENT_SCHEMA, orient="row",
    )
    order = data.draw(st.permutations(range(events.height)))
    shuffled = events.with_columns(_order=pl.Series(order, dtype=pl.Int64)).sort("_order").drop("_order")
    first, second = rerate(CATALOG, events, OCTOBER), rerate(CATALOG, shuffled, OCTOBER)
    assert first.invoices.equals(second.invoices)
    assert first.lines.equals(second.lines)
    assert first.unrated.equals(second.unrated)
    # and the totals are the sums of rounded lines
    sums = first.lines.group_by("billing_account_id", "currency").agg(pl.col("amount").sum())
    joined = first.invoices.join(sums, on=["billing_account_id", "currency"])
    assert (joined["total"] == joined["amount"]).all()
