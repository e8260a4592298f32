{#
  Money rules in SQL. `round_money` is the one place amounts are rounded: half away from zero,
  to the currency's minor units (ISO 4217: JPY 0, USD 2, KWD 3, CLF 4; raw.catalog_currencies holds
  core/money.py's table). core/money.py is the same rule in Python; tests hold both to the
  same examples.

  The decimal types are core/money.py's sizes (tests/test_money.py holds them equal). They are
  chosen so every intermediate result stays exact within 38 digits on every engine, Spark included:
  Spark types DECIMAL(p1, s1) x DECIMAL(p2, s2) as DECIMAL(p1 + p2 + 1, s1 + s2) and an addition as
  one digit wider than its wider operand, and above 38 digits it drops decimal places silently.
    quantity 19 + price 18 + 1 = 38: quantity x unit price is exact, DECIMAL(38, 21), below 10^16;
    amount 37: an amount plus a fee (27) or another amount is DECIMAL(38, 21), exact;
    fee 27 + an integer (Spark: DECIMAL(10, 0)) + 1 = 38: a flat fee x days is exact.
    packages 19 + price 18 + 1 = 38: a count of whole packages x the package price is exact.
  Multiply a quantity only by a price (or a count cast to quantity_type or package_count_type),
  never by an amount.
#}

{#- usage quantities, included units, tier bounds: 10 digits before the point, 9 after -#}
{% macro quantity_type() %}decimal(19, 9){% endmacro %}
{#- whole packages, ceil(quantity / package size): up to 10^10, one digit more than a quantity's whole
    part, so no fraction and a quantity's 19 digits (DuckDB multiplies two decimals of at most 18 digits
    in 64 bits, which 10^10 x the largest price overflows; Spark: 19 + 18 + 1 = 38, exact) -#}
{% macro package_count_type() %}decimal(19, 0){% endmacro %}
{#- unit prices and package prices: 6 digits before the point, 12 after -#}
{% macro price_type() %}decimal(18, 12){% endmacro %}
{#- flat fees, flat amounts, minimum commitments: 15 digits before the point, 12 after -#}
{% macro fee_type() %}decimal(27, 12){% endmacro %}
{#- exact unrounded amounts: quantity x price, tier sums, prorated fees (21 = 9 + 12 places) -#}
{% macro amount_type() %}decimal(37, 21){% endmacro %}
{#- rounded amounts: 4 places, the widest ISO 4217 minor unit (CLF, UYW) -#}
{% macro money_type() %}decimal(38, 4){% endmacro %}
{#- sums of quantities that are reported, never priced (unrated usage): as wide as a decimal goes -#}
{% macro quantity_total_type() %}decimal(38, 9){% endmacro %}

{% macro round_money(amount, minor_units) -%}
    {#- DuckDB needs a constant precision for round(), so each minor-unit count has its branch,
        up to the widest in core/money.py (tests/test_money.py checks there is one for each). -#}
    case {{ minor_units }}
        when 0 then cast(round({{ amount }}, 0) as {{ money_type() }})
        when 1 then cast(round({{ amount }}, 1) as {{ money_type() }})
        when 2 then cast(round({{ amount }}, 2) as {{ money_type() }})
        when 3 then cast(round({{ amount }}, 3) as {{ money_type() }})
        when 4 then cast(round({{ amount }}, 4) as {{ money_type() }})
    end
{%- endmacro %}

{#
  Exact decimal division truncated to 12 places (the denominator is a whole number).
  DuckDB's `/` on decimals returns an inexact binary value; PostgreSQL's `/` on numerics rounds at a scale
  it picks from the operands' sizes (as few as 9 places for large amounts), so truncating its
  result is not exact either. Both engines divide whole numbers exactly: scale by 10^12,
  truncating integer division, scale back.
#}
{% macro divide_exact(numerator, denominator) -%}
    {{ return(adapter.dispatch('divide_exact')(numerator, denominator)) }}
{%- endmacro %}

{% macro default__divide_exact(numerator, denominator) -%}
    trunc(cast({{ numerator }} as numeric) / cast({{ denominator }} as numeric), 12)
{%- endmacro %}

{% macro postgres__divide_exact(numerator, denominator) -%}
    {#- div(numeric, numeric) is the exact quotient truncated toward zero, like DuckDB's `//` -#}
    cast(
        div(cast({{ numerator }} as numeric) * 1000000000000, cast({{ denominator }} as numeric))
        * cast(0.000000000001 as decimal(13, 12))
    as {{ amount_type() }})
{%- endmacro %}

{% macro duckdb__divide_exact(numerator, denominator) -%}
    {#- numerator x 10^12 as a 128-bit integer, from its whole part and its fraction apart: in the
        numerator's own DECIMAL(38, 12) the product overflows from 10^14 on (a large flat fee x days) -#}
    {%- set whole = 'floor(' ~ numerator ~ ')' -%}
    cast(
        cast(
            (cast({{ whole }} as hugeint) * 1000000000000
             + cast((({{ numerator }}) - {{ whole }}) * 1000000000000 as hugeint))
            // cast({{ denominator }} as hugeint)
        as decimal(38, 0))
        * cast(0.000000000001 as decimal(13, 12))
    as {{ amount_type() }})
{%- endmacro %}

{#
  Spark: `div` returns a 64-bit integer (too small for an amount x 10^12), so the whole quotient is
  (N - N % d) / d on DECIMAL(38, 0), where N = numerator x 10^12 is built from the whole part and the
  fraction separately (numerator x 10^12 in the numerator's own type would overflow its integer
  digits). Needs spark.sql.decimalOperations.allowPrecisionLoss = false (profiles.yml): every step
  then keeps its digits or the query fails; nothing is rounded.
#}
{% macro spark__divide_exact(numerator, denominator) -%}
    {%- set whole = 'floor(' ~ numerator ~ ')' -%}
    {%- set scaled -%}
        (cast({{ whole }} as decimal(38, 0)) * cast(1000000000000 as decimal(13, 0))
         + cast((({{ numerator }}) - {{ whole }}) * 1000000000000 as decimal(38, 0)))
    {%- endset -%}
    cast(
        cast(({{ scaled }} - {{ scaled }} % cast({{ denominator }} as int)) / cast({{ denominator }} as int)
             as decimal(38, 0))
        * cast(0.000000000001 as decimal(13, 12))
    as {{ amount_type() }})
{%- endmacro %}

{# Whole-number division, truncating (both operands integers). #}
{% macro int_divide(numerator, denominator) -%}
    {{ return(adapter.dispatch('int_divide')(numerator, denominator)) }}
{%- endmacro %}

{% macro default__int_divide(numerator, denominator) -%}
    div(cast({{ numerator }} as bigint), cast({{ denominator }} as bigint))
{%- endmacro %}

{% macro duckdb__int_divide(numerator, denominator) -%}
    (cast({{ numerator }} as bigint) // cast({{ denominator }} as bigint))
{%- endmacro %}

{% macro spark__int_divide(numerator, denominator) -%}
    (cast({{ numerator }} as bigint) div cast({{ denominator }} as bigint))
{%- endmacro %}

{# A stable text key from parts (md5 on both engines). #}
{% macro key_of(parts) -%}
    {{ dbt.hash(dbt.concat(parts_with_separators(parts))) }}
{%- endmacro %}

{% macro parts_with_separators(parts) -%}
    {%- set out = [] -%}
    {%- for part in parts -%}
        {%- do out.append("coalesce(cast(" ~ part ~ " as " ~ string_type() ~ "), '')") -%}
        {%- if not loop.last %}{% do out.append("'|'") %}{% endif -%}
    {%- endfor -%}
    {{ return(out) }}
{%- endmacro %}
