{#
  Where the SQL dialects differ, one small dispatched macro each: DuckDB and PostgreSQL share the
  default, Spark (dbt-spark) has its own. Models call these instead of writing the type or the
  function, so the same model SQL builds on every engine.
#}

{# Text: Spark has no VARCHAR without a length. #}
{% macro string_type() %}{{ return(adapter.dispatch('string_type')()) }}{% endmacro %}
{% macro default__string_type() %}varchar{% endmacro %}
{% macro spark__string_type() %}string{% endmacro %}

{# An instant (UTC): Spark's TIMESTAMP is one, read and shown in the session's time zone (UTC, profiles.yml). #}
{% macro instant_type() %}{{ return(adapter.dispatch('instant_type')()) }}{% endmacro %}
{% macro default__instant_type() %}timestamp with time zone{% endmacro %}
{% macro spark__instant_type() %}timestamp{% endmacro %}

{# The local calendar day of an instant in a time zone (an IANA name). #}
{% macro local_date(instant, time_zone) %}{{ return(adapter.dispatch('local_date')(instant, time_zone)) }}{% endmacro %}
{% macro default__local_date(instant, time_zone) -%}
    cast({{ instant }} at time zone {{ time_zone }} as date)
{%- endmacro %}
{% macro spark__local_date(instant, time_zone) -%}
    {#- from_utc_timestamp shifts the UTC wall clock to the zone's; the session time zone is UTC -#}
    cast(from_utc_timestamp({{ instant }}, {{ time_zone }}) as date)
{%- endmacro %}

{#
  Contracts (marts/_marts.yml) name their types the DuckDB / PostgreSQL way; dbt checks them by
  casting NULL to each declared type (dbt.cast), so on Spark the names are translated first.
#}
{% macro spark__cast(field, type) -%}
    cast({{ field }} as {{ spark_type_name(type) }})
{%- endmacro %}

{% macro spark_type_name(type) -%}
    {%- set name = type | trim | lower -%}
    {{- {'varchar': 'string', 'text': 'string', 'timestamp with time zone': 'timestamp',
         'timestamptz': 'timestamp'}.get(name, type) -}}
{%- endmacro %}

{#
  The value of `value` on the row whose `columns` are the greatest, compared column by column (the
  first row of the group ordered by each of them descending): an aggregate. DuckDB and Spark find it
  in one pass over the group (no sort of its rows); PostgreSQL, which has no such aggregate, sorts
  each group's rows and takes the first. Ties on every column: any of the tied rows' values.
#}
{% macro max_by_columns(value, columns) %}{{ return(adapter.dispatch('max_by_columns')(value, columns)) }}{% endmacro %}
{% macro default__max_by_columns(value, columns) -%}
    (array_agg({{ value }} order by {% for c in columns %}{{ c }} desc{{ ', ' if not loop.last }}{% endfor %}))[1]
{%- endmacro %}
{% macro duckdb__max_by_columns(value, columns) -%}
    {#- arg_max_null, not arg_max: a NULL value on the greatest row is the answer, not skipped -#}
    arg_max_null({{ value }}, row({{ columns | join(', ') }}))
{%- endmacro %}
{% macro spark__max_by_columns(value, columns) -%}
    max_by({{ value }}, struct({{ columns | join(', ') }}))
{%- endmacro %}
