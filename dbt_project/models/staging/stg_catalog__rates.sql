select
    rate_id,
    level as rate_level,
    cast(level_rank as integer) as level_rank,
    product_id,
    currency,
    customer_id,
    contract_id,
    rate_class_id,
    effective_from,
    effective_to,
    model as pricing_model,
    cast(included_units as {{ quantity_type() }}) as included_units,
    cast(package_size as bigint) as package_size,
    cast(package_price as {{ price_type() }}) as package_price,
    cast(flat_amount as {{ fee_type() }}) as flat_amount
from {{ source('catalog', 'rates') }}
