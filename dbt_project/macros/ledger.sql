{# Amounts and prices as the ledger stores them (core/money.py LEDGER, ledger/schema.py MONEY; tests/test_precision.py holds them to each other). #}
{% macro ledger_money_type() %}decimal(38, 12){% endmacro %}
