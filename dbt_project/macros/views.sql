{#- A view says which dbt project built it: billing/rating.py passes the var billing_view_mark (the content key
    of the project) and, when every view already carries the current one, builds with the selector
    billing_month_views_kept (selectors.yml) instead of recreating the views at every run. A view built
    without the var (dbt run by hand, or on Spark) carries no mark: the next run recreates them all.
    PostgreSQL keeps a view's comment through CREATE OR REPLACE VIEW, so there the mark also holds an md5 of
    the view's definition as built (billing/rating.py compares it with the definition found). -#}
{% macro mark_view() %}
  {%- set mark = var("billing_view_mark", "") | replace("'", "''") -%}
  {%- if config.get('materialized') != 'view' -%}
  {%- elif target.type == 'duckdb' -%}
    comment on view {{ this }} is '{{ mark }}'
  {%- elif target.type == 'postgres' -%}
    {%- set name = adapter.quote(this.schema) ~ '.' ~ adapter.quote(this.identifier) -%}
    do $mark$ begin
      execute format('comment on view %s is %L', '{{ name }}', '{{ mark }} ' || md5(pg_get_viewdef('{{ name }}'::regclass)));
    end $mark$
  {%- endif -%}
{% endmacro %}
