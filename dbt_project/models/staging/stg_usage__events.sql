select
    source,
    event_id,
    customer_id,
    product_id,
    cast(quantity as {{ quantity_type() }}) as quantity,
    occurred_at,
    file_id,
    row_number as file_row_number{{ event_partition_column() }}
from {{ source('usage', 'events') }}
