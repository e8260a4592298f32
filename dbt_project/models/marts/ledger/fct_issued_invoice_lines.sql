{#- The lines of issued invoices as issued, with what credit notes have taken off each. -#}
with credited as (
    select invoice_number, invoice_line_number, sum(amount) as credited_amount
    from {{ source('ledger', 'credit_note_lines') }}
    group by invoice_number, invoice_line_number
)

select
    cast(l.invoice_number as {{ string_type() }}) as invoice_number,
    cast(i.period as {{ string_type() }}) as period,
    cast(i.billing_account_id as {{ string_type() }}) as billing_account_id,
    cast(i.currency as {{ string_type() }}) as currency,
    cast(l.line_number as integer) as line_number,
    cast(l.line_id as {{ string_type() }}) as line_id,
    cast(l.line_type as {{ string_type() }}) as line_type,
    cast(l.product_id as {{ string_type() }}) as product_id,
    cast(l.description as {{ string_type() }}) as description,
    cast(l.quantity as {{ ledger_money_type() }}) as quantity,
    cast(l.unit_price as {{ ledger_money_type() }}) as unit_price,
    cast(l.amount as {{ ledger_money_type() }}) as amount,
    cast(l.rate_level as {{ string_type() }}) as rate_level,
    cast(l.rate_id as {{ string_type() }}) as rate_id,
    cast(l.segment_start as date) as segment_start,
    cast(l.segment_end as date) as segment_end,
    cast(l.corrected_period as {{ string_type() }}) as corrected_period,
    cast(l.corrected_invoice_number as {{ string_type() }}) as corrected_invoice_number,
    cast(coalesce(c.credited_amount, 0) as {{ ledger_money_type() }}) as credited_amount,
    cast(l.amount - coalesce(c.credited_amount, 0) as {{ ledger_money_type() }}) as creditable_amount
from {{ source('ledger', 'invoice_lines') }} as l
inner join {{ source('ledger', 'invoices') }} as i on i.invoice_number = l.invoice_number
left join credited as c on c.invoice_number = l.invoice_number and c.invoice_line_number = l.line_number
