{{ config(materialized='ephemeral') }}
{#-
  Events of the period, each placed on its local day in its customer's time zone (UTC if unknown),
  and whether that day is inside the customer's life [active_from, active_to) (false if unknown).
-#}

with candidates as (
    select * from {{ ref('stg_usage__events') }}
    where occurred_at >= {{ period_padded_instant('start') }}
      and occurred_at < {{ period_padded_instant('end') }}
      {{ event_partition_filter() }}
),

localized as (
    select
        e.source,
        e.event_id,
        e.customer_id,
        e.product_id,
        e.quantity,
        e.occurred_at,
        e.file_id,
        e.file_row_number,
        c.billing_account_id,
        p.aggregation,
        c.customer_id is not null as is_known_customer,
        p.product_id is not null as is_known_product,
        c.active_from,
        c.active_to,
        {{ local_date('e.occurred_at', "coalesce(c.timezone, 'UTC')") }} as usage_date
    from candidates as e
    left join {{ ref('stg_catalog__customers') }} as c on c.customer_id = e.customer_id
    left join {{ ref('stg_catalog__products') }} as p on p.product_id = e.product_id
)

select
    *,
    is_known_customer
        and (active_from is null or usage_date >= active_from)
        and (active_to is null or usage_date < active_to) as is_in_customer_life
from localized
where usage_date >= {{ period_start_date() }}
  and usage_date < {{ period_end_date() }}
