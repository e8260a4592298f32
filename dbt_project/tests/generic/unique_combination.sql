{# No two rows share these columns' values (a composite primary key). No dbt Hub packages here. #}
{% test unique_combination(model, column_name, columns) %}
select {{ columns | join(', ') }}, count(*) as occurrences
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}
