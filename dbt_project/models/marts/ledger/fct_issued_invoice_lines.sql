{#- The lines of issued invoices as issued, with what credit notes have taken off each. -#}
with credited as (
    select invoice_number, invoice_line_number, sum(amount) as credited_amount
    from {{ source('ledger', 'credit_note_lines') }}
    group by invoice_number, invoice_line_number
)

select
    l.invoice_number,
    i.period,
    i.billing_account_id,
    i.currency,
    l.line_number,
    l.line_id,
    l.line_type,
    l.product_id,
    l.description,
    l.quantity,
    l.unit_price,
    l.amount,
    l.rate_level,
    l.rate_id,
    l.segment_start,
    l.segment_end,
    l.corrected_period,
    l.corrected_invoice_number,
    coalesce(c.credited_amount, 0) as credited_amount,
    l.amount - coalesce(c.credited_amount, 0) as creditable_amount
from {{ source('ledger', 'invoice_lines') }} as l
inner join {{ source('ledger', 'invoices') }} as i on i.invoice_number = l.invoice_number
left join credited as c on c.invoice_number = l.invoice_number and c.invoice_line_number = l.line_number
