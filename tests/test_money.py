from decimal import Decimal

import duckdb
import pytest

from core.money import MINOR_UNITS, MONEY, minor_units, round_money


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


def test_minor_units_reach_four_places():
    assert (minor_units("CLF"), minor_units("UYW")) == (4, 4)
    assert round_money(Decimal("0.12345"), "CLF") == Decimal("0.1235")


def test_sql_rounding_macro_agrees_with_python():
    """The dbt macro round_money, its text run on DuckDB, rounds as core.money does, every currency's
    minor units included (CLF's 4 places come out as 4 places, not NULL)."""
    import re
    from pathlib import Path

    macros = (Path(__file__).parent.parent / "dbt_project" / "macros" / "money.sql").read_text()
    body = re.search(r"macro round_money\(amount, minor_units\) -%\}(.*?)\{%- endmacro", macros, re.S).group(1)
    money_type = re.search(r"macro money_type\(\) %\}(.*?)\{% endmacro", macros).group(1)
    assert money_type == MONEY.sql.lower()
    sql = re.sub(r"\{#.*?#\}", "", body, flags=re.S).replace("{{ money_type() }}", money_type)
    sql = sql.replace("{{ amount }}", "cast($amount as decimal(37, 21))").replace("{{ minor_units }}", "$digits")
    con = duckdb.connect()
    examples = [("3.685", "USD"), ("-2.5", "JPY"), ("1.0005", "KWD"), ("0.067", "USD"), ("0.12345", "CLF"),
                ("-7.00005", "UYW"), ("2.5", "UYI")]
    assert {minor_units(c) for _, c in examples} == set(MINOR_UNITS.values())  # every branch
    for amount, currency in examples:
        got = con.execute(f"select {sql}", {"amount": amount, "digits": minor_units(currency)}).fetchone()[0]
        assert got is not None and got == round_money(Decimal(amount), currency), (amount, currency, got)
