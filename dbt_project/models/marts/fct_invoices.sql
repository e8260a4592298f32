{#-
  One draft invoice per billing account, currency and period. The total is the sum of the
  rounded lines. An invoice is finalizable only when none of its account's usage is unrated.
  The ledger says what became of it: `status` is draft, issued or void, with the number and the
  total as issued (which never change; the draft beside them may, when the period is re-rated).
  The account's name and terms are in dim_customers (billing_account_id = customer_id).
  `catalog_sha256` names the catalog file the draft was priced with (the warehouse's catalog when
  this run rated; stg_catalog__receipts says when and from where it was loaded): a rerun after a
  catalog change shows another sha256.
-#}

with lines as (
    select
        invoice_id,
        billing_account_id,
        currency,
        count(*) as line_count,
        sum(amount) as total
    from {{ ref('fct_invoice_lines') }}
    where period = {{ period_key() }}
    group by invoice_id, billing_account_id, currency
),

unrated as (
    select billing_account_id, count(*) as unrated_count
    from {{ ref('fct_unrated_usage') }}
    where period = {{ period_key() }} and billing_account_id is not null
    group by billing_account_id
),

issued as (
    {#- the latest document issued for this draft: a live one wins over a voided one -#}
    select invoice_id, invoice_number, total as issued_total, is_void
    from (
        select
            i.invoice_id,
            i.invoice_number,
            i.total,
            v.invoice_number is not null as is_void,
            row_number() over (
                partition by i.invoice_id
                order by case when v.invoice_number is null then 0 else 1 end, i.sequence_number desc
            ) as pick
        from {{ source('ledger', 'invoices') }} as i
        left join {{ source('ledger', 'voids') }} as v on v.invoice_number = i.invoice_number
        where i.period = {{ period_key() }}
    ) as ranked
    where pick = 1
)

select
    cast({{ period_key() }} as {{ string_type() }}) as period,
    cast(l.invoice_id as {{ string_type() }}) as invoice_id,
    cast(l.billing_account_id as {{ string_type() }}) as billing_account_id,
    cast(l.currency as {{ string_type() }}) as currency,
    cast({{ period_start_date() }} as date) as period_start,
    cast({{ period_end_date() }} as date) as period_end,
    cast(l.line_count as bigint) as line_count,
    cast(l.total as {{ money_type() }}) as total,
    cast(coalesce(u.unrated_count, 0) as bigint) as unrated_usage_count,
    cast(coalesce(u.unrated_count, 0) = 0 as boolean) as is_finalizable,
    cast(case when iss.invoice_number is null then 'draft' when iss.is_void then 'void' else 'issued' end
         as {{ string_type() }}) as status,
    cast(iss.invoice_number as {{ string_type() }}) as invoice_number,
    cast(iss.issued_total as {{ money_type() }}) as issued_total,
    cast((select max(catalog_sha256) from {{ ref('stg_catalog__currencies') }}) as {{ string_type() }}) as catalog_sha256
from lines as l
left join unrated as u on u.billing_account_id = l.billing_account_id
left join issued as iss on iss.invoice_id = l.invoice_id
