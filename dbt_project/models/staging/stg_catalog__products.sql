select product_id, product_name, unit, aggregation
from {{ source('catalog', 'products') }}
