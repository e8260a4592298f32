{#- Credit notes, one row per credited line, with the invoice they credit. -#}
select
    n.credit_note_number,
    n.invoice_number,
    n.billing_account_id,
    n.currency,
    n.reason_code,
    n.comment,
    n.issue_date,
    n.issued_at,
    n.issued_by,
    n.total as credit_note_total,
    l.line_number,
    l.invoice_line_number,
    il.description,
    l.quantity,
    l.amount,
    n.pdf_sha256
from {{ source('ledger', 'credit_notes') }} as n
inner join {{ source('ledger', 'credit_note_lines') }} as l on l.credit_note_number = n.credit_note_number
left join {{ source('ledger', 'invoice_lines') }} as il
    on il.invoice_number = l.invoice_number and il.line_number = l.invoice_line_number
