"""Money rules, written once: ISO 4217 minor units, rounding half away from zero, and the sizes
of every decimal the warehouse keeps.

The dbt macro `round_money` implements the same rule in SQL; `tests/test_money.py` runs it against
`round_money` here for every minor unit. dbt reads the minor units of MINOR_UNITS from
raw.catalog_currencies (written from this table by the catalog loader). The SQL types
(warehouse/schema.py, dbt_project/macros/money.sql) are these sizes; `tests/test_precision.py`
holds them to each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, Context, Decimal, localcontext


@dataclass(frozen=True)
class Digits:
    """The size of a kept decimal: at most `integer` digits before the point and `fraction` after."""

    integer: int
    fraction: int

    @property
    def precision(self) -> int:
        return self.integer + self.fraction

    @property
    def sql(self) -> str:
        return f"DECIMAL({self.precision}, {self.fraction})"

    @property
    def largest(self) -> Decimal:
        """The largest value kept: 9,999,999,999.999999999 for Digits(10, 9)."""
        return Decimal(10) ** self.integer - Decimal(1).scaleb(-self.fraction)

    def describe(self) -> str:
        return f"at most {self.integer} digits before the decimal point and {self.fraction} after"

    def problem(self, value: Decimal) -> str | None:
        """Why `value` cannot be kept exactly at this size, or None when it can."""
        if not value.is_finite():
            return "is not a finite number"
        if abs(value) > self.largest:
            return f"is too large (the limit: {self.describe()}, i.e. {self.largest:f})"
        with localcontext(Context(prec=2 * 38)):  # wide enough that quantize itself cannot round
            if value != value.quantize(Decimal(1).scaleb(-self.fraction), rounding=ROUND_DOWN):
                return f"has more than {self.fraction} decimal places (the limit: {self.describe()})"
        return None


# The accepted sizes, in one place. Every intermediate result must stay exact within 38 digits on
# every engine, including Spark, whose DECIMAL(p1, s1) x DECIMAL(p2, s2) is DECIMAL(p1 + p2 + 1,
# s1 + s2) and silently drops places beyond 38 (and whose additions need one digit more than the
# wider operand). So QUANTITY.precision + PRICE.precision + 1 <= 38, and AMOUNT leaves that one digit.
QUANTITY = Digits(10, 9)  # an event's quantity, a line's aggregated quantity, included units, tier bounds
PRICE = Digits(6, 12)  # a unit price (per unit, tier) and a package price: at least 12 places, as Stripe keeps
FEE = Digits(15, 12)  # a flat fee (model or tier) and a minimum commitment: multiplied by days only
AMOUNT = Digits(QUANTITY.integer + PRICE.integer, QUANTITY.fraction + PRICE.fraction)  # exact, unrounded

# ISO 4217 minor units. Currencies not listed default to 2 only if the catalog says so;
# an unknown code is refused by the catalog loader rather than guessed.
MINOR_UNITS: dict[str, int] = {
    # zero-decimal currencies
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0,
    "PYG": 0, "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    # three-decimal currencies
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    # four-decimal (funds codes)
    "CLF": 4, "UYW": 4,
    # two-decimal currencies (the common case)
    **{
        code: 2
        for code in (
            "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP "
            "BYN BZD CAD CDF CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP "
            "GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT "
            "LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN "
            "NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP "
            "SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD UYU UZS VES "
            "WST XCD YER ZAR ZMW ZWG"
        ).split()
    },
}


# A rounded amount: as many places as the widest ISO 4217 minor unit (4: CLF, UYW), so one
# SQL type holds every currency's amounts.
MONEY = Digits(38 - max(MINOR_UNITS.values()), max(MINOR_UNITS.values()))


# The ledger keeps what was issued in one type wide enough for each value it holds: rounded amounts
# (MONEY's places), quantities (QUANTITY's) and unit prices and fees (12 places), so a column need not
# know which it holds; and a tier's unrounded amount as exact as the rating made it (AMOUNT's places).
LEDGER = Digits(38 - PRICE.fraction, PRICE.fraction)  # DECIMAL(38, 12): ledger/schema.py, macros/ledger.sql
LEDGER_EXACT = Digits(38 - AMOUNT.fraction, AMOUNT.fraction)  # DECIMAL(38, 21)

def minor_units(currency: str) -> int:
    """Digits after the decimal point for an ISO 4217 currency code."""
    try:
        return MINOR_UNITS[currency]
    except KeyError:
        raise ValueError(
            f"{currency!r} is not an ISO 4217 currency code this warehouse knows "
            "(use a three-letter code such as USD, EUR, JPY)"
        ) from None


def round_money(amount: Decimal, currency: str) -> Decimal:
    """Round once to the currency's minor unit, half away from zero (3.685 -> 3.69, -2.5 JPY -> -3)."""
    exponent = Decimal(1).scaleb(-minor_units(currency))
    return amount.quantize(exponent, rounding=ROUND_HALF_UP)
