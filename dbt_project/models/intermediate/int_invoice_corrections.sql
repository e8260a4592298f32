{#-
  Corrections of issued periods, carried by this period's drafts (DESIGN.md, "Late usage").

  For every issued, not voided invoice of an earlier period Q, the period is re-rated as a whole
  (int_invoice_lines_rated holds Q's rows of its latest run, tiers included) and compared per
  product (the true-up counts as the product `minimum_commitment`) with what Q's invoice billed
  and what earlier corrections of Q already billed. A difference becomes one adjustment line on
  this period's draft of the same billing account and currency, naming Q and Q's invoice number,
  unless this period is already issued for the account or an earlier open draft (a period after Q
  with rated lines and no issued invoice) carries it. `within_lookback` says whether Q lies within
  the configured look-back (var lookback_periods); fct_invoice_lines bills only those, the checks
  report the others.
-#}

with live_invoices as (
    select i.invoice_number, i.period, i.billing_account_id, i.currency
    from {{ source('ledger', 'invoices') }} as i
    where not exists (select 1 from {{ source('ledger', 'voids') }} as v where v.invoice_number = i.invoice_number)
),

issued_before as (
    select * from live_invoices where period < {{ period_key() }}
),

issued_lines as (
    select
        l.invoice_number,
        l.line_type,
        l.corrected_period,
        coalesce(l.product_id, l.line_type) as product_key,
        l.amount
    from {{ source('ledger', 'invoice_lines') }} as l
),

as_issued as (
    select q.period, q.billing_account_id, q.currency, l.product_key, sum(l.amount) as amount
    from issued_before as q
    inner join issued_lines as l on l.invoice_number = q.invoice_number
    where l.line_type in ('usage', 'recurring', 'minimum_commitment')
    group by q.period, q.billing_account_id, q.currency, l.product_key
),

corrected as (
    select l.corrected_period as period, i.billing_account_id, i.currency, l.product_key, sum(l.amount) as amount
    from live_invoices as i
    inner join issued_lines as l on l.invoice_number = i.invoice_number
    where l.line_type = 'adjustment'
    group by l.corrected_period, i.billing_account_id, i.currency, l.product_key
),

rerated as (
    select r.period, r.billing_account_id, r.currency, coalesce(r.product_id, r.line_type) as product_key,
           sum(r.amount) as amount
    from {{ ref('int_invoice_lines_rated') }} as r
    inner join issued_before as q
        on q.period = r.period and q.billing_account_id = r.billing_account_id and q.currency = r.currency
    group by r.period, r.billing_account_id, r.currency, coalesce(r.product_id, r.line_type)
),

keys as (
    select period, billing_account_id, currency, product_key from as_issued
    union
    select period, billing_account_id, currency, product_key from rerated
),

differences as (
    select
        k.period as corrected_period,
        q.invoice_number as corrected_invoice_number,
        k.billing_account_id,
        k.currency,
        k.product_key,
        coalesce(r.amount, 0) - coalesce(a.amount, 0) - coalesce(c.amount, 0) as amount
    from keys as k
    inner join issued_before as q
        on q.period = k.period and q.billing_account_id = k.billing_account_id and q.currency = k.currency
    left join rerated as r
        on r.period = k.period and r.billing_account_id = k.billing_account_id
        and r.currency = k.currency and r.product_key = k.product_key
    left join as_issued as a
        on a.period = k.period and a.billing_account_id = k.billing_account_id
        and a.currency = k.currency and a.product_key = k.product_key
    left join corrected as c
        on c.period = k.period and c.billing_account_id = k.billing_account_id
        and c.currency = k.currency and c.product_key = k.product_key
),

carried_here as (
    select d.*
    from differences as d
    where d.amount <> 0
      -- this period is not issued for the account already
      and not exists (
          select 1 from live_invoices as n
          where n.period = {{ period_key() }}
            and n.billing_account_id = d.billing_account_id and n.currency = d.currency)
      -- no earlier open draft carries it
      and not exists (
          select 1 from {{ ref('int_invoice_lines_rated') }} as o
          where o.billing_account_id = d.billing_account_id and o.currency = d.currency
            and o.period > d.corrected_period and o.period < {{ period_key() }}
            and not exists (
                select 1 from live_invoices as n
                where n.period = o.period
                  and n.billing_account_id = o.billing_account_id and n.currency = o.currency))
)

select
    cast({{ period_key() }} as {{ string_type() }}) as period,
    cast({{ key_of(["'" ~ period_start()[:7] ~ "'", 'billing_account_id', 'currency', 'corrected_period', 'product_key']) }} as {{ string_type() }}) as line_id,
    cast({{ key_of(["'" ~ period_start()[:7] ~ "'", 'billing_account_id', 'currency']) }} as {{ string_type() }}) as invoice_id,
    cast(billing_account_id as {{ string_type() }}) as billing_account_id,
    cast(currency as {{ string_type() }}) as currency,
    cast(case when product_key in ('usage', 'recurring', 'minimum_commitment') then null else product_key end
         as {{ string_type() }}) as product_id,
    cast(product_key as {{ string_type() }}) as product_key,
    cast(corrected_period as {{ string_type() }}) as corrected_period,
    cast(corrected_invoice_number as {{ string_type() }}) as corrected_invoice_number,
    cast(amount as {{ money_type() }}) as amount,
    cast({{ months_before_period('corrected_period') }} as integer) as periods_back,
    cast({{ months_before_period('corrected_period') }} <= {{ var('lookback_periods', 3) }} as boolean)
        as within_lookback
from carried_here
