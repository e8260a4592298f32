{#-
  The usage rollups that invoice lines price: one per account, product, currency and price.
  When the price changes inside the period, the period splits into one segment per price.
  Quantity follows the product's meter: sum (default), count, max, or last value.
-#}

with rated_days as (
    select
        d.*,
        p.aggregation,
        first_value(d.last_quantity) over (
            partition by d.billing_account_id, d.product_id, d.currency, d.rate_id
            order by d.last_occurred_at desc nulls last
        ) as segment_last_quantity
    from {{ ref('int_billable_days_rated') }} as d
    inner join {{ ref('stg_catalog__products') }} as p on p.product_id = d.product_id
    where d.period = {{ period_key() }}
      and d.rate_id is not null
),

segments as (
    select
        billing_account_id,
        product_id,
        currency,
        rate_id,
        max(rate_level) as rate_level,
        max(aggregation) as aggregation,
        min(usage_date) as segment_start,
        max(usage_date) as segment_last_day,
        count(*) as segment_days,
        max(is_provisioned) as is_provisioned,
        sum(event_count) as event_count,
        coalesce(sum(quantity_sum), 0) as quantity_sum,
        coalesce(max(quantity_max), 0) as quantity_max,
        coalesce(max(segment_last_quantity), 0) as quantity_last
    from rated_days
    group by billing_account_id, product_id, currency, rate_id
)

select
    {{ period_key() }} as period,
    {{ key_of(["'" ~ period_start()[:7] ~ "'", 'billing_account_id', 'product_id', 'currency', 'rate_id']) }} as usage_rollup_id,
    billing_account_id,
    product_id,
    currency,
    rate_id,
    rate_level,
    aggregation,
    segment_start,
    cast({{ dbt.dateadd('day', 1, 'segment_last_day') }} as date) as segment_end,
    segment_days,
    is_provisioned = 1 as is_provisioned,
    event_count,
    cast(case aggregation
        when 'count' then cast(event_count as {{ quantity_type() }})
        when 'max' then quantity_max
        when 'last' then quantity_last
        else quantity_sum
    end as {{ quantity_type() }}) as quantity
from segments
