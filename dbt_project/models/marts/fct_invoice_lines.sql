{#-
  The draft's lines: the period rated as a whole (int_invoice_lines_rated: usage, recurring fees,
  true-ups, with per-invoice price overrides applied), plus what the ledger adds to a draft:
  manual charges (rate_level 'manual'), corrections of issued periods within the look-back
  (line_type 'adjustment', naming the period and invoice they correct), and credit: a balance the
  account holds is applied up to the subtotal ('credit_applied'), and a negative subtotal is
  carried forward as credit ('credit_carried'), so no invoice is ever negative.
-#}

with rated as (
    select
        period, line_id, billing_account_id, currency, line_type, product_id, usage_rollup_id,
        rate_id, rate_level, contract_id, pricing_model, segment_start, segment_end, segment_days,
        event_count, quantity, included_units, billable_quantity, amount_unrounded, amount,
        cast(case when line_type = 'minimum_commitment'
                  then 'minimum commitment true-up (' || contract_id || ')'
                  else product_id end as {{ string_type() }}) as description,
        cast(null as {{ string_type() }}) as corrected_period,
        cast(null as {{ string_type() }}) as corrected_invoice_number
    from {{ ref('int_invoice_lines_rated') }}
    where period = {{ period_key() }}
),

manual_charges as (
    select
        {{ period_key() }} as period,
        m.manual_line_id as line_id,
        m.billing_account_id,
        m.currency,
        'manual' as line_type,
        cast(null as {{ string_type() }}) as product_id,
        cast(null as {{ string_type() }}) as usage_rollup_id,
        m.manual_line_id as rate_id,
        'manual' as rate_level,
        cast(null as {{ string_type() }}) as contract_id,
        'manual' as pricing_model,
        {{ period_start_date() }} as segment_start,
        {{ period_end_date() }} as segment_end,
        {{ dbt.datediff(period_start_date(), period_end_date(), 'day') }} as segment_days,
        0 as event_count,
        cast(null as {{ quantity_type() }}) as quantity,
        cast(null as {{ quantity_type() }}) as included_units,
        cast(null as {{ quantity_type() }}) as billable_quantity,
        cast(m.amount as {{ amount_type() }}) as amount_unrounded,
        {{ round_money('m.amount', 'cur.minor_units') }} as amount,
        m.description,
        cast(null as {{ string_type() }}) as corrected_period,
        cast(null as {{ string_type() }}) as corrected_invoice_number
    from {{ source('ledger', 'manual_lines') }} as m
    inner join {{ ref('stg_catalog__currencies') }} as cur on cur.currency = m.currency
    where m.period = {{ period_key() }} and m.kind = 'charge'
),

adjustments as (
    select
        period,
        line_id,
        billing_account_id,
        currency,
        'adjustment' as line_type,
        product_id,
        cast(null as {{ string_type() }}) as usage_rollup_id,
        corrected_invoice_number as rate_id,
        'correction' as rate_level,
        cast(null as {{ string_type() }}) as contract_id,
        'adjustment' as pricing_model,
        {{ period_start_date() }} as segment_start,
        {{ period_end_date() }} as segment_end,
        {{ dbt.datediff(period_start_date(), period_end_date(), 'day') }} as segment_days,
        0 as event_count,
        cast(null as {{ quantity_type() }}) as quantity,
        cast(null as {{ quantity_type() }}) as included_units,
        cast(null as {{ quantity_type() }}) as billable_quantity,
        cast(amount as {{ amount_type() }}) as amount_unrounded,
        amount,
        'correction of ' || corrected_period || ' (' || product_key || ', ' || corrected_invoice_number || ')'
            as description,
        corrected_period,
        corrected_invoice_number
    from {{ ref('int_invoice_corrections') }}
    where period = {{ period_key() }} and within_lookback
),

before_credit as (
    select * from rated
    union all
    select * from manual_charges
    union all
    select * from adjustments
),

subtotals as (
    select billing_account_id, currency, sum(amount) as subtotal
    from before_credit
    group by billing_account_id, currency
),

balances as (
    select billing_account_id, currency, sum(amount) as balance
    from {{ source('ledger', 'credit_balance_entries') }}
    group by billing_account_id, currency
),

issued_here as (
    select i.billing_account_id, i.currency
    from {{ source('ledger', 'invoices') }} as i
    where i.period = {{ period_key() }}
      and not exists (select 1 from {{ source('ledger', 'voids') }} as v where v.invoice_number = i.invoice_number)
),

credits as (
    select
        s.billing_account_id,
        s.currency,
        case when s.subtotal < 0 then 'credit_carried' else 'credit_applied' end as line_type,
        case when s.subtotal < 0 then -s.subtotal
             when b.balance < s.subtotal then -b.balance
             else -s.subtotal end as amount
    from subtotals as s
    left join balances as b on b.billing_account_id = s.billing_account_id and b.currency = s.currency
    where (s.subtotal < 0 or (s.subtotal > 0 and coalesce(b.balance, 0) > 0))
      and not exists (select 1 from issued_here as n
                      where n.billing_account_id = s.billing_account_id and n.currency = s.currency)
),

credit_lines as (
    select
        {{ period_key() }} as period,
        {{ key_of(["'" ~ period_start()[:7] ~ "'", 'billing_account_id', 'currency', 'line_type']) }} as line_id,
        billing_account_id,
        currency,
        line_type,
        cast(null as {{ string_type() }}) as product_id,
        cast(null as {{ string_type() }}) as usage_rollup_id,
        cast(null as {{ string_type() }}) as rate_id,
        'credit' as rate_level,
        cast(null as {{ string_type() }}) as contract_id,
        line_type as pricing_model,
        {{ period_start_date() }} as segment_start,
        {{ period_end_date() }} as segment_end,
        {{ dbt.datediff(period_start_date(), period_end_date(), 'day') }} as segment_days,
        0 as event_count,
        cast(null as {{ quantity_type() }}) as quantity,
        cast(null as {{ quantity_type() }}) as included_units,
        cast(null as {{ quantity_type() }}) as billable_quantity,
        cast(amount as {{ amount_type() }}) as amount_unrounded,
        amount,
        case when line_type = 'credit_carried' then 'credit carried forward to the next invoices'
             else 'credit applied from the account''s balance' end as description,
        cast(null as {{ string_type() }}) as corrected_period,
        cast(null as {{ string_type() }}) as corrected_invoice_number
    from credits
),

lines as (
    select * from before_credit
    union all
    select * from credit_lines
)

select
    cast({{ period_key() }} as {{ string_type() }}) as period,
    cast(line_id as {{ string_type() }}) as line_id,
    cast({{ key_of(["'" ~ period_start()[:7] ~ "'", 'billing_account_id', 'currency']) }} as {{ string_type() }}) as invoice_id,
    cast(billing_account_id as {{ string_type() }}) as billing_account_id,
    cast(currency as {{ string_type() }}) as currency,
    cast(line_type as {{ string_type() }}) as line_type,
    cast(product_id as {{ string_type() }}) as product_id,
    cast(usage_rollup_id as {{ string_type() }}) as usage_rollup_id,
    cast(rate_id as {{ string_type() }}) as rate_id,
    cast(rate_level as {{ string_type() }}) as rate_level,
    cast(contract_id as {{ string_type() }}) as contract_id,
    cast(pricing_model as {{ string_type() }}) as pricing_model,
    cast(segment_start as date) as segment_start,
    cast(segment_end as date) as segment_end,
    cast(segment_days as integer) as segment_days,
    cast(event_count as bigint) as event_count,
    cast(quantity as {{ quantity_type() }}) as quantity,
    cast(included_units as {{ quantity_type() }}) as included_units,
    cast(billable_quantity as {{ quantity_type() }}) as billable_quantity,
    cast(amount_unrounded as {{ amount_type() }}) as amount_unrounded,
    cast(amount as {{ money_type() }}) as amount,
    cast(description as {{ string_type() }}) as description,
    cast(corrected_period as {{ string_type() }}) as corrected_period,
    cast(corrected_invoice_number as {{ string_type() }}) as corrected_invoice_number
from lines
