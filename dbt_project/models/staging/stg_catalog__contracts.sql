select
    contract_id,
    customer_id,
    currency,
    rate_class_id,
    effective_from,
    effective_to,
    cast(minimum_commitment as {{ fee_type() }}) as minimum_commitment
from {{ source('catalog', 'contracts') }}
