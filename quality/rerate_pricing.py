"""Price one segment of usage under one `Price`: the pricing models written out in plain Python.

This is the independent re-rater's arithmetic. It shares nothing with the dbt SQL on purpose, so
that a disagreement between the two points at a bug in one of them. Everything is `Decimal`, and
every step except the flat-fee proration runs in a context that raises on any inexact result, so a
rounding can never slip in unnoticed: the only rounding of money happens later, once per line,
through `core.money.round_money`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Context, Decimal, Inexact, localcontext

from catalog.model import Price, Tier
from core.enums import PRICING_MODELS

# Wide enough for any product of two 38-digit decimals without losing a digit.
_PRECISION = 100
# Proration keeps this many decimal places, truncated (the dbt side does the same).
PRORATION_PLACES = 12
_ZERO = Decimal(0)


@dataclass(frozen=True)
class TierCharge:
    """What one tier contributed to a line: `amount = units * unit_price + flat_fee`.

    For `package` the units are packages and the unit price the package price; for `flat_fee` the
    units are the active days and the prorated fee sits in `flat_fee`.
    """

    tier_number: int
    units: Decimal
    unit_price: Decimal
    flat_fee: Decimal
    amount: Decimal


@dataclass(frozen=True)
class Priced:
    billable: Decimal  # quantity less the included units, never below zero
    amount: Decimal  # exact, not rounded
    tiers: tuple[TierCharge, ...]


def _exact() -> Context:
    ctx = Context(prec=_PRECISION)
    ctx.traps[Inexact] = True  # an exact computation that would round is a bug: fail loudly
    return ctx


def tier_bounds(tiers: tuple[Tier, ...]) -> list[tuple[Decimal, Decimal | None]]:
    """(lower, upper) per tier: lower = the previous tier's `up_to` (0 first), upper inclusive or None."""
    bounds, lower = [], _ZERO
    for tier in tiers:
        bounds.append((lower, tier.up_to))
        if tier.up_to is not None:
            lower = tier.up_to
    return bounds


def graduated(tiers: tuple[Tier, ...], billable: Decimal, provisioned: bool = False) -> tuple[TierCharge, ...]:
    """Each unit at its own tier's price, plus the flat fee of every tier reached.

    The first tier's flat fee is also due at zero units when the product is provisioned: it is
    the price of having the product, not of using it.
    """
    charges = []
    with localcontext(_exact()):
        for n, ((lower, upper), tier) in enumerate(zip(tier_bounds(tiers), tiers, strict=True), start=1):
            top = billable if upper is None else min(billable, upper)
            units = max(top - lower, _ZERO)
            if units > 0 or (n == 1 and provisioned):
                charges.append(TierCharge(n, units, tier.unit_price, tier.flat_fee,
                                          units * tier.unit_price + tier.flat_fee))
    return tuple(charges)


def volume_tier(tiers: tuple[Tier, ...], billable: Decimal) -> int:
    """1-based number of the tier the whole quantity falls in: lower < q <= upper (q <= upper for tier 1)."""
    for n, (_lower, upper) in enumerate(tier_bounds(tiers), start=1):
        if upper is None or billable <= upper:
            return n
    raise ValueError("tiers must end with an unbounded tier")  # the catalog loader guarantees one


def volume(tiers: tuple[Tier, ...], billable: Decimal, provisioned: bool = False) -> tuple[TierCharge, ...]:
    """Every unit at the price of the tier the quantity falls in, plus that tier's flat fee."""
    n = volume_tier(tiers, billable)
    tier = tiers[n - 1]
    if billable <= 0 and not provisioned:
        return ()
    with localcontext(_exact()):
        return (TierCharge(n, billable, tier.unit_price, tier.flat_fee, billable * tier.unit_price + tier.flat_fee),)


def package(size: int, price: Decimal, billable: Decimal) -> tuple[TierCharge, ...]:
    """Whole packages, the last one rounded up: ceil(billable / size) x price."""
    if billable <= 0:
        return ()
    with localcontext(_exact()):
        whole, rest = divmod(billable, Decimal(size))
        packages = whole + (1 if rest > 0 else 0)
        return (TierCharge(1, packages, price, _ZERO, packages * price),)


def prorated(flat_amount: Decimal, active_days: int, period_days: int) -> Decimal:
    """flat_amount x active_days / period_days, truncated to 12 decimal places."""
    with localcontext(Context(prec=_PRECISION, rounding=ROUND_DOWN)):
        share = flat_amount * active_days / period_days
        return share.quantize(Decimal(1).scaleb(-PRORATION_PLACES), rounding=ROUND_DOWN)


def price_segment(
    price: Price,
    quantity: Decimal,
    *,
    provisioned: bool = False,
    active_days: int = 1,
    period_days: int = 1,
) -> Priced:
    """Price one segment's aggregated quantity; the result is exact (the caller rounds it once).

    `provisioned`: the account has the product provisioned on some day of the segment (first-tier
    flat fees are then due even at zero usage). `active_days` / `period_days` prorate flat fees.
    """
    with localcontext(_exact()):
        billable = max(quantity - price.included_units, _ZERO)
    if price.model in ("per_unit", "graduated"):
        tiers = graduated(price.tiers, billable, provisioned)
    elif price.model == "volume":
        tiers = volume(price.tiers, billable, provisioned)
    elif price.model == "package":
        if price.package_size is None or price.package_price is None:
            raise ValueError("a package price needs package_size and package_price")
        tiers = package(price.package_size, price.package_price, billable)
    elif price.model == "flat_fee":
        if price.flat_amount is None:
            raise ValueError("a flat_fee price needs its amount")
        fee = prorated(price.flat_amount, active_days, period_days)
        tiers = (TierCharge(1, Decimal(active_days), _ZERO, fee, fee),)
    else:
        raise ValueError(f"unknown pricing model {price.model!r} (core/enums.py: {', '.join(PRICING_MODELS)})")
    with localcontext(_exact()):
        amount = sum((t.amount for t in tiers), _ZERO)
    return Priced(billable, amount, tiers)
