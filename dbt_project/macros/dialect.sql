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
