{# Amounts and prices as the ledger stores them (ledger/schema.py MONEY): exact, already rounded to the currency. #}
{% macro ledger_money_type() %}decimal(38, 12){% endmacro %}
