{#
  A model's grain: no two rows of the run's period share these columns' values. Only the run's
  period is read (the others were tested when they were rated), so the test costs the same in the
  tenth year as in the first. period_scoped=false for a model without a period column.
#}
{% test grain(model, columns, period_scoped=true) %}
select {{ columns | join(', ') }}, count(*) as occurrences
from {{ model }}
{%- if period_scoped %}
where period = {{ period_key() }}
{%- endif %}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}
