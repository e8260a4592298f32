{#- Corrections of issued periods: issued on a later invoice, or pending on a draft (with the look-back verdict). -#}
with issued as (
    select
        'issued' as state,
        i.period,
        i.billing_account_id,
        i.currency,
        l.invoice_number,
        l.corrected_period,
        l.corrected_invoice_number,
        l.product_id,
        l.amount,
        cast(null as boolean) as within_lookback
    from {{ source('ledger', 'invoice_lines') }} as l
    inner join {{ source('ledger', 'invoices') }} as i on i.invoice_number = l.invoice_number
    where l.line_type = 'adjustment'
      and not exists (select 1 from {{ source('ledger', 'voids') }} as v where v.invoice_number = i.invoice_number)
),

pending as (
    select
        'pending' as state,
        c.period,
        c.billing_account_id,
        c.currency,
        cast(null as {{ string_type() }}) as invoice_number,
        c.corrected_period,
        c.corrected_invoice_number,
        c.product_id,
        c.amount,
        c.within_lookback
    from {{ ref('int_invoice_corrections') }} as c
    where not exists (
        select 1 from {{ source('ledger', 'invoices') }} as i
        where i.period = c.period and i.billing_account_id = c.billing_account_id and i.currency = c.currency
          and not exists (select 1 from {{ source('ledger', 'voids') }} as v where v.invoice_number = i.invoice_number))
),

adjustments as (
    select * from issued
    union all
    select * from pending
)

select
    cast(state as {{ string_type() }}) as state,
    cast(period as {{ string_type() }}) as period,
    cast(billing_account_id as {{ string_type() }}) as billing_account_id,
    cast(currency as {{ string_type() }}) as currency,
    cast(invoice_number as {{ string_type() }}) as invoice_number,
    cast(corrected_period as {{ string_type() }}) as corrected_period,
    cast(corrected_invoice_number as {{ string_type() }}) as corrected_invoice_number,
    cast(product_id as {{ string_type() }}) as product_id,
    cast(amount as {{ ledger_money_type() }}) as amount,
    cast(within_lookback as boolean) as within_lookback
from adjustments
