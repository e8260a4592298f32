{#-
  Each usage rollup priced by its rate's model, one row per tier that contributes (the tier
  breakdown an invoice line carries). Amounts here are exact; rounding happens once per line.
    per unit / graduated: each unit at the price of the tier it falls in, plus each reached tier's flat fee
    volume:  every unit at the price of the tier the quantity falls in, plus that tier's flat fee
    package: ceil(quantity / package size) x package price
    flat fee: amount x days in the segment / days in the period
  Included units come off first; tiers and packages count from the first billable unit.
  A provisioned product's first-tier flat fee is charged even at zero usage.
-#}

with segments as (
    select
        s.*,
        r.pricing_model,
        r.included_units,
        r.package_size,
        r.package_price,
        r.flat_amount,
        cast(case when s.quantity > r.included_units then s.quantity - r.included_units else 0 end
             as {{ quantity_type() }}) as billable_quantity
    from {{ ref('int_usage_segments_aggregated') }} as s
    inner join {{ ref('stg_catalog__rates') }} as r on r.rate_id = s.rate_id
    where s.period = {{ period_key() }}
),

tiered as (
    select
        s.usage_rollup_id,
        t.tier_number,
        t.lower_bound,
        t.up_to,
        t.unit_price,
        t.flat_fee,
        s.pricing_model,
        s.is_provisioned,
        s.billable_quantity,
        case
            when s.pricing_model = 'volume' then s.billable_quantity
            when s.billable_quantity <= t.lower_bound then 0
            when t.up_to is null or s.billable_quantity < t.up_to then s.billable_quantity - t.lower_bound
            else t.up_to - t.lower_bound
        end as units
    from segments as s
    inner join {{ ref('stg_catalog__rate_tiers') }} as t on t.rate_id = s.rate_id
    where s.pricing_model in ('per_unit', 'graduated')
       or (
           s.pricing_model = 'volume'
           {#- the tier the whole quantity falls in: above its lower bound, up to and including its up_to -#}
           and (s.billable_quantity > t.lower_bound or t.tier_number = 1)
           and (t.up_to is null or s.billable_quantity <= t.up_to)
       )
),

tiered_priced as (
    select
        usage_rollup_id,
        tier_number,
        cast(units as {{ quantity_type() }}) as units,
        unit_price,
        cast(case
            when units > 0 or (tier_number = 1 and is_provisioned) then flat_fee
            else 0
        end as {{ fee_type() }}) as flat_fee,
        {#- quantity_type x price_type: exact on every engine (macros/money.sql) -#}
        cast(cast(units as {{ quantity_type() }}) * unit_price as {{ amount_type() }}) as usage_amount
    from tiered
    where units > 0 or tier_number = 1
),

packaged as (
    select
        usage_rollup_id,
        1 as tier_number,
        billable_quantity as units,
        package_price as unit_price,
        cast(0 as {{ fee_type() }}) as flat_fee,
        {#- the count of packages has its own type: ceil of the largest quantity is 10^10, one whole
            digit more than a quantity holds (macros/money.sql) -#}
        cast(
            cast({{ int_divide('cast(ceil(billable_quantity) as bigint) + package_size - 1', 'package_size') }}
                 as {{ package_count_type() }})
            * package_price
        as {{ amount_type() }}) as usage_amount
    from segments
    where pricing_model = 'package'
),

flat as (
    select
        usage_rollup_id,
        1 as tier_number,
        cast(segment_days as {{ quantity_type() }}) as units,
        flat_amount as unit_price,
        cast(0 as {{ fee_type() }}) as flat_fee,
        {{ divide_exact('flat_amount * cast(segment_days as integer)',
                        dbt.datediff(period_start_date(), period_end_date(), 'day')) }} as usage_amount
    from segments
    where pricing_model = 'flat_fee'
)

select
    {{ period_key() }} as period,
    usage_rollup_id,
    cast(tier_number as integer) as tier_number,
    units,
    {#- a unit price, a package price or a flat fee's amount: the fee type holds all three -#}
    cast(unit_price as {{ fee_type() }}) as unit_price,
    flat_fee,
    cast(usage_amount + flat_fee as {{ amount_type() }}) as amount_unrounded
from (
    select * from tiered_priced
    union all
    select * from packaged
    union all
    select * from flat
) as priced
