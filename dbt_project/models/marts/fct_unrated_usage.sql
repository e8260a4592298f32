{#-
  Usage that found no price: an unknown customer, an unknown product, a day outside the customer's
  life (active_from / active_to), or no price in the account's currency on the day it happened. Never priced at zero, never dropped: the affected
  invoice cannot be finalized until this is resolved.
-#}

with unknown as (
    select
        case
            when not is_known_customer then 'unknown_customer'
            when not is_known_product then 'unknown_product'
            else 'outside_customer_life'
        end as reason,
        customer_id,
        billing_account_id,
        product_id,
        cast(null as {{ string_type() }}) as currency,
        sum(quantity) as quantity,
        count(*) as event_count,
        min(usage_date) as first_usage_date,
        max(usage_date) as last_usage_date,
        active_from,
        active_to
    from {{ ref('int_events_localized') }}
    where not (is_known_customer and is_known_product and is_in_customer_life)
    group by 1, customer_id, billing_account_id, product_id, active_from, active_to
),

unpriced as (
    select
        'no_price' as reason,
        billing_account_id as customer_id,
        billing_account_id,
        product_id,
        currency,
        coalesce(sum(quantity_sum), 0) as quantity,
        sum(event_count) as event_count,
        min(usage_date) as first_usage_date,
        max(usage_date) as last_usage_date,
        cast(null as date) as active_from,
        cast(null as date) as active_to
    from {{ ref('int_billable_days_rated') }}
    where period = {{ period_key() }} and rate_id is null
    group by billing_account_id, product_id, currency
),

unrated as (
    select * from unknown
    union all
    select * from unpriced
)

select
    cast({{ period_key() }} as {{ string_type() }}) as period,
    cast(reason as {{ string_type() }}) as reason,
    cast(customer_id as {{ string_type() }}) as customer_id,
    cast(billing_account_id as {{ string_type() }}) as billing_account_id,
    cast(product_id as {{ string_type() }}) as product_id,
    cast(currency as {{ string_type() }}) as currency,
    cast(quantity as {{ quantity_total_type() }}) as quantity,
    cast(event_count as bigint) as event_count,
    cast(first_usage_date as date) as first_usage_date,
    cast(last_usage_date as date) as last_usage_date,
    cast(case reason
        when 'unknown_customer' then 'customer ' || customer_id || ' is not in the catalog'
        when 'unknown_product' then 'product ' || product_id || ' is not in the catalog'
        when 'outside_customer_life' then 'usage of ' || product_id || ' by ' || customer_id || ' on '
            || cast(first_usage_date as {{ string_type() }}) || '..' || cast(last_usage_date as {{ string_type() }})
            || ', outside its life in the catalog (active from '
            || coalesce(cast(active_from as {{ string_type() }}), 'always') || ' to '
            || coalesce(cast(active_to as {{ string_type() }}), 'open') || ')'
        else 'no price for ' || product_id || ' in ' || currency || ' for ' || billing_account_id
    end as {{ string_type() }}) as detail
from unrated
