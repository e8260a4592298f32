{#- Known usage, inside its customer's life, rolled up per billing account, product and local day, with
    what each meter needs. The last quantity is the latest event's (by occurred_at, then source, then
    event_id, each descending), found without sorting the month's events (macros/dialect.sql). -#}

select
    {{ period_key() }} as period,
    billing_account_id,
    product_id,
    usage_date,
    sum(quantity) as quantity_sum,
    count(*) as event_count,
    max(quantity) as quantity_max,
    {{ max_by_columns('quantity', ['occurred_at', 'source', 'event_id']) }} as last_quantity,
    max(occurred_at) as last_occurred_at
from {{ ref('int_events_localized') }}
where is_known_customer and is_known_product and is_in_customer_life
group by billing_account_id, product_id, usage_date
