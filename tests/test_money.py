from decimal import Decimal

import duckdb
import pytest

from core.money import minor_units, round_money


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("3.685", "USD", "3.69"),  # 0.067 x 55: half away from zero, not to even
        ("2489.134", "USD", "2489.13"),
        ("338.709677419354", "USD", "338.71"),
        ("-2.5", "JPY", "-3"),
        ("2.5", "JPY", "3"),
        ("1.0005", "KWD", "1.001"),
        ("0.125", "EUR", "0.13"),
    ],
)
def test_round_money_half_away_from_zero_to_minor_units(amount, currency, expected):
    assert round_money(Decimal(amount), currency) == Decimal(expected)
    assert str(round_money(Decimal(amount), currency)) == expected


def test_minor_units_from_iso_4217():
    assert (minor_units("JPY"), minor_units("USD"), minor_units("KWD")) == (0, 2, 3)
    with pytest.raises(ValueError, match="ISO 4217"):
        minor_units("XYZ")


def test_sql_rounding_macro_agrees_with_python():
    """The dbt macro round_money, rendered for DuckDB, rounds as core.money does."""
    from pathlib import Path

    macro = (Path(__file__).parent.parent / "dbt_project" / "macros" / "money.sql").read_text()
    assert "round({{ amount }}, 2)" in macro  # the branch exercised below
    con = duckdb.connect()
    for amount, currency in [("3.685", "USD"), ("-2.5", "JPY"), ("1.0005", "KWD"), ("0.067", "USD")]:
        digits = minor_units(currency)
        got = con.execute(f"select cast(round(cast(? as decimal(38, 12)), {digits}) as decimal(38, 3))",
                          [amount]).fetchone()[0]
        assert got == round_money(Decimal(amount), currency)
