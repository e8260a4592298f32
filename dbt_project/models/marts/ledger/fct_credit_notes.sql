{#- Credit notes, one row per credited line, with the invoice they credit. -#}
select
    cast(n.credit_note_number as {{ string_type() }}) as credit_note_number,
    cast(n.invoice_number as {{ string_type() }}) as invoice_number,
    cast(n.billing_account_id as {{ string_type() }}) as billing_account_id,
    cast(n.currency as {{ string_type() }}) as currency,
    cast(n.reason_code as {{ string_type() }}) as reason_code,
    cast(n.comment as {{ string_type() }}) as comment,
    cast(n.issue_date as date) as issue_date,
    cast(n.issued_at as {{ instant_type() }}) as issued_at,
    cast(n.issued_by as {{ string_type() }}) as issued_by,
    cast(n.total as {{ ledger_money_type() }}) as credit_note_total,
    cast(l.line_number as integer) as line_number,
    cast(l.invoice_line_number as integer) as invoice_line_number,
    cast(il.description as {{ string_type() }}) as description,
    cast(l.quantity as {{ ledger_money_type() }}) as quantity,
    cast(l.amount as {{ ledger_money_type() }}) as amount,
    cast(n.pdf_sha256 as {{ string_type() }}) as pdf_sha256
from {{ source('ledger', 'credit_notes') }} as n
inner join {{ source('ledger', 'credit_note_lines') }} as l on l.credit_note_number = n.credit_note_number
left join {{ source('ledger', 'invoice_lines') }} as il
    on il.invoice_number = l.invoice_number and il.line_number = l.invoice_line_number
