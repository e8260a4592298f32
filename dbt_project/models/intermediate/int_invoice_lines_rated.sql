{#-
  The period rated as a whole: one line per usage rollup (account, product, currency, price
  segment), plus a minimum-commitment true-up where a contract's minimum is not reached. Each line
  is rounded once (round_money); the unrounded amount stays beside it. A per-invoice price override
  from the ledger (ledger.manual_lines, kind price_override) reprices the billable quantity of its
  product on this period's invoice: the line then says rate_level 'manual' and names the override.
  fct_invoice_lines adds the ledger's manual charges, corrections of issued periods and credits;
  int_invoice_corrections compares this model's rows of an issued period with what was issued.
-#}

with priced as (
    select usage_rollup_id, sum(amount_unrounded) as amount_unrounded
    from {{ ref('int_segment_tiers_priced') }}
    where period = {{ period_key() }}
    group by usage_rollup_id
),

overrides as (
    {#- the latest price override per account, currency and product of this period -#}
    select billing_account_id, currency, product_id, manual_line_id, unit_price
    from (
        select
            m.*,
            row_number() over (
                partition by billing_account_id, currency, product_id
                order by created_at desc, manual_line_id desc
            ) as recency
        from {{ source('ledger', 'manual_lines') }} as m
        where period = {{ period_key() }} and kind = 'price_override'
    ) as ranked
    where recency = 1
),

rated_lines as (
    select
        s.usage_rollup_id as line_id,
        s.billing_account_id,
        s.currency,
        case when s.aggregation = 'none' then 'recurring' else 'usage' end as line_type,
        s.product_id,
        s.usage_rollup_id,
        s.rate_id,
        s.rate_level,
        r.contract_id,
        r.pricing_model,
        s.segment_start,
        s.segment_end,
        s.segment_days,
        s.event_count,
        s.quantity,
        r.included_units,
        cast(case when s.quantity > r.included_units then s.quantity - r.included_units else 0 end
             as {{ quantity_type() }}) as billable_quantity,
        p.amount_unrounded,
        {{ round_money('p.amount_unrounded', 'cur.minor_units') }} as amount
    from {{ ref('int_usage_segments_aggregated') }} as s
    inner join priced as p on p.usage_rollup_id = s.usage_rollup_id
    inner join {{ ref('stg_catalog__rates') }} as r on r.rate_id = s.rate_id
    inner join {{ ref('stg_catalog__currencies') }} as cur on cur.currency = s.currency
    where s.period = {{ period_key() }}
),

usage_lines as (
    select
        l.line_id,
        l.billing_account_id,
        l.currency,
        l.line_type,
        l.product_id,
        l.usage_rollup_id,
        coalesce(o.manual_line_id, l.rate_id) as rate_id,
        case when o.manual_line_id is null then l.rate_level else 'manual' end as rate_level,
        l.contract_id,
        case when o.manual_line_id is null then l.pricing_model else 'per_unit' end as pricing_model,
        l.segment_start,
        l.segment_end,
        l.segment_days,
        l.event_count,
        l.quantity,
        l.included_units,
        l.billable_quantity,
        {#- quantity_type x price_type: exact on every engine (macros/money.sql) -#}
        case when o.manual_line_id is null then l.amount_unrounded
             else cast(l.billable_quantity * cast(o.unit_price as {{ price_type() }}) as {{ amount_type() }})
        end as amount_unrounded,
        case when o.manual_line_id is null then l.amount
             else {{ round_money('l.billable_quantity * cast(o.unit_price as ' ~ price_type() ~ ')', 'cur.minor_units') }}
        end as amount
    from rated_lines as l
    inner join {{ ref('stg_catalog__currencies') }} as cur on cur.currency = l.currency
    left join overrides as o
        on o.billing_account_id = l.billing_account_id
        and o.currency = l.currency
        and o.product_id = l.product_id
        and l.line_type = 'usage'
),

commitments as (
    {#- contracts in force on at least one day of the period inside the customer's life, with a minimum
        to reach (three ranges that meet pairwise share a day) -#}
    select ct.contract_id, c.billing_account_id, ct.currency, ct.minimum_commitment
    from {{ ref('stg_catalog__contracts') }} as ct
    inner join {{ ref('stg_catalog__customers') }} as c on c.customer_id = ct.customer_id
    where ct.minimum_commitment is not null
      and ct.effective_from < {{ period_end_date() }}
      and (ct.effective_to is null or ct.effective_to > {{ period_start_date() }})
      and (c.active_from is null or c.active_from < {{ period_end_date() }})
      and (c.active_to is null or c.active_to > {{ period_start_date() }})
      and (c.active_from is null or ct.effective_to is null or c.active_from < ct.effective_to)
      and (c.active_to is null or c.active_to > ct.effective_from)
),

true_ups as (
    select
        {{ key_of(["'" ~ period_start()[:7] ~ "'", 'm.billing_account_id', 'm.currency', 'm.contract_id']) }} as line_id,
        m.billing_account_id,
        m.currency,
        'minimum_commitment' as line_type,
        cast(null as {{ string_type() }}) as product_id,
        cast(null as {{ string_type() }}) as usage_rollup_id,
        m.contract_id as rate_id,
        'contract' as rate_level,
        m.contract_id,
        'minimum_commitment' as pricing_model,
        {{ period_start_date() }} as segment_start,
        {{ period_end_date() }} as segment_end,
        {{ dbt.datediff(period_start_date(), period_end_date(), 'day') }} as segment_days,
        0 as event_count,
        cast(null as {{ quantity_type() }}) as quantity,
        cast(null as {{ quantity_type() }}) as included_units,
        cast(null as {{ quantity_type() }}) as billable_quantity,
        cast(m.minimum_commitment - coalesce(u.subtotal, 0) as {{ amount_type() }}) as amount_unrounded,
        {#- a commitment may have more places than the currency: rounded once, like every line -#}
        {{ round_money('m.minimum_commitment - coalesce(u.subtotal, 0)', 'cur.minor_units') }} as amount
    from commitments as m
    inner join {{ ref('stg_catalog__currencies') }} as cur on cur.currency = m.currency
    left join (
        {#- a sum of rounded amounts, as wide as money: an invoice's lines at the limits add up past
            the 16 whole digits of amount_type -#}
        select billing_account_id, currency, cast(sum(amount) as {{ money_type() }}) as subtotal
        from usage_lines
        group by billing_account_id, currency
    ) as u on u.billing_account_id = m.billing_account_id and u.currency = m.currency
    where coalesce(u.subtotal, 0) < m.minimum_commitment
),

lines as (
    select * from usage_lines
    union all
    select * from true_ups
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
    cast(amount as {{ money_type() }}) as amount
from lines
