"""Money rules, written once: ISO 4217 minor units and rounding half away from zero.

The dbt macro `round_money` implements the same rule in SQL; `tests/test_money.py` holds both
to the same examples.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

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
