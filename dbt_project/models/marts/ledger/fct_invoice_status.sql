{#-
  Drafts and what was issued, side by side and current: fct_invoices holds each period's drafts
  as of its last run; this view joins them to the ledger as it is now (a view is never stale).
-#}
with documents as (
    select
        i.invoice_id,
        i.invoice_number,
        i.total as issued_total,
        i.issue_date,
        v.invoice_number is not null as is_void,
        row_number() over (
            partition by i.invoice_id
            order by case when v.invoice_number is null then 0 else 1 end, i.sequence_number desc
        ) as pick
    from {{ source('ledger', 'invoices') }} as i
    left join {{ source('ledger', 'voids') }} as v on v.invoice_number = i.invoice_number
)

select
    cast(f.period as {{ string_type() }}) as period,
    cast(f.invoice_id as {{ string_type() }}) as invoice_id,
    cast(f.billing_account_id as {{ string_type() }}) as billing_account_id,
    cast(f.currency as {{ string_type() }}) as currency,
    cast(f.total as {{ ledger_money_type() }}) as draft_total,
    cast(f.is_finalizable as boolean) as is_finalizable,
    cast(case when d.invoice_number is null then 'draft' when d.is_void then 'void' else 'issued' end as {{ string_type() }})
        as status,
    cast(d.invoice_number as {{ string_type() }}) as invoice_number,
    cast(d.issue_date as date) as issue_date,
    cast(d.issued_total as {{ ledger_money_type() }}) as issued_total,
    cast(f.total - d.issued_total as {{ ledger_money_type() }}) as draft_minus_issued
from {{ ref('fct_invoices') }} as f
left join documents as d on d.invoice_id = f.invoice_id and d.pick = 1
