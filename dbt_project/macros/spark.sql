{#
  Spark only: the raw tables as Parquet. `billing run` (warehouse/spark.py) exports the warehouse's
  raw tables to <BILLING_SPARK_DIR>/raw/<table>/ just before dbt runs; events are partitioned by
  their UTC day (occurred_date=YYYY-MM-DD) so a month's rating reads only the days around it.
  The catalog is rebuilt at every run (in-memory on local Spark, see profiles.yml): the Parquet
  folders are the state, so a table always points at this run's export.
#}

{% macro register_raw_tables() %}{{ return(adapter.dispatch('register_raw_tables')()) }}{% endmacro %}

{% macro default__register_raw_tables() %}{% endmacro %}

{% macro spark__register_raw_tables() %}
    {%- if execute -%}
        {%- set root = env_var('BILLING_SPARK_DIR') -%}
        {%- set schemas = [] -%}
        {%- for source in graph.sources.values() if source.package_name == project_name -%}
            {%- if source.schema not in schemas -%}
                {%- do run_query('create database if not exists ' ~ source.schema) -%}
                {%- do schemas.append(source.schema) -%}
            {%- endif -%}
            {%- set table = source.schema ~ '.' ~ source.identifier -%}
            {%- do run_query('drop table if exists ' ~ table) -%}
            {%- do run_query("create table " ~ table ~ " using parquet location '" ~ root ~ "/"
                             ~ source.schema ~ "/" ~ source.identifier ~ "'") -%}
            {%- if source.meta.get('spark_partitioned_by') -%}
                {#- a partitioned table sees the day folders once they are recorded in the catalog -#}
                {%- do run_query('alter table ' ~ table ~ ' recover partitions') -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
{% endmacro %}

{#
  Events reach Spark partitioned by UTC day: staging passes the partition column on, and the
  period's filter names it too, so Spark lists and reads only the period's days (partition
  pruning needs a condition on the partition column itself). Nothing elsewhere.
#}
{% macro event_partition_column() %}{{ return(adapter.dispatch('event_partition_column')()) }}{% endmacro %}
{% macro default__event_partition_column() %}{% endmacro %}
{% macro spark__event_partition_column() %}, occurred_date{% endmacro %}

{% macro event_partition_filter() %}{{ return(adapter.dispatch('event_partition_filter')()) }}{% endmacro %}
{% macro default__event_partition_filter() %}{% endmacro %}
{% macro spark__event_partition_filter() -%}
    and occurred_date >= cast('{{ period_padded_day('start').isoformat() }}' as date)
    and occurred_date < cast('{{ period_padded_day('end').isoformat() }}' as date)
{%- endmacro %}

{#
  Spark only, called by `billing run` before `dbt run` (dbt run-operation register_period_tables):
  the period-scoped tables with the warehouse's other periods, written by warehouse/spark.py as
  Parquet partitioned by period, registered so that dbt finds them and replaces only this period's
  partition (insert_overwrite) while models that read earlier periods see them.
#}
{% macro register_period_tables(tables) %}
    {%- set root = env_var('BILLING_SPARK_DIR') -%}
    {%- for table in tables -%}
        {%- set name = table.schema ~ '.' ~ table.name -%}
        {%- do run_query('create database if not exists ' ~ table.schema) -%}
        {#- a table of another home, or of an earlier run, is forgotten; dbt creates it if it has no history -#}
        {%- do run_query('drop table if exists ' ~ name) -%}
        {%- if table.history -%}
            {%- do run_query("create table " ~ name ~ " using parquet location '"
                             ~ root ~ "/tables/" ~ table.schema ~ "/" ~ table.name ~ "'") -%}
            {%- do run_query('alter table ' ~ name ~ ' recover partitions') -%}
        {%- endif -%}
    {%- endfor -%}
{% endmacro %}
