select
    rate_id,
    cast(tier_number as integer) as tier_number,
    cast(lower_bound as {{ quantity_type() }}) as lower_bound,
    cast(up_to as {{ quantity_type() }}) as up_to,
    cast(unit_price as {{ price_type() }}) as unit_price,
    cast(flat_fee as {{ fee_type() }}) as flat_fee
from {{ source('catalog', 'rate_tiers') }}
