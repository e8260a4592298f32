{#- No two rows share these columns' values among the rows of the period being rated: those whose
    `time_column` falls in the period's padded UTC window (macros/period.sql). For a table that only
    grows (raw events), so each month's run checks what it rates instead of the whole history again. -#}
{% test unique_in_period(model, column_name, columns, time_column) %}
select {{ columns | join(', ') }}, count(*) as occurrences
from {{ model }}
where {{ time_column }} >= {{ period_padded_instant('start') }}
  and {{ time_column }} < {{ period_padded_instant('end') }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}
