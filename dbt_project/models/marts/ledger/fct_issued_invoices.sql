{#- Every issued invoice as issued, with what became of it: voided, credited, re-issued. -#}
with credited as (
    select invoice_number, sum(total) as credited_total, count(*) as credit_note_count
    from {{ source('ledger', 'credit_notes') }}
    group by invoice_number
)

select
    i.invoice_number,
    i.invoice_id,
    i.period,
    i.period_start,
    i.period_end,
    i.billing_account_id,
    i.customer_name,
    i.currency,
    i.subtotal,
    i.total,
    i.issue_date,
    i.issued_at,
    i.issued_by,
    i.reissue_of,
    case when v.invoice_number is null then 'issued' else 'void' end as status,
    v.reason as void_reason,
    v.voided_by,
    v.voided_at,
    coalesce(c.credited_total, 0) as credited_total,
    coalesce(c.credit_note_count, 0) as credit_note_count,
    i.draft_fingerprint,
    i.data_fingerprint,
    i.catalog_sha256,
    i.pdf_sha256
from {{ source('ledger', 'invoices') }} as i
left join {{ source('ledger', 'voids') }} as v on v.invoice_number = i.invoice_number
left join credited as c on c.invoice_number = i.invoice_number
