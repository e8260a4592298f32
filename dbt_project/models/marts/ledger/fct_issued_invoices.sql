{#- Every issued invoice as issued, with what became of it: voided, credited, re-issued. -#}
with credited as (
    select invoice_number, sum(total) as credited_total, count(*) as credit_note_count
    from {{ source('ledger', 'credit_notes') }}
    group by invoice_number
)

select
    cast(i.invoice_number as {{ string_type() }}) as invoice_number,
    cast(i.invoice_id as {{ string_type() }}) as invoice_id,
    cast(i.period as {{ string_type() }}) as period,
    cast(i.period_start as date) as period_start,
    cast(i.period_end as date) as period_end,
    cast(i.billing_account_id as {{ string_type() }}) as billing_account_id,
    cast(i.customer_name as {{ string_type() }}) as customer_name,
    cast(i.currency as {{ string_type() }}) as currency,
    cast(i.subtotal as {{ ledger_money_type() }}) as subtotal,
    cast(i.total as {{ ledger_money_type() }}) as total,
    cast(i.issue_date as date) as issue_date,
    cast(i.issued_at as {{ instant_type() }}) as issued_at,
    cast(i.issued_by as {{ string_type() }}) as issued_by,
    cast(i.reissue_of as {{ string_type() }}) as reissue_of,
    cast(case when v.invoice_number is null then 'issued' else 'void' end as {{ string_type() }}) as status,
    cast(v.reason as {{ string_type() }}) as void_reason,
    cast(v.voided_by as {{ string_type() }}) as voided_by,
    cast(v.voided_at as {{ instant_type() }}) as voided_at,
    cast(coalesce(c.credited_total, 0) as {{ ledger_money_type() }}) as credited_total,
    cast(coalesce(c.credit_note_count, 0) as bigint) as credit_note_count,
    cast(i.draft_fingerprint as {{ string_type() }}) as draft_fingerprint,
    cast(i.data_fingerprint as {{ string_type() }}) as data_fingerprint,
    cast(i.catalog_sha256 as {{ string_type() }}) as catalog_sha256,
    cast(i.pdf_sha256 as {{ string_type() }}) as pdf_sha256
from {{ source('ledger', 'invoices') }} as i
left join {{ source('ledger', 'voids') }} as v on v.invoice_number = i.invoice_number
left join credited as c on c.invoice_number = i.invoice_number
