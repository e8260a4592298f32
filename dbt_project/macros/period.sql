{# The billing period, from the vars Dagster / `billing run` pass (core/periods.py builds them). #}

{% macro period_start() -%}
    {%- if execute and var('period_start') is none -%}
        {{ exceptions.raise_compiler_error("no billing period: pass --vars '{period_start: 2026-10-01, period_end: 2026-11-01}' (or use `billing run --month 2026-10`)") }}
    {%- endif -%}
    {{ var('period_start') or '1970-01-01' }}
{%- endmacro %}

{% macro period_end() -%}
    {{ var('period_end') or '1970-02-01' }}
{%- endmacro %}

{# 'YYYY-MM': the key every period-scoped table carries. #}
{% macro period_key() -%}
    '{{ period_start()[:7] }}'
{%- endmacro %}

{# Month arithmetic in SQL, as core/periods.py month_index: the months since year 0 of a 'YYYY-MM'
   key (an expression); tests/test_periods.py compiles these and compares with core/periods.py. #}
{% macro month_index(key) -%}
    (cast(substr({{ key }}, 1, 4) as integer) * 12 + cast(substr({{ key }}, 6, 2) as integer) - 1)
{%- endmacro %}

{# How many months the period comes after the month `key` (1 for the month before it). #}
{% macro months_before_period(key) -%}
    ({{ month_index(period_key()) }} - {{ month_index(key) }})
{%- endmacro %}

{% macro period_start_date() -%}
    cast('{{ period_start() }}' as date)
{%- endmacro %}

{% macro period_end_date() -%}
    cast('{{ period_end() }}' as date)
{%- endmacro %}

{# UTC instants safely around the period: local months of any time zone fall inside. The same window
   as core/periods.py Period.padded_window (PAD_DAYS); tests/test_periods.py compiles this and compares. #}
{% macro period_padded_instant(which) -%}
    cast('{{ period_padded_day(which).isoformat() }} 00:00:00+00' as {{ instant_type() }})
{%- endmacro %}

{# The UTC day those instants fall on (a date object). #}
{% macro period_padded_day(which) -%}
    {%- set day = modules.datetime.date.fromisoformat(period_start() if which == 'start' else period_end()) -%}
    {{ return(day - modules.datetime.timedelta(days=2) if which == 'start' else day + modules.datetime.timedelta(days=2)) }}
{%- endmacro %}

{#
  Incremental strategy of the period-scoped tables on DuckDB and PostgreSQL (dbt_project.yml;
  Spark's is insert_overwrite of the period's partition): the run's rows replace the table's rows of
  the run's period, in the model's transaction. dbt's stock delete+insert (unique_key period) deletes
  only the periods its new rows carry, so a period whose new result is empty (a catalog that no
  longer prices it, unrated usage that is now priced) would keep its old rows
  (tests/test_period_reruns.py). This is that strategy keyed by the run's period instead.
#}
{% macro get_incremental_replace_period_sql(arg_dict) %}
    delete from {{ arg_dict['target_relation'] }} where period = {{ period_key() }};
    {{ get_incremental_append_sql(arg_dict) }}
{% endmacro %}
