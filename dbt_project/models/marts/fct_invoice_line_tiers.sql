{#- How each invoice line's amount is built: units, price and flat fee per tier. -#}
select
    cast(period as {{ string_type() }}) as period,
    cast(usage_rollup_id as {{ string_type() }}) as line_id,
    cast(tier_number as integer) as tier_number,
    cast(units as {{ quantity_type() }}) as units,
    cast(unit_price as {{ fee_type() }}) as unit_price,
    cast(flat_fee as {{ fee_type() }}) as flat_fee,
    cast(amount_unrounded as {{ amount_type() }}) as amount_unrounded
from {{ ref('int_segment_tiers_priced') }}
where period = {{ period_key() }}
