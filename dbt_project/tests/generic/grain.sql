{#
  A period-scoped model's grain: no two rows of the run's period share these columns' values. Only
  the run's period is read (the others were tested when they were rated), so the test costs the same
  in the tenth year as in the first.
#}
{% test grain(model, columns) %}
select {{ columns | join(', ') }}, count(*) as occurrences
from {{ model }}
where period = {{ period_key() }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}
