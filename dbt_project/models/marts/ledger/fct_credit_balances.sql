{#- The credit each billing account holds per currency, and how it came and went. -#}
select
    billing_account_id,
    currency,
    sum(amount) as balance,
    sum(case when amount > 0 then amount else 0 end) as credit_left,
    -sum(case when amount < 0 then amount else 0 end) as credit_used,
    count(*) as entries,
    max(created_at) as last_changed_at
from {{ source('ledger', 'credit_balance_entries') }}
group by billing_account_id, currency
