{#- The credit each billing account holds per currency, and how it came and went. -#}
select
    cast(billing_account_id as {{ string_type() }}) as billing_account_id,
    cast(currency as {{ string_type() }}) as currency,
    cast(sum(amount) as {{ ledger_money_type() }}) as balance,
    cast(sum(case when amount > 0 then amount else 0 end) as {{ ledger_money_type() }}) as credit_left,
    cast(-sum(case when amount < 0 then amount else 0 end) as {{ ledger_money_type() }}) as credit_used,
    cast(count(*) as bigint) as entries,
    cast(max(created_at) as {{ instant_type() }}) as last_changed_at
from {{ source('ledger', 'credit_balance_entries') }}
group by billing_account_id, currency
