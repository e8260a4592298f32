{#- Known usage, inside its customer's life, rolled up per billing account, product and local day, with
    what each meter needs. -#}

with known as (
    select
        *,
        row_number() over (
            partition by billing_account_id, product_id, usage_date
            order by occurred_at desc, source desc, event_id desc
        ) as recency_rank
    from {{ ref('int_events_localized') }}
    where is_known_customer and is_known_product and is_in_customer_life
)

select
    {{ period_key() }} as period,
    billing_account_id,
    product_id,
    usage_date,
    sum(quantity) as quantity_sum,
    count(*) as event_count,
    max(quantity) as quantity_max,
    max(case when recency_rank = 1 then quantity end) as last_quantity,
    max(occurred_at) as last_occurred_at
from known
group by billing_account_id, product_id, usage_date
