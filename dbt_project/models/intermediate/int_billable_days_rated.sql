{#-
  Every day an account has usage of, or is provisioned for, a product, with the price that
  applies that day: account override > contract rate > rate class > product default, in the
  account's billing currency. rate_id is null when no price exists (reported as unrated).
-#}

with period_days as (
    select cast(date_day as date) as usage_date
    from ({{ dbt.date_spine('day', period_start_date(), period_end_date()) }}) as spine
),

provisioned_days as (
    select
        c.billing_account_id,
        ap.product_id,
        d.usage_date
    from {{ ref('stg_catalog__account_products') }} as ap
    inner join {{ ref('stg_catalog__customers') }} as c on c.customer_id = ap.customer_id
    inner join period_days as d
        on d.usage_date >= ap.effective_from
        and (ap.effective_to is null or d.usage_date < ap.effective_to)
        {#- only the days both the provisioning and the customer are active -#}
        and (c.active_from is null or d.usage_date >= c.active_from)
        and (c.active_to is null or d.usage_date < c.active_to)
),

days as (
    select
        billing_account_id,
        product_id,
        usage_date,
        sum(quantity_sum) as quantity_sum,
        sum(event_count) as event_count,
        max(quantity_max) as quantity_max,
        max(last_quantity) as last_quantity,
        max(last_occurred_at) as last_occurred_at,
        max(is_provisioned) as is_provisioned
    from (
        select billing_account_id, product_id, usage_date, quantity_sum, event_count, quantity_max,
               last_quantity, last_occurred_at, 0 as is_provisioned
        from {{ ref('int_usage_days_aggregated') }}
        where period = {{ period_key() }}
        union all
        select billing_account_id, product_id, usage_date, null, 0, null, null, null, 1
        from provisioned_days
    ) as both_kinds
    group by billing_account_id, product_id, usage_date
),

terms as (
    {#- What the account buys under on each day: its contract (if one is in force) or itself. -#}
    select
        d.*,
        ct.contract_id,
        coalesce(ct.currency, c.currency) as currency,
        coalesce(ct.rate_class_id, c.rate_class_id) as rate_class_id
    from days as d
    inner join {{ ref('stg_catalog__customers') }} as c on c.customer_id = d.billing_account_id
    left join {{ ref('stg_catalog__contracts') }} as ct
        on ct.customer_id = d.billing_account_id
        and d.usage_date >= ct.effective_from
        and (ct.effective_to is null or d.usage_date < ct.effective_to)
),

candidates as (
    select
        t.*,
        r.rate_id,
        r.rate_level,
        row_number() over (
            partition by t.billing_account_id, t.product_id, t.usage_date
            order by r.level_rank
        ) as preference
    from terms as t
    left join {{ ref('stg_catalog__rates') }} as r
        on r.product_id = t.product_id
        and r.currency = t.currency
        and (r.effective_from is null or t.usage_date >= r.effective_from)
        and (r.effective_to is null or t.usage_date < r.effective_to)
        and (
            (r.rate_level = 'account_override' and r.customer_id = t.billing_account_id)
            or (r.rate_level = 'contract_rate' and r.contract_id = t.contract_id)
            or (r.rate_level = 'rate_class' and r.rate_class_id = t.rate_class_id)
            or r.rate_level = 'product_default'
        )
)

select
    {{ period_key() }} as period,
    billing_account_id,
    product_id,
    usage_date,
    currency,
    contract_id,
    rate_id,
    rate_level,
    quantity_sum,
    event_count,
    quantity_max,
    last_quantity,
    last_occurred_at,
    is_provisioned
from candidates
where preference = 1
